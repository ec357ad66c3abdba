"""Segmentation in a feature space: CIELAB or HSV colours, a mask, or pixel positions.

``_plan.run`` hands a request here when it requests anything but plain RGB
on every pixel. Colour-only requests keep the engine's distinct-colour
speed: the distinct colours are transformed and fitted with their pixel
counts as sample_weight, never every pixel. A spatial weight makes every
pixel its own sample, so the centres are fitted on a seeded sample of at
most ``SPATIAL_SAMPLE_PIXELS`` pixels and every pixel is then assigned in
chunks of ``_colors.CHUNK_PIXELS``.

Every labelled pixel gets the label of its nearest feature centre, which
``Outcome.feature_centers`` reports. ``Outcome.cluster_centers`` are RGB in
the image's units: the RGB part of the centre for "rgb", and the mean
colour of the cluster's pixels for "lab" and "hsv".
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from napari_color_kmeans import _colors, _fit, _plan
from napari_color_kmeans._errors import ColorKMeansError
from napari_color_kmeans._features import FeatureSpace, check_mask, make_feature_space

logger = logging.getLogger(__name__)

SPATIAL_SAMPLE_PIXELS = 200_000
BIN_BITS = 6


@dataclass
class Samples:
    """Weighted feature rows to fit, with the RGB colour (image units) of each row."""

    features: np.ndarray
    weights: np.ndarray
    colors: np.ndarray


def needs_feature_path(request: _plan.Request) -> bool:
    """Return whether ``request`` needs more than RGB clustering of every pixel."""
    return (
        getattr(request, "color_space", "rgb") != "rgb"
        or getattr(request, "spatial_weight", 0.0) > 0
        or getattr(request, "mask", None) is not None
    )


def space_for(request: _plan.Request) -> FeatureSpace:
    image = request.image
    return make_feature_space(
        request.color_space, request.spatial_weight, image.dtype, image.shape[:-1]
    )


def run(request: _plan.Request) -> Generator[str, None, _plan.Outcome]:
    """Segment ``request.image`` in its feature space; yield stage names."""
    image = request.image
    pixels = image.reshape(-1, image.shape[-1])
    space = space_for(request)
    mask = check_mask(request.mask, image.shape[:-1])
    flat_mask = None if mask is None else mask.reshape(-1)
    messages: list[str] = []

    n_valid = yield from count_clustered(pixels, flat_mask)
    if space.is_spatial:
        outcome = yield from _run_per_pixel(request, space, pixels, flat_mask, n_valid, messages)
    else:
        outcome = yield from _run_colors(request, space, pixels, flat_mask, n_valid, messages)
    outcome.warnings = messages
    return outcome


def clustered_rows(block: np.ndarray, block_mask: np.ndarray | None) -> np.ndarray:
    """Return which rows of ``block`` are clustered: valid colours inside the mask."""
    valid = _colors.valid_mask(block)
    if valid is None:
        valid = np.ones(len(block), dtype=bool)
    if block_mask is not None:
        valid = valid & block_mask
    return valid


def count_clustered(pixels: np.ndarray, flat_mask: np.ndarray | None) -> Generator[str, None, int]:
    """Return the number of clustered pixels; raise if there are none."""
    n_valid = 0
    for chunk in _colors.iter_chunks(len(pixels)):
        yield "checking pixels"
        block_mask = None if flat_mask is None else flat_mask[chunk]
        n_valid += int(np.count_nonzero(clustered_rows(pixels[chunk], block_mask)))

    if n_valid == 0:
        raise ColorKMeansError(
            f"no pixel can be clustered: none of the {len(pixels)} pixels is inside the mask "
            "with finite values and alpha > 0; choose a mask that covers part of the image."
        )
    return n_valid


def pack_clustered(
    pixels: np.ndarray, flat_mask: np.ndarray | None
) -> Generator[str, None, np.ndarray | None]:
    """Return packed 8-bit colours with LEFT_OUT outside the mask, or None if not 8-bit."""
    packed = np.empty(len(pixels), dtype=np.uint32)
    for chunk in _colors.iter_chunks(len(pixels)):
        yield "reading colours"
        if not _colors.pack_8bit(pixels[chunk], packed[chunk]):
            return None
        if flat_mask is not None:
            packed[chunk][~flat_mask[chunk]] = _colors.LEFT_OUT
    return packed


def distinct_colors_8bit(packed: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return distinct packed colours, their RGB in image units and pixel counts."""
    colors, counts, _ = _colors.count_packed(packed)
    rgb = _colors.unpack(colors) * _plan._scale_to_units(np.dtype(dtype))
    return colors, rgb, counts.astype(np.float64)


