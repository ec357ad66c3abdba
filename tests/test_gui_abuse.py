"""The dock widget under hostile use in a real napari viewer.

Each test starts a segmentation and then changes the viewer under it:
removes, renames or replaces the layer, closes the dock widget or the
viewer, presses Run repeatedly, changes k or the active layer. Results must
land on the layer they were computed from, or be discarded with a message,
and no exception may escape into the Qt event loop. The ``escaped`` fixture
installs ``sys.excepthook`` and ``threading.excepthook`` recorders for that,
and ``errors_since`` collects napari's error notifications that carry an
exception (a worker error relayed by napari).
"""

from __future__ import annotations

import gc
import importlib.util
import sys
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest
from conftest import PLUGIN, WIDGET
from napari.layers import Image, Labels
from napari.utils.notifications import ErrorNotification, notification_manager

from napari_color_kmeans._widget import ColorKMeansWidget

WAIT_MS = 180_000


@pytest.fixture
def escaped(monkeypatch) -> list[BaseException]:
    """Record every exception that reaches sys.excepthook or threading.excepthook."""
    caught: list[BaseException] = []
    monkeypatch.setattr(sys, "excepthook", lambda kind, value, trace: caught.append(value))
    monkeypatch.setattr(threading, "excepthook", lambda args: caught.append(args.exc_value))
    return caught


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def dock_and_widget(viewer):
    return viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)


@pytest.fixture
def widget(dock_and_widget) -> ColorKMeansWidget:
    return dock_and_widget[1]


@pytest.fixture
def ladybug(viewer, ladybug_path) -> Image:
    (layer,) = viewer.open(ladybug_path, plugin=PLUGIN)
    return layer


def records_since(start: int, severity: str | None = None) -> list[str]:
    return [
        str(record.message)
        for record in notification_manager.records[start:]
        if severity is None or str(record.severity).lower() == severity
    ]


def errors_since(start: int) -> list[ErrorNotification]:
    return [
        record
        for record in notification_manager.records[start:]
        if isinstance(record, ErrorNotification)
    ]


def wait_until_idle(qtbot, widget: ColorKMeansWidget) -> None:
    qtbot.waitUntil(lambda: not widget.is_running, timeout=WAIT_MS)


def wait_for_worker(qtbot, worker) -> None:
    """Wait until the worker's thread has emitted ``finished``."""
    qtbot.waitUntil(lambda: not worker.is_running, timeout=WAIT_MS)
    qtbot.wait(50)


def start_slow_run(widget: ColorKMeansWidget):
    """Start an "exact" run on ladybug.png, which takes long enough to interfere with."""
    widget.method.value = "exact"
    worker = widget.run()
    assert worker is not None
    return worker


def layer_names(viewer) -> list[str]:
    return [layer.name for layer in viewer.layers]


def assert_clean(escaped: list[BaseException], start: int) -> None:
    assert escaped == []
    assert errors_since(start) == []


def test_remove_layer_mid_run(viewer, widget, ladybug, qtbot, escaped):
    start = len(notification_manager.records)
    start_slow_run(widget)
    qtbot.wait(100)

    viewer.layers.remove(ladybug)
    wait_until_idle(qtbot, widget)

    assert layer_names(viewer) == []
    assert any("was removed" in message for message in records_since(start, "warning"))
    assert widget.status.value == "discarded"
    assert_clean(escaped, start)


def test_rename_layer_mid_run(viewer, widget, ladybug, qtbot, escaped):
    start = len(notification_manager.records)
    start_slow_run(widget)

    ladybug.name = "beetle"
    wait_until_idle(qtbot, widget)

    assert layer_names(viewer) == ["beetle", "beetle k=8", "beetle k=8 labels"]
    for name in ("beetle k=8", "beetle k=8 labels"):
        assert viewer.layers[name].metadata["source_layer"] == "beetle"
        assert viewer.layers[name].data.shape[:2] == ladybug.data.shape[:2]
    assert_clean(escaped, start)


def test_replace_layer_same_name(viewer, widget, ladybug, qtbot, escaped):
    start = len(notification_manager.records)
    start_slow_run(widget)

    viewer.layers.remove(ladybug)
    replacement = viewer.add_image(
        np.zeros((20, 30, 3), dtype=np.uint8), name="ladybug", rgb=True
    )
    wait_until_idle(qtbot, widget)

    assert layer_names(viewer) == ["ladybug"]
    assert viewer.layers["ladybug"] is replacement
    assert any("was removed" in message for message in records_since(start, "warning"))
    assert_clean(escaped, start)


def test_replace_layer_data_mid_run(viewer, widget, ladybug, qtbot, escaped):
    start = len(notification_manager.records)
    start_slow_run(widget)

    ladybug.data = ladybug.data[::2, ::2].copy()
    wait_until_idle(qtbot, widget)

    assert layer_names(viewer) == ["ladybug"]
    assert any("data of layer 'ladybug' changed" in m for m in records_since(start, "warning"))
    assert_clean(escaped, start)


