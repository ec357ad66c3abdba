"""Analysis controls of the dock widget: feature settings, mask, "Suggest k", palettes, cluster table.

``AnalysisPanel`` adds its fields to the ``ColorKMeansWidget`` (as attributes
of the widget, e.g. ``widget.color_space``), turns them into engine keyword
arguments for each run, and shows every finished single-k run in the
cluster table.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSpinBox, PushButton, SpinBox
from napari.layers import Image, Labels, Shapes
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import QFileDialog

from napari_color_kmeans._cluster_table import ClusterTable
from napari_color_kmeans._errors import ColorKMeansError
from napari_color_kmeans._features import COLOR_SPACES, check_mask
from napari_color_kmeans._multiscale import DEFAULT_MEMORY_BUDGET, choose_fit_level
from napari_color_kmeans._layers import (
    add_or_update_layer,
    labels_layer_kwargs,
    segmented_layer_kwargs,
)
from napari_color_kmeans._palette import apply_palette, load_palette, palette_from_result, save_palette
from napari_color_kmeans._suggest import DEFAULT_K_MAX, DEFAULT_SAMPLE_SIZE, iter_suggest_k
from napari_color_kmeans._suggest_plot import SuggestPlot

if TYPE_CHECKING:
    import napari

    from napari_color_kmeans._engine import SegmentationResult
    from napari_color_kmeans._widget import ColorKMeansWidget

logger = logging.getLogger(__name__)

MAX_SPATIAL_WEIGHT = 10.0
SUGGEST_DOCK_NAME = "Suggest k (elbow and silhouette)"
SUGGEST_PLOT_MIN_HEIGHT = 280


class AnalysisPanel:
    """Fields and actions that the dock widget gains for choosing k and inspecting clusters."""

    def __init__(self, widget: ColorKMeansWidget, viewer: napari.viewer.Viewer) -> None:
        self._widget = widget
        self._viewer = viewer
        self._suggest_worker = None
        self._suggest_progress = None
        self.palette = None
        self.plot: SuggestPlot | None = None
        self._add_feature_fields()
        self._add_action_fields()

        widget.native.destroyed.connect(self._on_widget_closed)
        self.cluster_table = ClusterTable(viewer, on_merged=self._on_merged)
        widget.cluster_table = self.cluster_table
        widget.native.layout().addWidget(self.cluster_table)

    def _add_feature_fields(self) -> None:
        widget = self._widget
        widget.color_space = ComboBox(
            label="colour space", choices=COLOR_SPACES, value="rgb",
            tooltip="rgb: RGB distances (default). lab: CIELAB, closer to perceived colour "
            "differences. hsv: hue as an angle (cosine and sine), saturation and value.",
        )
        widget.spatial_weight = FloatSpinBox(
            label="spatial weight", value=0.0, min=0.0, max=MAX_SPATIAL_WEIGHT, step=0.1,
            tooltip="Weight of the pixel's (row, column) position; 0 clusters on colour only. "
            "At 1, crossing the whole image counts as much as black to white. Above 0 the fit "
            "is per pixel (on a seeded sample of 200,000 pixels), so it is slower.",
        )
        widget.mask_layer = ComboBox(
            label="mask layer", choices=self._mask_layers, nullable=True,
            tooltip="Cluster only the pixels inside this labels or shapes layer; the others get "
            "label 0. Fully transparent pixels (alpha 0) are always left out.",
        )
        position = widget.index(widget.method) + 1
        for offset, field in enumerate((widget.color_space, widget.spatial_weight, widget.mask_layer)):
            widget.insert(position + offset, field)

    def _add_action_fields(self) -> None:
        widget = self._widget
        widget.suggest_k_max = SpinBox(
            label="suggest k up to", value=DEFAULT_K_MAX, min=3, max=30,
            tooltip="'Suggest k' fits k = 2 up to this value and plots inertia and silhouette.",
        )
        widget.suggest_button = PushButton(text="Suggest k")
        widget.save_palette_button = PushButton(text="Save palette...")
        widget.load_palette_button = PushButton(text="Load palette...")
        widget.apply_palette_button = PushButton(
            text="Apply palette",
            tooltip="Label the chosen image layer with the loaded palette's centres, without refitting.",
        )
        palette_row = Container(
            widgets=[widget.save_palette_button, widget.load_palette_button, widget.apply_palette_button],
            layout="horizontal", labels=False,
        )
        palette_row.margins = (0, 0, 0, 0)
        position = widget.index(widget.compare_button) + 1
        for offset, field in enumerate((widget.suggest_k_max, widget.suggest_button, palette_row)):
            widget.insert(position + offset, field)

        widget.suggest_button.changed.connect(self.suggest)
        widget.save_palette_button.changed.connect(self._ask_save_path)
        widget.load_palette_button.changed.connect(self._ask_load_path)
        widget.apply_palette_button.changed.connect(self.apply_loaded_palette)

    # -- engine options ----------------------------------------------------

    def _mask_layers(self, _widget=None) -> list[tuple[str, Labels | Shapes]]:
        return [
            (layer.name, layer) for layer in self._viewer.layers if isinstance(layer, (Labels, Shapes))
        ]

    def engine_options(self, layer: Image) -> dict | None:
        """Return the engine keyword arguments for ``layer``, or None after showing an error."""
        options = {
            "color_space": self._widget.color_space.value,
            "spatial_weight": float(self._widget.spatial_weight.value),
            "mask": None,
        }
        mask_layer = self._widget.mask_layer.value
        if mask_layer is None or mask_layer not in self._viewer.layers:
            return options
        try:
            options["mask"] = mask_from_layer(mask_layer, layer.data.shape[:-1])
        except ColorKMeansError as error:
            show_error(str(error))
            return None
        return options

    # -- results -----------------------------------------------------------

    def show_result(self, result: SegmentationResult, source: Image, labels_layer: Labels, segmented_layer) -> None:
        """Show ``result`` in the cluster table, bound to its output layers."""
        self.cluster_table.set_result(result, labels_layer, segmented_layer, source.contrast_limits)

    def _on_merged(self, result: SegmentationResult) -> None:
        self._widget._last_results = [result]
        self._widget.status.value = f"merged into {result.n_clusters} clusters, inertia {result.inertia:.4g}"

    # -- suggest k ---------------------------------------------------------

    @property
    def is_suggesting(self) -> bool:
        return self._suggest_worker is not None

    def suggest(self):
        """Fit k = 2..'suggest k up to' on the chosen layer in a worker; return the worker."""
        if self._suggest_worker is not None:
            show_info("'Suggest k' is already running; wait for it to finish.")
            return None
        layer = self._widget._chosen_layer()
        if layer is None:
            return None
        options = self.engine_options(layer)
        if options is None:
            return None

        image = in_memory_image(layer)
        if image is None:
            return None
        worker = create_worker(
            _sweep_or_error, image, self._widget.suggest_k_max.value,
            self._widget.random_state.value, options, _start_thread=False,
        )
        self._suggest_progress = progress(total=0, desc=f"Suggest k on '{layer.name}'")
        worker.yielded.connect(self._on_suggest_progress)
        worker.returned.connect(self._on_suggest_returned)
        worker.finished.connect(self._on_suggest_finished)
        self._suggest_worker = worker
        self._widget.suggest_button.enabled = False
        self._widget.cancel_button.enabled = True
        worker.start()
        return worker

    def _on_suggest_progress(self, step) -> None:
        bar = self._suggest_progress
        if bar is not None:
            bar.total = step.total
            bar.n = step.done
            bar.set_description(f"Suggest k: {step.stage}")

    def _on_suggest_returned(self, outcome) -> None:
        if self._widget._closed:
            logger.info("discarded a 'Suggest k' result: the widget was closed")
            return
        if isinstance(outcome, str):
            show_error(outcome)
            return
        for message in outcome.warnings:
            show_warning(message)
        if self.plot is None:
            self.plot = SuggestPlot(self._viewer, on_choose=self.run_with_k)
            # Below the canvas the plot gets the full width; the right dock area
            # is already filled by the tall segmentation widget.
            self.plot.setMinimumHeight(SUGGEST_PLOT_MIN_HEIGHT)
            self._viewer.window.add_dock_widget(self.plot, name=SUGGEST_DOCK_NAME, area="bottom")
        self.plot.show_sweep(outcome)

    def _on_suggest_finished(self) -> None:
        if self._suggest_progress is not None:
            self._suggest_progress.close()
        self._suggest_progress = None
        self._suggest_worker = None
        if not self._widget._closed:
            self._widget.suggest_button.enabled = True
            self._widget.cancel_button.enabled = self._widget.is_running

    def cancel_suggest(self) -> None:
        """Ask a running 'Suggest k' to stop at its next k."""
        if self._suggest_worker is not None:
            self._suggest_worker.quit()

    def _on_widget_closed(self, _object=None) -> None:
        """Stop 'Suggest k' and remove its plot when the dock widget is deleted."""
        self.cancel_suggest()
        if self.plot is None:
            return
        try:
            self._viewer.window.remove_dock_widget(self.plot)
        except (RuntimeError, LookupError, AttributeError) as error:
            # The viewer window may already be closing and its docks deleted.
            logger.info("could not remove the 'Suggest k' plot dock: %s", error)
        self.plot = None

    def run_with_k(self, n_clusters: int):
        """Set 'clusters (k)' to ``n_clusters`` and run the segmentation."""
        self._widget.n_clusters.value = n_clusters
        return self._widget.run()

    # -- palettes ----------------------------------------------------------

    def save_current_palette(self, path) -> None:
        """Save the palette of the result shown in the cluster table to ``path``."""
        result = self.cluster_table.result
        if result is None:
            show_error("No segmentation to save a palette from: press Run first.")
            return
        save_palette(palette_from_result(result, result.segmented.dtype), path)
        self._widget.status.value = f"saved a palette of {result.n_clusters} clusters"

    def load_palette_file(self, path) -> None:
        """Load a palette file for 'Apply palette'."""
        try:
            self.palette = load_palette(path)
        except ColorKMeansError as error:
            show_error(str(error))
            return
        self._widget.status.value = (
            f"loaded a palette of {self.palette.n_clusters} clusters ({self.palette.color_space})"
        )

    def apply_loaded_palette(self):
        """Label the chosen image layer with the loaded palette; return the result."""
        if self.palette is None:
            show_error("No palette loaded: press 'Load palette...' and choose a palette JSON file.")
            return None
        layer = self._widget._chosen_layer()
        if layer is None:
            return None
        options = self.engine_options(layer)
        if options is None:
            return None
        # NOTE: this runs on the main thread, because it only assigns pixels in
        # chunks without a fit, but it still blocks the viewer on very large images.
        image = in_memory_image(layer)
        if image is None:
            return None
        try:
            result = apply_palette(image, self.palette, mask=options["mask"])
        except ColorKMeansError as error:
            show_error(str(error))
            return None
        self._add_palette_layers(result, layer)
        return result

    def _add_palette_layers(self, result: SegmentationResult, layer: Image) -> None:
        segmented_kwargs = segmented_layer_kwargs(layer, result)
        segmented_kwargs["name"] = f"{layer.name} palette k={result.n_clusters}"
        labels_kwargs = labels_layer_kwargs(layer, result)
        labels_kwargs["name"] = f"{layer.name} palette k={result.n_clusters} labels"
        segmented = add_or_update_layer(self._viewer, result.segmented, segmented_kwargs, Image)
        labels = add_or_update_layer(self._viewer, result.labels, labels_kwargs, Labels)
        self.show_result(result, layer, labels, segmented)
        self._widget._last_results = [result]
        self._widget.status.value = f"applied the palette: inertia {result.inertia:.4g}"

    def _ask_save_path(self) -> None:
        path, _ = QFileDialog.getSaveFileName(None, "Save palette", "palette.json", "JSON (*.json)")
        if path:
            self.save_current_palette(path)

    def _ask_load_path(self) -> None:
        path, _ = QFileDialog.getOpenFileName(None, "Load palette", "", "JSON (*.json)")
        if path:
            self.load_palette_file(path)


def in_memory_image(layer: Image) -> np.ndarray | None:
    """Return the layer's pixels as one numpy array for the in-memory tools, or None.

    A multiscale layer gives its finest level within the fit's memory
    budget; a dask layer is loaded only when it fits that budget. Otherwise
    an error notification states what to do, and None is returned.
    """
    data = layer.data
    if layer.multiscale:
        levels = list(data)
        data = levels[choose_fit_level(levels, DEFAULT_MEMORY_BUDGET)]
    size = int(np.prod(data.shape)) * np.dtype(data.dtype).itemsize
    if size > DEFAULT_MEMORY_BUDGET:
        show_error(
            f"Layer '{layer.name}' holds {size / 2**30:.1f} GiB, more than the "
            f"{DEFAULT_MEMORY_BUDGET / 2**30:.0f} GiB that 'Suggest k' and 'Apply palette' load "
            "into memory. Run them on a smaller crop or a coarser level of the image."
        )
        return None
    return np.asarray(data)


def mask_from_layer(mask_layer: Labels | Shapes, spatial_shape: tuple[int, ...]) -> np.ndarray:
    """Return the bool mask of a labels layer (label != 0) or shapes layer (inside a shape).

    Shapes are rasterised in data coordinates onto the image's last two axes.
    """
    if isinstance(mask_layer, Shapes):
        labels = mask_layer.to_labels(labels_shape=tuple(spatial_shape[-2:]))
        mask = np.asarray(labels) != 0
    else:
        mask = np.asarray(mask_layer.data) != 0
    try:
        return check_mask(mask, tuple(spatial_shape))
    except ColorKMeansError:
        raise ColorKMeansError(
            f"mask layer '{mask_layer.name}' has shape {mask.shape}, but the image has spatial "
            f"shape {tuple(spatial_shape)}; choose a mask layer of the image's size."
        ) from None


def _sweep_or_error(image, k_max, random_state, options):
    """Run the k sweep, yielding progress; return the KSweep, or an error message string."""
    try:
        sweep = yield from iter_suggest_k(
            image, k_max, random_state=random_state, sample_size=DEFAULT_SAMPLE_SIZE, **options
        )
    except ColorKMeansError as error:
        return str(error)
    return sweep