def sample_clustered(
    pixels: np.ndarray, flat_mask: np.ndarray | None, n_valid: int, size: int, random_state: int
) -> np.ndarray:
    """Return the flat indices of ``min(size, n_valid)`` clustered pixels, drawn with the seed."""
    rng = np.random.default_rng(random_state)
    size = min(size, n_valid)
    ranks = np.sort(rng.choice(n_valid, size=size, replace=False))

    indices = []
    seen = 0
    for chunk in _colors.iter_chunks(len(pixels)):
        block_mask = None if flat_mask is None else flat_mask[chunk]
        rows = np.flatnonzero(clustered_rows(pixels[chunk], block_mask)) + chunk.start
        start, stop = np.searchsorted(ranks, [seen, seen + len(rows)])
        indices.append(rows[ranks[start:stop] - seen])
        seen += len(rows)
    return np.concatenate(indices)


def pixel_features(space: FeatureSpace, image: np.ndarray, flat_indices: np.ndarray) -> np.ndarray:
    """Return the feature rows (colour, then position if spatial) of flat pixel indices."""
    pixels = image.reshape(-1, image.shape[-1])
    features = space.colors_to_features(pixels[flat_indices, :3])
    if not space.is_spatial:
        return features

    height, width = image.shape[-3], image.shape[-2]
    within = flat_indices % (height * width)
    rows, columns = np.divmod(within, width)
    return np.hstack([features, space.position_features(rows, columns)])


def _run_colors(
    request: _plan.Request,
    space: FeatureSpace,
    pixels: np.ndarray,
    flat_mask: np.ndarray | None,
    n_valid: int,
    messages: list[str],
) -> Generator[str, None, _plan.Outcome]:
    """Fit the distinct colours' features, then label every pixel by its colour."""
    packed = yield from pack_clustered(pixels, flat_mask)
    if packed is None:
        outcome = yield from _run_general_colors(request, space, pixels, flat_mask, n_valid, messages)
        return outcome

    yield "counting colours"
    colors, rgb, counts = distinct_colors_8bit(packed, pixels.dtype)
    samples = Samples(space.colors_to_features(rgb), counts, rgb)
    centers, method = yield from fit_centers(request, samples, messages)
    method = f"{method} on distinct colours ({space.color_space})"

    nearest, distances = _fit.nearest_centers(samples.features, centers)
    ordering = _Ordering.build(request, space, samples, nearest, centers, messages)
    inertia = float(np.dot(samples.weights, distances))
    table = _colors.lookup_table(colors, ordering.order[nearest], ordering.label_dtype)

    labels = np.empty(len(pixels), dtype=ordering.label_dtype)
    for chunk in _colors.iter_chunks(len(pixels)):
        yield "assigning pixels"
        np.take(table, packed[chunk], out=labels[chunk])
    del packed, table

    outcome = yield from ordering.finish(request, pixels, labels, inertia, method)
    return outcome


def _run_general_colors(
    request: _plan.Request,
    space: FeatureSpace,
    pixels: np.ndarray,
    flat_mask: np.ndarray | None,
    n_valid: int,
    messages: list[str],
) -> Generator[str, None, _plan.Outcome]:
    """Fit the distinct colours of all or a seeded sample of the pixels, then assign all."""
    limit = _plan.EXACT_MAX_PIXELS if request.method == "exact" else _plan.SUBSAMPLE_PIXELS
    yield "sampling pixels"
    indices = sample_clustered(pixels, flat_mask, n_valid, limit, request.random_state)
    rgb, counts = np.unique(pixels[indices, :3].astype(np.float64), axis=0, return_counts=True)
    samples = Samples(space.colors_to_features(rgb), counts.astype(np.float64), rgb)
    centers, method = yield from fit_centers(request, samples, messages)
    if n_valid > limit:
        method = f"{method} on a {limit} px subsample + exact assignment"

    nearest, _ = _fit.nearest_centers(samples.features, centers)
    outcome = yield from _assign_all(
        request, space, pixels, flat_mask, samples, nearest, centers, method, messages
    )
    return outcome


def _run_per_pixel(
    request: _plan.Request,
    space: FeatureSpace,
    pixels: np.ndarray,
    flat_mask: np.ndarray | None,
    n_valid: int,
    messages: list[str],
) -> Generator[str, None, _plan.Outcome]:
    """Fit colour and position features on a seeded pixel sample, then assign all."""
    yield "sampling pixels"
    indices = sample_clustered(pixels, flat_mask, n_valid, SPATIAL_SAMPLE_PIXELS, request.random_state)
    features = pixel_features(space, request.image, indices)
    rgb = pixels[indices, :3].astype(np.float64)
    samples = Samples(features, np.ones(len(indices)), rgb)
    centers, method = yield from fit_centers(request, samples, messages)
    if n_valid > len(indices):
        method = f"{method} on a {len(indices)} px sample (colour + position) + exact assignment"
    else:
        method = f"{method} (colour + position)"

    nearest, _ = _fit.nearest_centers(samples.features, centers)
    outcome = yield from _assign_all(
        request, space, pixels, flat_mask, samples, nearest, centers, method, messages
    )
    return outcome


