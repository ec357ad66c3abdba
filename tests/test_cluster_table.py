"""The cluster table in the dock widget: rows, sorting, CSV, masks, "show only selected", merges."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from qtpy.QtCore import Qt
from skimage.io import imread

from napari_color_kmeans._clusters import merge_clusters
from napari_color_kmeans._engine import segment_colors

PLUGIN = "napari-color-kmeans"
WIDGET = "K-means Color Segmentation"
WAIT_MS = 120_000
K = 5


@pytest.fixture(scope="module")
def ladybug_small(ladybug_path):
    return np.ascontiguousarray(imread(ladybug_path)[::3, ::3, :3])


@pytest.fixture
def segmented(make_napari_viewer, qtbot, ladybug_small):
    """Return (viewer, widget) after a k=5 Lab run on the small ladybug."""
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    viewer.add_image(ladybug_small, name="bug", rgb=True)
    widget.n_clusters.value = K
    widget.color_space.value = "lab"
    assert widget() is not None
    qtbot.waitUntil(lambda: not widget.is_running, timeout=WAIT_MS)
    return viewer, widget


def test_table_matches_counts(segmented):
    viewer, widget = segmented
    table = widget.cluster_table
    (result,) = widget.last_results
    labels = viewer.layers[f"bug k={K} labels"]

    assert table.row_labels() == list(range(1, K + 1))
    counts = table.column_values("pixel_count")
    assert counts == [int(count) for count in result.counts]
    assert sum(counts) == labels.data.size
    assert sum(table.column_values("fraction")) == pytest.approx(1.0, abs=1e-5)
    assert table.column_values("center_L") == pytest.approx(list(result.feature_centers[:, 0]), abs=1e-5)
    np.testing.assert_array_equal(labels.features["pixel_count"].to_numpy()[1:], result.counts)
    assert "center_a" in labels.features.columns


def test_table_swatch_and_hex(segmented):
    _, widget = segmented
    table = widget.cluster_table
    (result,) = widget.last_results
    hex_codes = table.column_values("hex")

    for row, center in enumerate(result.cluster_centers):
        red, green, blue = np.rint(center).astype(int)
        assert hex_codes[row] == f"#{red:02x}{green:02x}{blue:02x}"
        swatch = table.table.item(row, 1).background().color().name()
        assert swatch == hex_codes[row]


def test_table_sorts_numerically(segmented):
    _, widget = segmented
    table = widget.cluster_table

    table.table.sortItems(table._column_index("pixel_count"), Qt.SortOrder.AscendingOrder)

    counts = table.column_values("pixel_count")
    assert counts == sorted(counts)
    assert table.row_labels() == list(range(K, 0, -1))


def test_table_exports_csv(segmented, tmp_path):
    _, widget = segmented
    path = tmp_path / "clusters.csv"

    widget.cluster_table.export_csv(path)

    with path.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    (result,) = widget.last_results
    assert [int(row["label"]) for row in rows] == list(range(1, K + 1))
    assert [int(row["pixel_count"]) for row in rows] == list(result.counts)
    assert {"hex", "red", "green", "blue", "fraction", "center_L", "center_a", "center_b"} <= set(rows[0])


def test_mask_holds_exactly_selected(segmented):
    viewer, widget = segmented
    table = widget.cluster_table
    table.select_labels([2, 4])

    mask_layer = table.add_mask_layer()

    labels = viewer.layers[f"bug k={K} labels"].data
    assert mask_layer in viewer.layers
    assert set(np.unique(mask_layer.data)) == {0, 2, 4}
    np.testing.assert_array_equal(mask_layer.data != 0, np.isin(labels, [2, 4]))
    np.testing.assert_array_equal(mask_layer.data[mask_layer.data != 0], labels[mask_layer.data != 0])


def test_show_only_selected_hides_others(segmented):
    viewer, widget = segmented
    table = widget.cluster_table
    layer = viewer.layers[f"bug k={K} labels"]
    table.select_labels([3])

    table.show_only_selected.setChecked(True)

    assert layer.colormap.map(3)[3] == 1.0
    for label in (1, 2, 4, 5):
        assert layer.colormap.map(label)[3] == 0.0

    table.show_only_selected.setChecked(False)

    for label in range(1, K + 1):
        assert layer.colormap.map(label)[3] == 1.0


def test_merge_updates_all_outputs(segmented):
    viewer, widget = segmented
    table = widget.cluster_table
    (before,) = widget.last_results
    old_labels = viewer.layers[f"bug k={K} labels"].data.copy()
    table.select_labels([2, 5])

    merged = table.merge_selected()

    labels = viewer.layers[f"bug k={K} labels"]
    segmented_layer = viewer.layers[f"bug k={K}"]
    assert merged.n_clusters == K - 1
    assert set(np.unique(labels.data)) == set(range(1, K))
    assert np.all(labels.data[np.isin(old_labels, [2, 5])] == 2)
    assert np.count_nonzero(labels.data == 2) == before.counts[1] + before.counts[4]
    assert table.row_labels() == list(range(1, K))
    assert table.column_values("pixel_count") == [int(count) for count in merged.counts]
    np.testing.assert_array_equal(labels.features["pixel_count"].to_numpy()[1:], merged.counts)
    merged_colour = np.clip(np.rint(merged.cluster_centers[1]), 0, 255).astype(np.uint8)
    assert np.all(segmented_layer.data[labels.data == 2] == merged_colour)
    assert widget.last_results[0] is merged
    assert merged.inertia > before.inertia


def test_merge_keeps_means_exact():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, size=(30, 30, 3), dtype=np.uint8)
    result = segment_colors(image, 4)

    merged = merge_clusters(result, [1, 3])

    pixels = image.reshape(-1, 3).astype(np.float64)
    mean = pixels[np.isin(result.labels.reshape(-1), [1, 3])].mean(axis=0)
    np.testing.assert_allclose(merged.cluster_centers[0], mean, rtol=1e-3)
    assert merged.counts.sum() == result.counts.sum()
