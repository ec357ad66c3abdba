"""Tests of the engine's methods: auto, exact and fast on every supported dtype."""

import warnings

import numpy as np
import pytest
import skimage.io
from sklearn.cluster import KMeans

from napari_color_kmeans import (
    ColorKMeansError,
    ColorKMeansWarning,
    iter_segment_colors,
    segment_colors,
)
from napari_color_kmeans import _colors, _fit, _kernels, _plan
from napari_color_kmeans._sweep import iter_segment_colors_many, segment_colors_many

METHODS = ["auto", "exact", "fast"]


@pytest.fixture(scope="module")
def ladybug_crop(ladybug_path):
    """Return a 120 x 160 crop of the ladybug photo with leaf, shell and spots."""
    return skimage.io.imread(ladybug_path)[200:320, 300:460]


def nearest_violations(image: np.ndarray, result) -> int:
    """Return how many labelled pixels are farther from their centre than from another."""
    pixels = image.reshape(-1, image.shape[-1])[:, :3].astype(np.float64)
    labels = result.labels.reshape(-1).astype(np.intp)
    labelled = labels > 0
    distances = ((pixels[labelled, None, :] - result.cluster_centers[None]) ** 2).sum(axis=2)
    assigned = distances[np.arange(len(distances)), labels[labelled] - 1]
    tolerance = 1e-9 * max(1.0, float(np.abs(result.cluster_centers).max())) ** 2
    return int(np.count_nonzero(assigned > distances.min(axis=1) + tolerance))


def as_dtype(image: np.ndarray, kind: str) -> np.ndarray:
    """Return a uint8 RGB image in one of the input kinds the engine supports."""
    if kind == "uint8":
        return image
    if kind == "uint16 8-bit":
        return image.astype(np.uint16) * 257
    if kind == "uint16":
        offsets = (np.arange(image.size) % 7).reshape(image.shape)
        return (image.astype(np.uint16) * 256 + offsets).astype(np.uint16)
    if kind == "float32 8-bit":
        return image.astype(np.float32) / 255
    if kind == "float32":
        return image.astype(np.float32) / 300 + np.float32(1e-4)
    if kind == "float64":
        return image.astype(np.float64) / 255 + 0.25
    if kind == "rgba uint8":
        alpha = np.full(image.shape[:2], 255, dtype=np.uint8)
        alpha[:5] = 0
        return np.dstack([image, alpha])
    raise AssertionError(kind)


KINDS = ["uint8", "uint16 8-bit", "uint16", "float32 8-bit", "float32", "float64", "rgba uint8"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", METHODS)
def test_mode_on_dtype(ladybug_crop, kind, method):
    image = as_dtype(ladybug_crop, kind)
    result = segment_colors(image, 6, method=method)

    assert result.labels.shape == image.shape[:2]
    assert result.labels.dtype == np.uint8
    assert result.segmented.dtype == image.dtype
    assert result.segmented.shape == image.shape
    assert result.n_clusters == 6
    assert result.counts.sum() == np.count_nonzero(result.labels)
    assert nearest_violations(image, result) == 0
    assert result.method


@pytest.mark.parametrize("method", METHODS)
def test_rgba_keeps_alpha_and_transparent_pixels(ladybug_crop, method):
    image = as_dtype(ladybug_crop, "rgba uint8")
    result = segment_colors(image, 4, method=method)

    assert (result.labels[:5] == 0).all()
    assert (result.labels[5:] > 0).all()
    np.testing.assert_array_equal(result.segmented[..., 3], image[..., 3])
    np.testing.assert_array_equal(result.segmented[:5], image[:5])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("kind", "scale"), [("uint16 8-bit", 257.0), ("float32 8-bit", 1 / 255)])
def test_8bit_levels_match_uint8(ladybug_crop, method, kind, scale):
    reference = segment_colors(ladybug_crop, 5, method=method)
    result = segment_colors(as_dtype(ladybug_crop, kind), 5, method=method)

    assert result.method == reference.method
    np.testing.assert_array_equal(result.labels, reference.labels)
    np.testing.assert_allclose(result.cluster_centers, reference.cluster_centers * scale, rtol=1e-12)
    assert result.inertia == pytest.approx(reference.inertia * scale**2, rel=1e-6)


