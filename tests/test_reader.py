"""Tests of the napari reader contribution on real PNG files."""

from pathlib import Path

import numpy as np
import png as pypng
import pytest

from napari_color_kmeans._png import PngError, read_png
from napari_color_kmeans._reader import napari_get_reader


def decode_with_pypng(path: Path) -> np.ndarray:
    """Decode an 8-bit RGB(A) or grey PNG with pypng, the independent decoder."""
    width, height, rows, info = pypng.Reader(filename=str(path)).asDirect()
    planes = info["planes"]
    array = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    array = array.reshape(height, width, planes).astype(np.uint8)
    return array[..., 0] if planes == 1 else array


def read_layers(path):
    reader = napari_get_reader(str(path))
    assert callable(reader)
    return reader(str(path))


def test_read_png_ladybug(ladybug_path):
    data = read_png(ladybug_path)

    assert data.shape == (533, 800, 3)
    assert data.dtype == np.uint8
    np.testing.assert_array_equal(data, decode_with_pypng(ladybug_path))


def test_reader_ladybug_layer(ladybug_path):
    layers = read_layers(ladybug_path)

    assert len(layers) == 1
    data, kwargs, layer_type = layers[0]
    assert layer_type == "image"
    assert kwargs["name"] == "ladybug"
    assert kwargs["rgb"] is True
    assert kwargs["contrast_limits"] == [0.0, 255.0]
    np.testing.assert_array_equal(data, decode_with_pypng(ladybug_path))


@pytest.mark.parametrize("name", ["s01n3p01", "cdsn2c08", "basn2c08"])
def test_reader_small_rgb_is_rgb(pngsuite_dir, name):
    data, kwargs, _ = read_layers(pngsuite_dir / f"{name}.png")[0]

    assert data.shape[-1] == 3
    assert kwargs["rgb"] is True
    assert kwargs["name"] == name


def test_reader_rgba_layer(pngsuite_dir):
    path = pngsuite_dir / "basn6a08.png"
    data, kwargs, _ = read_layers(path)[0]

    assert data.shape == (32, 32, 4)
    assert kwargs["rgb"] is True
    np.testing.assert_array_equal(data, decode_with_pypng(path))


def test_reader_grey_layer(pngsuite_dir):
    path = pngsuite_dir / "basn0g08.png"
    data, kwargs, _ = read_layers(path)[0]

    assert data.shape == (32, 32)
    assert data.dtype == np.uint8
    assert kwargs["rgb"] is False
    np.testing.assert_array_equal(data, decode_with_pypng(path))


def test_reader_corrupt_file_names_file(pngsuite_dir):
    path = pngsuite_dir / "xcsn0g01.png"
    reader = napari_get_reader(str(path))

    with pytest.raises(PngError) as caught:
        reader(str(path))

    assert str(path) in str(caught.value)
    assert "not a valid PNG" in str(caught.value)


@pytest.mark.parametrize("name", ["image.tif", "notes.txt", "image.png.bak"])
def test_get_reader_declines_other_files(tmp_path, name):
    assert napari_get_reader(str(tmp_path / name)) is None


def test_get_reader_declines_folder_without_png(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")

    assert napari_get_reader(str(tmp_path)) is None
