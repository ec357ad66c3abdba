"""Colour spaces, spatial weight and masks, in the engine and through the dock widget."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import WAIT_MS
from napari.utils.notifications import notification_manager
from skimage.color import hsv2rgb

from napari_color_kmeans._engine import ColorKMeansError, segment_colors
from napari_color_kmeans._features import make_feature_space
from napari_color_kmeans._fit import nearest_centers


def run_and_wait(qtbot, widget):
    worker = widget()
    assert worker is not None
    qtbot.waitUntil(lambda: not widget.is_running, timeout=WAIT_MS)


def assert_nearest_in_feature_space(image, result):
    """Every labelled pixel's feature row is nearest to its own feature centre."""
    space = make_feature_space(result.color_space, result.spatial_weight, image.dtype, image.shape[:-1])
    labelled = result.labels.reshape(-1) > 0
    rgb = image.reshape(-1, image.shape[-1])[labelled, :3]
    features = space.colors_to_features(rgb)
    if space.is_spatial:
        rows, columns = np.divmod(np.flatnonzero(labelled), image.shape[1])
        features = np.hstack([features, space.position_features(rows, columns)])
    nearest, _ = nearest_centers(features, result.feature_centers)
    np.testing.assert_array_equal(nearest + 1, result.labels.reshape(-1)[labelled])


@pytest.mark.parametrize("color_space", ["lab", "hsv"])
def test_color_space_labels_and_rgb_centers(ladybug_small, color_space):
    result = segment_colors(ladybug_small, 5, color_space=color_space)

    assert result.color_space == color_space
    assert set(np.unique(result.labels)) == set(range(1, 6))
    assert result.cluster_centers.shape == (5, 3)
    assert result.cluster_centers.min() >= 0
    assert result.cluster_centers.max() <= 255
    assert result.feature_centers.shape == (5, 3 if color_space == "lab" else 4)
    assert result.counts.sum() == result.labels.size
    assert_nearest_in_feature_space(ladybug_small, result)


def test_rgb_centers_are_cluster_mean_colours(ladybug_small):
    result = segment_colors(ladybug_small, 4, color_space="lab")
    rgb = ladybug_small.reshape(-1, 3).astype(np.float64)
    labels = result.labels.reshape(-1)

    for label in range(1, 5):
        mean = rgb[labels == label].mean(axis=0)
        np.testing.assert_allclose(result.cluster_centers[label - 1], mean, atol=1e-6)


def hue_image(hues, size=20):
    """Return a uint8 image of vertical stripes with the given hues at s=0.9, v=0.8."""
    stripes = np.repeat(np.asarray(hues, dtype=np.float64), size)
    hsv = np.stack([np.tile(stripes, (size, 1)), np.full((size, len(stripes)), 0.9), np.full((size, len(stripes)), 0.8)], axis=-1)
    return np.rint(hsv2rgb(hsv) * 255).astype(np.uint8)


def test_hsv_hue_wraps_around():
    image = hue_image([0.99, 0.01, 0.5, 0.52])
    result = segment_colors(image, 2, color_space="hsv")

    columns = result.labels[0]
    red_99, red_01, cyan_50, cyan_52 = (columns[20 * i] for i in range(4))
    assert red_99 == red_01
    assert cyan_50 == cyan_52
    assert red_99 != cyan_50


def test_spatial_weight_groups_by_position():
    rng = np.random.default_rng(7)
    image = np.zeros((40, 80, 3), dtype=np.uint8)
    image[:, :, 0] = np.where(rng.random((40, 80)) < 0.5, 200, 210)
    colour_only = segment_colors(image, 2)
    spatial = segment_colors(image, 2, spatial_weight=5.0)

    assert spatial.feature_names == ("red", "green", "blue", "row", "column")
    assert len(np.unique(colour_only.labels[:, :10])) == 2
    assert len(np.unique(spatial.labels[:, :10])) == 1
    assert len(np.unique(spatial.labels[:, -10:])) == 1
    assert spatial.labels[0, 0] != spatial.labels[0, -1]
    assert_nearest_in_feature_space(image, spatial)


def test_spatial_weight_on_sampled_pixels(ladybug_small):
    result = segment_colors(ladybug_small, 4, color_space="lab", spatial_weight=0.5)

    assert result.feature_centers.shape == (4, 5)
    assert result.counts.sum() == result.labels.size
    assert_nearest_in_feature_space(ladybug_small, result)


