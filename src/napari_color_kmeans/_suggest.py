"""Suggest a number of clusters: inertia (elbow) and silhouette score for k = k_min..k_max.

Each k is fitted on the weighted distinct colours of the image, or on a
seeded pixel sample when a spatial weight makes the fit per pixel. The fit
starts on a 6-bit feature histogram and is then polished on the distinct
colours, as in the engine's fast path. Inertia is summed over every clustered pixel. The
silhouette score needs all pairwise distances, so it is computed on
``sample_size`` pixels drawn without replacement with ``random_state``.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import pairwise_distances, silhouette_score

from napari_color_kmeans import _batched, _feature_plan, _fit, _lloyd, _plan, _search
from napari_color_kmeans._engine import ProgressStep, _check_image, run_to_end
from napari_color_kmeans._errors import ColorKMeansError
from napari_color_kmeans._features import check_mask, make_feature_space

logger = logging.getLogger(__name__)

DEFAULT_K_MIN = 2
DEFAULT_K_MAX = 12
DEFAULT_SAMPLE_SIZE = 3000
N_INIT = 3
POLISH_MAX_ITER = 10
# Largest k a sweep fits; labels layers of the widget hold uint8 labels.
MAX_K = 255


@dataclass(frozen=True)
class KSweep:
    """Inertia and silhouette score of one fit per k, with the suggested k's."""

    k_values: np.ndarray
    inertia: np.ndarray
    silhouette: np.ndarray
    elbow_k: int
    best_silhouette_k: int
    sample_size: int
    random_state: int
    color_space: str
    warnings: tuple[str, ...] = field(default_factory=tuple)


def suggest_k(image, k_max: int = DEFAULT_K_MAX, **kwargs) -> KSweep:
    """Fit k = k_min..k_max and return the KSweep; see ``iter_suggest_k``."""
    steps = iter_suggest_k(image, k_max, **kwargs)
    return run_to_end(steps)


def iter_suggest_k(
    image,
    k_max: int = DEFAULT_K_MAX,
    *,
    k_min: int = DEFAULT_K_MIN,
    random_state: int = 42,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    color_space: str = "rgb",
    spatial_weight: float = 0.0,
    mask=None,
) -> Generator[ProgressStep, None, KSweep]:
    """Fit each k from ``k_min`` to ``k_max``, yielding a ProgressStep per k.

    ``sample_size`` pixels (at least 10) are drawn once with
    ``random_state`` for the silhouette score, so the sweep is reproducible.
    The other parameters are those of ``segment_colors``.
    """
    _check_sweep(k_min, k_max, sample_size)
    image = _check_image(image)
    space = make_feature_space(color_space, spatial_weight, image.dtype, image.shape[:-1])
    mask = check_mask(mask, image.shape[:-1])
    messages: list[str] = []

    yield ProgressStep(stage="reading colours", done=0, total=k_max - k_min + 2)
    samples = _collect_samples(image, space, mask, random_state)
    k_values = _usable_k(k_min, k_max, len(samples.features), messages)
    rng = np.random.default_rng(random_state)
    sample_rows = _draw_pixels(samples.weights, sample_size, rng)

    bins = _feature_plan.bin_features(samples.features, samples.weights, _feature_plan.BIN_BITS)
    # The sampled pixels are the same for every k, so their distances are computed once.
    sample_distances = pairwise_distances(samples.features[sample_rows])
    inertia, silhouette = [], []
    for position, n_clusters in enumerate(k_values, start=1):
        yield ProgressStep(stage=f"k={n_clusters}", done=position, total=len(k_values) + 1)
        fit = _fit_fast(samples, bins, n_clusters, random_state)
        nearest, distances = fit.labels, fit.distances
        if nearest is None:
            nearest, distances = _fit.nearest_centers(samples.features, fit.cluster_centers)
        inertia.append(float(np.einsum("i,i->", samples.weights, distances)))
        silhouette.append(_silhouette(sample_distances, nearest, sample_rows))

    inertia_array = np.array(inertia)
    silhouette_array = np.array(silhouette)
    return KSweep(
        k_values=np.array(k_values),
        inertia=inertia_array,
        silhouette=silhouette_array,
        elbow_k=find_elbow(k_values, inertia_array),
        best_silhouette_k=_best_silhouette(k_values, silhouette_array),
        sample_size=len(sample_rows),
        random_state=int(random_state),
        color_space=space.color_space,
        warnings=tuple(messages),
    )


def find_elbow(k_values, inertia) -> int:
    """Return the k whose point lies farthest below the chord from the first to the last point.

    Both axes are scaled to [0, 1] first, so the result does not depend on
    the units of inertia. With fewer than three k values the first is returned.
    """
    k_values = np.asarray(k_values, dtype=np.float64)
    inertia = np.asarray(inertia, dtype=np.float64)
    if len(k_values) < 3:
        return int(k_values[0])

    x = (k_values - k_values[0]) / (k_values[-1] - k_values[0])
    span = inertia.max() - inertia.min()
    y = (inertia - inertia.min()) / span if span > 0 else np.zeros_like(inertia)
    chord = y[0] + (y[-1] - y[0]) * x
    return int(k_values[np.argmax(chord - y)])


