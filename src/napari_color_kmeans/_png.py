"""Read and write PNG files as NumPy arrays, without Qt or napari.

Decoding and encoding use libpng through imagecodecs (see docs/png.md for why).
Before decoding, this module walks the file's chunks itself and checks the
signature, the IHDR header, every chunk's CRC and the pixel count. So a
damaged file raises one error type whatever the decoder would do, and a huge
file is rejected before any pixel memory is allocated.

Decoded arrays follow these rules:

- 16-bit files stay uint16; 8-bit and lower-depth files become uint8.
- Grey files of 1, 2 or 4 bits are scaled to the full uint8 range by bit
  replication, so value v of an n-bit file becomes v * 255 / (2**n - 1)
  (for example 4-bit 0..15 becomes 0, 17, ..., 255).
- Palette files become RGB, or RGBA when a tRNS chunk gives the palette
  transparency.
- Grey stays 2-D; grey + alpha, and grey with a tRNS transparent value,
  become (height, width, 2) with the alpha last.
- RGB with a tRNS transparent colour becomes RGBA.
- Interlaced (Adam7) files decode to the same array as non-interlaced ones.
- An EXIF orientation tag (eXIf chunk) is not applied: the array is in the
  stored pixel order, and the tag is reported in ``PngInfo.exif_orientation``.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np

logger = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PIXELS_ENV = "NAPARI_COLOR_KMEANS_MAX_PIXELS"
DEFAULT_MAX_PIXELS = 2**28
"""Default pixel-count limit: 268,435,456 pixels, for example 16384 x 16384.

At this size a 16-bit RGBA image takes 2 GiB of memory once decoded.
"""

COLOR_TYPE_NAMES = {0: "grey", 2: "RGB", 3: "palette", 4: "grey + alpha", 6: "RGBA"}
ALLOWED_BIT_DEPTHS = {
    0: (1, 2, 4, 8, 16),
    2: (8, 16),
    3: (1, 2, 4, 8),
    4: (8, 16),
    6: (8, 16),
}
_CHUNK_HEAD = struct.Struct(">I4s")
_IHDR = struct.Struct(">IIBBBBB")
_MAX_CHUNK_LENGTH = 2**31 - 1
_EXIF_ORIENTATION_TAG = 0x0112


class PngError(ValueError):
    """Raised when a file is not a valid PNG or cannot be decoded."""


class PngTooLargeError(PngError):
    """Raised when a PNG header declares more pixels than the pixel-count limit."""


@dataclass(frozen=True)
class PngHeader:
    """The fields of a PNG's IHDR chunk."""

    width: int
    height: int
    bit_depth: int
    color_type: int
    interlaced: bool

    @property
    def n_pixels(self) -> int:
        return self.width * self.height

    @property
    def color_type_name(self) -> str:
        return COLOR_TYPE_NAMES[self.color_type]


@dataclass(frozen=True)
class PngInfo:
    """File-level facts of a PNG that the reader uses besides the pixels."""

    header: PngHeader
    has_trns: bool
    exif_orientation: int | None

    @property
    def is_color(self) -> bool:
        """True for RGB, RGBA and palette files, whose pixels have colour."""
        return self.header.color_type in (2, 3, 6)


def max_pixels_from_environment() -> int:
    """Return the pixel-count limit: $NAPARI_COLOR_KMEANS_MAX_PIXELS, else the default."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise ValueError(
            f"{MAX_PIXELS_ENV}={text!r} is not a whole number; set it to a pixel count "
            f"such as {DEFAULT_MAX_PIXELS} or unset it to use the default."
        ) from None
    if value < 1:
        raise ValueError(f"{MAX_PIXELS_ENV}={text!r} must be a positive pixel count.")
    return value


def read_png(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Decode a PNG file into an array (see the module docstring for shapes and dtypes).

    ``max_pixels`` defaults to ``max_pixels_from_environment()``. Raises
    ``PngError`` for a damaged or non-PNG file, ``PngTooLargeError`` for a
    file over the limit and ``FileNotFoundError`` for a missing file.
    """
    data, _ = read_png_with_info(path, max_pixels=max_pixels)
    return data


