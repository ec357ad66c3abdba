"""The "Suggest k" action and its plot in a real viewer."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import PLUGIN, WAIT_MS, WIDGET
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from qtpy.QtCore import QPoint, Qt

from napari_color_kmeans._analysis_panel import SUGGEST_DOCK_NAME


@pytest.fixture
def suggested(make_napari_viewer, qtbot, ladybug_small):
    """Return (viewer, widget) after "Suggest k" up to k=6 on the small ladybug."""
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    viewer.add_image(ladybug_small, name="bug", rgb=True)
    widget.suggest_k_max.value = 6
    assert widget.analysis.suggest() is not None
    qtbot.waitUntil(lambda: not widget.analysis.is_suggesting, timeout=WAIT_MS)
    return viewer, widget


def test_plot_is_drawn(suggested):
    viewer, widget = suggested
    plot = widget.analysis.plot

    assert plot is not None
    assert SUGGEST_DOCK_NAME in viewer.window.dock_widgets
    assert isinstance(plot.canvas, FigureCanvasQTAgg)
    np.testing.assert_array_equal(plot.sweep.k_values, np.arange(2, 7))
    inertia_line = plot.inertia_axes.lines[0]
    np.testing.assert_allclose(inertia_line.get_ydata(), plot.sweep.inertia)
    legend_texts = [text.get_text() for text in plot.inertia_axes.get_legend().get_texts()]
    assert legend_texts == [f"elbow k={plot.sweep.elbow_k}"]
    legend_texts = [text.get_text() for text in plot.silhouette_axes.get_legend().get_texts()]
    assert legend_texts == [f"best silhouette k={plot.sweep.best_silhouette_k}"]
    assert plot.k_choice.value() == plot.sweep.elbow_k
    width, height = plot.canvas.get_width_height()
    image = np.asarray(plot.canvas.buffer_rgba())
    assert image.shape[:2] == (height, width)
    assert len(np.unique(image.reshape(-1, 4), axis=0)) > 10


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_plot_follows_theme(suggested, theme):
    from napari.utils.theme import get_theme

    viewer, widget = suggested
    plot = widget.analysis.plot

    viewer.theme = theme

    colours = get_theme(theme)
    face = np.array(plot.figure.get_facecolor()[:3])
    expected = np.array(colours.background.as_rgb_tuple()[:3]) / 255
    np.testing.assert_allclose(face, expected, atol=1 / 255)
    label_colour = plot.inertia_axes.yaxis.label.get_color()
    assert label_colour.lower() == colours.text.as_hex().lower()


def test_chosen_k_runs_segmentation(suggested, qtbot):
    viewer, widget = suggested
    plot = widget.analysis.plot

    plot.k_choice.setValue(3)
    plot.run_button.click()
    qtbot.waitUntil(lambda: not widget.is_running, timeout=WAIT_MS)

    assert widget.n_clusters.value == 3
    labels = viewer.layers["bug k=3 labels"]
    assert set(np.unique(labels.data)) == {1, 2, 3}


def test_click_on_plot_picks_nearest_k(suggested, qtbot):
    viewer, widget = suggested
    plot = widget.analysis.plot
    y_value = float(np.nanmean(plot.sweep.silhouette))
    x_pixels, y_pixels = plot.silhouette_axes.transData.transform((4.2, y_value))
    ratio = plot.canvas.device_pixel_ratio
    _, height = plot.canvas.get_width_height(physical=True)
    position = QPoint(int(x_pixels / ratio), int((height - y_pixels) / ratio))

    qtbot.mouseClick(plot.canvas, Qt.MouseButton.LeftButton, pos=position)
    qtbot.waitUntil(lambda: not widget.is_running, timeout=WAIT_MS)

    assert widget.n_clusters.value == 4
    assert "bug k=4 labels" in viewer.layers
