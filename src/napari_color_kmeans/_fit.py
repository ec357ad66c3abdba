"""Weighted K-means fits on distinct colours, run one initialisation at a time.

The generators here yield a stage name (str) before each slow step, so the
caller can report progress and stop between steps, and return their result.
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from threadpoolctl import ThreadpoolController

# scikit-learn's default relative tolerance of KMeans.
SKLEARN_TOL = 1e-4

# Number of samples whose distances to the centres are computed at once.
NEAREST_CHUNK = 2**16

# Up to this many centres, nearest_centers loops over the centres, which
# avoids a BLAS call per chunk; the loop costs one pass per centre.
DIRECT_MAX_CENTERS = 32


_controller = None


@contextmanager
def single_thread():
    """Run scikit-learn's OpenMP loops on one thread inside the block.

    The fits here see distinct colours or histogram bins, at most a few
    million samples. On the busy 2-core machine the benchmarks ran on, one
    thread was 1.5 to 3 times faster than two for 0.1 to 0.5 million
    samples, because each Lloyd iteration waits for the slower thread. The
    limit only ever lowers the number of threads.
    """
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    with _controller.limit(limits=1, user_api="openmp"):
        yield


@dataclass(frozen=True)
class Fit:
    """Fitted centres and their weighted inertia.

    ``labels`` and ``distances`` (nearest centre and squared distance per
    sample) are set when the fit computed them anyway, else None.
    """

    cluster_centers: np.ndarray
    inertia: float
    labels: np.ndarray | None = None
    distances: np.ndarray | None = None


def derive_seeds(random_state: int, n_seeds: int) -> list[int]:
    """Return ``n_seeds`` reproducible seeds for scikit-learn from one random_state."""
    sequence = np.random.SeedSequence(random_state)
    return [int(seed) for seed in sequence.generate_state(n_seeds, dtype=np.uint32)]


def weighted_tol(samples: np.ndarray, sample_weight: np.ndarray) -> float:
    """Return the ``tol`` that makes a weighted fit stop where a fit on all pixels would.

    scikit-learn scales ``tol`` by the mean unweighted variance of the
    samples. A fit on distinct colours weighted by pixel counts must
    therefore pass ``tol`` times the weighted/unweighted variance ratio.
    """
    plain_variance = np.var(samples, axis=0).mean()
    if plain_variance == 0:
        return SKLEARN_TOL

    mean = np.average(samples, axis=0, weights=sample_weight)
    weighted_variance = np.average((samples - mean) ** 2, axis=0, weights=sample_weight).mean()
    return SKLEARN_TOL * weighted_variance / plain_variance


def fit_kmeans(
    samples: np.ndarray,
    sample_weight: np.ndarray,
    n_clusters: int,
    *,
    init: np.ndarray | str = "k-means++",
    seed: int = 0,
    max_iter: int = 300,
    tol: float | None = None,
) -> Fit:
    """Fit one scikit-learn KMeans (n_init=1) on weighted samples in float64."""
    if tol is None:
        tol = weighted_tol(samples, sample_weight)

    model = KMeans(
        n_clusters=n_clusters,
        init=init,
        n_init=1,
        max_iter=max_iter,
        tol=tol,
        random_state=seed,
    )
    with single_thread():
        model.fit(samples, sample_weight=sample_weight)
    return Fit(model.cluster_centers_.astype(np.float64), float(model.inertia_))


def fit_best_of(
    samples: np.ndarray,
    sample_weight: np.ndarray,
    n_clusters: int,
    seeds: list[int],
    stage: str,
) -> Generator[str, None, Fit]:
    """Fit once per seed and return the fit with the lowest weighted inertia."""
    tol = weighted_tol(samples, sample_weight)
    best = None
    for index, seed in enumerate(seeds):
        yield f"{stage} {index + 1} of {len(seeds)}"
        fit = fit_kmeans(samples, sample_weight, n_clusters, seed=seed, tol=tol)
        if best is None or fit.inertia < best.inertia:
            best = fit
    return best


def nearest_centers(
    samples: np.ndarray, centers: np.ndarray, chunk: int = NEAREST_CHUNK
) -> tuple[np.ndarray, np.ndarray]:
    """Return the index of each sample's nearest centre and the squared distance to it.

    Distances are squared Euclidean in float64; ties go to the lower index.
    Up to ``DIRECT_MAX_CENTERS`` centres the distances are computed directly,
    one centre at a time. For more centres the expanded form
    ``|x|^2 - 2 x.c + |c|^2`` picks the centre, then the distance to the
    picked centre is recomputed directly so it carries no cancellation error.
    """
    centers = np.asarray(centers, dtype=np.float64)
    labels = np.empty(len(samples), dtype=np.intp)
    distances = np.empty(len(samples), dtype=np.float64)

    for start in range(0, len(samples), chunk):
        block = np.asarray(samples[start : start + chunk], dtype=np.float64)
        stop = start + len(block)
        if len(centers) <= DIRECT_MAX_CENTERS:
            _nearest_direct(block, centers, labels[start:stop], distances[start:stop])
        else:
            _nearest_expanded(block, centers, labels[start:stop], distances[start:stop])

    return labels, distances


def _nearest_direct(
    block: np.ndarray, centers: np.ndarray, labels: np.ndarray, distances: np.ndarray
) -> None:
    distances[:] = np.inf
    for index, center in enumerate(centers):
        offsets = block - center
        candidate = np.einsum("ij,ij->i", offsets, offsets)
        closer = candidate < distances
        distances[closer] = candidate[closer]
        labels[closer] = index


def _nearest_expanded(
    block: np.ndarray, centers: np.ndarray, labels: np.ndarray, distances: np.ndarray
) -> None:
    center_norms = np.einsum("ij,ij->i", centers, centers)
    scores = center_norms - 2.0 * (block @ centers.T)
    labels[:] = np.argmin(scores, axis=1)
    offsets = block - centers[labels]
    distances[:] = np.einsum("ij,ij->i", offsets, offsets)
