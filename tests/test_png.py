"""Tests of PNG decoding and encoding in napari_color_kmeans._png and _png_encode."""

import shutil
import struct
import zlib

import numpy as np
import png as pypng
import pytest

from napari_color_kmeans import _png
from napari_color_kmeans._png import (
    DEFAULT_MAX_PIXELS,
    MAX_PIXELS_ENV,
    PNG_SIGNATURE,
    PngError,
    PngTooLargeError,
    load_checked,
    read_label_png,
    read_png,
    read_png_with_info,
)
from napari_color_kmeans._png_encode import PngWriteError, make_chunk, write_label_png, write_png


def png_with_size(width: int, height: int) -> bytes:
    """Build a PNG whose header declares width x height but whose data is one tiny row."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + make_chunk(b"IHDR", header)
        + make_chunk(b"IDAT", zlib.compress(b"\x00\x00"))
        + make_chunk(b"IEND", b"")
    )


def insert_after_header(content: bytes, chunk: bytes) -> bytes:
    after_header = len(PNG_SIGNATURE) + 8 + 13 + 4
    return content[:after_header] + chunk + content[after_header:]


def exif_with_orientation(orientation: int) -> bytes:
    """Build little-endian TIFF data with one IFD entry: Orientation (0x0112), SHORT."""
    entry = struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    return b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + entry + struct.pack("<I", 0)


# -- pixel-count limit -------------------------------------------------------


def test_limit_default_rejects_huge_header(tmp_path, monkeypatch):
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    path = tmp_path / "huge.png"
    path.write_bytes(png_with_size(100_000, 100_000))

    with pytest.raises(PngTooLargeError) as caught:
        read_png(path)

    message = str(caught.value)
    assert "100000 x 100000 = 10,000,000,000" in message
    assert f"{DEFAULT_MAX_PIXELS:,}" in message
    assert MAX_PIXELS_ENV in message
    assert "--max-pixels" in message
    assert str(path) in message


def test_limit_checked_before_decoding(tmp_path):
    # The IDAT contains 2 bytes for a 2000 x 2000 header, so decoding would fail
    # with PngError; the limit error shows that decoding never started.
    path = tmp_path / "declares_4_megapixels.png"
    path.write_bytes(png_with_size(2000, 2000))

    with pytest.raises(PngTooLargeError):
        read_png(path, max_pixels=3_999_999)
    with pytest.raises(PngError, match="decoder failed"):
        read_png(path, max_pixels=4_000_000)


def test_limit_exactly_at_pixel_count_loads(ladybug_path):
    pixels = 800 * 533

    assert read_png(ladybug_path, max_pixels=pixels).shape == (533, 800, 3)
    with pytest.raises(PngTooLargeError, match="426,400 pixels"):
        read_png(ladybug_path, max_pixels=pixels - 1)


def test_limit_from_environment(ladybug_path, monkeypatch):
    monkeypatch.setenv(MAX_PIXELS_ENV, "426399")
    with pytest.raises(PngTooLargeError, match="426,399"):
        read_png(ladybug_path)

    monkeypatch.setenv(MAX_PIXELS_ENV, "426_400")
    assert read_png(ladybug_path).shape == (533, 800, 3)


@pytest.mark.parametrize("value", ["many", "0", "-5"])
def test_limit_environment_invalid(ladybug_path, monkeypatch, value):
    monkeypatch.setenv(MAX_PIXELS_ENV, value)

    with pytest.raises(ValueError, match=MAX_PIXELS_ENV):
        read_png(ladybug_path)


# -- file names and damage ----------------------------------------------------


@pytest.mark.parametrize("name", ["Marienkäfer Œuvre.png", "テントウムシ.PNG", "LADYBUG.Png"])
def test_non_ascii_and_upper_case_names(tmp_path, pngsuite_dir, name):
    source = pngsuite_dir / "basn2c08.png"
    path = tmp_path / name
    shutil.copyfile(source, path)

    np.testing.assert_array_equal(read_png(path), read_png(source))


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_png(tmp_path / "absent.png")


def test_truncated_file_rejected(tmp_path, ladybug_path):
    path = tmp_path / "truncated.png"
    path.write_bytes(ladybug_path.read_bytes()[:5000])

    with pytest.raises(PngError, match="truncated|past the end"):
        read_png(path)


def test_non_png_file_rejected(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(b"GIF89a" + bytes(100))

    with pytest.raises(PngError, match="signature"):
        read_png(path)


# -- EXIF orientation -----------------------------------------------------------


def test_exif_orientation_reported_not_applied(tmp_path, pngsuite_dir):
    source = pngsuite_dir / "basn2c08.png"
    path = tmp_path / "rotated.png"
    exif = make_chunk(b"eXIf", exif_with_orientation(6))
    path.write_bytes(insert_after_header(source.read_bytes(), exif))

    data, info = read_png_with_info(path)

    assert info.exif_orientation == 6
    np.testing.assert_array_equal(data, read_png(source))


def test_exif_orientation_of_suite_file(pngsuite_dir):
    _, info = read_png_with_info(pngsuite_dir / "exif2c08.png")

    assert info.exif_orientation == 1


def test_no_exif_orientation_is_none(pngsuite_dir):
    _, info = read_png_with_info(pngsuite_dir / "basn2c08.png")

    assert info.exif_orientation is None


# -- row filters ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["f00n0g08", "f01n0g08", "f02n0g08", "f03n0g08", "f04n0g08"])
def test_unfilter_matches_libpng(pngsuite_dir, name):
    # The suite's fNN files use filter type NN on every row (f04 uses all five).
    path = pngsuite_dir / f"{name}.png"
    content, info = load_checked(path, max_pixels=None)

    indices = _png._decode_indices(content, info, path)

    np.testing.assert_array_equal(indices, read_png(path))


# -- writing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((5, 7), np.uint8), ((5, 7), np.uint16), ((5, 7, 3), np.uint8),
     ((5, 7, 3), np.uint16), ((5, 7, 4), np.uint8), ((5, 7, 4), np.uint16)],
)
def test_write_png_round_trip(tmp_path, shape, dtype):
    rng = np.random.default_rng(0)
    data = rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)
    path = write_png(tmp_path / "image.png", data)

    _, _, _, info = pypng.Reader(filename=str(path)).read()
    assert info["bitdepth"] == np.iinfo(dtype).bits
    np.testing.assert_array_equal(read_png(path), data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.zeros((4, 4), np.float32), "dtype float32"),
        (np.zeros((4, 4), np.int16), "dtype int16"),
        (np.zeros((2, 4, 4, 3), np.uint8), r"shape \(2, 4, 4, 3\)"),
        (np.zeros((4, 4, 2), np.uint8), r"shape \(4, 4, 2\)"),
        (np.zeros((0, 4, 3), np.uint8), "no pixels"),
    ],
)
def test_write_png_rejects_bad_arrays(tmp_path, data, message):
    with pytest.raises(PngWriteError, match=message):
        write_png(tmp_path / "bad.png", data)


def test_write_label_png_is_indexed(tmp_path):
    labels = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.int32)
    colors = np.array([[0.5, 0.5, 0.5, 1.0], [1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    path = write_label_png(tmp_path / "labels.png", labels, colors)

    reader = pypng.Reader(filename=str(path))
    width, height, rows, info = reader.read()
    indices = np.array([list(row) for row in rows])
    palette = reader.palette(alpha="force")
    assert reader.color_type == 3
    np.testing.assert_array_equal(indices, labels)
    assert palette[0] == (0, 0, 0, 0)
    assert palette[1] == (255, 0, 0, 255)
    assert palette[2] == (0, 0, 255, 255)


def test_write_label_png_palette_limit(tmp_path):
    at_limit = np.arange(256, dtype=np.uint16).reshape(16, 16)
    over_limit = at_limit + 1

    write_label_png(tmp_path / "255.png", at_limit)
    write_label_png(tmp_path / "256.png", over_limit)

    _, _, _, info_at = pypng.Reader(filename=str(tmp_path / "255.png")).read()
    _, _, _, info_over = pypng.Reader(filename=str(tmp_path / "256.png")).read()
    assert "palette" in info_at
    assert info_at["bitdepth"] == 8
    assert info_over["greyscale"] is True
    assert info_over["bitdepth"] == 16


@pytest.mark.parametrize("max_label", [3, 255, 256, 65535])
def test_read_label_png_round_trip(tmp_path, max_label):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, max_label, size=(40, 30), endpoint=True)
    labels[0, 0] = max_label
    path = write_label_png(tmp_path / "labels.png", labels, metadata={"n_clusters": 3})

    values, info = read_label_png(path)

    np.testing.assert_array_equal(values, labels)
    assert info.plugin_metadata == {"n_clusters": 3, "kind": "labels"}


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.array([[0, -1]]), "from -1 to 0"),
        (np.array([[0, 70000]]), "from 0 to 70000"),
        (np.zeros((2, 3, 3), int), r"shape \(2, 3, 3\)"),
        (np.zeros((3, 3), float), "dtype float64"),
    ],
)
def test_write_label_png_rejects_bad_labels(tmp_path, labels, message):
    with pytest.raises(PngWriteError, match=message):
        write_label_png(tmp_path / "bad.png", labels)


def test_read_label_png_rejects_rgb(pngsuite_dir):
    with pytest.raises(PngError, match="cannot be read as labels"):
        read_label_png(pngsuite_dir / "basn2c08.png")


def test_written_text_chunk_has_valid_crc(tmp_path):
    path = write_png(tmp_path / "tagged.png", np.zeros((3, 3), np.uint8), {"note": "é"})

    _, info = read_png_with_info(path)

    assert info.plugin_metadata == {"note": "é"}
