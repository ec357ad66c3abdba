"""Contract tests of the clustering engine on real images and small made-up ones."""

import hashlib
import warnings

import numpy as np
import pytest
import skimage.io
from scipy.optimize import linear_sum_assignment

from napari_color_kmeans import (
    ColorKMeansError,
    ColorKMeansWarning,
    SegmentationResult,
    iter_segment_colors,
    segment_colors,
)
from napari_color_kmeans._engine import ProgressStep

from conftest import TUTORIAL_CENTERS, TUTORIAL_INERTIA



@pytest.fixture(scope="module")
def ladybug(ladybug_path):
    return skimage.io.imread(ladybug_path)


@pytest.fixture(scope="module")
def ladybug_result(ladybug):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ColorKMeansWarning)
        return segment_colors(ladybug, 8, random_state=42)


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(array.tobytes()).hexdigest()


def few_color_image(shape=(40, 50), n_colors=5, seed=0, dtype=np.uint8) -> np.ndarray:
    """Return an RGB image made of ``n_colors`` random uint8 colours in random places."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, size=(n_colors, 3), dtype=np.uint8)
    image = palette[rng.integers(0, n_colors, size=shape)]
    return image.astype(dtype)


def noisy_image(shape=(60, 70), seed=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)


def assert_nearest_centers(image: np.ndarray, result: SegmentationResult) -> None:
    """Check that every labelled pixel sits at its nearest reported centre."""
    pixels = image.reshape(-1, image.shape[-1])[:, :3].astype(np.float64)
    labels = result.labels.reshape(-1)
    labelled = labels > 0
    differences = pixels[labelled, None, :] - result.cluster_centers[None, :, :]
    distances = (differences**2).sum(axis=2)
    assigned = distances[np.arange(len(distances)), labels[labelled].astype(np.intp) - 1]
    scale = max(1.0, float(np.abs(result.cluster_centers).max())) ** 2
    assert np.all(assigned <= distances.min(axis=1) + 1e-9 * scale)


def test_ladybug_matches_tutorial_centers(ladybug, ladybug_result):
    assert ladybug.dtype == np.uint8
    assert ladybug.shape == (533, 800, 3)

    centers = ladybug_result.cluster_centers / 255
    cost = np.abs(centers[:, None, :] - TUTORIAL_CENTERS[None, :, :]).max(axis=2)
    rows, columns = linear_sum_assignment(cost)
    assert len(rows) == 8
    assert cost[rows, columns].max() <= 0.02


def test_ladybug_inertia_within_tutorial(ladybug_result):
    assert ladybug_result.inertia / 255**2 <= TUTORIAL_INERTIA * 1.001


def test_ladybug_inertia_matches_labels(ladybug, ladybug_result):
    pixels = ladybug.reshape(-1, 3).astype(np.float64)
    centers = ladybug_result.cluster_centers[ladybug_result.labels.reshape(-1) - 1]
    inertia = ((pixels - centers) ** 2).sum()
    assert ladybug_result.inertia == pytest.approx(inertia, rel=1e-9)


def test_ladybug_result_layout(ladybug, ladybug_result):
    result = ladybug_result
    assert result.labels.shape == (533, 800)
    assert result.labels.dtype == np.uint8
    assert result.labels.min() == 1
    assert result.labels.max() == 8
    assert result.cluster_centers.shape == (8, 3)
    assert result.cluster_centers.dtype == np.float64
    assert result.segmented.shape == ladybug.shape
    assert result.segmented.dtype == np.uint8
    assert result.counts.dtype == np.int64
    assert result.counts.sum() == ladybug.shape[0] * ladybug.shape[1]
    assert result.n_clusters == 8
    assert result.random_state == 42
    assert result.warnings == ()
    assert isinstance(result.inertia, float)
    assert isinstance(result.method, str)


def test_ladybug_counts_match_labels(ladybug_result):
    counts = np.bincount(ladybug_result.labels.reshape(-1), minlength=9)
    np.testing.assert_array_equal(counts[1:], ladybug_result.counts)


def test_ladybug_segmented_is_rounded_centers(ladybug_result):
    palette = np.clip(np.rint(ladybug_result.cluster_centers), 0, 255).astype(np.uint8)
    expected = palette[ladybug_result.labels - 1]
    np.testing.assert_array_equal(ladybug_result.segmented, expected)


def test_ladybug_pixels_at_nearest_center(ladybug, ladybug_result):
    assert_nearest_centers(ladybug, ladybug_result)


def test_labels_ordered_by_count_then_color():
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    image[:2] = [200, 0, 0]
    image[2:, :2] = [0, 0, 90]
    image[2:, 2:] = [0, 0, 30]

    result = segment_colors(image, 3)

    np.testing.assert_array_equal(result.counts, [8, 4, 4])
    np.testing.assert_array_equal(result.cluster_centers, [[200, 0, 0], [0, 0, 30], [0, 0, 90]])
    assert (result.labels[:2] == 1).all()
    assert (result.labels[2:, 2:] == 2).all()
    assert (result.labels[2:, :2] == 3).all()


@pytest.mark.parametrize("method", ["auto", "exact", "fast"])
def test_same_seed_same_result(method):
    image = noisy_image()
    first = segment_colors(image, 5, random_state=7, method=method)
    second = segment_colors(image, 5, random_state=7, method=method)

    np.testing.assert_array_equal(first.labels, second.labels)
    np.testing.assert_array_equal(first.cluster_centers, second.cluster_centers)
    np.testing.assert_array_equal(first.segmented, second.segmented)
    assert first.inertia == second.inertia
    assert first.method == second.method


@pytest.mark.parametrize("method", ["auto", "exact", "fast"])
def test_input_left_unchanged(method):
    image = noisy_image()
    image_rgba = np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])
    image_rgba[0, :5, 3] = 0
    image_float = image.astype(np.float32) / 300
    image_float[1, 1, 0] = np.nan

    for array in (image, image_rgba, image_float):
        before = digest(array)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ColorKMeansWarning)
            segment_colors(array, 4, method=method)
        assert digest(array) == before


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (np.zeros((5, 5), np.uint8), r"shape \(5, 5\).*RGB\(A\)"),
        (np.zeros((5, 5, 1), np.uint8), r"shape \(5, 5, 1\).*\(H, W, 3\)"),
        (np.zeros((5, 5, 2), np.uint8), r"shape \(5, 5, 2\)"),
        (np.zeros((5,), np.uint8), r"shape \(5,\)"),
        (np.zeros((5, 5, 3), np.int32), r"dtype int32.*uint8, uint16, float32 or float64"),
        (np.zeros((5, 5, 3), bool), r"dtype bool"),
        (np.zeros((0, 5, 3), np.uint8), r"no pixels"),
    ],
)
def test_bad_image_rejected(image, expected):
    with pytest.raises(ColorKMeansError, match=expected):
        segment_colors(image, 2)


@pytest.mark.parametrize("n_clusters", [0, -3, 2.5, "8", None, True, 70000])
def test_bad_n_clusters_rejected(n_clusters):
    with pytest.raises(ColorKMeansError, match=r"n_clusters must be a whole number >= 1, got"):
        segment_colors(noisy_image(), n_clusters)


def test_n_clusters_zero_message():
    with pytest.raises(ColorKMeansError, match=r"got 0; "):
        segment_colors(noisy_image(), 0)


@pytest.mark.parametrize("random_state", [None, -1, 1.5, "42", 2**32])
def test_bad_random_state_rejected(random_state):
    with pytest.raises(ColorKMeansError, match=r"random_state must be a whole number"):
        segment_colors(noisy_image(), 3, random_state=random_state)


@pytest.mark.parametrize("method", ["Auto", "kmeans", "", None])
def test_bad_method_rejected(method):
    with pytest.raises(ColorKMeansError, match=r"method must be one of 'auto', 'exact', 'fast'"):
        segment_colors(noisy_image(), 3, method=method)


@pytest.mark.parametrize("n_init", [0, 1.5, "3"])
def test_bad_n_init_rejected(n_init):
    with pytest.raises(ColorKMeansError, match=r"n_init must be None or a whole number >= 1"):
        segment_colors(noisy_image(), 3, n_init=n_init)


def test_numpy_integer_parameters_accepted():
    result = segment_colors(noisy_image(), np.int64(3), random_state=np.uint32(5), n_init=np.int8(2))
    assert result.n_clusters == 3
    assert result.random_state == 5


def test_constant_image_one_cluster():
    image = np.full((6, 7, 3), 17, dtype=np.uint8)
    with pytest.warns(ColorKMeansWarning, match=r"n_clusters=8 was requested.*only 1 distinct"):
        result = segment_colors(image, 8)

    assert result.n_clusters == 1
    assert (result.labels == 1).all()
    np.testing.assert_array_equal(result.cluster_centers, [[17, 17, 17]])
    assert result.inertia == 0.0
    assert len(result.warnings) == 1


def test_one_pixel_image():
    image = np.array([[[1, 2, 3]]], dtype=np.uint8)
    result = segment_colors(image, 1)

    assert result.labels.shape == (1, 1)
    assert result.labels[0, 0] == 1
    np.testing.assert_array_equal(result.segmented, image)
    assert result.warnings == ()


def test_fewer_colors_than_clusters():
    image = few_color_image(n_colors=3)
    with pytest.warns(ColorKMeansWarning, match=r"n_clusters=5 was requested.*n_clusters=3"):
        result = segment_colors(image, 5)

    assert result.n_clusters == 3
    assert result.inertia == 0.0
    np.testing.assert_array_equal(result.segmented, image)


def test_nan_pixels_left_out():
    image = noisy_image().astype(np.float64) / 255
    image[3, 4, 1] = np.nan
    image[5, 6, :] = np.inf
    with pytest.warns(ColorKMeansWarning, match=r"^2 pixels with NaN or infinite values"):
        result = segment_colors(image, 4)

    assert result.labels[3, 4] == 0
    assert result.labels[5, 6] == 0
    assert (result.labels > 0).sum() == image.shape[0] * image.shape[1] - 2
    assert result.counts.sum() == (result.labels > 0).sum()
    assert np.isnan(result.segmented[3, 4, 1])
    assert np.isinf(result.segmented[5, 6]).all()
    assert len(result.warnings) == 1


def test_transparent_pixels_left_out():
    rgb = noisy_image()
    alpha = np.full(rgb.shape[:2], 200, dtype=np.uint8)
    alpha[:10] = 0
    image = np.dstack([rgb, alpha])

    result = segment_colors(image, 4)

    assert (result.labels[:10] == 0).all()
    assert (result.labels[10:] > 0).all()
    np.testing.assert_array_equal(result.segmented[:10], image[:10])
    np.testing.assert_array_equal(result.segmented[..., 3], alpha)
    assert result.warnings == ()


def test_nothing_to_cluster_rejected():
    image = np.zeros((4, 4, 4), dtype=np.float32)
    image[..., 0] = np.nan
    with pytest.raises(ColorKMeansError, match=r"no pixel can be clustered: all 16 pixels"):
        segment_colors(image, 2)


def test_leading_axes_share_palette():
    image = np.stack([noisy_image(seed=1), noisy_image(seed=2)])
    result = segment_colors(image, 4)

    assert result.labels.shape == image.shape[:-1]
    assert result.segmented.shape == image.shape
    assert result.counts.sum() == image.shape[0] * image.shape[1] * image.shape[2]
    assert_nearest_centers(image, result)


def test_non_contiguous_input():
    image = noisy_image((80, 90))[::2, ::3]
    result = segment_colors(image, 3)

    assert result.labels.shape == image.shape[:2]
    assert_nearest_centers(image, result)


def test_iter_yields_progress_then_result():
    image = noisy_image()
    steps = iter_segment_colors(image, 3, method="exact", n_init=3)
    progress = []
    with pytest.raises(StopIteration) as stop:
        while True:
            progress.append(next(steps))

    assert isinstance(stop.value.value, SegmentationResult)
    assert all(isinstance(step, ProgressStep) for step in progress)
    assert [step.stage for step in progress].count("initialisation 2 of 3") == 1
    assert all(0 <= step.done <= step.total for step in progress)
    assert [step.done for step in progress] == list(range(len(progress)))


def test_segment_colors_matches_iteration():
    image = noisy_image()
    steps = iter_segment_colors(image, 4, random_state=3)
    try:
        while True:
            next(steps)
    except StopIteration as stop:
        iterated = stop.value

    direct = segment_colors(image, 4, random_state=3)
    np.testing.assert_array_equal(direct.labels, iterated.labels)
    np.testing.assert_array_equal(direct.cluster_centers, iterated.cluster_centers)


def test_huge_float_values_rejected():
    image = np.random.default_rng(0).random((30, 30, 3)) * 1e154

    with pytest.raises(ColorKMeansError, match=r"rescale the image"):
        segment_colors(image, 4)


def test_large_but_safe_float_values_work():
    image = np.random.default_rng(0).random((30, 30, 3)) * 1e90
    image[0, 0, 0] = np.inf

    with pytest.warns(ColorKMeansWarning, match="1 pixels with NaN or infinite values"):
        result = segment_colors(image, 4)

    assert result.labels[0, 0] == 0
    assert result.n_clusters == 4
