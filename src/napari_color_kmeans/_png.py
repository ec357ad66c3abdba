"""Read and write PNG files as NumPy arrays, without Qt or napari.

Decoding and encoding use libpng through imagecodecs (see docs/png.md for why).
Before decoding, this module walks the file's chunks itself and checks the
signature, the IHDR header, every chunk's CRC and the pixel count. So a
damaged file raises one error type whatever the decoder would do, and a huge
file is rejected before any pixel memory is allocated.

Decoded arrays follow these rules:

- 16-bit files stay uint16; 8-bit and lower-depth files become uint8.
- Grey files of 1, 2 or 4 bits are scaled to the full uint8 range by bit
  replication. Value v of an n-bit file becomes v * 255 / (2**n - 1), so
  4-bit values 0..15 become 0, 17, ..., 255.
- Palette files become RGB, or RGBA when a tRNS chunk gives the palette
  transparency.
- Grey stays 2-D; grey + alpha, and grey with a tRNS transparent value,
  become (height, width, 2) with the alpha last.
- RGB with a tRNS transparent colour becomes RGBA.
- Interlaced (Adam7) files decode to the same array as non-interlaced ones.
- An EXIF orientation tag (eXIf chunk) is not applied: the array is in the
  stored pixel order, and the tag is reported in ``PngInfo.exif_orientation``.

Label files written by ``_png_encode.write_label_png`` carry a tEXt chunk with
the keyword ``napari-color-kmeans``. ``read_label_png`` returns their label
values: palette indices of an indexed PNG, or the values of a grey PNG.
"""

from __future__ import annotations

import json
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
IHDR_STRUCT = struct.Struct(">IIBBBBB")
_MAX_CHUNK_LENGTH = 2**31 - 1
_EXIF_ORIENTATION_TAG = 0x0112
TEXT_KEYWORD = b"napari-color-kmeans"
"""Keyword of the tEXt chunk in which the writer stores JSON metadata."""


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
    palette: np.ndarray | None = None
    """Palette as (n_entries, 4) uint8 RGBA, with alpha from tRNS; None without PLTE."""
    plugin_metadata: dict | None = None
    """JSON object of the ``napari-color-kmeans`` tEXt chunk, or None."""
    idat_spans: tuple[tuple[int, int], ...] = ()
    """(start, end) byte offsets of each IDAT chunk's data in the file."""

    @property
    def is_label_file(self) -> bool:
        """True when the writer of this plugin marked the file as a labels image."""
        return bool(self.plugin_metadata) and self.plugin_metadata.get("kind") == "labels"

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
        raise ValueError(
            f"{MAX_PIXELS_ENV}={text!r} must be a positive pixel count; set it to a count "
            f"such as {DEFAULT_MAX_PIXELS} or unset it to use the default."
        )
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

    content, info = load_checked(path, max_pixels)
    data = _decode(content, path)
    _check_decoded(data, info, path)
    return data, info


def read_label_png(
    path: str | os.PathLike, max_pixels: int | None = None
) -> tuple[np.ndarray, PngInfo]:
    """Read the label values of an 8-bit indexed PNG or a grey PNG.

    An indexed PNG gives its palette indices as uint8 (the colours are in
    ``PngInfo.palette``). A grey PNG gives its values as uint8 or uint16.
    Raises ``PngError`` for other colour types and for interlaced or
    lower-depth indexed files, which this function does not unpack.
    """
    path = Path(path)
    content, info = load_checked(path, max_pixels)
    header = info.header
    if not can_read_labels(header):
        raise PngError(
            f"{str(path)!r} cannot be read as labels: it is a {header.bit_depth}-bit "
            f"{header.color_type_name}{' interlaced' if header.interlaced else ''} PNG, and "
            "labels are read from 8- or 16-bit grey PNGs or 8-bit non-interlaced indexed "
            "PNGs. Open it as an image instead."
        )
    return _decode_labels(content, info, path), info