def read_png_with_info(
    path: str | os.PathLike, max_pixels: int | None = None
) -> tuple[np.ndarray, PngInfo]:
    """Decode a PNG file and return the array with the file's ``PngInfo``."""
    path = Path(path)
    if max_pixels is None:
        max_pixels = max_pixels_from_environment()

    with path.open("rb") as stream:
        head = stream.read(len(PNG_SIGNATURE) + _CHUNK_HEAD.size + _IHDR.size + 4)
        header = parse_header(head, path)
        check_pixel_limit(header, max_pixels, path)
        content = head + stream.read()

    info = inspect_chunks(content, header, path)
    data = _decode(content, path)
    _check_decoded(data, info, path)
    return data, info


def parse_header(head: bytes, path: Path) -> PngHeader:
    """Parse and validate the signature and IHDR chunk at the start of a file."""
    if not head.startswith(PNG_SIGNATURE):
        raise _invalid(path, "the file does not start with the 8-byte PNG signature")
    offset = len(PNG_SIGNATURE)
    if len(head) < offset + _CHUNK_HEAD.size + _IHDR.size + 4:
        raise _invalid(path, "the file ends before the IHDR header chunk is complete")

    length, chunk_type = _CHUNK_HEAD.unpack_from(head, offset)
    if chunk_type != b"IHDR" or length != _IHDR.size:
        raise _invalid(path, "the first chunk is not a 13-byte IHDR header chunk")
    body_start = offset + _CHUNK_HEAD.size
    _check_crc(head, offset + 4, body_start + length, chunk_type, path)

    width, height, bit_depth, color_type, compression, filter_method, interlace = (
        _IHDR.unpack_from(head, body_start)
    )
    return _validated_header(
        path, width, height, bit_depth, color_type, compression, filter_method, interlace
    )


def _validated_header(
    path, width, height, bit_depth, color_type, compression, filter_method, interlace
) -> PngHeader:
    if not (0 < width < 2**31 and 0 < height < 2**31):
        raise _invalid(path, f"the header declares an invalid size of {width} x {height} pixels")
    if color_type not in ALLOWED_BIT_DEPTHS:
        raise _invalid(path, f"the header declares an invalid colour type {color_type}")
    if bit_depth not in ALLOWED_BIT_DEPTHS[color_type]:
        raise _invalid(
            path,
            f"the header declares bit depth {bit_depth}, which colour type {color_type} "
            f"({COLOR_TYPE_NAMES[color_type]}) does not allow",
        )
    if compression != 0 or filter_method != 0 or interlace not in (0, 1):
        raise _invalid(
            path,
            f"the header declares an unknown compression ({compression}), filter method "
            f"({filter_method}) or interlace method ({interlace})",
        )
    return PngHeader(width, height, bit_depth, color_type, interlaced=interlace == 1)


def check_pixel_limit(header: PngHeader, max_pixels: int, path: Path) -> None:
    """Raise ``PngTooLargeError`` when the header declares more than ``max_pixels`` pixels."""
    if header.n_pixels <= max_pixels:
        return
    raise PngTooLargeError(
        f"{str(path)!r} declares {header.width} x {header.height} = {header.n_pixels:,} "
        f"pixels, more than the limit of {max_pixels:,} pixels, so it was not decoded. "
        f"To open it, raise the limit: set the environment variable {MAX_PIXELS_ENV} "
        f"to at least {header.n_pixels} before starting napari, pass --max-pixels "
        f"{header.n_pixels} on the command line, or call read_png(path, "
        f"max_pixels={header.n_pixels})."
    )


