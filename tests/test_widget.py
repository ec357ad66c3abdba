"""The dock widget in a real napari viewer, on real PNG files."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from napari.layers import Image, Labels
from napari.utils.notifications import notification_manager
from scipy.optimize import linear_sum_assignment

from napari_color_kmeans._widget import ColorKMeansWidget

from conftest import PLUGIN, TUTORIAL_CENTERS, TUTORIAL_INERTIA

WAIT_MS = 180_000



def wait_until_idle(qtbot, widget: ColorKMeansWidget) -> None:
    qtbot.waitUntil(lambda: not widget.is_running, timeout=WAIT_MS)


def messages_since(start: int, severity: str | None = None) -> list[str]:
    records = notification_manager.records[start:]
    return [
        str(record.message)
        for record in records
        if severity is None or str(record.severity).lower() == severity
    ]


def data_hash(layer) -> str:
    return hashlib.sha1(np.ascontiguousarray(layer.data).tobytes()).hexdigest()


def run_and_wait(qtbot, widget: ColorKMeansWidget):
    worker = widget()
    assert worker is not None
    wait_until_idle(qtbot, widget)
    return worker


def test_dock_widget_is_plugin_widget(widget):
    assert isinstance(widget, ColorKMeansWidget)
    assert widget.n_clusters.value == 8
    assert widget.random_state.value == 42


def test_ladybug_matches_tutorial(viewer, widget, qtbot, ladybug_path):
    (source,) = viewer.open(ladybug_path, plugin=PLUGIN)
    source.scale = (0.5, 2.0)
    source.translate = (10.0, -3.0)
    before = data_hash(source)
    assert widget.image_layer.value is source

    run_and_wait(qtbot, widget)

    segmented = viewer.layers["ladybug k=8"]
    labels = viewer.layers["ladybug k=8 labels"]
    assert isinstance(segmented, Image)
    assert segmented.rgb
    assert segmented.data.dtype == np.uint8
    assert segmented.data.shape == source.data.shape
    assert isinstance(labels, Labels)
    assert labels.data.shape == source.data.shape[:2]
    assert set(np.unique(labels.data)) == set(range(1, 9))
    for layer in (segmented, labels):
        np.testing.assert_allclose(layer.scale, source.scale)
        np.testing.assert_allclose(layer.translate, source.translate)
        np.testing.assert_allclose(layer.affine.affine_matrix, source.affine.affine_matrix)
    assert data_hash(source) == before

    centers = labels.metadata["cluster_centers"] / 255.0
    for label in range(1, 9):
        np.testing.assert_allclose(labels.colormap.map(label)[:3], centers[label - 1], atol=1e-6)
        assert labels.colormap.map(label)[3] == 1.0
    assert labels.colormap.map(0)[3] == 0.0

    rows, columns = linear_sum_assignment(
        np.abs(centers[:, None, :] - TUTORIAL_CENTERS[None, :, :]).max(axis=2)
    )
    assert np.abs(centers[rows] - TUTORIAL_CENTERS[columns]).max() <= 0.02
    assert labels.metadata["inertia"] / 255.0**2 <= TUTORIAL_INERTIA * 1.001

    counts = labels.features["pixel_count"].to_numpy()
    assert counts[0] == 0
    assert counts.sum() == labels.data.size
    assert list(counts[1:]) == sorted(counts[1:], reverse=True)


def test_rerun_replaces_layers(viewer, widget, qtbot):
    viewer.open_sample(PLUGIN, "chelsea")
    widget.n_clusters.value = 3
    run_and_wait(qtbot, widget)
    names = [layer.name for layer in viewer.layers]
    viewer.layers["chelsea k=3"].opacity = 0.4

    run_and_wait(qtbot, widget)

    assert [layer.name for layer in viewer.layers] == names
    assert names == ["chelsea", "chelsea k=3", "chelsea k=3 labels"]
    assert viewer.layers["chelsea k=3"].opacity == 0.4


def test_compare_shows_grid(viewer, widget, qtbot):
    (source,) = viewer.open_sample(PLUGIN, "coffee")
    widget.compare_k.value = "10, 8, 6, 4, 2"
    assert widget.compare() is not None
    wait_until_idle(qtbot, widget)

    expected = ["coffee k=10", "coffee k=8", "coffee k=6", "coffee k=4", "coffee k=2"]
    assert [layer.name for layer in viewer.layers] == ["coffee", *expected]
    for name, n_clusters in zip(expected, (10, 8, 6, 4, 2)):
        layer = viewer.layers[name]
        assert layer.rgb
        assert layer.data.dtype == source.data.dtype
        assert len(np.unique(layer.data.reshape(-1, 3), axis=0)) == n_clusters
    assert viewer.canvas.grid.enabled
    assert all(layer.visible for layer in viewer.layers)


def test_compare_rejects_bad_k_list(viewer, widget):
    viewer.open_sample(PLUGIN, "chelsea")
    start = len(notification_manager.records)
    widget.compare_k.value = "10, ten"

    assert widget.compare() is None

    (message,) = messages_since(start, "error")
    assert "'ten'" in message
    assert "whole number" in message


def test_no_image_layer(viewer, widget):
    start = len(notification_manager.records)

    assert widget() is None

    (message,) = messages_since(start, "error")
    assert "No RGB image layer" in message


def test_grey_layer_rejected(viewer, widget):
    viewer.add_image(np.zeros((40, 50), dtype=np.uint8), name="grey")
    start = len(notification_manager.records)

    assert widget() is None

    (message,) = messages_since(start, "error")
    assert "'grey' is not an RGB or RGBA image" in message
    assert "(40, 50)" in message


def test_labels_layer_rejected(viewer, widget):
    viewer.add_labels(np.zeros((40, 50), dtype=np.uint8), name="cells")
    start = len(notification_manager.records)

    assert widget() is None

    (message,) = messages_since(start, "error")
    assert "'cells' is a labels layer" in message


@pytest.mark.parametrize("shape", [(1, 1), (2, 2)])
def test_tiny_images(viewer, widget, qtbot, shape):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    source = viewer.add_image(data, name="tiny", rgb=True)
    before = data_hash(source)
    start = len(notification_manager.records)

    run_and_wait(qtbot, widget)

    n_colours = len(np.unique(data.reshape(-1, 3), axis=0))
    labels = viewer.layers[f"tiny k={n_colours} labels"]
    assert labels.data.shape == shape
    assert labels.data.min() >= 1
    warnings_shown = messages_since(start, "warning")
    assert any("8" in message and str(n_colours) in message for message in warnings_shown)
    assert data_hash(source) == before


def test_constant_image(viewer, widget, qtbot):
    source = viewer.add_image(np.full((20, 30, 3), 77, dtype=np.uint8), name="flat", rgb=True)
    start = len(notification_manager.records)

    run_and_wait(qtbot, widget)

    labels = viewer.layers["flat k=1 labels"]
    assert np.all(labels.data == 1)
    np.testing.assert_array_equal(viewer.layers["flat k=1"].data, source.data)
    assert messages_since(start, "warning")


def test_nan_pixels_left_out(viewer, widget, qtbot):
    rng = np.random.default_rng(1)
    data = rng.random((30, 40, 3)).astype(np.float32)
    data[0, 0, 1] = np.nan
    data[5, 7, :] = np.inf
    source = viewer.add_image(data, name="noisy", rgb=True, contrast_limits=(0, 1))
    before = data_hash(source)
    widget.n_clusters.value = 4
    start = len(notification_manager.records)

    run_and_wait(qtbot, widget)

    labels = viewer.layers["noisy k=4 labels"].data
    assert labels[0, 0] == 0
    assert labels[5, 7] == 0
    assert np.count_nonzero(labels == 0) == 2
    assert any("2" in message for message in messages_since(start, "warning"))
    assert data_hash(source) == before


def test_layer_removed_during_run(viewer, widget, qtbot, ladybug_path):
    (source,) = viewer.open(ladybug_path, plugin=PLUGIN)
    widget.method.value = "exact"
    start = len(notification_manager.records)

    assert widget() is not None
    viewer.layers.remove(source)
    wait_until_idle(qtbot, widget)

    assert len(viewer.layers) == 0
    assert any("was removed" in message for message in messages_since(start, "warning"))


def test_second_run_refused(viewer, widget, qtbot, ladybug_path):
    viewer.open(ladybug_path, plugin=PLUGIN)
    widget.method.value = "exact"
    first = widget()
    start = len(notification_manager.records)

    second = widget()
    wait_until_idle(qtbot, widget)

    assert first is not None
    assert second is None
    assert any("already running" in message for message in messages_since(start))
    assert [layer.name for layer in viewer.layers] == [
        "ladybug", "ladybug k=8", "ladybug k=8 labels"
    ]


def test_cancel_adds_no_layers(viewer, widget, qtbot, ladybug_path):
    viewer.open(ladybug_path, plugin=PLUGIN)
    widget.method.value = "exact"
    widget.compare_k.value = "10, 9, 8, 7, 6, 5"
    start = len(notification_manager.records)

    assert widget.compare() is not None
    widget.cancel()
    wait_until_idle(qtbot, widget)

    assert [layer.name for layer in viewer.layers] == ["ladybug"]
    assert any("cancelled" in message for message in messages_since(start, "info"))


def test_sample_data_opens_rgb(viewer):
    for key in ("coffee", "chelsea"):
        (layer,) = viewer.open_sample(PLUGIN, key)
        assert layer.rgb
        assert layer.data.dtype == np.uint8


def test_progress_moves_during_run(viewer, widget, qtbot, ladybug_path):
    viewer.open(ladybug_path, plugin=PLUGIN)
    widget.method.value = "exact"
    steps = []

    worker = widget()
    worker.yielded.connect(steps.append)
    wait_until_idle(qtbot, widget)

    assert len(steps) >= 3
    assert all(step.done <= step.total for step in steps)
    assert [step.done for step in steps] == sorted(step.done for step in steps)
    assert len({step.stage for step in steps}) >= 2


def test_wait_returns_results(viewer, widget):
    viewer.open_sample(PLUGIN, "chelsea")
    widget.n_clusters.value = 4

    assert widget() is not None
    results = widget.wait(timeout=120)

    assert not widget.is_running
    assert [result.n_clusters for result in results] == [4]
    assert "chelsea k=4 labels" in [layer.name for layer in viewer.layers]


def test_wait_after_cancel_is_empty(viewer, widget, ladybug_path):
    viewer.open(ladybug_path, plugin=PLUGIN)
    widget.method.value = "exact"
    widget.compare_k.value = "10, 9, 8"

    assert widget.compare() is not None
    widget.cancel()

    assert widget.wait(timeout=120) == []


@pytest.mark.parametrize("text", ["8,,2", "8, ,2", ",8", "8,"])
def test_compare_rejects_empty_entry(viewer, widget, text):
    viewer.open_sample(PLUGIN, "chelsea")
    start = len(notification_manager.records)
    widget.compare_k.value = text

    assert widget.compare() is None

    (message,) = messages_since(start, "error")
    assert "empty entry" in message
    assert repr(text) in message