def read_png_or_labels(
    path: str | os.PathLike, max_pixels: int | None = None
) -> tuple[np.ndarray, PngInfo, bool]:
    """Decode a PNG, or read label values if this plugin's writer marked it as labels.

    Returns the array, the ``PngInfo`` and whether the array contains labels. A
    marked file that another program re-saved in a layout ``read_label_png``
    does not unpack (for example interlaced) is decoded as an image.
    """
    path = Path(path)
    content, info = load_checked(path, max_pixels)
    if info.is_label_file and can_read_labels(info.header):
        return _decode_labels(content, info, path), info, True

    if info.is_label_file:
        logger.warning("%s is marked as labels but stored as %s; reading it as an image",
                       path, info.header.color_type_name)
    data = _decode(content, path)
    _check_decoded(data, info, path)
    return data, info, False


def can_read_labels(header: PngHeader) -> bool:
    """True for the layouts ``read_label_png`` unpacks: 8/16-bit grey, 8-bit flat indexed."""
    if header.color_type == 0:
        return header.bit_depth >= 8
    return header.color_type == 3 and header.bit_depth == 8 and not header.interlaced


def _decode_labels(content: bytes, info: PngInfo, path: Path) -> np.ndarray:
    if info.header.color_type == 3:
        return _decode_indices(content, info, path)
    data = _decode(content, path)
    _check_decoded(data, info, path)
    return data


def load_checked(path: Path, max_pixels: int | None) -> tuple[bytes, PngInfo]:
    """Read a file's bytes after checking its header and pixel count; check every chunk."""
    if max_pixels is None:
        max_pixels = max_pixels_from_environment()

    with path.open("rb") as stream:
        head = stream.read(len(PNG_SIGNATURE) + _CHUNK_HEAD.size + IHDR_STRUCT.size + 4)
        header = parse_header(head, path)
        check_pixel_limit(header, max_pixels, path)
        content = head + stream.read()

    return content, inspect_chunks(content, header, path)


