"""Multiscale segmentation: fit-level choice and labels on every level."""

import dask.array as da
import numpy as np
import pytest
import skimage.io
import skimage.transform

from napari_color_kmeans import ColorKMeansError, segment_colors
from napari_color_kmeans._multiscale import choose_fit_level, segment_multiscale


@pytest.fixture(scope="module")
def pyramid(ladybug_path):
    photo = skimage.io.imread(ladybug_path)
    return [photo, photo[::2, ::2], photo[::4, ::4]]


def test_choose_finest_level_within_budget(pyramid):
    sizes = [level.nbytes for level in pyramid]

    assert choose_fit_level(pyramid, memory_budget=sizes[0]) == 0
    assert choose_fit_level(pyramid, memory_budget=sizes[0] - 1) == 1
    assert choose_fit_level(pyramid, memory_budget=sizes[2]) == 2
    assert choose_fit_level(pyramid, memory_budget=10) == 2


def test_fit_level_labels_match_single_run(pyramid):
    result = segment_multiscale(pyramid, 6, memory_budget=pyramid[1].nbytes)
    expected = segment_colors(pyramid[1], 6)

    assert result.fit_level == 1
    np.testing.assert_array_equal(result.labels[1].compute(), expected.labels)
    np.testing.assert_array_equal(result.segmented[1].compute(), expected.segmented)
    np.testing.assert_array_equal(result.cluster_centers, expected.cluster_centers)
    np.testing.assert_array_equal(result.counts, expected.counts)
    assert result.method == expected.method


def test_levels_line_up_with_source(pyramid):
    levels = [da.from_array(level, chunks=(128, 128, 3)) for level in pyramid]
    result = segment_multiscale(levels, 5, fit_level=2)

    assert len(result.labels) == 3
    assert len(result.segmented) == 3
    for level, labels, segmented in zip(levels, result.labels, result.segmented):
        assert labels.shape == level.shape[:-1]
        assert labels.chunks == level.chunks[:-1]
        assert segmented.shape == level.shape

    finest = result.labels[0].compute()
    assert finest.min() == 1
    assert finest.max() == 5
    np.testing.assert_array_equal(finest[::4, ::4], result.labels[2].compute())


def test_finest_level_assigned_to_nearest_center(pyramid):
    result = segment_multiscale(pyramid, 4, fit_level=2)
    labels = result.labels[0].compute().reshape(-1)

    pixels = pyramid[0].reshape(-1, 3).astype(np.float64)
    distances = ((pixels[:, None, :] - result.cluster_centers[None]) ** 2).sum(axis=2)
    assert (distances[np.arange(len(labels)), labels - 1] <= distances.min(axis=1)).all()


def test_float_levels_that_are_not_8bit(pyramid):
    coarse = pyramid[2].astype(np.float32) / 255
    finer = skimage.transform.rescale(coarse, 2, channel_axis=-1, order=1).astype(np.float32)
    result = segment_multiscale([finer, coarse], 3, fit_level=1)

    labels = result.labels[0].compute()
    assert labels.shape == finer.shape[:-1]
    assert set(np.unique(labels)) == {1, 2, 3}


@pytest.mark.parametrize(
    ("levels", "expected"),
    [
        ([], r"non-empty list"),
        (np.zeros((4, 4, 3), np.uint8), r"non-empty list"),
        ([np.zeros((4, 4, 3), np.uint8), np.zeros((2, 2, 3), np.uint16)], r"level 1 .*dtype uint16"),
        ([np.zeros((2, 2, 3), np.uint8), np.zeros((4, 4, 3), np.uint8)], r"finest first"),
        ([np.zeros((4, 4, 3), np.uint8), np.zeros((2, 2), np.uint8)], r"shape \(2, 2\)"),
    ],
)
def test_bad_levels_rejected(levels, expected):
    with pytest.raises(ColorKMeansError, match=expected):
        segment_multiscale(levels, 2)


@pytest.mark.parametrize("fit_level", [3, -4, 1.0, "0"])
def test_bad_fit_level_rejected(pyramid, fit_level):
    with pytest.raises(ColorKMeansError, match=r"fit_level must be None or a level index from 0 to 2"):
        segment_multiscale(pyramid, 2, fit_level=fit_level)
