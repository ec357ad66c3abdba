"""Tests of the engine's compiled passes: the weighted Lloyd loop, batched seeding, colour counts."""

import numpy as np
import pytest
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from napari_color_kmeans import _batched, _fit, _kernels, _lloyd, segment_colors


def weighted_colors(seed: int, n_colors: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """Return random 8-bit colours (float64) and integer pixel counts as float64."""
    rng = np.random.default_rng(seed)
    colors = rng.integers(0, 256, size=(n_colors, 3)).astype(np.float64)
    counts = rng.integers(1, 40, size=n_colors).astype(np.float64)
    return colors, counts


def test_lloyd_matches_sklearn_from_same_start():
    colors, counts = weighted_colors(1)
    start = colors[:6] + 0.5
    tol = _fit.weighted_tol(colors, counts)

    model = KMeans(n_clusters=6, init=start, n_init=1, tol=tol).fit(colors, sample_weight=counts)
    (fit,) = _lloyd.fit_from(colors, counts, start[None])

    np.testing.assert_allclose(fit.cluster_centers, model.cluster_centers_, rtol=1e-9)
    assert fit.inertia == pytest.approx(model.inertia_, rel=1e-9)


def test_lloyd_labels_are_nearest_centres():
    colors, counts = weighted_colors(2)
    (fit,) = _lloyd.fit_from(colors, counts, colors[None, :5])

    distances = ((colors[:, None, :] - fit.cluster_centers[None]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(fit.labels, distances.argmin(axis=1))
    np.testing.assert_allclose(fit.distances, distances.min(axis=1), rtol=1e-12)
    assert fit.inertia == pytest.approx(float(counts @ distances.min(axis=1)), rel=1e-12)


@pytest.mark.skipif(_kernels.numba is None, reason="numba is not installed")
@pytest.mark.parametrize("max_iter", [1, 3, 300])
def test_lloyd_numba_and_numpy_identical(monkeypatch, max_iter):
    colors, counts = weighted_colors(3)
    # Start 1 has a centre far from every colour, so its cluster stays empty.
    starts = np.stack([colors[:7], np.vstack([colors[:6], [[1e4, 1e4, 1e4]]])])

    monkeypatch.setattr(_kernels, "USE_NUMBA", True)
    compiled = _lloyd.fit_from(colors, counts, starts, max_iter=max_iter)
    monkeypatch.setattr(_kernels, "USE_NUMBA", False)
    plain = _lloyd.fit_from(colors, counts, starts, max_iter=max_iter)

    for left, right in zip(compiled, plain):
        np.testing.assert_array_equal(left.cluster_centers, right.cluster_centers)
        np.testing.assert_array_equal(left.labels, right.labels)
        np.testing.assert_array_equal(left.distances, right.distances)
        assert left.inertia == right.inertia


def test_empty_cluster_keeps_its_centre():
    colors, counts = weighted_colors(4)
    far = np.array([1e4, 1e4, 1e4])
    (fit,) = _lloyd.fit_from(colors, counts, np.vstack([colors[:3], far])[None])

    np.testing.assert_array_equal(fit.cluster_centers[3], far)
    assert not np.any(fit.labels == 3)


def test_ties_go_to_lower_centre():
    samples = np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    labels, distances = _lloyd.nearest(samples, np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]))

    np.testing.assert_array_equal(labels, [0, 1, 0])
    np.testing.assert_array_equal(distances, [0.0, 0.0, 1.0])


def test_batch_is_reproducible_and_seed_dependent():
    colors, counts = weighted_colors(5, n_colors=500)

    first = _batched.fit_batch(colors, counts, 4, 8, [1, 2, 3])
    again = _batched.fit_batch(colors, counts, 4, 8, [1, 2, 3])
    other = _batched.fit_batch(colors, counts, 4, 8, [4, 5, 6])

    assert [fit.inertia for fit in first] == [fit.inertia for fit in again]
    assert [fit.inertia for fit in first] != [fit.inertia for fit in other]


def test_batch_best_start_close_to_sklearn():
    colors, counts = weighted_colors(6, n_colors=800)
    best = min(fit.inertia for fit in _batched.fit_batch(colors, counts, 5, 20, 0))
    model = KMeans(n_clusters=5, n_init=20, random_state=0).fit(colors, sample_weight=counts)

    assert best <= model.inertia_ * 1.01


def test_absolute_tol_matches_weighted_variance():
    colors, counts = weighted_colors(7)
    pixels = np.repeat(colors, counts.astype(int), axis=0)

    expected = _fit.SKLEARN_TOL * np.var(pixels, axis=0).mean()
    assert _lloyd.absolute_tol(colors, counts) == pytest.approx(expected, rel=1e-9)


@pytest.mark.skipif(_kernels.numba is None, reason="numba is not installed")
@pytest.mark.parametrize("dtype", [np.uint32, np.int64])
def test_nonzero_colors_matches_flatnonzero(dtype):
    rng = np.random.default_rng(8)
    counts = np.zeros(2**24 + 1, dtype=dtype)
    counts[rng.integers(0, 2**24, size=5000)] = 3
    counts[[0, 1, 2**24 - 1, 2**24]] = 1

    found = _kernels.nonzero_colors(counts)

    np.testing.assert_array_equal(found, np.flatnonzero(counts[: 2**24]))


@pytest.mark.skipif(_kernels.numba is None, reason="numba is not installed")
def test_count_threads_agree(monkeypatch):
    rng = np.random.default_rng(9)
    pixels = rng.integers(0, 256, size=(20000, 4), dtype=np.uint8)
    pixels[::7, 3] = 0

    counts = {}
    for n_threads in (1, 2):
        monkeypatch.setattr(_kernels, "MAX_THREADS", n_threads)
        counts[n_threads] = _kernels.new_counts(len(pixels))
        _kernels.count_uint8(pixels, counts[n_threads])

    np.testing.assert_array_equal(counts[1], counts[2])
    assert counts[2][2**24] == np.count_nonzero(pixels[:, 3] == 0)


def test_threads_follow_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    assert _kernels.n_threads() == 1


def test_threads_follow_threadpool_limits():
    unlimited = _kernels.n_threads()
    with threadpool_limits(limits=1, user_api="openmp"):
        limited = _kernels.n_threads()

    assert limited == 1
    assert _kernels.n_threads() == unlimited


@pytest.mark.skipif(_kernels.numba is None, reason="numba is not installed")
def test_fast_on_one_thread_matches_two():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, size=(300, 400, 3), dtype=np.uint8)

    threaded = segment_colors(image, 5, method="fast")
    with threadpool_limits(limits=1, user_api="openmp"):
        single = segment_colors(image, 5, method="fast")

    np.testing.assert_array_equal(single.labels, threaded.labels)
    np.testing.assert_array_equal(single.segmented, threaded.segmented)
    assert single.inertia == pytest.approx(threaded.inertia, rel=1e-12)
