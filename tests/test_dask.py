"""Dask inputs to the engine: lazy results, chunked fits and identity with numpy runs."""

import warnings

import dask
import dask.array as da
import numpy as np
import pytest
import skimage.io
import zarr
from dask.callbacks import Callback

from napari_color_kmeans import (
    ColorKMeansError,
    ColorKMeansWarning,
    _dask,
    iter_segment_colors,
    segment_colors,
)
from napari_color_kmeans._axes import move_color_axis_last


@pytest.fixture(scope="module")
def ladybug(ladybug_path):
    return skimage.io.imread(ladybug_path)[::2, ::2]


class ResultSizes(Callback):
    """Record the byte size of every task result the local scheduler produces."""

    def __init__(self):
        super().__init__()
        self.sizes = []

    def _posttask(self, key, result, dsk, state, worker_id):
        self.sizes.append(getattr(result, "nbytes", 0))


def assert_same_result(expected, actual):
    """Check that a dask result matches a numpy result of the same data."""
    assert isinstance(actual.labels, da.Array)
    assert isinstance(actual.segmented, da.Array)
    np.testing.assert_array_equal(actual.labels.compute(), expected.labels)
    np.testing.assert_array_equal(actual.segmented.compute(), expected.segmented)
    np.testing.assert_array_equal(actual.cluster_centers, expected.cluster_centers)
    np.testing.assert_array_equal(actual.counts, expected.counts)
    assert actual.inertia == pytest.approx(expected.inertia, rel=1e-12)
    assert actual.method == expected.method
    assert actual.labels.dtype == expected.labels.dtype


def test_ladybug_dask_matches_numpy(ladybug):
    image = da.from_array(ladybug, chunks=(90, 120, 3))
    assert_same_result(segment_colors(ladybug, 8), segment_colors(image, 8))


def test_labels_keep_source_chunks(ladybug):
    image = da.from_array(ladybug, chunks=(90, 120, 3))
    result = segment_colors(image, 4)

    assert result.labels.chunks == image.chunks[:2]
    assert result.segmented.chunks == image.chunks


def test_colour_axis_split_rechunked(ladybug):
    image = da.from_array(ladybug, chunks=(100, 100, 1))
    result = segment_colors(image, 5)

    assert result.segmented.chunks[-1] == (3,)
    assert_same_result(segment_colors(ladybug, 5), result)


@pytest.mark.parametrize("method", ["auto", "exact", "fast"])
def test_methods_match_numpy(ladybug, method):
    image = da.from_array(ladybug, chunks=(64, 64, 3))
    expected = segment_colors(ladybug, 6, method=method, random_state=3)
    assert_same_result(expected, segment_colors(image, 6, method=method, random_state=3))


@pytest.mark.parametrize(
    "convert",
    [lambda a: a.astype(np.float32) / 255, lambda a: a.astype(np.uint16) * 257],
    ids=["float32", "uint16"],
)
def test_8bit_levels_in_other_dtypes_match_numpy(ladybug, convert):
    array = convert(ladybug)
    image = da.from_array(array, chunks=(100, 100, 3))
    assert_same_result(segment_colors(array, 5), segment_colors(image, 5))


def test_float_few_pixels_matches_numpy(ladybug):
    array = ladybug[:200, :200].astype(np.float64) / 300
    image = da.from_array(array, chunks=(70, 70, 3))

    expected = segment_colors(array, 4)
    result = segment_colors(image, 4)

    assert_same_result(expected, result)


