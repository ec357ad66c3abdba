"""napari reader contribution: PNG files, lists of PNG files and folders of PNGs.

A single file opens as one image layer named after the file stem, or as a
labels layer when this plugin's writer saved it as labels. A folder, or a
list of paths, opens as one stack whose first axis is the file order
(folders in natural order, so ``img2`` comes before ``img10``).

Colour files (RGB, RGBA, palette) open with ``rgb=True`` whatever their size,
because napari (0.9, ``guess_rgb``) only guesses RGB for images wider and
taller than 30 pixels.
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

from napari_color_kmeans._png import PngError, PngInfo, read_png_or_labels

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
    """Read a PNG file, a folder of PNGs or a list of PNG paths into one layer."""
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
    """Read one PNG as an image layer, or as a labels layer if this plugin wrote it as labels."""
    data, info, is_labels = read_png_or_labels(path)
    if is_labels:
        return _labels_layer(path, data, info)

    layer_data = to_layer_array(data, info)
    metadata = {"path": str(path), **info_metadata(info)}
    _log_orientation(path, info)
    return layer_data, _image_kwargs(layer_data, info, path.stem, metadata), "image"


def _labels_layer(path: Path, labels: np.ndarray, info: PngInfo) -> LayerData:
    saved = dict(info.plugin_metadata or {})
    saved.pop("kind", None)
    name = str(saved.pop("name", path.stem))
    if "cluster_centers" in saved:
        saved["cluster_centers"] = np.asarray(saved["cluster_centers"], dtype=np.float64)

    kwargs: dict[str, Any] = {"name": name, "metadata": {"path": str(path), **saved}}
    if info.palette is not None:
        kwargs["colormap"] = palette_colormap(info.palette)
    return labels, kwargs, "labels"


def palette_colormap(palette: np.ndarray) -> dict[int | None, np.ndarray]:
    """Turn an RGBA uint8 palette into a napari direct colormap dict, label 0 transparent."""
    colors: dict[int | None, np.ndarray] = {None: np.zeros(4), 0: np.zeros(4)}
    for label in range(1, len(palette)):
        colors[label] = palette[label].astype(np.float64) / 255.0
    return colors


def read_stack_layer(paths: list[Path], name: str) -> LayerData:
    """Read PNGs of the same shape and pixel format into one (n_files, ...) stack."""
    if not paths:
        raise ValueError("The list of PNG files to stack is empty; give at least one .png file.")

    first_data, first_kwargs, first_type = read_single_layer(paths[0])
    planes = [first_data]
    for path in paths[1:]:
        layer = read_single_layer(path)
        _check_same_format(layer, (first_data, first_kwargs, first_type), path, paths[0])
        planes.append(layer[0])

    metadata = {**first_kwargs["metadata"], "paths": [str(path) for path in paths]}
    metadata.pop("path", None)
    kwargs = {**first_kwargs, "name": name, "metadata": metadata}
    return np.stack(planes), kwargs, first_type


def _check_same_format(
    layer: LayerData, reference: LayerData, path: Path, reference_path: Path
) -> None:
    """Raise ``PngError`` naming ``path`` if it cannot join the stack that the first file began."""
    if _format_of(layer) == _format_of(reference):
        return
    raise PngError(
        f"Cannot stack {str(path)!r} with the other files because it contains "
        f"{_describe(layer)}, but the first file {str(reference_path)!r} contains "
        f"{_describe(reference)}. Stack only files of the same size and colour type, "
        "or open this file on its own."
    )


def _format_of(layer: LayerData) -> tuple:
    data, kwargs, layer_type = layer
    color_type = kwargs["metadata"].get("png_color_type")
    return data.shape, data.dtype, layer_type, kwargs.get("rgb"), color_type


def _describe(layer: LayerData) -> str:
    data, kwargs, layer_type = layer
    height, width = data.shape[:2]
    color_type = kwargs["metadata"].get("png_color_type", "labels")
    return (
        f"{width} x {height} {color_type} pixels "
        f"({layer_type} data of {data.dtype}, shape {data.shape})"
    )


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
    rgb = data.ndim == 3 and data.shape[-1] in (3, 4)
    high = float(np.iinfo(data.dtype).max)
    return {"name": name, "rgb": rgb, "contrast_limits": [0.0, high], "metadata": metadata}


def _log_orientation(path: Path, info: PngInfo) -> None:
    if info.exif_orientation not in (None, 1):
        logger.warning(
            "%s has EXIF orientation %d; the reader keeps the stored pixel order and "
            "does not rotate or flip the image",
            path, info.exif_orientation,
        )
