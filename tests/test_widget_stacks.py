"""The dock widget on stacks, dask-backed and multiscale layers in a real viewer."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from napari.layers import Image, Labels
from napari.utils.notifications import notification_manager
from skimage import data as skimage_data

from napari_color_kmeans import segment_colors
from napari_color_kmeans._scope import CURRENT_PLANE, EACH_PLANE, WHOLE_STACK
from napari_color_kmeans._widget import ColorKMeansWidget

PLUGIN = "napari-color-kmeans"
WIDGET = "K-means Color Segmentation"
WAIT_MS = 180_000


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    """Three different 120 x 160 photo crops as a (3, 120, 160, 3) time-lapse."""
    coffee = skimage_data.coffee()
    chelsea = skimage_data.chelsea()
    return np.stack([coffee[:120, :160], chelsea[:120, :160], coffee[200:320, 300:460]])


def run_and_wait(qtbot, widget: ColorKMeansWidget) -> None:
    assert widget() is not None
    qtbot.waitUntil(lambda: not widget.is_running, timeout=WAIT_MS)


def error_messages_since(start: int) -> list[str]:
    return [
        str(record.message)
        for record in notification_manager.records[start:]
        if str(record.severity).lower() == "error"
    ]


def test_whole_stack_shares_palette(viewer, widget, qtbot, stack):
    source = viewer.add_image(stack, name="movie", rgb=True, scale=(5.0, 0.5, 0.5))
    widget.n_clusters.value = 4
    widget.scope.value = WHOLE_STACK

    run_and_wait(qtbot, widget)

    labels = viewer.layers["movie k=4 labels"]
    expected = segment_colors(stack, 4, random_state=42)
    np.testing.assert_array_equal(labels.data, expected.labels)
    assert labels.data.shape == stack.shape[:-1]
    np.testing.assert_allclose(labels.scale, source.scale)
    assert viewer.layers["movie k=4"].data.shape == stack.shape


def test_each_plane_own_palette(viewer, widget, qtbot, stack):
    viewer.add_image(stack, name="movie", rgb=True)
    widget.n_clusters.value = 3
    widget.scope.value = EACH_PLANE

    run_and_wait(qtbot, widget)

    labels = viewer.layers["movie k=3 labels"]
    segmented = viewer.layers["movie k=3"]
    assert isinstance(labels, Labels)
    assert labels.data.shape == stack.shape[:-1]
    for plane in range(stack.shape[0]):
        expected = segment_colors(stack[plane], 3, random_state=42)
        np.testing.assert_array_equal(labels.data[plane], expected.labels)
        np.testing.assert_array_equal(segmented.data[plane], expected.segmented)


def test_current_plane_only(viewer, widget, qtbot, stack):
    viewer.add_image(stack, name="movie", rgb=True)
    viewer.dims.set_current_step(0, 1)
    widget.n_clusters.value = 3
    widget.scope.value = CURRENT_PLANE

    run_and_wait(qtbot, widget)

    labels = viewer.layers["movie k=3 labels"].data
    expected = segment_colors(stack[1], 3, random_state=42)
    np.testing.assert_array_equal(labels[1], expected.labels)
    assert not labels[0].any()
    assert not labels[2].any()


def test_dask_layer_stays_lazy(viewer, widget, qtbot, stack):
    lazy = da.from_array(stack, chunks=(1, 60, 80, 3))
    viewer.add_image(lazy, name="lazy", rgb=True)
    widget.n_clusters.value = 4

    run_and_wait(qtbot, widget)

    labels = viewer.layers["lazy k=4 labels"]
    assert isinstance(labels.data, da.Array)
    expected = segment_colors(stack, 4, random_state=42)
    np.testing.assert_array_equal(np.asarray(labels.data), expected.labels)


def test_multiscale_layer_levels(viewer, widget, qtbot):
    photo = skimage_data.coffee()
    levels = [photo, photo[::2, ::2], photo[::4, ::4]]
    viewer.add_image(levels, name="pyramid", rgb=True, multiscale=True)
    widget.n_clusters.value = 5

    run_and_wait(qtbot, widget)

    labels = viewer.layers["pyramid k=5 labels"]
    segmented = viewer.layers["pyramid k=5"]
    assert labels.multiscale
    assert segmented.multiscale
    assert [level.shape for level in labels.data] == [level.shape[:-1] for level in levels]
    finest = np.asarray(labels.data[0])
    assert finest.min() >= 1
    assert finest.max() == 5


def test_multiscale_rejects_per_plane(viewer, widget):
    photo = skimage_data.coffee()
    viewer.add_image([photo, photo[::2, ::2]], name="pyramid", rgb=True, multiscale=True)
    widget.scope.value = EACH_PLANE
    start = len(notification_manager.records)

    assert widget() is None

    (message,) = error_messages_since(start)
    assert "multiscale" in message
    assert WHOLE_STACK in message


def test_channel_first_layer_offer(viewer, widget, qtbot):
    photo = skimage_data.chelsea()
    channel_first = np.moveaxis(photo, -1, 0)
    source = viewer.add_image(channel_first, name="planar")
    start = len(notification_manager.records)

    assert widget() is None
    (message,) = error_messages_since(start)
    assert "(3, 300, 451)" in message
    assert "colour axis" in message
    assert widget.make_rgb_button.enabled

    widget.make_rgb_button.clicked.emit()
    converted = viewer.layers["planar (RGB)"]
    assert isinstance(converted, Image)
    assert converted.rgb
    np.testing.assert_array_equal(converted.data, photo)
    assert source.data.shape == (3, 300, 451)
    assert widget.image_layer.value is converted


def test_suggest_k_on_multiscale_layer(viewer, widget, qtbot):
    photo = skimage_data.coffee()
    viewer.add_image([photo, photo[::2, ::2]], name="pyramid", rgb=True, multiscale=True)
    widget.suggest_k_max.value = 4

    assert widget.analysis.suggest() is not None
    qtbot.waitUntil(lambda: not widget.analysis.is_suggesting, timeout=WAIT_MS)

    plot = widget.analysis.plot
    assert plot is not None
