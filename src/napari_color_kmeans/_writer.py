"""napari writer contributions: labels as indexed PNG, images as 8- or 16-bit PNG.

Both functions follow npe2's single-layer writer signature
``(path, data, meta) -> list[str]``, where ``meta`` is the layer's state
dictionary (``layer._get_state()`` without the data). This module imports
neither Qt nor napari: it reads the label colours through the colormap's
``map`` method.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from napari_color_kmeans._png_encode import MAX_PALETTE_LABEL, PngWriteError, write_label_png, write_png

logger = logging.getLogger(__name__)

# Layer metadata keys that the labels writer copies into the file's tEXt chunk.
SAVED_METADATA_KEYS = (
    "source_layer", "n_clusters", "random_state", "method", "inertia", "cluster_centers",
)


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Save a 2-D labels layer as an indexed PNG coloured by the layer's colormap.

    Labels above 255 do not fit a PNG palette and are saved as a 16-bit grey
    PNG of the label values instead.
    """
    target = png_path(path)
    labels = _single_scale(data, meta, target)
    max_label = int(labels.max()) if labels.size else 0
    colors = label_colors(meta, max_label) if max_label <= MAX_PALETTE_LABEL else None
    write_label_png(target, labels, colors, metadata=saved_metadata(meta))
    return [str(target)]


def write_image(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Save a grey, RGB or RGBA image layer as a PNG of its own dtype, uint8 or uint16."""
    target = png_path(path)
    image = _single_scale(data, meta, target)
    if image.ndim == 3 and not meta.get("rgb", True):
        raise PngWriteError(
            f"Cannot write {str(target)!r}: the layer is a stack of {image.shape[0]} planes, "
            "not an RGB image, and a PNG stores a single plane. Save one plane at a time."
        )
    write_png(target, image)
    return [str(target)]


def png_path(path: str) -> Path:
    """Return ``path`` with a .png extension added when it has none."""
    target = Path(path)
    return target if target.suffix.lower() == ".png" else target.with_name(target.name + ".png")


def label_colors(meta: dict[str, Any], max_label: int) -> np.ndarray | None:
    """Return (max_label + 1, 4) RGBA colours in [0, 1] for label values 0..max_label.

    The layer's colormap gives the colours as napari draws them. Without a
    colormap, the ``cluster_centers`` metadata of this plugin's widget does.
    """
    colormap = meta.get("colormap")
    if colormap is not None and hasattr(colormap, "map"):
        return np.asarray(colormap.map(np.arange(max_label + 1)), dtype=np.float64)

    centers = (meta.get("metadata") or {}).get("cluster_centers")
    if centers is None:
        logger.warning("labels layer has no colormap or cluster_centers; writing black labels")
        return None
    return colors_from_centers(np.asarray(centers, dtype=np.float64))


def colors_from_centers(centers: np.ndarray) -> np.ndarray:
    """Map (k, 3) cluster centres in image units to RGBA rows for labels 0..k."""
    # NOTE: the image dtype is not in the metadata, so centres up to 255 are
    # taken as 8-bit and anything larger as 16-bit values.
    scale = 255.0 if centers.max(initial=0.0) <= 255.0 else 65535.0
    rgba = np.ones((len(centers) + 1, 4))
    rgba[1:, :3] = np.clip(centers[:, :3] / scale, 0.0, 1.0)
    rgba[0] = 0.0
    return rgba


def saved_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    metadata = meta.get("metadata") or {}
    saved = {key: metadata[key] for key in SAVED_METADATA_KEYS if key in metadata}
    if meta.get("name"):
        saved["name"] = str(meta["name"])
    return saved


def _single_scale(data: Any, meta: dict[str, Any], target: Path) -> np.ndarray:
    if meta.get("multiscale"):
        logger.info("%s: saving the full-resolution level of a multiscale layer", target)
        data = data[0]
    return np.asarray(data)
