"""Save a fitted palette to JSON, load it back and apply it to other images.

A palette contains the ordered cluster centres of one segmentation, both as RGB
and in the clustering space, with the feature settings and the seed.
``apply_palette`` assigns every pixel of another image to its nearest saved
feature centre without refitting, so label n means the same colour in every
image of a series.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_color_kmeans import _colors, _feature_plan, _fit, _plan
from napari_color_kmeans._engine import SegmentationResult, _check_image, run_to_end
from napari_color_kmeans._errors import ColorKMeansError
from napari_color_kmeans._features import (
    FeatureSpace,
    check_color_space,
    check_mask,
    check_spatial_weight,
    full_scale_of,
)

logger = logging.getLogger(__name__)

FORMAT = "napari-color-kmeans palette"
VERSION = 1


@dataclass(frozen=True)
class Palette:
    """Ordered centres of a segmentation; label n is row n - 1.

    ``cluster_centers`` are RGB in units where ``full_scale`` is full
    intensity (255 for a palette fitted on uint8). ``feature_centers`` are in
    the clustering space named by ``color_space`` and ``feature_names``.
    """

    cluster_centers: np.ndarray
    feature_centers: np.ndarray
    color_space: str
    spatial_weight: float
    random_state: int
    full_scale: float
    feature_names: tuple[str, ...]

    @property
    def n_clusters(self) -> int:
        return len(self.cluster_centers)


def palette_from_result(result: SegmentationResult, dtype) -> Palette:
    """Return the palette of ``result``, fitted on an image of ``dtype``."""
    feature_centers = result.feature_centers
    if feature_centers is None:
        feature_centers = result.cluster_centers
    return Palette(
        cluster_centers=np.asarray(result.cluster_centers, dtype=np.float64),
        feature_centers=np.asarray(feature_centers, dtype=np.float64),
        color_space=result.color_space,
        spatial_weight=float(result.spatial_weight),
        random_state=int(result.random_state),
        full_scale=full_scale_of(dtype),
        feature_names=tuple(result.feature_names),
    )


def save_palette(palette: Palette, path) -> Path:
    """Write ``palette`` as JSON to ``path``; return the path."""
    path = Path(path)
    document = {
        "format": FORMAT,
        "version": VERSION,
        "n_clusters": palette.n_clusters,
        "color_space": palette.color_space,
        "spatial_weight": palette.spatial_weight,
        "random_state": palette.random_state,
        "full_scale": palette.full_scale,
        "feature_names": list(palette.feature_names),
        "cluster_centers": palette.cluster_centers.tolist(),
        "feature_centers": palette.feature_centers.tolist(),
    }
    path.write_text(json.dumps(document, indent=1), encoding="utf-8")
    logger.info("saved a palette of %d clusters to %s", palette.n_clusters, path)
    return path


def load_palette(path) -> Palette:
    """Read a palette written by ``save_palette``; raise ColorKMeansError if invalid."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ColorKMeansError(
            f"cannot read the palette file {str(path)!r}: {error}; "
            "choose a JSON file saved with 'Save palette'."
        ) from error

    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ColorKMeansError(
            f"{str(path)!r} is not a palette file: its 'format' field is not {FORMAT!r}; "
            "choose a JSON file saved with 'Save palette'."
        )
    if document.get("version") != VERSION:
        raise ColorKMeansError(
            f"palette file {str(path)!r} has version {document.get('version')!r}, but only "
            f"version {VERSION} can be read; save the palette again with this version."
        )
    return _palette_from_document(document, path)


