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


# -- colour types as layers ------------------------------------------------------


def test_reader_16bit_rgb_layer(pngsuite_dir):
    data, kwargs, _ = read_layers(pngsuite_dir / "basn2c16.png")[0]

    assert data.dtype == np.uint16
    assert kwargs["rgb"] is True
    assert kwargs["contrast_limits"] == [0.0, 65535.0]


def test_reader_grey_alpha_becomes_rgba(pngsuite_dir):
    path = pngsuite_dir / "basn4a08.png"
    grey_alpha = read_png(path)
    data, kwargs, _ = read_layers(path)[0]

    assert data.shape == (32, 32, 4)
    assert kwargs["rgb"] is True
    assert kwargs["metadata"]["png_color_type"] == "grey + alpha"
    for channel in range(3):
        np.testing.assert_array_equal(data[..., channel], grey_alpha[..., 0])
    np.testing.assert_array_equal(data[..., 3], grey_alpha[..., 1])


def test_reader_palette_transparency_kept(pngsuite_dir):
    data, kwargs, _ = read_layers(pngsuite_dir / "tbbn3p08.png")[0]

    assert data.shape == (32, 32, 4)
    assert kwargs["rgb"] is True
    assert 0 in np.unique(data[..., 3])


def test_reader_exif_orientation_metadata(pngsuite_dir):
    _, kwargs, _ = read_layers(pngsuite_dir / "exif2c08.png")[0]

    assert kwargs["metadata"]["exif_orientation"] == 1


def test_reader_non_ascii_upper_case_name(tmp_path, ladybug_path):
    path = tmp_path / "Marienkäfer_テントウムシ.PNG"
    path.write_bytes(ladybug_path.read_bytes())

    data, kwargs, _ = read_layers(path)[0]

    assert kwargs["name"] == "Marienkäfer_テントウムシ"
    assert data.shape == (533, 800, 3)


# -- stacks ------------------------------------------------------------------------


def copy_suite_files(pngsuite_dir, folder, names_and_targets):
    folder.mkdir(exist_ok=True)
    for name, target in names_and_targets:
        (folder / target).write_bytes((pngsuite_dir / f"{name}.png").read_bytes())
    return folder


def test_reader_folder_natural_order(tmp_path, pngsuite_dir):
    folder = copy_suite_files(
        pngsuite_dir, tmp_path / "frames",
        [("basn2c08", "frame10.png"), ("f00n2c08", "frame2.PNG"), ("f01n2c08", "frame1.png")],
    )
    (folder / "notes.txt").write_text("not an image")

    data, kwargs, layer_type = read_layers(folder)[0]

    assert layer_type == "image"
    assert data.shape == (3, 32, 32, 3)
    assert kwargs["rgb"] is True
    assert kwargs["name"] == "frames"
    np.testing.assert_array_equal(data[0], read_png(folder / "frame1.png"))
    np.testing.assert_array_equal(data[1], read_png(folder / "frame2.PNG"))
    np.testing.assert_array_equal(data[2], read_png(folder / "frame10.png"))


def test_reader_list_of_paths_stacks(pngsuite_dir):
    paths = [str(pngsuite_dir / "basn0g08.png"), str(pngsuite_dir / "f02n0g08.png")]
    reader = napari_get_reader(paths)

    data, kwargs, _ = reader(paths)[0]

    assert data.shape == (2, 32, 32)
    assert kwargs["rgb"] is False
    assert kwargs["metadata"]["paths"] == paths


@pytest.mark.parametrize("odd_name", ["basn0g08", "cdfn2c08", "basn2c16", "basn6a08"])
def test_reader_stack_names_odd_file(pngsuite_dir, odd_name):
    paths = [
        str(pngsuite_dir / "basn2c08.png"),
        str(pngsuite_dir / "f00n2c08.png"),
        str(pngsuite_dir / f"{odd_name}.png"),
    ]

    with pytest.raises(PngError) as caught:
        napari_get_reader(paths)(paths)

    message = str(caught.value)
    assert f"Cannot stack {paths[2]!r}" in message
    assert paths[0] in message


def test_reader_stack_corrupt_member_named(tmp_path, pngsuite_dir):
    folder = copy_suite_files(
        pngsuite_dir, tmp_path / "frames",
        [("basn2c08", "a.png"), ("xcsn0g01", "b.png")],
    )

    with pytest.raises(PngError, match="b.png"):
        read_layers(folder)


def test_get_reader_declines_mixed_list(pngsuite_dir, tmp_path):
    paths = [str(pngsuite_dir / "basn2c08.png"), str(tmp_path / "image.tif")]

    assert napari_get_reader(paths) is None
