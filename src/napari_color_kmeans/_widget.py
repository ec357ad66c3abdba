"""The K-means Color Segmentation dock widget.

The widget only translates between napari layers and the engine. It reads the
chosen layer on the main thread and runs the engine in a napari thread worker
with a progress bar. When the worker returns, it adds or updates the output
layers on the main thread.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, Label, LineEdit, PushButton, SpinBox
from napari.layers import Image, Labels
from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils import progress
from qtpy.QtCore import QEventLoop
from qtpy.QtWidgets import QApplication
from napari.utils.notifications import show_error, show_info, show_warning

from napari_color_kmeans._analysis_panel import AnalysisPanel
from napari_color_kmeans._engine import (
    ColorKMeansError,
    ColorKMeansWarning,
    ProgressStep,
    SegmentationResult,
)
from napari_color_kmeans._axes import channel_first_message, find_channel_first_axis, move_color_axis_last
from napari_color_kmeans._layers import (
    add_or_update_layer,
    is_per_plane,
    labels_layer_kwargs,
    result_method,
    result_n_clusters,
    result_warnings,
    segmented_layer_kwargs,
)
from napari_color_kmeans._sweep import iter_segment_colors_many
from napari_color_kmeans._scope import SCOPES, WHOLE_STACK, Job, iter_job, make_job, place_plane

if TYPE_CHECKING:
    import napari

logger = logging.getLogger(__name__)

METHODS = ("auto", "exact", "fast")
DEFAULT_COMPARE_K = "10, 8, 6, 4, 2"
MAX_CLUSTERS = 255
MAX_SEED = 2**31 - 1


@dataclass
class RunOutcome:
    """Outcome of one worker run: its results, or the message of an input error."""

    results: list[SegmentationResult] = field(default_factory=list)
    error: str | None = None


def parse_k_list(text: str) -> list[int]:
    """Parse a comma- or space-separated list of cluster counts such as "10, 8, 6"."""
    example = "Enter whole numbers such as '10, 8, 6, 4, 2'."
    entries = text.split(",")
    if len(entries) > 1 and any(not entry.strip() for entry in entries):
        raise ColorKMeansError(f"The list of k values {text!r} has an empty entry. {example}")
    parts = [part for entry in entries for part in entry.split()]
    if not parts:
        raise ColorKMeansError(f"The list of k values {text!r} is empty. {example}")
    values = []
    for part in parts:
        try:
            value = int(part)
        except ValueError:
            raise ColorKMeansError(
                f"{part!r} in the list of k values is not a whole number. {example}"
            ) from None
        if not 1 <= value <= MAX_CLUSTERS:
            raise ColorKMeansError(
                f"k={value} in the list of k values is out of range. "
                f"Use whole numbers from 1 to {MAX_CLUSTERS}."
            )
        if value not in values:
            values.append(value)
    return values


def segment_many(job: Job, k_values: list[int], random_state: int, method: str, **options):
    """Run the engine for each k in turn, yielding progress; return a RunOutcome.

    ``options`` are more keyword arguments of ``iter_segment_colors``
    (color_space, spatial_weight, mask).
    Input errors come back as ``RunOutcome.error``, so the widget shows them
    as plain notifications. Any other exception is a bug, so it propagates to
    napari's error handling with its traceback.
    """
    outcome = RunOutcome()
    if len(k_values) > 1 and not (job.multiscale or job.per_plane):
        # One distinct-colour pass serves every k of a comparison.
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ColorKMeansWarning)
                steps = iter_segment_colors_many(
                    job.image, k_values, random_state=random_state, method=method, **options
                )
                outcome.results = yield from _relay_steps(steps, "", 1, 1)
        except ColorKMeansError as error:
            outcome.error = str(error)
        return outcome

    for position, n_clusters in enumerate(k_values, start=1):
        prefix = f"k={n_clusters} ({position} of {len(k_values)}): " if len(k_values) > 1 else ""
        try:
            with warnings.catch_warnings():
                # The widget shows result.warnings itself, as plain notifications.
                warnings.simplefilter("ignore", ColorKMeansWarning)
                steps = iter_job(
                    job, n_clusters, random_state=random_state, method=method, **options
                )
                result = yield from _relay_steps(steps, prefix, position, len(k_values))
        except ColorKMeansError as error:
            outcome.error = str(error)
            return outcome
        outcome.results.append(result)
    return outcome


def _relay_steps(steps, prefix: str, position: int, n_runs: int):
    while True:
        try:
            step = next(steps)
        except StopIteration as stop:
            return stop.value
        try:
            yield ProgressStep(
                stage=prefix + step.stage,
                done=(position - 1) * step.total + step.done,
                total=n_runs * step.total,
            )
        except GeneratorExit:
            steps.close()
            raise


def status_text(results: list[SegmentationResult]) -> str:
    """Summarise finished results for the status line, e.g. "k=8 (exact): inertia 1.2e+07"."""
    if len(results) == 1 and not is_per_plane(results[0]):
        (result,) = results
        return f"k={result.n_clusters} ({result.method}): inertia {result.inertia:.4g}"
    k_values = ", ".join(str(result_n_clusters(result)) for result in results)
    return f"k = {k_values} ({result_method(results[0])})"


def _placed_in_stack(result, job: Job):
    """Return ``result`` with its arrays in the whole stack's shape for a one-plane job."""
    if job.plane_index is None:
        return result
    return dataclasses.replace(
        result,
        labels=place_plane(result.labels, job, channels=None),
        segmented=place_plane(result.segmented, job, channels=result.segmented.shape[-1]),
    )