def test_float_many_pixels_uses_histogram(ladybug_path):
    ladybug = skimage.io.imread(ladybug_path)
    rng = np.random.default_rng(0)
    array = ladybug.astype(np.float32) / 255 + rng.normal(0, 0.01, ladybug.shape).astype(np.float32)
    assert array.shape[0] * array.shape[1] > 200_000
    image = da.from_array(array, chunks=(256, 256, 3))

    result = segment_colors(image, 4, n_init=2)
    labels = result.labels.compute()

    assert "7-bit histogram of all pixels" in result.method
    assert labels.min() == 1
    np.testing.assert_array_equal(np.bincount(labels.reshape(-1))[1:], result.counts)
    pixels = array.reshape(-1, 3).astype(np.float64)
    distances = ((pixels[:, None, :] - result.cluster_centers[None]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(labels.reshape(-1), distances.argmin(axis=1) + 1)
    assert result.inertia == pytest.approx(distances.min(axis=1).sum(), rel=1e-9)


def test_left_out_pixels_match_numpy(ladybug):
    array = ladybug.astype(np.float32) / 255
    array[3, 4, 1] = np.nan
    array[50:60, 7] = np.inf
    image = da.from_array(array, chunks=(64, 64, 3))

    with pytest.warns(ColorKMeansWarning, match=r"^11 pixels with NaN or infinite values"):
        result = segment_colors(image, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ColorKMeansWarning)
        expected = segment_colors(array, 4)

    assert result.warnings == expected.warnings
    np.testing.assert_array_equal(result.labels.compute(), expected.labels)
    assert result.labels[3, 4].compute() == 0


def test_transparent_pixels_match_numpy(ladybug):
    alpha = np.full(ladybug.shape[:2], 255, dtype=np.uint8)
    alpha[:20] = 0
    array = np.dstack([ladybug, alpha])
    image = da.from_array(array, chunks=(64, 64, 2))

    result = segment_colors(image, 4)

    assert (result.labels[:20].compute() == 0).all()
    assert_same_result(segment_colors(array, 4), result)


def test_nothing_to_cluster_rejected():
    array = np.zeros((30, 30, 4), dtype=np.uint8)
    with pytest.raises(ColorKMeansError, match=r"no pixel can be clustered: all 900 pixels"):
        segment_colors(da.from_array(array, chunks=10), 2)


def test_bad_dask_dtype_rejected():
    image = da.zeros((10, 10, 3), dtype=np.int32, chunks=5)
    with pytest.raises(ColorKMeansError, match=r"dtype int32"):
        segment_colors(image, 2)


def test_image_never_computed_whole(ladybug, monkeypatch, tmp_path):
    monkeypatch.setattr(_dask, "FIT_BLOCK_PIXELS", 64 * 64)
    path = str(tmp_path / "image.zarr")
    da.from_array(ladybug, chunks=(64, 64, 3)).to_zarr(path)
    image = da.from_zarr(path)
    assert image.npartitions >= 16

    sizes = ResultSizes()
    with sizes:
        result = segment_colors(image, 4)
        result.labels.to_zarr(str(tmp_path / "labels.zarr"))
        result.segmented.to_zarr(str(tmp_path / "segmented.zarr"))

    assert len(sizes.sizes) > image.npartitions
    assert max(sizes.sizes) <= ladybug.nbytes // 4


def test_cancel_stops_before_next_step(ladybug, monkeypatch):
    monkeypatch.setattr(_dask, "FIT_BLOCK_PIXELS", 32 * 32)
    image = da.from_array(ladybug, chunks=(32, 32, 3))
    steps = iter_segment_colors(image, 4)

    first = next(steps)
    second = next(steps)
    sizes = ResultSizes()
    with sizes:
        steps.close()

    assert first.stage.startswith("counting colours, step 1 of ")
    assert second.stage.startswith("counting colours, step 2 of ")
    assert sizes.sizes == []


def test_progress_counts_chunk_steps(ladybug, monkeypatch):
    monkeypatch.setattr(_dask, "FIT_BLOCK_PIXELS", 64 * 64)
    monkeypatch.setattr(_dask, "MIN_BLOCKS_PER_STEP", 4)
    monkeypatch.setattr(_dask, "_count_threads", lambda: 1)
    image = da.from_array(ladybug, chunks=(64, 64, 3))
    n_steps = -(-image.npartitions // 4)

    stages = [step.stage for step in _run_all(iter_segment_colors(image, 3, n_init=2))]

    counting = [stage for stage in stages if stage.startswith("counting colours")]
    assert counting == [f"counting colours, step {i} of {n_steps}" for i in range(1, n_steps + 1)]


def _run_all(steps):
    progress = []
    try:
        while True:
            progress.append(next(steps))
    except StopIteration:
        return progress


def test_zarr_input_matches_numpy(ladybug, tmp_path):
    store = zarr.open_array(
        tmp_path / "image.zarr", mode="w", shape=ladybug.shape, chunks=(64, 100, 3), dtype=np.uint8
    )
    store[:] = ladybug
    image = da.from_zarr(str(tmp_path / "image.zarr"))

    result = segment_colors(image, 6)
    result.labels.to_zarr(str(tmp_path / "labels.zarr"))

    written = zarr.open_array(tmp_path / "labels.zarr", mode="r")[:]
    np.testing.assert_array_equal(written, segment_colors(ladybug, 6).labels)


def test_channel_first_dask_rejected_lazily(ladybug):
    image = da.from_array(np.moveaxis(ladybug, -1, 0), chunks=(3, 64, 64))
    sizes = ResultSizes()
    with sizes, pytest.raises(ColorKMeansError, match=r"colour axis at axis 0.*move_color_axis_last"):
        segment_colors(image, 3)
    assert sizes.sizes == []


def test_moved_dask_axis_matches_numpy(ladybug):
    image = da.from_array(np.moveaxis(ladybug, -1, 0), chunks=(1, 64, 64))
    moved = move_color_axis_last(image)

    assert isinstance(moved, da.Array)
    expected = segment_colors(ladybug, 4).labels
    np.testing.assert_array_equal(segment_colors(moved, 4).labels.compute(), expected)


def test_scheduler_setting_respected(ladybug):
    image = da.from_array(ladybug, chunks=(64, 64, 3))
    with dask.config.set(scheduler="synchronous"):
        result = segment_colors(image, 4)
        labels = result.labels.compute()
    np.testing.assert_array_equal(labels, segment_colors(ladybug, 4).labels)