def _check_sweep(k_min, k_max, sample_size) -> None:
    whole = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (k_min, k_max, sample_size))
    if not whole or not 2 <= k_min < k_max <= MAX_K:
        raise ColorKMeansError(
            f"k range {k_min!r}..{k_max!r} is invalid; pass whole numbers with "
            f"2 <= k_min < k_max <= {MAX_K}, e.g. k_min=2, k_max=12."
        )
    if sample_size < 10:
        raise ColorKMeansError(
            f"sample_size must be a whole number >= 10, got {sample_size!r}; "
            f"the default {DEFAULT_SAMPLE_SIZE} takes about a second per k."
        )


def _collect_samples(image, space, mask, random_state) -> _feature_plan.Samples:
    """Return the weighted feature rows that stand for the image's clustered pixels."""
    pixels = image.reshape(-1, image.shape[-1])
    flat_mask = None if mask is None else mask.reshape(-1)
    n_valid = run_to_end(_feature_plan.count_clustered(pixels, flat_mask))

    packed = None
    if not space.is_spatial:
        packed = run_to_end(_feature_plan.pack_clustered(pixels, flat_mask))
    if packed is not None:
        _, rgb, counts = _feature_plan.distinct_colors_8bit(packed, image.dtype)
        return _feature_plan.Samples(space.colors_to_features(rgb), counts, rgb)

    indices = _feature_plan.sample_clustered(
        pixels, flat_mask, n_valid, _plan.SUBSAMPLE_PIXELS, random_state
    )
    features = _feature_plan.pixel_features(space, image, indices)
    return _feature_plan.Samples(features, np.ones(len(indices)), pixels[indices, :3])


def _usable_k(k_min: int, k_max: int, n_distinct: int, messages: list[str]) -> list[int]:
    if n_distinct < k_max:
        messages.append(
            f"the image has only {n_distinct} distinct colour(s), so k stops at "
            f"{max(n_distinct, k_min)} instead of {k_max}."
        )
    last = min(k_max, n_distinct)
    if last < k_min:
        raise ColorKMeansError(
            f"the clustered pixels have only {n_distinct} distinct colour(s), so no k from "
            f"{k_min} can be compared; choose an image or mask with more colours."
        )
    return list(range(k_min, last + 1))


def _draw_pixels(weights: np.ndarray, sample_size: int, rng: np.random.Generator) -> np.ndarray:
    """Return sample row indices: ``sample_size`` pixels without replacement, as rows of samples."""
    counts = np.rint(weights).astype(np.int64)
    total = int(counts.sum())
    if total <= sample_size:
        return np.repeat(np.arange(len(counts)), counts)
    drawn = rng.multivariate_hypergeometric(counts, sample_size, method="marginals")
    return np.repeat(np.arange(len(counts)), drawn)


def _fit_fast(
    samples: _feature_plan.Samples,
    bins: tuple[np.ndarray, np.ndarray],
    n_clusters: int,
    random_state: int,
) -> _fit.Fit:
    """Fit on the feature histogram ``bins`` (means, weights), then polish on the weighted samples."""
    seeds = _fit.derive_seeds(random_state, N_INIT)
    bin_means, bin_weights = bins
    if len(bin_means) <= n_clusters:
        bin_means, bin_weights = samples.features, samples.weights

    if bin_means.shape[1] == 3 and len(bin_means) * n_clusters * N_INIT <= _search.BATCH_MAX_DISTANCES:
        fits = _batched.fit_batch(bin_means, bin_weights, n_clusters, N_INIT, seeds)
        fit = min(fits, key=lambda candidate: candidate.inertia)
    else:
        fit = run_to_end(_fit.fit_best_of(bin_means, bin_weights, n_clusters, seeds, "initialisation"))
    if samples.features.shape[1] == 3:
        (polished,) = _lloyd.fit_from(
            samples.features, samples.weights, fit.cluster_centers[None], max_iter=POLISH_MAX_ITER
        )
    else:
        polished = _fit.fit_kmeans(
            samples.features, samples.weights, n_clusters, init=fit.cluster_centers, max_iter=POLISH_MAX_ITER
        )
    return polished


def _silhouette(sample_distances: np.ndarray, nearest: np.ndarray, sample_rows: np.ndarray) -> float:
    """Return the silhouette score of the sampled pixels, or NaN if it is undefined.

    ``sample_distances`` contains the Euclidean distances between the sampled pixels' features.
    """
    labels = nearest[sample_rows]
    n_labels = len(np.unique(labels))
    if not 2 <= n_labels <= len(sample_rows) - 1:
        return float("nan")
    return float(silhouette_score(sample_distances, labels, metric="precomputed"))


def _best_silhouette(k_values: list[int], silhouette: np.ndarray) -> int:
    if np.isnan(silhouette).all():
        return int(k_values[0])
    return int(k_values[int(np.nanargmax(silhouette))])
