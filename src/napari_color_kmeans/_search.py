"""Search for good K-means centres on coarse colour histograms.

A fit on a histogram is cheap because it has far fewer samples than the
image has distinct colours: a 4-bit histogram has at most 4,096 occupied
bins, a 6-bit one at most 262,144. Many K-means++ starts run on the 4-bit
histogram, and the best distinct local optima are refitted on the 6-bit
histogram. The best 6-bit fit is the result of "fast". "auto" starts exact
Lloyd iterations on the distinct colours from the best 6-bit fits.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np

from napari_color_kmeans import _batched, _colors, _fit, _kernels, _lloyd

COARSE_BITS = 4
FINE_BITS = 6

# Largest (starts x clusters x bins) distance array of one batch of
# coarse starts; 2**20 float64 entries take 8 MiB.
BATCH_MAX_DISTANCES = 2**20

# Distinct coarse optima refitted on the fine histogram.
N_CANDIDATES = 6

# Two fits whose inertias differ by less than this fraction count as the
# same local optimum.
SAME_OPTIMUM_RTOL = 1e-6

def search_histograms(
    samples: np.ndarray,
    sample_weight: np.ndarray,
    n_clusters: int,
    seeds: list[int],
    value_range: tuple[np.ndarray, np.ndarray],
) -> Generator[str, None, list[_fit.Fit] | None]:
    """Return fine-histogram fits, best first, or None if the histograms are too small.

    ``samples`` (m, 3) with weights ``sample_weight`` are binned between
    ``value_range`` (low, high) per channel. One K-means++ start per seed
    runs on the coarse histogram.
    """
    fine_means, fine_weights = _histogram_bins(
        samples, sample_weight, FINE_BITS, *value_range
    )
    return (yield from search_fine(fine_means, fine_weights, n_clusters, seeds, value_range))


def search_fine(
    fine_means: np.ndarray,
    fine_weights: np.ndarray,
    n_clusters: int,
    seeds: list[int],
    value_range: tuple[np.ndarray, np.ndarray],
) -> Generator[str, None, list[_fit.Fit] | None]:
    """Return what ``search_histograms`` returns, given the fine histogram's means and weights."""
    if len(fine_means) <= n_clusters:
        return None

    # Every coarse bin is a union of whole fine bins, and a fine bin's mean
    # lies inside it, so binning the fine means gives the coarse histogram.
    coarse_means, coarse_weights = _histogram_bins(
        fine_means, fine_weights, COARSE_BITS, *value_range
    )
    if len(coarse_means) > n_clusters:
        starts = yield from _fit_coarse(coarse_means, coarse_weights, n_clusters, seeds)
    else:
        starts = yield from _fit_coarse(fine_means, fine_weights, n_clusters, seeds)

    yield f"refining {len(starts)} candidates"
    fine_starts = np.stack([start.cluster_centers for start in starts])
    fits = _lloyd.fit_from(fine_means, fine_weights, fine_starts)
    return sorted(fits, key=lambda fit: fit.inertia)


def _histogram_bins(
    samples: np.ndarray, sample_weight: np.ndarray, bits: int, low: np.ndarray, high: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Bin weighted colours with the compiled pass when numba is in use (same result)."""
    if _kernels.USE_NUMBA:
        return _kernels.histogram_bins(samples, sample_weight, bits, low, high)
    return _colors.histogram_bins(samples, sample_weight, bits, low, high)


def _fit_coarse(
    means: np.ndarray, weights: np.ndarray, n_clusters: int, seeds: list[int]
) -> Generator[str, None, list[_fit.Fit]]:
    """Fit once per seed and return the best ``N_CANDIDATES`` distinct optima.

    Starts run in batches whose distance arrays hold at most
    ``BATCH_MAX_DISTANCES`` entries; each batch draws its K-means++ centres
    from a generator seeded with that batch's seeds. When even one start
    would exceed that size, each start is a scikit-learn fit.
    """
    batch_size = BATCH_MAX_DISTANCES // (len(means) * n_clusters)
    if batch_size == 0:
        fits = yield from _fit_each(means, weights, n_clusters, seeds)
        return distinct_optima(fits)[:N_CANDIDATES]

    tol = _lloyd.absolute_tol(means, weights)

    fits = []
    for start in range(0, len(seeds), batch_size):
        batch = seeds[start : start + batch_size]
        yield f"initialisation {start + len(batch)} of {len(seeds)}"
        fits += _batched.fit_batch(means, weights, n_clusters, len(batch), batch, tol=tol)
    return distinct_optima(fits)[:N_CANDIDATES]


def _fit_each(
    means: np.ndarray, weights: np.ndarray, n_clusters: int, seeds: list[int]
) -> Generator[str, None, list[_fit.Fit]]:
    tol = _fit.weighted_tol(means, weights)
    fits = []
    for index, seed in enumerate(seeds):
        yield f"initialisation {index + 1} of {len(seeds)}"
        fits.append(_fit.fit_kmeans(means, weights, n_clusters, seed=seed, tol=tol))
    return fits


def distinct_optima(fits: list[_fit.Fit]) -> list[_fit.Fit]:
    """Return ``fits`` sorted by inertia, keeping one fit per local optimum."""
    kept = []
    for fit in sorted(fits, key=lambda fit: fit.inertia):
        if kept and fit.inertia - kept[-1].inertia <= SAME_OPTIMUM_RTOL * abs(kept[-1].inertia):
            continue
        kept.append(fit)
    return kept