def test_uint16_segmented_values(ladybug_crop):
    image = as_dtype(ladybug_crop, "uint16 8-bit")
    result = segment_colors(image, 5)

    palette = np.clip(np.rint(result.cluster_centers), 0, 65535).astype(np.uint16)
    np.testing.assert_array_equal(result.segmented, palette[result.labels - 1])


@pytest.mark.parametrize("method", METHODS)
def test_non_8bit_data_reports_method(ladybug_crop, method):
    result = segment_colors(as_dtype(ladybug_crop, "float32"), 5, method=method)
    if method == "exact":
        assert result.method == "exact (distinct colours)"
    elif method == "fast":
        assert result.method == "fast (6-bit histogram)"
    else:
        assert result.method == "histogram + exact polish"


@pytest.mark.parametrize("method", METHODS)
def test_large_non_8bit_data_subsampled(ladybug_crop, method, monkeypatch):
    monkeypatch.setattr(_plan, "SUBSAMPLE_PIXELS", 3000)
    monkeypatch.setattr(_plan, "EXACT_MAX_PIXELS", 3000)
    image = as_dtype(ladybug_crop, "float64")
    result = segment_colors(image, 5, method=method, random_state=3)

    assert "3000 px subsample" in result.method or "subsample 3000 px" in result.method
    assert result.counts.sum() == image.shape[0] * image.shape[1]
    assert nearest_violations(image, result) == 0

    again = segment_colors(image, 5, method=method, random_state=3)
    np.testing.assert_array_equal(again.labels, result.labels)


def test_subsample_with_few_colours_counts_all(monkeypatch):
    monkeypatch.setattr(_plan, "SUBSAMPLE_PIXELS", 500)
    rng = np.random.default_rng(4)
    palette = rng.random((3, 3))
    image = palette[rng.integers(0, 3, size=(60, 60))]
    image[0, 0] = [0.123, 0.456, 0.789]

    with pytest.warns(ColorKMeansWarning, match=r"only 4 distinct colour"):
        result = segment_colors(image, 6)

    assert result.n_clusters == 4
    assert result.inertia == 0.0
    assert result.method == "exact (distinct colours)"


def test_auto_not_worse_than_fast(ladybug_crop):
    fast = segment_colors(ladybug_crop, 6, method="fast")
    auto = segment_colors(ladybug_crop, 6, method="auto")
    assert auto.inertia <= fast.inertia * (1 + 1e-12)


def test_fast_close_to_exact(ladybug_crop):
    fast = segment_colors(ladybug_crop, 6, method="fast")
    exact = segment_colors(ladybug_crop, 6, method="exact")
    assert fast.inertia <= exact.inertia * 1.05


def test_weighted_fit_equals_plain_fit():
    rng = np.random.default_rng(11)
    palette = rng.integers(0, 256, size=(12, 3))
    pixels = palette[rng.integers(0, 12, size=5000)].astype(np.float64)
    initial = palette[:4] + 0.5

    plain = KMeans(n_clusters=4, init=initial, n_init=1).fit(pixels)
    colors, counts = np.unique(pixels, axis=0, return_counts=True)
    weighted = _fit.fit_kmeans(colors, counts, 4, init=initial)

    np.testing.assert_allclose(weighted.cluster_centers, plain.cluster_centers_, rtol=1e-10)
    assert weighted.inertia == pytest.approx(plain.inertia_, rel=1e-10)


def test_weighted_tol_matches_pixel_variance():
    rng = np.random.default_rng(12)
    pixels = rng.integers(0, 4, size=(1000, 3)).astype(np.float64)
    pixels[:900] = 0
    colors, counts = np.unique(pixels, axis=0, return_counts=True)

    expected = _fit.SKLEARN_TOL * np.var(pixels, axis=0).mean()
    scaled = _fit.weighted_tol(colors, counts) * np.var(colors, axis=0).mean()
    assert scaled == pytest.approx(expected, rel=1e-12)