def test_close_dock_widget_mid_run(viewer, dock_and_widget, ladybug, qtbot, escaped):
    dock, widget = dock_and_widget
    start = len(notification_manager.records)
    worker = start_slow_run(widget)
    qtbot.wait(100)

    viewer.window.remove_dock_widget(dock)
    wait_for_worker(qtbot, worker)

    names = layer_names(viewer)
    assert names in (["ladybug"], ["ladybug", "ladybug k=8", "ladybug k=8 labels"])
    if len(names) == 3:
        assert viewer.layers["ladybug k=8"].metadata["source_layer"] == "ladybug"
    assert not widget.is_running
    assert_clean(escaped, start)


def test_close_viewer_mid_run(make_napari_viewer, ladybug_path, qtbot, escaped):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    viewer.open(ladybug_path, plugin=PLUGIN)
    start = len(notification_manager.records)
    worker = start_slow_run(widget)
    qtbot.wait(100)

    viewer.close()
    wait_for_worker(qtbot, worker)

    assert not widget.is_running
    assert_clean(escaped, start)


def test_run_pressed_many_times(viewer, widget, ladybug, qtbot, escaped):
    widget.n_clusters.value = 4
    start = len(notification_manager.records)

    widget.run_button.native.click()
    running = widget.worker
    enabled_while_running = widget.run_button.native.isEnabled()
    for _ in range(24):
        widget.run_button.native.click()
    extra_worker = widget.worker
    wait_until_idle(qtbot, widget)
    for _ in range(5):
        widget.run_button.native.click()
        qtbot.wait(5)
    wait_until_idle(qtbot, widget)

    # The button is disabled during a run, so the extra clicks start nothing.
    assert running is not None
    assert not enabled_while_running
    assert extra_worker is running
    assert layer_names(viewer) == ["ladybug", "ladybug k=4", "ladybug k=4 labels"]
    assert widget.run_button.native.isEnabled()
    assert_clean(escaped, start)


def test_run_refused_while_running(viewer, widget, ladybug, qtbot, escaped):
    start = len(notification_manager.records)
    first = start_slow_run(widget)

    later = [widget.run() for _ in range(20)] + [widget.compare() for _ in range(5)]
    wait_until_idle(qtbot, widget)

    assert first is not None
    assert later == [None] * 25
    assert sum("already running" in m for m in records_since(start, "info")) == 25
    assert layer_names(viewer) == ["ladybug", "ladybug k=8", "ladybug k=8 labels"]
    assert widget.run_button.enabled
    assert_clean(escaped, start)


def test_change_k_mid_run(viewer, widget, ladybug, qtbot, escaped):
    widget.n_clusters.value = 5
    start = len(notification_manager.records)
    start_slow_run(widget)

    for value in (2, 9, 3):
        widget.n_clusters.value = value
        qtbot.wait(10)
    widget.method.value = "fast"
    widget.random_state.value = 7
    wait_until_idle(qtbot, widget)

    labels = viewer.layers["ladybug k=5 labels"]
    assert layer_names(viewer) == ["ladybug", "ladybug k=5", "ladybug k=5 labels"]
    assert labels.metadata["n_clusters"] == 5
    assert labels.metadata["random_state"] == 42
    assert int(labels.data.max()) == 5
    assert widget.n_clusters.value == 3
    assert_clean(escaped, start)


def test_switch_active_layer_mid_run(viewer, widget, ladybug, qtbot, escaped):
    other = viewer.add_image(
        np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8),
        name="other",
        rgb=True,
    )
    viewer.layers.selection.active = ladybug
    assert widget.image_layer.value is ladybug
    start = len(notification_manager.records)
    start_slow_run(widget)

    viewer.layers.selection.active = other
    widget.image_layer.value = other
    wait_until_idle(qtbot, widget)

    result_layers = [name for name in layer_names(viewer) if name not in ("ladybug", "other")]
    assert result_layers == ["ladybug k=8", "ladybug k=8 labels"]
    assert isinstance(viewer.layers["ladybug k=8 labels"], Labels)
    assert viewer.layers["ladybug k=8 labels"].data.shape == ladybug.data.shape[:2]
    assert_clean(escaped, start)


def test_cancel_then_run_at_once(viewer, widget, ladybug, qtbot, escaped):
    start = len(notification_manager.records)
    start_slow_run(widget)

    widget.cancel()
    refused = widget.run()
    wait_until_idle(qtbot, widget)
    widget.method.value = "fast"
    widget.n_clusters.value = 3
    second = widget.run()
    wait_until_idle(qtbot, widget)

    assert refused is None
    assert second is not None
    assert layer_names(viewer) == ["ladybug", "ladybug k=3", "ladybug k=3 labels"]
    assert any("cancelled" in message for message in records_since(start, "info"))
    assert_clean(escaped, start)


