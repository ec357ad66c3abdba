"""Elbow and silhouette plot of a k sweep, drawn with matplotlib in a Qt dock widget.

The top axes show inertia against k with the elbow marked, the bottom axes
the silhouette score with the best k marked. Clicking near a k in the plot,
or choosing it in the spin box and pressing "Run with this k", calls
``on_choose(k)``, which the dock widget uses to run the segmentation. Figure
colours follow napari's current theme, so the plot is readable in the light
and the dark theme.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.utils.theme import get_theme
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget

if TYPE_CHECKING:
    import napari

    from napari_color_kmeans._suggest import KSweep

logger = logging.getLogger(__name__)

ELBOW_COLOR = "#e4572e"
SILHOUETTE_COLOR = "#29a3d9"
LINE_COLOR = "#8c8c8c"


class SuggestPlot(QWidget):
    """Dock widget with the k sweep plot and a k chooser."""

    def __init__(self, viewer: napari.viewer.Viewer, on_choose, parent=None) -> None:
        super().__init__(parent)
        self._viewer = viewer
        self._on_choose = on_choose
        self.sweep: KSweep | None = None

        self.figure = Figure(figsize=(4, 4), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.inertia_axes, self.silhouette_axes = self.figure.subplots(2, 1, sharex=True)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.k_choice = QSpinBox()
        self.k_choice.setPrefix("k = ")
        self.run_button = QPushButton("Run with this k")
        self.run_button.setToolTip("Segment the image with the chosen k; clicking the plot picks k too.")

        chooser = QHBoxLayout()
        chooser.addWidget(self.k_choice)
        chooser.addWidget(self.run_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.canvas)
        layout.addWidget(self.summary)
        layout.addLayout(chooser)

        self.run_button.clicked.connect(lambda: self.choose(self.k_choice.value()))
        self.canvas.mpl_connect("button_press_event", self._on_click)
        viewer.events.theme.connect(self._on_theme)

    def show_sweep(self, sweep: KSweep) -> None:
        """Draw ``sweep`` and preselect its elbow k."""
        self.sweep = sweep
        self.k_choice.setRange(int(sweep.k_values[0]), int(sweep.k_values[-1]))
        self.k_choice.setValue(sweep.elbow_k)
        self.summary.setText(
            f"Elbow at k={sweep.elbow_k}; best silhouette at k={sweep.best_silhouette_k} "
            f"(silhouette on {sweep.sample_size} pixels, seed {sweep.random_state}, "
            f"{sweep.color_space.upper()} space)."
        )
        self.draw()

    def choose(self, n_clusters: int) -> None:
        """Run the segmentation with ``n_clusters`` through ``on_choose``."""
        self.k_choice.setValue(int(n_clusters))
        self._on_choose(int(n_clusters))

    def draw(self) -> None:
        """Redraw both axes in the colours of the viewer's theme."""
        if self.sweep is None:
            return
        sweep = self.sweep
        theme = get_theme(self._viewer.theme)
        text = theme.text.as_hex()
        background = theme.background.as_hex()
        self.figure.set_facecolor(background)

        for axes in (self.inertia_axes, self.silhouette_axes):
            axes.clear()
            axes.set_facecolor(background)
            axes.tick_params(colors=text)
            for spine in axes.spines.values():
                spine.set_color(text)
            axes.grid(True, color=LINE_COLOR, alpha=0.3)

        self._draw_curve(self.inertia_axes, sweep.inertia, sweep.elbow_k, ELBOW_COLOR, f"elbow k={sweep.elbow_k}")
        self._draw_curve(
            self.silhouette_axes, sweep.silhouette, sweep.best_silhouette_k, SILHOUETTE_COLOR,
            f"best silhouette k={sweep.best_silhouette_k}",
        )
        self.inertia_axes.set_ylabel("inertia", color=text)
        self.silhouette_axes.set_ylabel("silhouette score", color=text)
        self.silhouette_axes.set_xlabel("k (number of clusters)", color=text)
        self.silhouette_axes.set_xticks(sweep.k_values)
        for axes in (self.inertia_axes, self.silhouette_axes):
            legend = axes.legend(loc="best", facecolor=background, edgecolor=text, labelcolor=text)
            legend.get_frame().set_alpha(0.8)
        self.canvas.draw()

    def _draw_curve(self, axes, values, marked_k: int, color: str, label: str) -> None:
        sweep = self.sweep
        axes.plot(sweep.k_values, values, "o-", color=LINE_COLOR, markersize=4)
        index = int(np.flatnonzero(sweep.k_values == marked_k)[0])
        axes.axvline(marked_k, color=color, linestyle="--", linewidth=1)
        axes.plot([marked_k], [values[index]], "o", color=color, markersize=10, label=label)

    def _on_click(self, event) -> None:
        if self.sweep is None or event.xdata is None:
            return
        nearest = int(self.sweep.k_values[np.argmin(np.abs(self.sweep.k_values - event.xdata))])
        logger.debug("plot click at k=%.2f picks k=%d", event.xdata, nearest)
        self.choose(nearest)

    def _on_theme(self, _event=None) -> None:
        self.draw()
