"""The k sweep behind "Suggest k": inertia, silhouette, elbow and reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.io import imread

from napari_color_kmeans._engine import ColorKMeansError
from napari_color_kmeans._suggest import find_elbow, suggest_k


@pytest.fixture(scope="module")
def ladybug_small(ladybug_path):
    return np.ascontiguousarray(imread(ladybug_path)[::2, ::2, :3])


def blobs_image(n_colours: int, seed: int = 0) -> np.ndarray:
    """Return an image of ``n_colours`` well separated colours with a little noise."""
    rng = np.random.default_rng(seed)
    palette = np.array([[30, 30, 30], [220, 40, 40], [40, 200, 60], [50, 60, 210], [230, 220, 50]])[:n_colours]
    choice = rng.integers(0, n_colours, size=(60, 60))
    noise = rng.integers(-6, 7, size=(60, 60, 3))
    return np.clip(palette[choice] + noise, 0, 255).astype(np.uint8)


def test_sweep_finds_true_k():
    sweep = suggest_k(blobs_image(4), 8)

    np.testing.assert_array_equal(sweep.k_values, np.arange(2, 9))
    assert sweep.best_silhouette_k == 4
    assert sweep.elbow_k == 4
    assert np.all(np.diff(sweep.inertia) <= 1e-6 * sweep.inertia[0])


def test_sweep_is_reproducible(ladybug_small):
    first = suggest_k(ladybug_small, 6, random_state=3)
    second = suggest_k(ladybug_small, 6, random_state=3)

    np.testing.assert_array_equal(first.inertia, second.inertia)
    np.testing.assert_array_equal(first.silhouette, second.silhouette)
    assert first.sample_size == 3000


def test_sweep_in_lab_with_mask(ladybug_small):
    mask = np.zeros(ladybug_small.shape[:2], dtype=bool)
    mask[:, : ladybug_small.shape[1] // 2] = True
    sweep = suggest_k(ladybug_small, 5, color_space="lab", mask=mask, sample_size=500)

    assert sweep.color_space == "lab"
    assert sweep.sample_size == 500
    assert np.all(np.isfinite(sweep.silhouette))
    assert np.all((sweep.silhouette > -1) & (sweep.silhouette <= 1))


def test_sweep_stops_at_distinct_colours():
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    image[:, 5:] = 255
    image[0, 0] = (255, 0, 0)
    sweep = suggest_k(image, 6)

    np.testing.assert_array_equal(sweep.k_values, [2, 3])
    assert any("3 distinct" in message for message in sweep.warnings)


def test_find_elbow_on_known_curve():
    k_values = np.arange(2, 11)
    inertia = np.array([100.0, 40.0, 12.0, 10.0, 9.0, 8.0, 7.5, 7.0, 6.8])

    assert find_elbow(k_values, inertia) == 4


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [({"k_max": 1}, "k range"), ({"k_min": 5, "k_max": 4}, "k range"), ({"sample_size": 3}, "sample_size")],
)
def test_invalid_sweep_settings(kwargs, fragment):
    image = blobs_image(3)
    with pytest.raises(ColorKMeansError, match=fragment):
        suggest_k(image, **kwargs)
