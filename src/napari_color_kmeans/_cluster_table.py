"""Sortable cluster table for the dock widget: masks, "show only selected", merges, CSV.

The table shows one row per cluster of the last segmentation. "Mask from
selection" adds a labels layer that contains only the selected clusters.
"Show only selected" hides the other clusters on the labels layer. "Merge
selected" merges the selected clusters into one label and updates the labels
layer, the segmented image layer and the table.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Labels
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_color_kmeans._clusters import cluster_table, merge_clusters, selection_mask, write_csv
from napari_color_kmeans._layers import (
    centers_as_rgba,
    cluster_features,
    label_colormap,
    transform_kwargs,
)

if TYPE_CHECKING:
    import napari

    from napari_color_kmeans._engine import SegmentationResult

logger = logging.getLogger(__name__)

SWATCH_COLUMN = 1
HIDDEN = np.zeros(4)


class ClusterTable(QWidget):
    """Table of the clusters of one segmentation, bound to its labels and segmented layers."""

    def __init__(self, viewer: napari.viewer.Viewer, on_merged=None, parent=None) -> None:
        super().__init__(parent)
        self._viewer = viewer
        self._on_merged = on_merged
        self.result: SegmentationResult | None = None
        self.labels_layer: Labels | None = None
        self.segmented_layer = None
        self._contrast_limits = (0.0, 255.0)

        self.table = QTableWidget(0, 0, self)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSortingEnabled(True)
        self.table.setMinimumHeight(160)

        self.export_button = QPushButton("Export CSV...")
        self.mask_button = QPushButton("Mask from selection")
        self.merge_button = QPushButton("Merge selected")
        self.show_only_selected = QCheckBox("Show only selected")
        self.export_button.setToolTip("Save the cluster table as a CSV file.")
        self.mask_button.setToolTip("Add a labels layer that holds only the selected clusters.")
        self.merge_button.setToolTip("Merge two or more selected clusters into one label.")
        self.show_only_selected.setToolTip("Hide the unselected clusters on the labels layer.")

        buttons = QHBoxLayout()
        for button in (self.export_button, self.mask_button, self.merge_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        layout.addWidget(self.show_only_selected)

        self.export_button.clicked.connect(self._ask_csv_path)
        self.mask_button.clicked.connect(self.add_mask_layer)
        self.merge_button.clicked.connect(self.merge_selected)
        self.show_only_selected.toggled.connect(lambda _checked: self._update_visibility())
        self.table.itemSelectionChanged.connect(self._update_visibility)
        self._set_enabled(False)

    # -- binding -------------------------------------------------------

    def set_result(self, result: SegmentationResult, labels_layer: Labels, segmented_layer, contrast_limits) -> None:
        """Show ``result`` and bind the table to its output layers."""
        self.result = result
        self.labels_layer = labels_layer
        self.segmented_layer = segmented_layer
        self._contrast_limits = tuple(float(value) for value in contrast_limits)
        self.show_only_selected.setChecked(False)
        self._refresh()

    def clear(self) -> None:
        """Unbind the table from any result, empty it and disable its actions.

        Called when a run's result cannot be shown here (per-plane, dask or
        comparison runs), so no action can touch layers of an older result.
        """
        self.result = None
        self.labels_layer = None
        self.segmented_layer = None
        self.show_only_selected.setChecked(False)
        self.table.setRowCount(0)
        self._set_enabled(False)

    def _refresh(self) -> None:
        """Refill the rows and the labels layer's colormap and features from ``self.result``."""
        self._fill_rows()
        rgba = self._rgba()
        self.labels_layer.colormap = label_colormap(rgba)
        self.labels_layer.features = layer_features(self.result, rgba)
        self._set_enabled(True)

    def _rgba(self) -> np.ndarray:
        return centers_as_rgba(self.result.cluster_centers, self._contrast_limits)

    def _set_enabled(self, enabled: bool) -> None:
        for widget in (self.export_button, self.mask_button, self.merge_button, self.show_only_selected):
            widget.setEnabled(enabled)

    # -- rows ----------------------------------------------------------

    def _fill_rows(self) -> None:
        columns = cluster_table(self.result)
        names = list(columns)
        headers = ["label", "swatch", *names[1:]]
        self.table.setSortingEnabled(False)
        self.table.clearContents()
        self.table.setColumnCount(len(headers))
        self.table.setHorizontalHeaderLabels(headers)
        self.table.setRowCount(self.result.n_clusters)

        for row in range(self.result.n_clusters):
            self.table.setItem(row, 0, _number_item(int(columns["label"][row])))
            swatch = QTableWidgetItem("")
            swatch.setBackground(QColor(str(columns["hex"][row])))
            swatch.setData(Qt.ItemDataRole.UserRole, str(columns["hex"][row]))
            self.table.setItem(row, SWATCH_COLUMN, swatch)
            for offset, name in enumerate(names[1:], start=2):
                self.table.setItem(row, offset, _cell(columns[name][row]))
        self.table.setSortingEnabled(True)
        self.table.resizeColumnsToContents()

    def row_labels(self) -> list[int]:
        """Return the label of every row, in the table's current (sorted) order."""
        return [int(self.table.item(row, 0).data(Qt.ItemDataRole.DisplayRole)) for row in range(self.table.rowCount())]

    def column_values(self, header: str) -> list:
        """Return the values of the column named ``header``, in row order."""
        column = self._column_index(header)
        return [self.table.item(row, column).data(Qt.ItemDataRole.DisplayRole) for row in range(self.table.rowCount())]

    def _column_index(self, header: str) -> int:
        for column in range(self.table.columnCount()):
            if self.table.horizontalHeaderItem(column).text() == header:
                return column
        raise KeyError(f"no column named {header!r} in the cluster table")

    def selected_labels(self) -> list[int]:
        """Return the labels of the selected rows, ascending."""
        rows = {index.row() for index in self.table.selectionModel().selectedRows()}
        return sorted(int(self.table.item(row, 0).data(Qt.ItemDataRole.DisplayRole)) for row in rows)

    def select_labels(self, labels) -> None:
        """Select the rows of ``labels`` (as a user's clicks would)."""
        wanted = {int(label) for label in labels}
        self.table.clearSelection()
        mode = self.table.selectionMode()
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.MultiSelection)
        for row, label in enumerate(self.row_labels()):
            if label in wanted:
                self.table.selectRow(row)
        self.table.setSelectionMode(mode)

    # -- actions -------------------------------------------------------

    def export_csv(self, path) -> None:
        """Write the cluster table to ``path`` as CSV."""
        write_csv(cluster_table(self.result), path)
        logger.info("wrote the cluster table to %s", path)

    def _ask_csv_path(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export cluster table", "clusters.csv", "CSV (*.csv)")
        if path:
            self.export_csv(path)

    def add_mask_layer(self) -> Labels | None:
        """Add a labels layer that holds only the selected clusters; return it."""
        selected = self.selected_labels()
        if not selected or self.labels_layer is None:
            return None
        data = selection_mask(np.asarray(self.labels_layer.data), selected)
        name = f"{self.labels_layer.name} selected {', '.join(map(str, selected))}"
        mask_layer = Labels(
            data,
            name=name,
            colormap=label_colormap(self._rgba()),
            **transform_kwargs(self.labels_layer),
        )
        self._viewer.add_layer(mask_layer)
        return mask_layer

    def merge_selected(self) -> SegmentationResult | None:
        """Merge the selected clusters into one label and update every output."""
        selected = self.selected_labels()
        if len(selected) < 2 or self.result is None:
            return None
        self.result = merge_clusters(self.result, selected)
        self.labels_layer.data = self.result.labels
        if self.segmented_layer is not None:
            self.segmented_layer.data = self.result.segmented
        self._refresh()
        if self._on_merged is not None:
            self._on_merged(self.result)
        return self.result

    def _update_visibility(self) -> None:
        if self.result is None or self.labels_layer is None:
            return
        rgba = self._rgba()
        if self.show_only_selected.isChecked():
            selected = set(self.selected_labels())
            rgba = np.array([color if label in selected else HIDDEN for label, color in enumerate(rgba, start=1)])
        self.labels_layer.colormap = label_colormap(rgba)


def layer_features(result: SegmentationResult, rgba: np.ndarray) -> dict[str, np.ndarray]:
    """Return the labels layer's features: the widget's columns plus the centre in the clustering space."""
    features = cluster_features(result, rgba)
    feature_centers = result.feature_centers if result.feature_centers is not None else result.cluster_centers
    for name, column in zip(result.feature_names, np.asarray(feature_centers).T):
        features[f"center_{name}"] = np.concatenate([[np.nan], column])
    return features


def _number_item(value) -> QTableWidgetItem:
    item = QTableWidgetItem()
    item.setData(Qt.ItemDataRole.DisplayRole, value)
    return item


def _cell(value) -> QTableWidgetItem:
    """Return a table item that sorts numbers by value."""
    if isinstance(value, (np.integer, int)):
        return _number_item(int(value))
    if isinstance(value, (np.floating, float)):
        return _number_item(round(float(value), 6))
    return QTableWidgetItem(str(value))