def _is_in_memory(result) -> bool:
    """Return whether ``result`` has one palette and numpy arrays, as the cluster table needs."""
    return not is_per_plane(result) and isinstance(result.labels, np.ndarray)


class ColorKMeansWidget(Container):
    """Dock widget that clusters the colours of an RGB image layer with K-means."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self._worker: GeneratorWorker | None = None
        self._progress: progress | None = None
        self._last_results: list[SegmentationResult] = []
        # True once Qt deleted this widget (closing the viewer does), so the
        # worker's late signals must not touch the deleted buttons and labels.
        self._closed = False
        # The worker's "returned" slot. napari keeps every finished worker in
        # the window's task list, so _on_finished disconnects this slot, which
        # refers to the source layer and its data, to let them be freed.
        self._deliver = None

        self.image_layer = ComboBox(
            label="image layer", choices=self._rgb_image_layers, nullable=True,
            tooltip="RGB(A) image layer whose pixel colours are clustered.",
        )
        self.n_clusters = SpinBox(
            label="clusters (k)", value=8, min=1, max=MAX_CLUSTERS,
            tooltip="Number of colours K-means finds (n_clusters).",
        )
        self.random_state = SpinBox(
            label="random seed", value=42, min=0, max=MAX_SEED,
            tooltip="Seed of the K-means initialisation; the same seed gives the same result.",
        )
        self.method = ComboBox(
            label="method", choices=METHODS, value="auto",
            tooltip="auto (default): a colour-histogram search refined by exact K-means "
            "iterations. exact: K-means on every distinct colour, weighted by pixel count. "
            "fast: the histogram search only.",
        )
        self.scope = ComboBox(
            label="stack scope", choices=SCOPES, value=WHOLE_STACK,
            tooltip="For stacks (time, z, ...): one palette for the whole stack, so a label "
            "is the same colour in every plane; a palette per 2-D plane; or only the plane shown.",
        )
        self.run_button = PushButton(text="Run")
        self.compare_k = LineEdit(
            label="compare k", value=DEFAULT_COMPARE_K,
            tooltip="Cluster counts to compare, separated by commas; one segmented layer per k.",
        )
        self.grid_view = CheckBox(
            text="show side by side (grid view)", value=True,
            tooltip="After a comparison, switch the viewer to grid view with the original first.",
        )
        self.compare_button = PushButton(text="Compare k's")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.make_rgb_button = PushButton(
            text="Make RGB layer from colour axis", enabled=False,
            tooltip="Add a copy-free RGB view of a (3 or 4, H, W) layer, with its colour axis last.",
        )
        self.status = Label(value="")
        # A long status must wrap instead of widening the dock and squeezing the canvas.
        self.status.native.setWordWrap(True)

        self.extend([
            self.image_layer, self.n_clusters, self.random_state, self.method, self.scope,
            self.run_button, self.compare_k, self.grid_view, self.compare_button,
            self.cancel_button, self.make_rgb_button, self.status,
        ])
        self.run_button.changed.connect(self.run)
        self.compare_button.changed.connect(self.compare)
        self.cancel_button.changed.connect(self.cancel)
        self.make_rgb_button.changed.connect(self.make_rgb_layer)
        viewer.layers.selection.events.active.connect(self._follow_active_layer)
        self.native.destroyed.connect(self._on_closed)
        # Adds colour space, spatial weight, mask layer, "Suggest k", palettes and the cluster table.
        self.analysis = AnalysisPanel(self, viewer)
        self.reset_choices()
        self._follow_active_layer()

    # -- public API used by the buttons and by scripts --------------------

    def __call__(self) -> GeneratorWorker | None:
        """Run the segmentation with the current values, as the Run button does."""
        return self.run()

    @property
    def is_running(self) -> bool:
        return self._worker is not None

    @property
    def worker(self) -> GeneratorWorker | None:
        """The worker of the run in progress, or None when idle."""
        return self._worker

    @property
    def last_results(self) -> list[SegmentationResult]:
        """Results of the last run that finished and added layers."""
        return list(self._last_results)

    def wait(self, timeout: float | None = None) -> list[SegmentationResult]:
        """Process Qt events until the current run ends; return its results.

        For scripts and notebooks: ``widget(); widget.wait()`` runs a
        segmentation to the end, output layers included. ``timeout`` is in
        seconds (None waits as long as it takes). Returns an empty list when
        the run was cancelled, failed or was discarded.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_running and (deadline is None or time.monotonic() < deadline):
            QApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
            time.sleep(0.01)
        if self.is_running:
            raise TimeoutError(
                f"the segmentation did not finish within {timeout} s; call wait() again "
                "to keep waiting, or cancel() to stop it."
            )
        return self.last_results

    def run(self) -> GeneratorWorker | None:
        """Segment the chosen layer with the current k; return the started worker."""
        return self._start([self.n_clusters.value], compare=False)

    def compare(self) -> GeneratorWorker | None:
        """Segment the chosen layer once per k in the compare list."""
        try:
            k_values = parse_k_list(self.compare_k.value)
        except ColorKMeansError as error:
            show_error(str(error))
            return None
        return self._start(k_values, compare=True)

    def cancel(self) -> None:
        """Ask the running worker to stop at its next progress step."""
        if self._worker is not None:
            self._worker.quit()
            self.status.value = "cancelling..."
        self.analysis.cancel_suggest()

    # -- layer choice ------------------------------------------------------

    def _rgb_image_layers(self, _widget=None) -> list[tuple[str, Image]]:
        return [
            (layer.name, layer)
            for layer in self._viewer.layers
            if isinstance(layer, Image) and layer.rgb
        ]

    def _follow_active_layer(self, _event=None) -> None:
        active = self._viewer.layers.selection.active
        if self.is_running or not (isinstance(active, Image) and active.rgb):
            return
        if "source_layer" in active.metadata:
            # Our own outputs become active when they are added; keep the source chosen.
            return
        if active in [layer for _, layer in self._rgb_image_layers()]:
            self.image_layer.value = active

    def _chosen_layer(self) -> Image | None:
        layer = self.image_layer.value
        if layer is not None and layer in self._viewer.layers:
            return layer
        active = self._viewer.layers.selection.active
        if active is None:
            show_error(
                "No RGB image layer to segment: open an RGB or RGBA image "
                "(File > Open) and choose it in 'image layer'."
            )
        elif isinstance(active, Labels):
            show_error(
                f"Layer '{active.name}' is a labels layer; K-means colour segmentation "
                "needs an RGB or RGBA image layer. Choose one in 'image layer'."
            )
        elif isinstance(active, Image) and find_channel_first_axis(active.data.shape) is not None:
            axis = find_channel_first_axis(active.data.shape)
            self.make_rgb_button.enabled = True
            show_error(
                f"Layer '{active.name}': {channel_first_message(active.data.shape, axis)} "
                "Or press 'Make RGB layer from colour axis' to add an RGB view of it."
            )
        else:
            show_error(
                f"Layer '{active.name}' is not an RGB or RGBA image "
                f"(data shape {tuple(active.data.shape)}); K-means colour segmentation "
                "clusters colours. Open a colour image and choose it in 'image layer'."
            )
        return None

    def make_rgb_layer(self) -> Image | None:
        """Add an RGB view of the active (3 or 4, H, W) layer with its colour axis moved last."""
        active = self._viewer.layers.selection.active
        axis = None
        if isinstance(active, Image) and not active.rgb:
            axis = find_channel_first_axis(active.data.shape)
        if axis is None:
            show_error(
                "Select an image layer whose colour axis comes first, such as (3, H, W), "
                "then press 'Make RGB layer from colour axis'."
            )
            return None
        kept_axes = [index for index in range(active.ndim) if index != axis]
        rgb_layer = Image(
            move_color_axis_last(active.data, axis),
            name=f"{active.name} (RGB)",
            rgb=True,
            scale=np.array(active.scale)[kept_axes],
            translate=np.array(active.translate)[kept_axes],
        )
        self._viewer.add_layer(rgb_layer)
        self.reset_choices()
        self.image_layer.value = rgb_layer
        self.make_rgb_button.enabled = False
        return rgb_layer

    def _current_step(self, layer: Image) -> tuple[int, ...]:
        """Return the layer's data index of the plane the viewer shows, one value per axis."""
        position = layer.world_to_data(self._viewer.dims.point)
        return tuple(int(round(value)) for value in position)

    # -- running -----------------------------------------------------------

    def _start(self, k_values: list[int], compare: bool) -> GeneratorWorker | None:
        if self._worker is not None:
            show_info(
                "A segmentation is already running; wait for it to finish or press Cancel."
            )
            return None
        layer = self._chosen_layer()
        if layer is None:
            return None
        options = self.analysis.engine_options(layer)
        if options is None:
            return None
        data_at_start = layer.data
        try:
            job = make_job(
                data_at_start, multiscale=layer.multiscale, scope=self.scope.value,
                current_step=self._current_step(layer),
            )
        except ColorKMeansError as error:
            show_error(str(error))
            return None

        worker = create_worker(
            segment_many, job, k_values, self.random_state.value, self.method.value,
            **options, _start_thread=False,
        )
        def deliver(outcome: RunOutcome) -> None:
            self._on_returned(outcome, layer, data_at_start, job, compare)

        worker.yielded.connect(self._on_progress)
        worker.returned.connect(deliver)
        self._deliver = deliver
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._last_results = []
        self._progress = progress(total=0, desc=f"K-means on '{layer.name}'")
        self._set_running(True)
        self.status.value = f"running on '{layer.name}'..."
        worker.start()
        return worker

    def _set_running(self, running: bool) -> None:
        self.run_button.enabled = not running
        self.compare_button.enabled = not running
        self.cancel_button.enabled = running

    def _on_progress(self, step: ProgressStep) -> None:
        # Keep a local reference: updating the bar can process queued events,
        # including the worker's "finished", which closes the bar.
        bar = self._progress
        if bar is None:
            return
        bar.total = step.total
        bar.n = step.done
        bar.set_description(step.stage)

    def _on_closed(self, _object=None) -> None:
        self._closed = True
        if self._worker is not None:
            self._worker.quit()

    def _on_aborted(self) -> None:
        if self._closed:
            return
        self.status.value = "cancelled"
        show_info("Segmentation cancelled; no layers were added.")

    def _on_finished(self) -> None:
        if self._progress is not None:
            self._progress.close()
        self._progress = None
        if self._worker is not None and self._deliver is not None:
            self._worker.returned.disconnect(self._deliver)
        self._deliver = None
        self._worker = None
        if not self._closed:
            self._set_running(False)

    def _on_returned(
        self, outcome: RunOutcome, layer: Image, data_at_start, job: Job, compare: bool
    ) -> None:
        if self._closed:
            logger.info("discarded the K-means results of '%s': the widget was closed", layer.name)
            return
        if outcome.error is not None:
            self.status.value = "failed: see the notification"
            show_error(outcome.error)
            return
        if layer not in self._viewer.layers:
            self.status.value = "discarded"
            show_warning(
                f"Layer '{layer.name}' was removed while K-means ran; the results were discarded."
            )
            return
        if layer.data is not data_at_start:
            self.status.value = "discarded"
            show_warning(
                f"The data of layer '{layer.name}' changed while K-means ran; the results "
                "were discarded. Press Run again to segment the new data."
            )
            return
        results = [_placed_in_stack(result, job) for result in outcome.results]
        self._add_results(results, layer, compare)

    def _add_results(self, results: list[SegmentationResult], layer: Image, compare: bool) -> None:
        if compare or not all(_is_in_memory(result) for result in results):
            # The table shows one in-memory result; keep it from acting on older layers.
            self.analysis.cluster_table.clear()
        for result in results:
            for message in result_warnings(result):
                show_warning(message)
            segmented_layer = add_or_update_layer(
                self._viewer, result.segmented, segmented_layer_kwargs(layer, result), Image
            )
            if not compare:
                labels_layer = add_or_update_layer(
                    self._viewer, result.labels, labels_layer_kwargs(layer, result), Labels
                )
                if _is_in_memory(result):
                    self.analysis.show_result(result, layer, labels_layer, segmented_layer)
        self._last_results = list(results)
        if compare and self.grid_view.value:
            self._show_side_by_side(layer, results)
        self.status.value = status_text(results)

    def _show_side_by_side(self, layer: Image, results: list[SegmentationResult]) -> None:
        """Show the original and each compared k in grid view, hiding other layers."""
        shown = {layer.name} | {
            segmented_layer_kwargs(layer, result)["name"] for result in results
        }
        for other in self._viewer.layers:
            other.visible = other.name in shown
        grid = self._viewer.canvas.grid
        grid.stride = 1
        grid.enabled = True
        self._viewer.reset_view()