def test_mask_leaves_outside_pixels_at_zero(ladybug_small):
    mask = np.zeros(ladybug_small.shape[:2], dtype=bool)
    mask[10:60, 20:120] = True
    result = segment_colors(ladybug_small, 3, mask=mask)

    assert np.all(result.labels[~mask] == 0)
    assert np.all(result.labels[mask] > 0)
    assert result.counts.sum() == mask.sum()
    np.testing.assert_array_equal(result.segmented[~mask], ladybug_small[~mask])


def test_float_image_in_lab():
    rng = np.random.default_rng(3)
    image = rng.random((30, 30, 3))
    result = segment_colors(image, 3, color_space="lab")

    assert result.cluster_centers.max() <= 1.0
    assert_nearest_in_feature_space(image, result)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"color_space": "xyz"}, "'xyz'"),
        ({"spatial_weight": -1.0}, "-1.0"),
        ({"mask": np.ones((3, 3), dtype=bool)}, "(3, 3)"),
        ({"mask": np.ones((20, 20), dtype=np.uint8)}, "uint8"),
    ],
)
def test_invalid_feature_settings(kwargs, fragment):
    image = np.zeros((20, 20, 3), dtype=np.uint8)
    with pytest.raises(ColorKMeansError, match=re.escape(fragment)):
        segment_colors(image, 2, **kwargs)


def test_widget_lab_run(viewer, widget, qtbot, ladybug_small):
    viewer.add_image(ladybug_small, name="bug", rgb=True)
    widget.n_clusters.value = 4
    widget.color_space.value = "lab"

    run_and_wait(qtbot, widget)

    labels = viewer.layers["bug k=4 labels"]
    (result,) = widget.last_results
    assert result.color_space == "lab"
    assert set(np.unique(labels.data)) == {1, 2, 3, 4}
    for name in ("center_L", "center_a", "center_b"):
        assert name in labels.features.columns
    np.testing.assert_allclose(labels.features["center_L"].to_numpy()[1:], result.feature_centers[:, 0])


def test_widget_hsv_wraparound(viewer, widget, qtbot):
    viewer.add_image(hue_image([0.99, 0.01, 0.5, 0.52]), name="hues", rgb=True)
    widget.n_clusters.value = 2
    widget.color_space.value = "hsv"

    run_and_wait(qtbot, widget)

    columns = viewer.layers["hues k=2 labels"].data[0]
    assert columns[0] == columns[20]
    assert columns[40] == columns[60]
    assert columns[0] != columns[40]


def test_widget_mask_from_labels_layer(viewer, widget, qtbot, ladybug_small):
    viewer.add_image(ladybug_small, name="bug", rgb=True)
    region = np.zeros(ladybug_small.shape[:2], dtype=np.uint8)
    region[5:50, 5:90] = 1
    mask_layer = viewer.add_labels(region, name="region")
    widget.reset_choices()
    widget.image_layer.value = viewer.layers["bug"]
    widget.mask_layer.value = mask_layer
    widget.n_clusters.value = 3

    run_and_wait(qtbot, widget)

    labels = viewer.layers["bug k=3 labels"].data
    assert np.all(labels[region == 0] == 0)
    assert np.all(labels[region == 1] > 0)


def test_widget_mask_from_shapes_layer(viewer, widget, qtbot, ladybug_small):
    viewer.add_image(ladybug_small, name="bug", rgb=True)
    shapes = viewer.add_shapes([np.array([[10, 10], [10, 60], [40, 60], [40, 10]])], shape_type="rectangle", name="box")
    widget.reset_choices()
    widget.image_layer.value = viewer.layers["bug"]
    widget.mask_layer.value = shapes
    widget.n_clusters.value = 3

    run_and_wait(qtbot, widget)

    labels = viewer.layers["bug k=3 labels"].data
    assert np.all(labels[20:30, 20:50] > 0)
    assert labels[0, 0] == 0
    assert labels[100, 150] == 0


def test_widget_mask_wrong_shape_rejected(viewer, widget, ladybug_small):
    viewer.add_image(ladybug_small, name="bug", rgb=True)
    mask_layer = viewer.add_labels(np.ones((7, 9), dtype=np.uint8), name="small")
    widget.reset_choices()
    widget.image_layer.value = viewer.layers["bug"]
    widget.mask_layer.value = mask_layer
    start = len(notification_manager.records)

    assert widget() is None

    messages = [str(record.message) for record in notification_manager.records[start:]]
    assert any("'small'" in message and "(7, 9)" in message for message in messages)


def test_widget_spatial_weight_tooltip(widget):
    assert "per pixel" in widget.spatial_weight.tooltip
    assert "slower" in widget.spatial_weight.tooltip