def inspect_chunks(content: bytes, header: PngHeader, path: Path) -> PngInfo:
    """Walk every chunk, check lengths, CRCs and required chunks; return ``PngInfo``."""
    view = memoryview(content)
    offset = len(PNG_SIGNATURE)
    seen: list[bytes] = []
    exif_orientation = None

    while True:
        if offset + _CHUNK_HEAD.size > len(content):
            raise _invalid(path, "the file ends before the IEND chunk (it may be truncated)")
        length, chunk_type = _CHUNK_HEAD.unpack_from(content, offset)
        _check_chunk_type(chunk_type, path)
        body_start = offset + _CHUNK_HEAD.size
        body_end = body_start + length
        if length > _MAX_CHUNK_LENGTH or body_end + 4 > len(content):
            raise _invalid(
                path, f"chunk {chunk_type.decode('ascii')} runs past the end of the file"
            )
        _check_crc(view, offset + 4, body_end, chunk_type, path)
        seen.append(chunk_type)
        if chunk_type == b"eXIf":
            exif_orientation = parse_exif_orientation(bytes(view[body_start:body_end]))
        if chunk_type == b"IEND":
            break
        offset = body_end + 4

    _check_required_chunks(seen, header, path)
    return PngInfo(header, has_trns=b"tRNS" in seen, exif_orientation=exif_orientation)


def _check_chunk_type(chunk_type: bytes, path: Path) -> None:
    if not all(65 <= byte <= 90 or 97 <= byte <= 122 for byte in chunk_type):
        raise _invalid(path, f"it contains a chunk with the invalid type {chunk_type!r}")


def _check_crc(buffer, start: int, end: int, chunk_type: bytes, path: Path) -> None:
    """Compare the CRC stored after ``buffer[start:end]`` (type and data) with its CRC-32."""
    (stored,) = struct.unpack_from(">I", buffer, end)
    if zlib.crc32(buffer[start:end]) != stored:
        raise _invalid(
            path,
            f"the CRC checksum of chunk {chunk_type.decode('ascii', 'replace')} does not "
            "match its data, so the file is damaged",
        )


def _check_required_chunks(seen: list[bytes], header: PngHeader, path: Path) -> None:
    if b"IDAT" not in seen:
        raise _invalid(path, "it has no IDAT image data chunk")
    if header.color_type == 3 and b"PLTE" not in seen:
        raise _invalid(path, "it is a palette image without a PLTE palette chunk")


def parse_exif_orientation(exif: bytes) -> int | None:
    """Return the Orientation tag (1 to 8) of an eXIf chunk's TIFF data, or None."""
    if exif[:4] == b"II*\x00":
        order = "<"
    elif exif[:4] == b"MM\x00*":
        order = ">"
    else:
        return None
    try:
        (ifd_offset,) = struct.unpack_from(order + "I", exif, 4)
        (n_entries,) = struct.unpack_from(order + "H", exif, ifd_offset)
        for index in range(n_entries):
            entry = ifd_offset + 2 + 12 * index
            tag, field_type, count = struct.unpack_from(order + "HHI", exif, entry)
            if tag == _EXIF_ORIENTATION_TAG and field_type == 3 and count == 1:
                (value,) = struct.unpack_from(order + "H", exif, entry + 8)
                return value if 1 <= value <= 8 else None
    except struct.error:
        logger.warning("ignoring an eXIf chunk whose TIFF data is truncated")
    return None


def _decode(content: bytes, path: Path) -> np.ndarray:
    try:
        return imagecodecs.png_decode(content)
    except (imagecodecs.PngError, ValueError, RuntimeError) as error:
        raise _invalid(path, f"the decoder failed with: {error}") from error


def _check_decoded(data: np.ndarray, info: PngInfo, path: Path) -> None:
    header = info.header
    if data.shape[:2] != (header.height, header.width):
        raise _invalid(
            path,
            f"it decoded to shape {data.shape}, but its header declares "
            f"{header.height} x {header.width} pixels",
        )


def _invalid(path: Path, reason: str) -> PngError:
    return PngError(
        f"{str(path)!r} is not a valid PNG file: {reason}. "
        "Check that the file is complete, or export it again as PNG."
    )
