"""Saving, loading and applying palettes, in the engine and through the dock widget."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import PLUGIN, WAIT_MS, WIDGET

from napari_color_kmeans._engine import ColorKMeansError, segment_colors
from napari_color_kmeans._palette import apply_palette, load_palette, palette_from_result, save_palette
from napari_color_kmeans._widget import ColorKMeansWidget


@pytest.mark.parametrize("color_space", ["rgb", "lab", "hsv"])
def test_saved_palette_reproduces_labels(tmp_path, ladybug_small, color_space):
    result = segment_colors(ladybug_small, 5, color_space=color_space)
    path = save_palette(palette_from_result(result, ladybug_small.dtype), tmp_path / "palette.json")

    applied = apply_palette(ladybug_small, load_palette(path))

    np.testing.assert_array_equal(applied.labels, result.labels)
    np.testing.assert_array_equal(applied.counts, result.counts)
    np.testing.assert_array_equal(applied.segmented, result.segmented)
    assert applied.inertia == pytest.approx(result.inertia)


def test_palette_json_fields(tmp_path, ladybug_small):
    result = segment_colors(ladybug_small, 3, color_space="lab", random_state=7)
    path = save_palette(palette_from_result(result, ladybug_small.dtype), tmp_path / "p.json")

    document = json.loads(path.read_text())

    assert document["n_clusters"] == 3
    assert document["color_space"] == "lab"
    assert document["random_state"] == 7
    assert document["spatial_weight"] == 0.0
    assert document["feature_names"] == ["L", "a", "b"]
    np.testing.assert_allclose(document["cluster_centers"], result.cluster_centers)


def test_palette_applies_across_dtypes(tmp_path, ladybug_small):
    result = segment_colors(ladybug_small, 4, color_space="hsv")
    palette = load_palette(save_palette(palette_from_result(result, np.uint8), tmp_path / "p.json"))

    as_float = apply_palette(ladybug_small.astype(np.float32) / 255, palette)
    as_uint16 = apply_palette(ladybug_small.astype(np.uint16) * 257, palette)

    np.testing.assert_array_equal(as_float.labels, result.labels)
    np.testing.assert_array_equal(as_uint16.labels, result.labels)
    np.testing.assert_allclose(as_float.cluster_centers, result.cluster_centers / 255)


def test_palette_keeps_label_meaning_on_other_image(ladybug_small):
    result = segment_colors(ladybug_small, 4)
    palette = palette_from_result(result, np.uint8)
    centers = np.rint(result.cluster_centers).astype(np.uint8)
    swatches = np.repeat(centers[::-1][None, :, :], 5, axis=0)

    applied = apply_palette(swatches, palette)

    np.testing.assert_array_equal(applied.labels[0], [4, 3, 2, 1])


def test_spatial_palette_reproduces_labels(ladybug_small):
    result = segment_colors(ladybug_small, 3, spatial_weight=0.5)
    applied = apply_palette(ladybug_small, palette_from_result(result, np.uint8))

    np.testing.assert_array_equal(applied.labels, result.labels)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("not json", "cannot read"),
        ('{"format": "other"}', "not a palette file"),
        ('{"format": "napari-color-kmeans palette", "version": 99}', "version 99"),
        ('{"format": "napari-color-kmeans palette", "version": 1}', "missing or invalid"),
    ],
)
def test_invalid_palette_files(tmp_path, content, fragment):
    path = tmp_path / "bad.json"
    path.write_text(content)

    with pytest.raises(ColorKMeansError, match=fragment):
        load_palette(path)


def test_inconsistent_palette_rejected(tmp_path, ladybug_small):
    result = segment_colors(ladybug_small, 3)
    path = save_palette(palette_from_result(result, np.uint8), tmp_path / "p.json")
    document = json.loads(path.read_text())
    document["feature_centers"] = document["feature_centers"][:2]
    path.write_text(json.dumps(document))

    with pytest.raises(ColorKMeansError, match="inconsistent"):
        load_palette(path)


def test_widget_palette_round_trip(make_napari_viewer, qtbot, tmp_path, ladybug_small):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    assert isinstance(widget, ColorKMeansWidget)
    viewer.add_image(ladybug_small, name="bug", rgb=True)
    widget.n_clusters.value = 5
    widget.color_space.value = "lab"
    assert widget() is not None
    qtbot.waitUntil(lambda: not widget.is_running, timeout=WAIT_MS)
    fitted = viewer.layers["bug k=5 labels"].data.copy()

    widget.analysis.save_current_palette(tmp_path / "bug.json")
    widget.analysis.load_palette_file(tmp_path / "bug.json")
    second = viewer.add_image(ladybug_small.copy(), name="frame 2", rgb=True)
    widget.image_layer.value = second
    result = widget.analysis.apply_loaded_palette()

    assert result is not None
    applied = viewer.layers["frame 2 palette k=5 labels"]
    np.testing.assert_array_equal(applied.data, fitted)
    np.testing.assert_array_equal(viewer.layers["frame 2 palette k=5"].data, viewer.layers["bug k=5"].data)
    assert widget.cluster_table.result is result
