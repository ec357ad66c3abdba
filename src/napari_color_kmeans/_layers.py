"""Turn segmentation results into napari layer data, without touching Qt.

The widget computes in a worker thread and calls these functions on the main
thread to build the output layers and to add them to, or update them in, a
viewer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.colormaps import DirectLabelColormap

if TYPE_CHECKING:
    import napari

    from napari_color_kmeans._engine import SegmentationResult

TRANSPARENT = np.zeros(4)


def segmented_layer_name(source_name: str, n_clusters: int) -> str:
    return f"{source_name} k={n_clusters}"


def labels_layer_name(source_name: str, n_clusters: int) -> str:
    return f"{source_name} k={n_clusters} labels"


def transform_kwargs(layer: Image) -> dict[str, Any]:
    """Return the keyword arguments that place a new layer exactly over ``layer``."""
    return {
        "scale": np.array(layer.scale),
        "translate": np.array(layer.translate),
        "rotate": np.array(layer.rotate),
        "shear": np.array(layer.shear),
        "affine": np.array(layer.affine.affine_matrix),
        "units": layer.units,
        "axis_labels": layer.axis_labels,
    }


def centers_as_rgba(cluster_centers: np.ndarray, contrast_limits) -> np.ndarray:
    """Map cluster centres in image units to RGBA colours in [0, 1] with alpha 1.

    The source layer's contrast limits set the mapping, so a label is drawn in
    the colour that its centre has in the source image.
    """
    low, high = (float(value) for value in contrast_limits)
    span = high - low if high > low else 1.0
    rgb = np.clip((np.asarray(cluster_centers, dtype=np.float64) - low) / span, 0.0, 1.0)
    return np.column_stack([rgb, np.ones(len(rgb))])


def label_colormap(rgba: np.ndarray) -> DirectLabelColormap:
    color_dict: dict[int | None, np.ndarray] = {None: TRANSPARENT, 0: TRANSPARENT}
    for label, color in enumerate(rgba, start=1):
        color_dict[label] = color
    return DirectLabelColormap(color_dict=color_dict)


def cluster_features(result: SegmentationResult, rgba: np.ndarray) -> dict[str, np.ndarray]:
    """Build the labels layer's features table, one row per label including 0.

    napari looks a hovered pixel's row up by its label value, so row 0
    describes the pixels left out of clustering.
    """
    n_clusters = result.n_clusters
    labelled = int(result.counts.sum())
    left_out = int(np.count_nonzero(result.labels == 0))
    total = max(labelled + left_out, 1)
    counts = np.concatenate([[left_out], result.counts]).astype(np.int64)
    centers = np.vstack([np.full((1, 3), np.nan), result.cluster_centers])
    hex_codes = ["" for _ in range(n_clusters + 1)]
    for label in range(1, n_clusters + 1):
        red, green, blue = np.round(rgba[label - 1, :3] * 255).astype(int)
        hex_codes[label] = f"#{red:02x}{green:02x}{blue:02x}"
    return {
        "index": np.arange(n_clusters + 1),
        "pixel_count": counts,
        "fraction": counts / total,
        "red": centers[:, 0],
        "green": centers[:, 1],
        "blue": centers[:, 2],
        "hex": np.array(hex_codes),
    }


def segmented_layer_kwargs(layer: Image, result: SegmentationResult) -> dict[str, Any]:
    return {
        "name": segmented_layer_name(layer.name, result.n_clusters),
        "rgb": True,
        "contrast_limits": list(layer.contrast_limits),
        "metadata": {
            "source_layer": layer.name,
            "n_clusters": result.n_clusters,
            "random_state": result.random_state,
            "method": result.method,
            "inertia": result.inertia,
            "cluster_centers": result.cluster_centers,
        },
        **transform_kwargs(layer),
    }


def labels_layer_kwargs(layer: Image, result: SegmentationResult) -> dict[str, Any]:
    rgba = centers_as_rgba(result.cluster_centers, layer.contrast_limits)
    return {
        "name": labels_layer_name(layer.name, result.n_clusters),
        "colormap": label_colormap(rgba),
        "features": cluster_features(result, rgba),
        "metadata": {
            "source_layer": layer.name,
            "n_clusters": result.n_clusters,
            "random_state": result.random_state,
            "method": result.method,
            "inertia": result.inertia,
            "cluster_centers": result.cluster_centers,
        },
        **transform_kwargs(layer),
    }


def add_or_update_layer(
    viewer: napari.viewer.Viewer,
    data: np.ndarray,
    kwargs: dict[str, Any],
    layer_type: type[Image] | type[Labels],
) -> Image | Labels:
    """Add a layer, or update the layer of that name and type in place.

    Updating keeps the user's display settings (opacity, blending, visibility)
    of an earlier run, so running again does not pile up copies.
    """
    name = kwargs["name"]
    existing = _layer_named(viewer, name)
    if existing is None or type(existing) is not layer_type:
        if existing is not None:
            kwargs = {**kwargs, "name": _free_name(viewer, name)}
        layer = layer_type(data, **kwargs)
        viewer.add_layer(layer)
        return layer

    existing.data = data
    for key in ("colormap", "features", "metadata", "contrast_limits"):
        if key in kwargs:
            setattr(existing, key, kwargs[key])
    for key in ("scale", "translate", "rotate", "shear", "affine", "units", "axis_labels"):
        setattr(existing, key, kwargs[key])
    existing.refresh()
    return existing


def _layer_named(viewer: napari.viewer.Viewer, name: str) -> Image | Labels | None:
    # LayerList membership tests compare layer objects, so look names up explicitly.
    for layer in viewer.layers:
        if layer.name == name:
            return layer
    return None


def _free_name(viewer: napari.viewer.Viewer, name: str) -> str:
    suffix = 1
    while _layer_named(viewer, f"{name} [{suffix}]") is not None:
        suffix += 1
    return f"{name} [{suffix}]"
