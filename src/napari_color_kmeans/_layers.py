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
    # Counting from sizes keeps lazy (dask) labels lazy.
    total = max(_fitted_pixel_count(result), 1)
    left_out = total - labelled
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


def _fitted_pixel_count(result) -> int:
    """Return the number of pixels that ``result.counts`` describes, labelled or not."""
    labels = result.labels
    if isinstance(labels, tuple):
        labels = labels[result.fit_level]
    return int(np.prod(labels.shape))


def is_per_plane(result) -> bool:
    """Return whether ``result`` has one palette per plane (no shared centres)."""
    return hasattr(result, "planes")


def result_n_clusters(result) -> int:
    """Return k of a result; for per-plane results, the largest k of any plane."""
    if is_per_plane(result):
        return max(plane.n_clusters for plane in result.planes)
    return result.n_clusters


def result_method(result) -> str:
    if is_per_plane(result):
        return result.planes[0].method
    return result.method


def result_warnings(result) -> tuple[str, ...]:
    if is_per_plane(result):
        return tuple(
            f"plane {plane.index}: {message}" for plane in result.planes for message in plane.warnings
        )
    return tuple(result.warnings)


def _metadata(layer: Image, result) -> dict[str, Any]:
    metadata = {
        "source_layer": layer.name,
        "n_clusters": result_n_clusters(result),
        "random_state": result.random_state,
        "method": result_method(result),
        "cluster_centers": result.cluster_centers,
    }
    if is_per_plane(result):
        metadata["per_plane"] = True
        metadata["counts"] = result.counts
    else:
        metadata["inertia"] = result.inertia
    return metadata


def _is_multiscale(result) -> bool:
    return isinstance(result.labels, tuple)


def segmented_layer_kwargs(layer: Image, result) -> dict[str, Any]:
    return {
        "name": segmented_layer_name(layer.name, result_n_clusters(result)),
        "rgb": True,
        "multiscale": _is_multiscale(result),
        "contrast_limits": list(layer.contrast_limits),
        "metadata": _metadata(layer, result),
        **transform_kwargs(layer),
    }


def labels_layer_kwargs(layer: Image, result) -> dict[str, Any]:
    kwargs = {
        "name": labels_layer_name(layer.name, result_n_clusters(result)),
        "multiscale": _is_multiscale(result),
        "metadata": _metadata(layer, result),
        **transform_kwargs(layer),
    }
    if is_per_plane(result):
        # NOTE: each plane has its own palette, so no single colour per label
        # exists; the labels use napari's default colours and have no features.
        return kwargs
    rgba = centers_as_rgba(result.cluster_centers, layer.contrast_limits)
    kwargs["colormap"] = label_colormap(rgba)
    kwargs["features"] = cluster_features(result, rgba)
    return kwargs


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
    switches_multiscale = existing.multiscale != kwargs.get("multiscale", False)
    drops_colormap = layer_type is Labels and "colormap" not in kwargs
    if switches_multiscale or drops_colormap:
        # napari cannot switch a layer between single- and multiscale data in
        # place, and labels without cluster colours need napari's default colours.
        position = viewer.layers.index(existing)
        viewer.layers.remove(existing)
        layer = layer_type(data, **kwargs)
        viewer.layers.insert(position, layer)
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