def test_remove_layer_mid_compare(viewer, widget, ladybug, qtbot, escaped):
    widget.method.value = "exact"
    widget.compare_k.value = "6, 4, 2"
    start = len(notification_manager.records)
    assert widget.compare() is not None
    qtbot.wait(100)

    viewer.layers.clear()
    wait_until_idle(qtbot, widget)

    assert layer_names(viewer) == []
    assert any("was removed" in message for message in records_since(start, "warning"))
    assert_clean(escaped, start)


def test_removed_layer_is_freed(viewer, widget, ladybug_path, qtbot, escaped):
    # Opened here, not by the ladybug fixture, whose cached value would keep it alive.
    (ladybug,) = viewer.open(ladybug_path, plugin=PLUGIN)
    start = len(notification_manager.records)
    widget.n_clusters.value = 3
    assert widget.run() is not None
    wait_until_idle(qtbot, widget)
    source = weakref.ref(ladybug)
    data = weakref.ref(ladybug.data.base if ladybug.data.base is not None else ladybug.data)

    viewer.layers.clear()
    del ladybug
    for _ in range(3):
        qtbot.wait(10)
        gc.collect()

    assert source() is None, "the widget or its finished worker still refers to the layer"
    assert data() is None
    assert_clean(escaped, start)


def load_soak_module():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "soak.py"
    spec = importlib.util.spec_from_file_location("benchmarks_soak", path)
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is built.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_short_soak_keeps_counts(viewer, widget, ladybug, qtbot, escaped):
    """Twenty runs: layer, thread and Qt object counts stay flat after run 5.

    RSS is left to benchmarks/soak.py, because other tests in the same
    process make it too noisy for a short run.
    """
    soak = load_soak_module()
    start = len(notification_manager.records)
    widget.method.value = "fast"
    baseline = None

    for run in range(1, 21):
        widget.n_clusters.value = (8, 6, 4)[run % 3]
        assert widget.run() is not None
        wait_until_idle(qtbot, widget)
        assert widget.last_results, f"run {run} added no results"
        if run == 5:
            baseline = soak.take_snapshot(run, viewer)
    final = soak.take_snapshot(20, viewer)

    assert final.layers == baseline.layers == 7
    problems = soak.growth_problems(baseline, final, rss_tolerance=float("inf"))
    assert problems == []
    assert_clean(escaped, start)


def test_close_viewer_mid_suggest(make_napari_viewer, ladybug_path, qtbot, escaped):
    viewer = make_napari_viewer()
    viewer.open(ladybug_path, plugin=PLUGIN)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    start = len(notification_manager.records)
    worker = widget.analysis.suggest()
    assert worker is not None

    viewer.close()
    wait_for_worker(qtbot, worker)

    assert_clean(escaped, start)


def test_cancel_stops_suggest(viewer, widget, ladybug, qtbot, escaped):
    start = len(notification_manager.records)
    worker = widget.analysis.suggest()
    assert widget.cancel_button.enabled

    widget.cancel()
    wait_for_worker(qtbot, worker)

    assert not widget.analysis.is_suggesting
    assert widget.analysis.plot is None
    assert not widget.cancel_button.enabled
    assert widget.suggest_button.enabled
    assert_clean(escaped, start)


def test_table_cleared_after_per_plane_run(viewer, widget, ladybug_path, qtbot, escaped):
    from napari_color_kmeans import read_png
    from napari_color_kmeans._scope import EACH_PLANE, WHOLE_STACK

    photo = read_png(ladybug_path)
    stack = np.stack([photo[:200, :300], photo[200:400, :300], photo[:200, 300:600]])
    viewer.add_image(stack, name="stack", rgb=True)
    widget.n_clusters.value = 5
    widget.scope.value = WHOLE_STACK
    widget()
    wait_until_idle(qtbot, widget)
    assert widget.cluster_table.table.rowCount() == 5
    start = len(notification_manager.records)

    widget.scope.value = EACH_PLANE
    widget()
    wait_until_idle(qtbot, widget)

    assert widget.cluster_table.table.rowCount() == 0
    assert widget.cluster_table.result is None
    assert not widget.cluster_table.merge_button.isEnabled()
    assert not widget.cluster_table.mask_button.isEnabled()
    assert_clean(escaped, start)


def test_apply_palette_keeps_source_chosen(viewer, widget, ladybug, qtbot, tmp_path, escaped):
    widget.n_clusters.value = 4
    widget()
    wait_until_idle(qtbot, widget)
    palette_path = tmp_path / "palette.json"
    widget.analysis.save_current_palette(palette_path)
    widget.analysis.load_palette_file(palette_path)

    first = widget.analysis.apply_loaded_palette()
    second = widget.analysis.apply_loaded_palette()

    assert first is not None
    assert second is not None
    assert widget.image_layer.value is ladybug
    assert "ladybug palette k=4 palette k=4" not in layer_names(viewer)
    np.testing.assert_array_equal(first.labels, second.labels)
