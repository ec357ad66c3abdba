"""Weighted Lloyd iterations for the histogram search and the polish, with and without numba.

scikit-learn's ``KMeans.fit`` spends several milliseconds per call on input
checks, centring a copy of the data and computing its variance, even when
it only runs a few iterations. The search and the polish run many such
short fits, so they use this loop instead.

The numba kernel and the NumPy code do the same float64 operations in the
same order, so both return identical centres. Distances are
``(x0 - c0)**2 + (x1 - c1)**2 + (x2 - c2)**2``, ties go to the lower centre
index, per-cluster sums add up in sample order and the centre shift in
cluster order. Which one runs follows ``_kernels.USE_NUMBA``.
NOTE: the identity assumes that numba does not fuse a multiply and an add
into one FMA instruction, which holds without fastmath; tests compare both.

Each start iterates until its labels stop changing, or until the total
squared shift of its centres is at most ``tol`` (absolute, as scikit-learn
uses after scaling), or ``max_iter`` iterations. A cluster without samples
keeps its previous centre.
"""

from __future__ import annotations

import numpy as np

from napari_color_kmeans import _fit, _kernels
from napari_color_kmeans._kernels import nearest_center


def absolute_tol(samples: np.ndarray, sample_weight: np.ndarray, tol: float = _fit.SKLEARN_TOL) -> float:
    """Return ``tol`` times the mean weighted variance, the shift at which a fit on all pixels stops.

    The variance comes from weighted first and second moments, which is
    cheaper than centring a copy and precise enough for a tolerance.
    Here and below, einsum replaces np.dot and matmul on vectors and thin
    matrices, because OpenBLAS took milliseconds for them on the 2-core
    test machine (5.7 ms for a dot product of 108,000 values).
    """
    total = sample_weight.sum()
    mean = np.einsum("i,ij->j", sample_weight, samples) / total
    second = np.einsum("i,ij,ij->j", sample_weight, samples, samples) / total
    return float(tol * np.maximum(second - mean * mean, 0.0).mean())


def fit_from(
    samples: np.ndarray,
    sample_weight: np.ndarray,
    centers: np.ndarray,
    *,
    max_iter: int = 300,
    tol: float | None = None,
) -> list[_fit.Fit]:
    """Run Lloyd iterations from each start in ``centers`` (s, k, 3); return one Fit per start.

    Each Fit carries the labels and squared distances of ``samples`` to
    its final centres.
    """
    samples = np.ascontiguousarray(samples, dtype=np.float64)
    sample_weight = np.ascontiguousarray(sample_weight, dtype=np.float64)
    centers = np.array(centers, dtype=np.float64, order="C")
    if tol is None:
        tol = absolute_tol(samples, sample_weight)

    if _kernels.USE_NUMBA:
        labels, distances = _lloyd_compiled(samples, sample_weight, centers, max_iter, tol)
    else:
        labels, distances = _lloyd_numpy(samples, sample_weight, centers, max_iter, tol)

    return [
        _fit.Fit(
            centers[start],
            float(np.einsum("i,i->", sample_weight, distances[start])),
            labels[start],
            distances[start],
        )
        for start in range(len(centers))
    ]


