"""The dask path on a dask.distributed LocalCluster of two worker processes on 127.0.0.1."""

import dask
import dask.array as da
import numpy as np
import pytest
import skimage.io
import zarr
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import SchedulerPlugin

from napari_color_kmeans import _dask, segment_colors
from napari_color_kmeans._multiscale import segment_multiscale
from napari_color_kmeans._stack import segment_planes

CHUNK = (128, 128, 3)


class LargestResult(SchedulerPlugin):
    """Record the largest task result, in bytes, that the scheduler keeps in memory."""

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.largest = 0
        self.n_results = 0

    def transition(self, key, start, finish, *args, **kwargs):
        task = self.scheduler.tasks.get(key)
        if finish == "memory" and task is not None:
            self.n_results += 1
            self.largest = max(self.largest, task.nbytes or 0)


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        host="127.0.0.1",
        processes=True,
        dashboard_address=None,
    ) as local_cluster:
        yield local_cluster


@pytest.fixture
def client(cluster):
    with Client(cluster) as active_client:
        yield active_client


@pytest.fixture(scope="module")
def tiled_photo(ladybug_path) -> np.ndarray:
    """Return a 2 x 2 tiling of the half-size ladybug photo with seeded noise, uint8."""
    photo = skimage.io.imread(ladybug_path)[::2, ::2].astype(np.int16)
    tiled = np.tile(photo, (2, 2, 1))
    noise = np.random.default_rng(5).integers(-3, 4, size=tiled.shape)
    return np.clip(tiled + noise, 0, 255).astype(np.uint8)


@pytest.fixture
def zarr_path(tiled_photo, tmp_path) -> str:
    path = str(tmp_path / "photo.zarr")
    store = zarr.open_array(path, mode="w", shape=tiled_photo.shape, chunks=CHUNK, dtype=np.uint8)
    store[:] = tiled_photo
    return path


def test_cluster_labels_match_in_memory(client, zarr_path, tiled_photo, tmp_path, monkeypatch):
    # Fit blocks of two chunks, so that no block is a large part of this small image.
    monkeypatch.setattr(_dask, "FIT_BLOCK_PIXELS", 2 * CHUNK[0] * CHUNK[1])
    image = da.from_zarr(zarr_path)
    assert image.npartitions >= 20
    plugin = LargestResult(client.cluster.scheduler)
    client.cluster.scheduler.add_plugin(plugin, name="largest-result")

    result = segment_colors(image, 6)
    result.labels.to_zarr(str(tmp_path / "labels.zarr"))

    expected = segment_colors(tiled_photo, 6)
    written = zarr.open_array(str(tmp_path / "labels.zarr"), mode="r")[:]
    np.testing.assert_array_equal(written, expected.labels)
    np.testing.assert_array_equal(result.cluster_centers, expected.cluster_centers)
    np.testing.assert_array_equal(result.counts, expected.counts)
    assert plugin.n_results > image.npartitions
    assert plugin.largest < tiled_photo.nbytes // 4


def test_cluster_float_matches_local_scheduler(client, tiled_photo):
    array = tiled_photo.astype(np.float32) / 300
    image = da.from_array(array, chunks=CHUNK)

    on_cluster = segment_colors(image, 4, n_init=2)
    labels_on_cluster = on_cluster.labels.compute()
    with dask.config.set(scheduler="threads"):
        local = segment_colors(image, 4, n_init=2)
        local_labels = local.labels.compute(scheduler="threads")

    assert "histogram of all pixels" in on_cluster.method
    np.testing.assert_array_equal(on_cluster.cluster_centers, local.cluster_centers)
    np.testing.assert_array_equal(labels_on_cluster, local_labels)


def test_cluster_planes_and_levels(client, zarr_path, tiled_photo):
    image = da.from_zarr(zarr_path)
    stack = da.stack([image, image[::-1]])

    planes = segment_planes(stack, 3, n_init=2)
    levels = segment_multiscale([image, image[::2, ::2]], 3, fit_level=1, n_init=2)

    # NOTE: one compute for both outputs. Computing slices of these lazy
    # labels one after another raised a KeyError for a rechunk key inside the
    # distributed 2026.8 scheduler in one CI run of several; the cause is not
    # confirmed, and the same calls passed in every other run.
    plane_labels, coarse_labels = dask.compute(planes.labels, levels.labels[1])

    expected = segment_colors(tiled_photo, 3, n_init=2)
    np.testing.assert_array_equal(plane_labels[0], expected.labels)
    np.testing.assert_array_equal(plane_labels[1], expected.labels[::-1])
    coarse = segment_colors(tiled_photo[::2, ::2], 3, n_init=2)
    np.testing.assert_array_equal(coarse_labels, coarse.labels)
