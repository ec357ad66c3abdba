"""napari reader contribution: PNG files, lists of PNG files and folders of PNGs.

A single file opens as one image layer named after the file stem. A folder,
or a list of paths, opens as one stack whose first axis is the file order
(folders in natural order, so ``img2`` comes before ``img10``).

Colour files (RGB, RGBA, palette) open with ``rgb=True`` whatever their size,
because napari only guesses RGB for images wider and taller than 30 pixels.
Grey + alpha files open as RGBA layers with the grey value in all three
colour channels, because napari shows an alpha channel only for RGBA data.
Contrast limits cover the whole dtype range (0-255 or 0-65535), so layers
show their stored values and colours.

This module imports no Qt; decoding lives in ``_png``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_color_kmeans._png import PngError, PngInfo, read_png_with_info

logger = logging.getLogger(__name__)

LayerData = tuple[np.ndarray, dict[str, Any], str]
PathOrPaths = str | os.PathLike | Sequence[str | os.PathLike]

_DIGITS = re.compile(r"(\d+)")


def napari_get_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[LayerData]] | None:
    """Return ``read_png_layers`` when ``path`` names PNG files or a folder of PNGs, else None."""
    if isinstance(path, (str, os.PathLike)):
        candidate = Path(path)
        if candidate.is_dir():
            return read_png_layers if list_png_files(candidate) else None
        return read_png_layers if is_png_name(candidate) else None

    paths = [Path(item) for item in path]
    if paths and all(is_png_name(item) for item in paths):
        return read_png_layers
    return None


def is_png_name(path: Path) -> bool:
    """True when the file name ends in .png, in any letter case."""
    return path.suffix.lower() == ".png"


def list_png_files(folder: Path) -> list[Path]:
    """Return the PNG files directly inside ``folder``, in natural order of their names."""
    files = [item for item in folder.iterdir() if item.is_file() and is_png_name(item)]
    return sorted(files, key=natural_sort_key)


def natural_sort_key(path: Path) -> list[Any]:
    """Return a sort key that orders digit runs by value (``img2`` before ``img10``)."""
    parts = _DIGITS.split(path.name.casefold())
    return [int(part) if part.isdigit() else part for part in parts]


def read_png_layers(path: PathOrPaths) -> list[LayerData]:
    """Read a PNG file, a folder of PNGs or a list of PNG paths into one image layer."""
    if isinstance(path, (str, os.PathLike)) and not Path(path).is_dir():
        return [read_single_layer(Path(path))]

    if isinstance(path, (str, os.PathLike)):
        folder = Path(path)
        return [read_stack_layer(list_png_files(folder), name=folder.name)]

    paths = [Path(item) for item in path]
    if len(paths) == 1:
        return [read_single_layer(paths[0])]
    return [read_stack_layer(paths, name=paths[0].stem)]


def read_single_layer(path: Path) -> LayerData:
    data, info = read_png_with_info(path)
    layer_data = to_layer_array(data, info)
    metadata = {"path": str(path), **info_metadata(info)}
    return layer_data, _image_kwargs(layer_data, info, path.stem, metadata), "image"


def read_stack_layer(paths: list[Path], name: str) -> LayerData:
    """Read PNGs of the same shape and pixel format into one (n_files, ...) stack."""
    if not paths:
        raise ValueError("The list of PNG files to stack is empty; give at least one .png file.")

    planes: list[np.ndarray] = []
    first_info: PngInfo | None = None
    for path in paths:
        data, info = read_png_with_info(path)
        plane = to_layer_array(data, info)
        if planes:
            _check_same_format(plane, info, planes[0], first_info, path, paths[0])
        else:
            first_info = info
        planes.append(plane)

    stack = np.stack(planes)
    metadata = {"paths": [str(path) for path in paths], **info_metadata(first_info)}
    return stack, _image_kwargs(stack, first_info, name, metadata), "image"


def _check_same_format(
    plane: np.ndarray, info: PngInfo, reference: np.ndarray, reference_info: PngInfo,
    path: Path, reference_path: Path,
) -> None:
    """Raise ``PngError`` naming ``path`` when it cannot join the stack started by the first file."""
    if plane.shape == reference.shape and plane.dtype == reference.dtype and (
        info.is_color == reference_info.is_color
    ):
        return
    raise PngError(
        f"Cannot stack {str(path)!r} with the other files because it contains "
        f"{_describe(plane, info)}, but the first file {str(reference_path)!r} contains "
        f"{_describe(reference, reference_info)}. Stack only files of the same size "
        "and colour type, or open this file on its own."
    )


def _describe(plane: np.ndarray, info: PngInfo) -> str:
    height, width = plane.shape[:2]
    kind = info.header.color_type_name
    return f"{width} x {height} {kind} pixels as {plane.dtype} with shape {plane.shape}"


def to_layer_array(data: np.ndarray, info: PngInfo) -> np.ndarray:
    """Turn decoded grey + alpha (height, width, 2) into RGBA; return other arrays unchanged."""
    if data.ndim == 3 and data.shape[2] == 2:
        grey, alpha = data[..., 0], data[..., 1]
        return np.stack([grey, grey, grey, alpha], axis=-1)
    return data


def info_metadata(info: PngInfo) -> dict[str, Any]:
    header = info.header
    return {
        "png_color_type": header.color_type_name,
        "png_bit_depth": header.bit_depth,
        "png_interlaced": header.interlaced,
        "exif_orientation": info.exif_orientation,
    }


def _image_kwargs(
    data: np.ndarray, info: PngInfo, name: str, metadata: dict[str, Any]
) -> dict[str, Any]:
    rgb = data.ndim >= 3 and data.shape[-1] in (3, 4) and (
        info.is_color or info.has_trns or info.header.color_type == 4
    )
    high = float(np.iinfo(data.dtype).max)
    if info.exif_orientation not in (None, 1):
        logger.warning(
            "%s has EXIF orientation %d; the reader shows pixels in stored order "
            "and does not rotate or flip them",
            name, info.exif_orientation,
        )
    return {"name": name, "rgb": rgb, "contrast_limits": [0.0, high], "metadata": metadata}