def nearest(samples: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return each sample's nearest centre (ties to the lower index) and squared distance."""
    samples = np.ascontiguousarray(samples, dtype=np.float64)
    centers = np.array(centers, dtype=np.float64, order="C")[None]
    if not _kernels.USE_NUMBA:
        labels, distances = _nearest_numpy(samples, centers)
        return labels[0], distances[0]

    # Rows are independent, so threads split them without changing any result.
    bounds = np.linspace(0, len(samples), _kernels.n_threads() + 1).astype(int).tolist()
    parts = _kernels._run_parts(
        lambda low, high: _lloyd_compiled(samples[low:high], np.ones(high - low), centers.copy(), 0, 0.0),
        list(zip(bounds[:-1], bounds[1:])),
    )
    labels = np.concatenate([part[0][0] for part in parts])
    distances = np.concatenate([part[1][0] for part in parts])
    return labels, distances


def _lloyd_compiled(samples, sample_weight, centers, max_iter, tol) -> tuple[np.ndarray, np.ndarray]:
    kernel = _kernels._kernel("lloyd", _lloyd_loop)
    labels = np.empty((len(centers), len(samples)), dtype=np.intp)
    distances = np.empty((len(centers), len(samples)))

    def run_starts(first: int, last: int) -> None:
        for start in range(first, last):
            kernel(samples, sample_weight, centers[start], labels[start], distances[start], max_iter, tol)

    # Starts are independent, so threads split them without changing any result.
    n_parts = min(_kernels.n_threads(), len(centers))
    bounds = np.linspace(0, len(centers), n_parts + 1).astype(int)
    _kernels._run_parts(run_starts, list(zip(bounds[:-1].tolist(), bounds[1:].tolist())))
    return labels, distances


def _lloyd_loop(samples, weights, centers, labels, distances, max_iter, tol):
    n_clusters = centers.shape[0]
    labels[:] = -1
    sums = np.empty((n_clusters, 3))
    totals = np.empty(n_clusters)

    for _ in range(max_iter):
        changed = 0
        for row in range(samples.shape[0]):
            best, best_distance = nearest_center(samples[row, 0], samples[row, 1], samples[row, 2], centers)
            distances[row] = best_distance
            if labels[row] != best:
                changed += 1
                labels[row] = best
        if changed == 0:
            return

        sums[:] = 0.0
        totals[:] = 0.0
        for row in range(samples.shape[0]):
            label = labels[row]
            weight = weights[row]
            totals[label] += weight
            for channel in range(3):
                product = weight * samples[row, channel]
                sums[label, channel] += product

        shift = 0.0
        for index in range(n_clusters):
            if totals[index] > 0:
                moved = 0.0
                for channel in range(3):
                    new = sums[index, channel] / totals[index]
                    offset = new - centers[index, channel]
                    moved += offset * offset
                    centers[index, channel] = new
                shift += moved
        if shift <= tol:
            break

    # Relabel, so that the labels belong to the final centres.
    for row in range(samples.shape[0]):
        best, best_distance = nearest_center(samples[row, 0], samples[row, 1], samples[row, 2], centers)
        labels[row] = best
        distances[row] = best_distance


def _lloyd_numpy(samples, sample_weight, centers, max_iter, tol) -> tuple[np.ndarray, np.ndarray]:
    """Run ``_lloyd_loop`` for all starts at once; ``centers`` (s, k, 3) is updated in place."""
    n_starts, n_clusters, _ = centers.shape
    labels = np.full((n_starts, len(samples)), -1, dtype=np.intp)
    active = np.arange(n_starts)

    for _ in range(max_iter):
        new_labels, _ = _nearest_numpy(samples, centers[active])
        moved = (new_labels != labels[active]).any(axis=1)
        labels[active] = new_labels
        active = active[moved]
        if not len(active):
            break

        shift = _update_numpy(samples, sample_weight, labels[active], centers, active)
        active = active[shift > tol]
        if not len(active):
            break

    # Label every start by its final centres, as the kernel does.
    return _nearest_numpy(samples, centers)


def _nearest_numpy(samples: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the nearest centre (s, m) for each start, ties to the lower index, and its distance."""
    n_starts, n_clusters, _ = centers.shape
    best_distance = np.full((n_starts, len(samples)), np.inf)
    labels = np.zeros((n_starts, len(samples)), dtype=np.intp)
    for index in range(n_clusters):
        offset = samples[None, :, 0] - centers[:, index, 0, None]
        distance = offset * offset
        offset = samples[None, :, 1] - centers[:, index, 1, None]
        distance += offset * offset
        offset = samples[None, :, 2] - centers[:, index, 2, None]
        distance += offset * offset
        closer = distance < best_distance
        best_distance[closer] = distance[closer]
        labels[closer] = index
    return labels, best_distance


def _update_numpy(
    samples: np.ndarray,
    sample_weight: np.ndarray,
    labels: np.ndarray,
    centers: np.ndarray,
    active: np.ndarray,
) -> np.ndarray:
    """Move the centres of the ``active`` starts to their clusters' means; return each shift."""
    n_clusters = centers.shape[1]
    n_bins = len(active) * n_clusters
    flat = (labels + (np.arange(len(active)) * n_clusters)[:, None]).ravel()
    totals = np.bincount(flat, weights=np.tile(sample_weight, len(active)), minlength=n_bins)
    filled = totals > 0

    old = centers[active].reshape(n_bins, 3)
    new = old.copy()
    for channel in range(3):
        products = np.tile(sample_weight * samples[:, channel], len(active))
        sums = np.bincount(flat, weights=products, minlength=n_bins)
        new[filled, channel] = sums[filled] / totals[filled]

    offsets = new - old
    moved = offsets[:, 0] * offsets[:, 0]
    moved += offsets[:, 1] * offsets[:, 1]
    moved += offsets[:, 2] * offsets[:, 2]
    centers[active] = new.reshape(len(active), n_clusters, 3)
    # cumsum adds in cluster order, as the kernel's loop does.
    return np.cumsum(moved.reshape(len(active), n_clusters), axis=1)[:, -1]