def _palette_from_document(document: dict, path: Path) -> Palette:
    try:
        palette = Palette(
            cluster_centers=np.asarray(document["cluster_centers"], dtype=np.float64),
            feature_centers=np.asarray(document["feature_centers"], dtype=np.float64),
            color_space=document["color_space"],
            spatial_weight=float(document["spatial_weight"]),
            random_state=int(document["random_state"]),
            full_scale=float(document["full_scale"]),
            feature_names=tuple(str(name) for name in document["feature_names"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ColorKMeansError(
            f"palette file {str(path)!r} has a missing or invalid field ({error}); "
            "save the palette again with 'Save palette'."
        ) from error

    check_color_space(palette.color_space)
    check_spatial_weight(palette.spatial_weight)
    n_clusters = len(palette.cluster_centers)
    shapes_ok = (
        n_clusters >= 1
        and palette.cluster_centers.shape == (n_clusters, 3)
        and palette.feature_centers.shape == (n_clusters, len(palette.feature_names))
        and np.isfinite(palette.feature_centers).all()
    )
    if not shapes_ok or document.get("n_clusters") != n_clusters:
        raise ColorKMeansError(
            f"palette file {str(path)!r} has inconsistent centres: n_clusters="
            f"{document.get('n_clusters')!r}, cluster_centers {palette.cluster_centers.shape}, "
            f"feature_centers {palette.feature_centers.shape}; save the palette again."
        )
    return palette


def apply_palette(image, palette: Palette, *, mask=None) -> SegmentationResult:
    """Label every pixel of ``image`` with its nearest palette centre, without refitting.

    Colours are first converted to the palette's units, so a palette fitted
    on uint8 also applies to uint16 or float images. Label n is palette row
    n - 1 in every image; clusters that no pixel is nearest to keep a count
    of 0. Pixels outside ``mask``, non-finite or fully transparent get 0.
    """
    image = _check_image(image)
    flat_mask = check_mask(mask, image.shape[:-1])
    flat_mask = None if flat_mask is None else flat_mask.reshape(-1)
    pixels = image.reshape(-1, image.shape[-1])
    space = _space_for(palette, image)

    n_valid = run_to_end(_feature_plan.count_clustered(pixels, flat_mask))
    labels, inertia = _assign(image, pixels, flat_mask, space, palette)
    counts = np.bincount(labels, minlength=palette.n_clusters + 1)[1:].astype(np.int64)
    logger.debug("applied a palette of %d clusters to %d pixels", palette.n_clusters, n_valid)

    centers = palette.cluster_centers * (full_scale_of(image.dtype) / palette.full_scale)
    segmented = _paint(pixels, labels, centers, image.dtype)
    return SegmentationResult(
        labels=labels.reshape(image.shape[:-1]),
        cluster_centers=centers,
        segmented=segmented.reshape(image.shape),
        inertia=inertia,
        counts=counts,
        n_clusters=palette.n_clusters,
        method="palette (no refit)",
        random_state=palette.random_state,
        warnings=(),
        feature_centers=palette.feature_centers.copy(),
        color_space=palette.color_space,
        spatial_weight=palette.spatial_weight,
        feature_names=palette.feature_names,
    )


def _space_for(palette: Palette, image: np.ndarray) -> FeatureSpace:
    spatial_shape = image.shape[:-1]
    return FeatureSpace(
        color_space=palette.color_space,
        spatial_weight=palette.spatial_weight,
        full_scale=palette.full_scale,
        spatial_size=int(max(spatial_shape[-2:])),
    )


def _assign(image, pixels, flat_mask, space, palette) -> tuple[np.ndarray, float]:
    """Return the 1-based nearest-centre label of every pixel and the inertia."""
    label_dtype = _plan._label_dtype(palette.n_clusters)
    same_units = full_scale_of(image.dtype) == palette.full_scale
    packed = None
    if same_units and not space.is_spatial:
        packed = run_to_end(_feature_plan.pack_clustered(pixels, flat_mask))

    if packed is not None:
        colors, rgb, counts = _feature_plan.distinct_colors_8bit(packed, image.dtype)
        nearest, distances = _fit.nearest_centers(space.colors_to_features(rgb), palette.feature_centers)
        table = _colors.lookup_table(colors, nearest + 1, label_dtype)
        return table[packed], float(np.dot(counts, distances))

    labels = np.zeros(len(pixels), dtype=label_dtype)
    scale = palette.full_scale / full_scale_of(image.dtype)
    converted = image if scale == 1 else image.astype(np.float64) * scale
    inertia = 0.0
    for chunk in _colors.iter_chunks(len(pixels)):
        block_mask = None if flat_mask is None else flat_mask[chunk]
        rows = np.flatnonzero(_feature_plan.clustered_rows(pixels[chunk], block_mask)) + chunk.start
        features = _feature_plan.pixel_features(space, converted, rows)
        nearest, distances = _fit.nearest_centers(features, palette.feature_centers)
        labels[rows] = nearest + 1
        inertia += float(distances.sum())
    return labels, inertia


def _paint(pixels: np.ndarray, labels: np.ndarray, centers: np.ndarray, dtype) -> np.ndarray:
    colors = _plan._palette_in_dtype(centers, np.dtype(dtype))
    segmented = pixels.copy()
    clustered = labels > 0
    segmented[clustered, :3] = colors[labels[clustered]]
    return segmented