def parse_header(head: bytes, path: Path) -> PngHeader:
    """Parse and validate the signature and IHDR chunk at the start of a file."""
    if not head.startswith(PNG_SIGNATURE):
        raise _invalid(path, "the file does not start with the 8-byte PNG signature")
    offset = len(PNG_SIGNATURE)
    if len(head) < offset + _CHUNK_HEAD.size + IHDR_STRUCT.size + 4:
        raise _invalid(path, "the file ends before the IHDR header chunk is complete")

    length, chunk_type = _CHUNK_HEAD.unpack_from(head, offset)
    if chunk_type != b"IHDR" or length != IHDR_STRUCT.size:
        raise _invalid(path, "the first chunk is not a 13-byte IHDR header chunk")
    body_start = offset + _CHUNK_HEAD.size
    _check_crc(head, offset + 4, body_start + length, chunk_type, path)

    width, height, bit_depth, color_type, compression, filter_method, interlace = (
        IHDR_STRUCT.unpack_from(head, body_start)
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
    chunks: dict[bytes, list[tuple[int, int]]] = {}

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
        chunks.setdefault(chunk_type, []).append((body_start, body_end))
        if chunk_type == b"IEND":
            break
        offset = body_end + 4

    _check_required_chunks(chunks, header, path)
    return _collect_info(content, header, chunks)


def _collect_info(
    content: bytes, header: PngHeader, chunks: dict[bytes, list[tuple[int, int]]]
) -> PngInfo:
    def first_body(chunk_type: bytes) -> bytes | None:
        spans = chunks.get(chunk_type)
        return content[spans[0][0]:spans[0][1]] if spans else None

    exif = first_body(b"eXIf")
    texts = [content[start:end] for start, end in chunks.get(b"tEXt", [])]
    return PngInfo(
        header,
        has_trns=b"tRNS" in chunks,
        exif_orientation=parse_exif_orientation(exif) if exif is not None else None,
        palette=_palette_rgba(first_body(b"PLTE"), first_body(b"tRNS"), header),
        plugin_metadata=_plugin_metadata(texts),
        idat_spans=tuple(chunks[b"IDAT"]),
    )


def _palette_rgba(plte: bytes | None, trns: bytes | None, header: PngHeader) -> np.ndarray | None:
    if plte is None or header.color_type != 3:
        return None
    rgb = np.frombuffer(plte[: len(plte) // 3 * 3], dtype=np.uint8).reshape(-1, 3)
    alpha = np.full(len(rgb), 255, dtype=np.uint8)
    if trns is not None:
        n_alpha = min(len(trns), len(rgb))
        alpha[:n_alpha] = np.frombuffer(trns[:n_alpha], dtype=np.uint8)
    return np.column_stack([rgb, alpha])


def _plugin_metadata(texts: list[bytes]) -> dict | None:
    """Parse the JSON object of this plugin's tEXt chunk; ignore other tEXt chunks."""
    prefix = TEXT_KEYWORD + b"\x00"
    for text in texts:
        if not text.startswith(prefix):
            continue
        try:
            value = json.loads(text[len(prefix):].decode("latin-1"))
        except ValueError:
            logger.warning("ignoring a %s tEXt chunk that is not valid JSON", TEXT_KEYWORD.decode())
            continue
        if isinstance(value, dict):
            return value
    return None


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


def _check_required_chunks(seen: dict[bytes, list], header: PngHeader, path: Path) -> None:
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


def _decode_indices(content: bytes, info: PngInfo, path: Path) -> np.ndarray:
    """Decompress and unfilter the IDAT data of an 8-bit, non-interlaced indexed PNG."""
    header = info.header
    compressed = b"".join(content[start:end] for start, end in info.idat_spans)
    expected = header.height * (header.width + 1)
    # Stop at the size the header declares, so a small file whose data
    # inflates to gigabytes cannot exhaust memory; extra data are ignored.
    try:
        raw = zlib.decompressobj().decompress(compressed, expected)
    except zlib.error as error:
        raise _invalid(path, f"its image data failed to decompress ({error})") from error

    if len(raw) < expected:
        raise _invalid(
            path, f"its image data has {len(raw)} bytes, fewer than the {expected} needed"
        )
    rows = np.frombuffer(raw, dtype=np.uint8, count=expected).reshape(header.height, -1)
    return unfilter_rows(rows, bytes_per_pixel=1, path=path)


def unfilter_rows(rows: np.ndarray, bytes_per_pixel: int, path: Path) -> np.ndarray:
    """Undo PNG row filters. Each row of ``rows`` is a filter-type byte and the filtered bytes."""
    filter_types = rows[:, 0]
    filtered = rows[:, 1:]
    if not filter_types.any():
        return filtered.copy()

    out = np.empty_like(filtered)
    previous = np.zeros(filtered.shape[1], dtype=np.uint8)
    for y, filter_type in enumerate(filter_types):
        out[y] = _unfilter_row(int(filter_type), filtered[y], previous, bytes_per_pixel, path)
        previous = out[y]
    return out


def _unfilter_row(filter_type, line, previous, bytes_per_pixel, path) -> np.ndarray:
    if filter_type == 0:
        return line
    if filter_type == 1:
        pixels = line.reshape(-1, bytes_per_pixel)
        return np.cumsum(pixels, axis=0, dtype=np.uint8).reshape(-1)
    if filter_type == 2:
        return line + previous
    if filter_type in (3, 4):
        return _unfilter_row_sequential(filter_type, line, previous, bytes_per_pixel)
    raise _invalid(path, f"a row uses the unknown filter type {filter_type}")


def _unfilter_row_sequential(filter_type, line, previous, bytes_per_pixel) -> np.ndarray:
    """Undo the Average (3) or Paeth (4) filter, which depend on the byte just decoded."""
    out = bytearray(len(line))
    for i, value in enumerate(line.tolist()):
        left = out[i - bytes_per_pixel] if i >= bytes_per_pixel else 0
        up = int(previous[i])
        if filter_type == 3:
            predictor = (left + up) // 2
        else:
            upper_left = int(previous[i - bytes_per_pixel]) if i >= bytes_per_pixel else 0
            predictor = _paeth(left, up, upper_left)
        out[i] = (value + predictor) & 0xFF
    return np.frombuffer(bytes(out), dtype=np.uint8)


def _paeth(left: int, up: int, upper_left: int) -> int:
    estimate = left + up - upper_left
    distance_left = abs(estimate - left)
    distance_up = abs(estimate - up)
    distance_upper_left = abs(estimate - upper_left)
    if distance_left <= distance_up and distance_left <= distance_upper_left:
        return left
    if distance_up <= distance_upper_left:
        return up
    return upper_left


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
