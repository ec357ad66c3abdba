"""Every file of the PNG conformance suite against pypng, an independent decoder.

The expected arrays are built here from pypng's raw samples with the rules
that napari_color_kmeans._png documents, so a disagreement points at either
a decoding error or a broken rule.
"""

from pathlib import Path

import numpy as np
import png as pypng
import pytest

from napari_color_kmeans._png import PngError, read_png
from napari_color_kmeans._reader import napari_get_reader

SUITE = Path(__file__).resolve().parents[2] / "shared" / "data" / "pngsuite"
VALID_NAMES = sorted(path.stem for path in SUITE.glob("*.png") if not path.name.startswith("x"))
CORRUPT_NAMES = sorted(path.stem for path in SUITE.glob("x*.png"))


def expected_array(path: Path) -> np.ndarray:
    """Decode with pypng and apply the documented rules: palette, tRNS, low-bit scaling."""
    reader = pypng.Reader(filename=str(path))
    width, height, rows, info = reader.read()
    raw = np.array([np.asarray(row, dtype=np.int64) for row in rows])
    bit_depth = info["bitdepth"]
    planes = info["planes"]
    raw = raw.reshape(height, width, planes)

    if reader.color_type == 3:
        palette = np.array(reader.palette(alpha="natural"), dtype=np.int64)
        return palette[raw[..., 0]].astype(np.uint8)

    dtype = np.uint16 if bit_depth == 16 else np.uint8
    full = 2**bit_depth - 1
    top = np.iinfo(dtype).max
    values = raw * (top // full)
    if info.get("transparent") is not None:
        key = np.asarray(info["transparent"], dtype=np.int64).reshape(-1)
        opaque = ~np.all(raw == key, axis=-1)
        values = np.concatenate([values, (opaque * top)[..., None]], axis=-1)
    if values.shape[-1] == 1:
        values = values[..., 0]
    return values.astype(dtype)


def test_suite_has_all_files():
    assert len(VALID_NAMES) + len(CORRUPT_NAMES) == 175
    assert len(CORRUPT_NAMES) == 14


@pytest.mark.parametrize("name", VALID_NAMES)
def test_suite_file_matches_pypng(name):
    path = SUITE / f"{name}.png"
    data = read_png(path)
    expected = expected_array(path)

    assert data.dtype == expected.dtype
    assert data.shape == expected.shape
    np.testing.assert_array_equal(data, expected)


INTERLACED_WITH_TWIN = [
    name for name in VALID_NAMES
    if name[3] == "i" and (SUITE / f"{name[:3]}n{name[4:]}.png").exists()
]


def test_suite_has_interlaced_twins():
    assert len(INTERLACED_WITH_TWIN) == 33


@pytest.mark.parametrize("name", INTERLACED_WITH_TWIN)
def test_suite_interlaced_equals_twin(name):
    twin = name[:3] + "n" + name[4:]

    np.testing.assert_array_equal(read_png(SUITE / f"{name}.png"), read_png(SUITE / f"{twin}.png"))


@pytest.mark.parametrize(
    ("name", "shape", "dtype"),
    [
        ("basn0g16", (32, 32), np.uint16),
        ("basn2c16", (32, 32, 3), np.uint16),
        ("basn3p08", (32, 32, 3), np.uint8),
        ("tbbn3p08", (32, 32, 4), np.uint8),
        ("basn4a16", (32, 32, 2), np.uint16),
        ("basn6a16", (32, 32, 4), np.uint16),
        ("s01n3p01", (1, 1, 3), np.uint8),
        ("cdfn2c08", (32, 8, 3), np.uint8),
    ],
)
def test_suite_shape_and_dtype(name, shape, dtype):
    data = read_png(SUITE / f"{name}.png")

    assert data.shape == shape
    assert data.dtype == dtype


@pytest.mark.parametrize(("name", "levels"), [("basn0g01", 2), ("basn0g02", 4), ("basn0g04", 16)])
def test_low_bit_grey_scaled_to_full_range(name, levels):
    data = read_png(SUITE / f"{name}.png")
    allowed = np.arange(levels) * (255 // (levels - 1))

    assert data.dtype == np.uint8
    assert set(np.unique(data).tolist()) <= set(allowed.tolist())
    assert data.max() > levels - 1


@pytest.mark.parametrize("name", CORRUPT_NAMES)
def test_corrupt_file_rejected(name):
    path = SUITE / f"{name}.png"

    with pytest.raises(PngError) as caught:
        read_png(path)

    message = str(caught.value)
    assert str(path) in message
    assert "not a valid PNG" in message


def test_bad_checksum_rejected_by_reader():
    path = SUITE / "xcsn0g01.png"
    reader = napari_get_reader(str(path))

    with pytest.raises(PngError, match="CRC"):
        reader(str(path))
