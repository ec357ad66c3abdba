"""Write arrays as PNG files, without Qt or napari.

Images (grey, RGB, RGBA) are encoded by libpng through imagecodecs at their
own bit depth, 8 or 16 bits. Labels up to 255 are written as an 8-bit indexed
PNG whose palette contains one colour per label value, so any image viewer shows
them in colour. A PNG palette has at most 256 entries, so labels above 255
are written as a 16-bit grey PNG of the label values instead (colours are not
stored then). Both label formats carry a ``napari-color-kmeans`` tEXt chunk
with JSON metadata that marks them as labels for the reader.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np

from napari_color_kmeans._png import IHDR_STRUCT, PNG_SIGNATURE, TEXT_KEYWORD

logger = logging.getLogger(__name__)

MAX_PALETTE_LABEL = 255
MAX_LABEL = 65535
ZLIB_LEVEL = 6



class PngWriteError(TypeError):
    """Data that a PNG file cannot hold, such as float pixels or a 3-D labels layer.

    Not a ValueError on purpose: napari 0.9.2's ``write_layers`` treats a
    ValueError from a writer as "this writer does not apply" and drops its
    message, so the user would never see what to change.
    """


def write_png(
    path: str | os.PathLike, data: np.ndarray, metadata: dict[str, Any] | None = None
) -> Path:
    """Write a grey (H, W), RGB (H, W, 3) or RGBA (H, W, 4) uint8 or uint16 array as PNG."""
    path = Path(path)
    data = np.asarray(data)
    check_image_array(data, path)
    encoded = imagecodecs.png_encode(np.ascontiguousarray(data), level=ZLIB_LEVEL)
    if metadata:
        encoded = insert_text_chunk(encoded, metadata)
    path.write_bytes(encoded)
    return path


def check_image_array(data: np.ndarray, path: Path) -> None:
    """Raise PngWriteError unless ``data`` is a 2-D grey, RGB or RGBA image of uint8 or uint16."""
    is_grey = data.ndim == 2
    is_color = data.ndim == 3 and data.shape[2] in (3, 4)
    if not (is_grey or is_color):
        raise PngWriteError(
            f"Cannot write {str(path)!r}: PNG stores one 2-D grey, RGB or RGBA image, but the "
            f"data has shape {data.shape}. Save a single plane, or one file per plane."
        )
    if data.dtype not in (np.uint8, np.uint16):
        raise PngWriteError(
            f"Cannot write {str(path)!r}: PNG stores 8- or 16-bit unsigned integers, but the "
            f"data has dtype {data.dtype}. Convert it first, for example with "
            "skimage.util.img_as_ubyte or img_as_uint."
        )
    if min(data.shape[:2]) == 0:
        raise PngWriteError(
            f"Cannot write {str(path)!r}: the image has shape {data.shape} with no pixels."
        )


def write_label_png(
    path: str | os.PathLike,
    labels: np.ndarray,
    label_colors: np.ndarray | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a 2-D array of labels as an indexed PNG, or a 16-bit grey PNG above 255.

    ``label_colors`` is an (n, 4) array of RGBA in [0, 1]. Row i is the colour
    of label value i, and labels past its last row are black. Label 0 is
    always written fully transparent. ``metadata`` goes into the tEXt chunk as
    JSON, with ``"kind": "labels"`` added.
    """
    path = Path(path)
    labels = np.asarray(labels)
    max_label = check_label_array(labels, path)
    text = {**(metadata or {}), "kind": "labels"}

    if max_label <= MAX_PALETTE_LABEL:
        palette = palette_from_colors(label_colors, max_label)
        encoded = encode_indexed_png(labels.astype(np.uint8), palette, text)
    else:
        logger.info(
            "%s: labels up to %d do not fit a 256-entry palette; writing 16-bit grey",
            path, max_label,
        )
        encoded = insert_text_chunk(
            imagecodecs.png_encode(labels.astype(np.uint16), level=ZLIB_LEVEL), text
        )
    path.write_bytes(encoded)
    return path


def check_label_array(labels: np.ndarray, path: Path) -> int:
    """Raise PngWriteError unless ``labels`` is 2-D with integers in 0..65535; return the max."""
    if labels.ndim != 2 or min(labels.shape) == 0:
        raise PngWriteError(
            f"Cannot write {str(path)!r}: PNG stores one 2-D labels image, but the labels "
            f"have shape {labels.shape}. Save a single 2-D plane."
        )
    if labels.dtype.kind not in "biu":
        raise PngWriteError(
            f"Cannot write {str(path)!r}: labels must be integers, but they have dtype "
            f"{labels.dtype}."
        )
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high > MAX_LABEL:
        raise PngWriteError(
            f"Cannot write {str(path)!r}: label values range from {low} to {high}, and a PNG "
            f"stores labels from 0 to {MAX_LABEL}. Relabel them first, for example with "
            "skimage.segmentation.relabel_sequential."
        )
    return high


def palette_from_colors(label_colors: np.ndarray | None, max_label: int) -> np.ndarray:
    """Build an (max_label + 1, 4) uint8 RGBA palette; entry 0 is transparent black."""
    palette = np.zeros((max_label + 1, 4), dtype=np.uint8)
    palette[:, 3] = 255
    if label_colors is not None:
        colors = np.asarray(label_colors, dtype=np.float64)[: max_label + 1]
        palette[: len(colors)] = np.round(np.clip(colors, 0.0, 1.0) * 255).astype(np.uint8)
    palette[0] = 0
    return palette


def encode_indexed_png(indices: np.ndarray, palette: np.ndarray, text: dict[str, Any]) -> bytes:
    """Encode uint8 palette indices with an RGBA palette as an 8-bit indexed PNG.

    Every row uses filter type 0 (None), so the reader's unfiltering takes its
    fast path when the file is read back.
    """
    height, width = indices.shape
    header = IHDR_STRUCT.pack(width, height, 8, 3, 0, 0, 0)
    rows = np.zeros((height, width + 1), dtype=np.uint8)
    rows[:, 1:] = indices
    chunks = [
        make_chunk(b"IHDR", header),
        make_chunk(b"PLTE", palette[:, :3].tobytes()),
        make_chunk(b"tRNS", palette[:, 3].tobytes()),
        text_chunk(text),
        make_chunk(b"IDAT", zlib.compress(rows.tobytes(), ZLIB_LEVEL)),
        make_chunk(b"IEND", b""),
    ]
    return PNG_SIGNATURE + b"".join(chunks)


def make_chunk(chunk_type: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(chunk_type + body)
    return struct.pack(">I", len(body)) + chunk_type + body + struct.pack(">I", crc)


def text_chunk(metadata: dict[str, Any]) -> bytes:
    """Make a tEXt chunk of ASCII JSON under this plugin's keyword."""
    body = json.dumps(metadata, ensure_ascii=True, default=_json_default).encode("ascii")
    return make_chunk(b"tEXt", TEXT_KEYWORD + b"\x00" + body)


def insert_text_chunk(encoded: bytes, metadata: dict[str, Any]) -> bytes:
    """Insert a tEXt chunk right after the IHDR chunk of an encoded PNG."""
    after_header = len(PNG_SIGNATURE) + 8 + IHDR_STRUCT.size + 4
    return encoded[:after_header] + text_chunk(metadata) + encoded[after_header:]


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