def _assign_all(request, space, pixels, flat_mask, samples, nearest, centers, method, messages):
    """Assign every clustered pixel to its nearest centre in chunks; return the Outcome."""
    provisional = np.zeros(len(pixels), dtype=np.int64)
    cluster_counts = np.zeros(len(centers), dtype=np.float64)
    color_sums = np.zeros((len(centers), 3), dtype=np.float64)
    inertia = 0.0
    for chunk in _colors.iter_chunks(len(pixels)):
        yield "assigning pixels"
        block_mask = None if flat_mask is None else flat_mask[chunk]
        rows = np.flatnonzero(clustered_rows(pixels[chunk], block_mask)) + chunk.start
        block_nearest, distances = _fit.nearest_centers(pixel_features(space, request.image, rows), centers)
        provisional[rows] = block_nearest + 1
        cluster_counts += np.bincount(block_nearest, minlength=len(centers))
        for channel in range(3):
            color_sums[:, channel] += np.bincount(
                block_nearest, weights=pixels[rows, channel].astype(np.float64), minlength=len(centers)
            )
        inertia += float(distances.sum())

    all_pixels = Samples(centers, cluster_counts, color_sums / np.maximum(cluster_counts, 1)[:, None])
    ordering = _Ordering.build(request, space, all_pixels, np.arange(len(centers)), centers, messages)
    labels = np.concatenate([[0], ordering.order])[provisional].astype(ordering.label_dtype)
    outcome = yield from ordering.finish(request, pixels, labels, inertia, method)
    return outcome


@dataclass
class _Ordering:
    """Cluster order by count, with RGB and feature centres in that order."""

    order: np.ndarray
    cluster_centers: np.ndarray
    feature_centers: np.ndarray
    counts: np.ndarray

    @property
    def label_dtype(self) -> np.dtype:
        return _plan._label_dtype(len(self.counts))

    @classmethod
    def build(cls, request, space, samples: Samples, nearest, centers, messages) -> _Ordering:
        """Count each cluster's pixels and pick its RGB centre, then order the clusters."""
        n_clusters = len(centers)
        counts = np.bincount(nearest, weights=samples.weights, minlength=n_clusters)
        if space.color_space == "rgb":
            rgb_centers = centers[:, :3].copy()
        else:
            sums = np.stack(
                [np.bincount(nearest, weights=samples.weights * samples.colors[:, c], minlength=n_clusters) for c in range(3)],
                axis=1,
            )
            rgb_centers = sums / np.maximum(counts, 1)[:, None]

        order, ordered_rgb, ordered_counts = _plan._order_clusters(rgb_centers, counts, request, messages)
        kept = np.flatnonzero(order)
        ranking = kept[np.argsort(order[kept])]
        return cls(order, ordered_rgb, centers[ranking], ordered_counts)

    def finish(self, request, pixels, labels, inertia, method):
        outcome = yield from _plan._finish(
            request, pixels, labels, self.cluster_centers, self.counts, inertia, method
        )
        outcome.feature_centers = np.ascontiguousarray(self.feature_centers, dtype=np.float64)
        return outcome


def fit_centers(
    request: _plan.Request, samples: Samples, messages: list[str]
) -> Generator[str, None, tuple[np.ndarray, str]]:
    """Fit request.n_clusters feature centres to the weighted samples; return them and the method."""
    n_distinct = len(samples.features)
    n_clusters = request.n_clusters
    if n_clusters > n_distinct:
        messages.append(
            f"n_clusters={n_clusters} was requested, but the clustered pixels have only "
            f"{n_distinct} distinct colour(s), so n_clusters={n_distinct} was used."
        )
        n_clusters = n_distinct
    if n_clusters == n_distinct:
        return samples.features.copy(), "exact"

    seeds = _fit.derive_seeds(request.random_state, request.n_init or _plan.N_INIT_EXACT)
    if request.method == "fast":
        bins, bin_weights = bin_features(samples.features, samples.weights, BIN_BITS)
        if len(bins) > n_clusters:
            fit = yield from _fit.fit_best_of(bins, bin_weights, n_clusters, seeds, "initialisation")
            return fit.cluster_centers, f"fast ({BIN_BITS}-bit feature histogram)"

    fit = yield from _fit.fit_best_of(samples.features, samples.weights, n_clusters, seeds, "initialisation")
    return fit.cluster_centers, "exact"


def bin_features(features: np.ndarray, weights: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Group feature rows into ``2**bits`` equal bins per column; return weighted bin means and weights."""
    low = features.min(axis=0)
    width = np.where(features.max(axis=0) > low, features.max(axis=0) - low, 1.0)
    codes = np.clip(np.floor((features - low) / width * 2**bits), 0, 2**bits - 1).astype(np.int64)
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)

    bin_weights = np.bincount(inverse, weights=weights)
    sums = np.stack(
        [np.bincount(inverse, weights=weights * features[:, c]) for c in range(features.shape[1])],
        axis=1,
    )
    return sums / bin_weights[:, None], bin_weights
