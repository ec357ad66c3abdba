"""Per-plane segmentation of n-D stacks and colour-axis handling."""

import dask.array as da
import numpy as np
import pytest
import skimage.io
from dask.callbacks import Callback

from napari_color_kmeans import ColorKMeansError, ColorKMeansWarning, segment_colors
from napari_color_kmeans._axes import find_channel_first_axis, move_color_axis_last
from napari_color_kmeans._stack import iter_segment_planes, segment_planes


@pytest.fixture(scope="module")
def frames(ladybug_path):
    """Return three different (134, 200, 3) uint8 frames cut from the ladybug photo."""
    photo = skimage.io.imread(ladybug_path)[::4, ::4]
    return np.stack([photo, photo[::-1, ::-1], np.roll(photo, 60, axis=1) // 2])


class TaskCounter(Callback):
    def __init__(self):
        super().__init__()
        self.n_tasks = 0

    def _posttask(self, key, result, dsk, state, worker_id):
        self.n_tasks += 1


def test_planes_match_single_runs(frames):
    result = segment_planes(frames, 4)

    assert result.labels.shape == frames.shape[:-1]
    assert result.segmented.shape == frames.shape
    assert len(result.planes) == 3
    for index, plane in enumerate(result.planes):
        expected = segment_colors(frames[index], 4)
        assert plane.index == (index,)
        np.testing.assert_array_equal(result.labels[index], expected.labels)
        np.testing.assert_array_equal(result.segmented[index], expected.segmented)
        np.testing.assert_array_equal(plane.cluster_centers, expected.cluster_centers)
        np.testing.assert_array_equal(plane.counts, expected.counts)
        assert plane.method == expected.method


def test_planes_differ_from_shared_palette(frames):
    per_plane = segment_planes(frames, 4)
    shared = segment_colors(frames, 4)

    assert not np.array_equal(per_plane.cluster_centers[0], per_plane.cluster_centers[2])
    assert not np.array_equal(per_plane.labels, shared.labels)


def test_dask_planes_match_numpy(frames):
    image = da.from_array(frames, chunks=(1, 70, 90, 1))
    expected = segment_planes(frames, 4)

    result = segment_planes(image, 4)

    assert isinstance(result.labels, da.Array)
    assert result.labels.chunks[0] == (1, 1, 1)
    np.testing.assert_array_equal(result.labels.compute(), expected.labels)
    np.testing.assert_array_equal(result.segmented.compute(), expected.segmented)
    np.testing.assert_array_equal(result.cluster_centers, expected.cluster_centers)


def test_two_leading_axes_keep_shape(frames):
    stack = np.stack([frames[:2], frames[1:]])
    result = segment_planes(stack, 3)

    assert result.labels.shape == (2, 2, 134, 200)
    assert result.cluster_centers.shape == (2, 2, 3, 3)
    assert result.counts.shape == (2, 2, 3)
    assert [plane.index for plane in result.planes] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    np.testing.assert_array_equal(result.labels[1, 0], segment_colors(frames[1], 3).labels)


def test_single_image_is_one_plane(frames):
    result = segment_planes(frames[0], 5)

    assert result.labels.shape == frames.shape[1:3]
    assert [plane.index for plane in result.planes] == [()]
    np.testing.assert_array_equal(result.labels, segment_colors(frames[0], 5).labels)


def test_padding_for_planes_with_fewer_colors(frames):
    stack = frames.copy()
    stack[1] = 200
    with pytest.warns(ColorKMeansWarning, match=r"^plane \(1,\): n_clusters=4 was requested"):
        result = segment_planes(stack, 4)

    assert result.planes[1].n_clusters == 1
    assert np.isnan(result.cluster_centers[1, 1:]).all()
    np.testing.assert_array_equal(result.cluster_centers[1, 0], [200, 200, 200])
    np.testing.assert_array_equal(result.counts[1], [134 * 200, 0, 0, 0])
    assert (result.labels[1] == 1).all()


def test_progress_names_planes(frames):
    steps = iter_segment_planes(frames, 3, n_init=2)
    stages = []
    try:
        while True:
            stages.append(next(steps))
    except StopIteration as stop:
        result = stop.value

    names = [step.stage for step in stages]
    assert names[0].startswith("plane 1 of 3: ")
    assert names[-1].startswith("plane 3 of 3: ")
    assert [step.done for step in stages] == list(range(len(stages)))
    assert all(step.done < step.total for step in stages)
    assert len(result.planes) == 3


def test_cancel_between_planes(frames):
    image = da.from_array(frames, chunks=(1, 134, 200, 3))
    steps = iter_segment_planes(image, 3)
    step = next(steps)
    while step.stage.startswith("plane 1 of 3"):
        step = next(steps)

    counter = TaskCounter()
    with counter:
        steps.close()

    assert step.stage.startswith("plane 2 of 3: counting colours")
    assert counter.n_tasks == 0


def test_channel_first_stack_rejected(frames):
    stack = np.moveaxis(frames, -1, 1)
    with pytest.raises(ColorKMeansError, match=r"shape \(3, 3, 134, 200\).*axis 1.*moveaxis\(image, 1, -1\)"):
        segment_planes(stack, 3)


@pytest.mark.parametrize(
    ("shape", "axis"),
    [
        ((3, 40, 50), 0),
        ((4, 40, 50), 0),
        ((7, 3, 40, 50), 1),
        ((40, 50, 3), None),
        ((40, 50), None),
        ((5, 40, 50), None),
    ],
)
def test_find_channel_first_axis(shape, axis):
    assert find_channel_first_axis(shape) == axis


def test_channel_first_image_rejected(frames):
    image = np.moveaxis(frames[0], -1, 0)
    with pytest.raises(ColorKMeansError, match=r"shape \(3, 134, 200\).*move_color_axis_last\(image, axis=0\)"):
        segment_colors(image, 3)


def test_move_color_axis_last(frames):
    image = np.moveaxis(frames[0], -1, 0)
    moved = move_color_axis_last(image)

    np.testing.assert_array_equal(moved, frames[0])
    assert np.shares_memory(moved, image)
    np.testing.assert_array_equal(move_color_axis_last(image, axis=0), frames[0])


@pytest.mark.parametrize(("shape", "axis"), [((5, 40, 50), None), ((3, 40, 50), 1), ((3, 40, 50), 3)])
def test_move_color_axis_bad_axis(shape, axis):
    with pytest.raises(ColorKMeansError, match=r"axis"):
        move_color_axis_last(np.zeros(shape, np.uint8), axis=axis)