def test_histogram_bins_keep_weight_and_means():
    rng = np.random.default_rng(13)
    samples = rng.integers(0, 256, size=(2000, 3)).astype(np.float64)
    weights = rng.integers(1, 50, size=2000)

    means, bin_weights = _colors.histogram_bins(samples, weights, 4, np.zeros(3), np.full(3, 256.0))

    assert bin_weights.sum() == weights.sum()
    assert len(means) <= 16**3
    first = (samples // 16 == means[0] // 16).all(axis=1)
    np.testing.assert_allclose(means[0], np.average(samples[first], axis=0, weights=weights[first]))


@pytest.mark.skipif(_kernels.numba is None, reason="numba is not installed")
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", ["uint8", "rgba uint8"])
@pytest.mark.parametrize("min_pixels", [0, 2**20], ids=["count table", "radix sort"])
def test_numba_and_numpy_identical(ladybug_crop, monkeypatch, method, kind, min_pixels):
    image = as_dtype(ladybug_crop, kind)
    monkeypatch.setattr(_kernels, "NUMBA_MIN_PIXELS", min_pixels)

    monkeypatch.setattr(_kernels, "USE_NUMBA", True)
    compiled = segment_colors(image, 5, method=method)
    monkeypatch.setattr(_kernels, "USE_NUMBA", False)
    plain = segment_colors(image, 5, method=method)

    np.testing.assert_array_equal(compiled.labels, plain.labels)
    np.testing.assert_array_equal(compiled.segmented, plain.segmented)
    np.testing.assert_array_equal(compiled.cluster_centers, plain.cluster_centers)
    np.testing.assert_array_equal(compiled.counts, plain.counts)
    if method == "fast":
        # The compiled "fast" path sums the inertia per cluster (_fast8).
        assert compiled.inertia == pytest.approx(plain.inertia, rel=1e-12)
    else:
        assert compiled.inertia == plain.inertia


def test_close_cancels_run(ladybug_crop):
    steps = iter_segment_colors(ladybug_crop, 6, method="exact", n_init=50)
    stages = []
    for step in steps:
        stages.append(step.stage)
        if step.stage == "initialisation 2 of 50":
            break
    steps.close()

    assert stages[-1] == "initialisation 2 of 50"
    assert steps.gi_frame is None
    with pytest.raises(StopIteration):
        next(steps)


def test_close_before_start_cancels(ladybug_crop):
    steps = iter_segment_colors(ladybug_crop, 6)
    first = next(steps)
    steps.close()

    assert first.done == 0
    assert first.total > 1
    with pytest.raises(StopIteration):
        next(steps)


def test_auto_progress_stages(ladybug_crop):
    stages = [step.stage for step in iter_segment_colors(ladybug_crop, 4, n_init=5)]

    assert "initialisation 5 of 5" in stages
    assert "polishing 2 candidates" in stages
    assert stages[-1] == "painting segmented image"


def test_many_matches_single_runs(ladybug_crop):
    values = [6, 2, 4]
    results = segment_colors_many(ladybug_crop, values, random_state=5)

    assert [result.n_clusters for result in results] == values
    for n_clusters, result in zip(values, results):
        single = segment_colors(ladybug_crop, n_clusters, random_state=5)
        np.testing.assert_array_equal(result.labels, single.labels)
        np.testing.assert_array_equal(result.cluster_centers, single.cluster_centers)
        np.testing.assert_array_equal(result.feature_centers, single.feature_centers)
        assert result.method == single.method


def test_many_counts_colours_once(ladybug_crop):
    stages = [step.stage for step in iter_segment_colors_many(ladybug_crop, [2, 3], n_init=2)]
    assert stages.count("counting colours") == 1
    assert stages.count("initialisation 2 of 2") == 2


def test_many_rejects_empty_list(ladybug_crop):
    with pytest.raises(ColorKMeansError, match=r"n_clusters_values is empty"):
        segment_colors_many(ladybug_crop, [])


def test_many_rejects_bad_value(ladybug_crop):
    with pytest.raises(ColorKMeansError, match=r"n_clusters must be a whole number >= 1, got 0"):
        segment_colors_many(ladybug_crop, [3, 0])


def test_many_warns_per_value():
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    image[:2] = 255
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = segment_colors_many(image, [2, 3])

    assert results[0].warnings == ()
    assert len(results[1].warnings) == 1
    assert sum(issubclass(w.category, ColorKMeansWarning) for w in caught) == 1
