from pathlib import Path

import numpy as np
import pytest

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "napari-color-kmeans"
WIDGET = "K-means Color Segmentation"
# Maximum wait, in milliseconds, for a widget run to finish in GUI tests.
WAIT_MS = 120_000

# Cluster centres printed by the K-means colour-segmentation tutorial of
# "Hands-On Machine Learning" (A. Geron) for ladybug.png with k=8 and
# random_state=42, as RGB in [0, 1], in scikit-learn's order.
TUTORIAL_CENTERS = np.array([
    [0.98363745, 0.9359338, 0.02574807],
    [0.02289337, 0.11064845, 0.00578197],
    [0.21914783, 0.38675755, 0.05800817],
    [0.75775605, 0.21225454, 0.0445884],
    [0.09990625, 0.2542204, 0.01693457],
    [0.61266166, 0.63010883, 0.38751987],
    [0.37212682, 0.5235918, 0.15730347],
    [0.8845907, 0.7256049, 0.03442054],
])
# Inertia of those centres over all ladybug pixels, in [0, 1] units.
TUTORIAL_INERTIA = 3809.87
SHARED_DATA = REPOSITORY_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Return the folder of real test images that lives beside the repository."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"test data folder not found: {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ladybug_path(shared_data: Path) -> Path:
    return shared_data / "ladybug.png"


@pytest.fixture(scope="session")
def ladybug_small(ladybug_path: Path) -> np.ndarray:
    """Return the ladybug photo at a third of its size per side (178 x 267 RGB)."""
    from skimage.io import imread

    return np.ascontiguousarray(imread(ladybug_path)[::3, ::3, :3])


@pytest.fixture(scope="session")
def pngsuite_dir(shared_data: Path) -> Path:
    return shared_data / "pngsuite"


@pytest.fixture
def viewer(make_napari_viewer):
    """Return a real napari viewer, closed after the test."""
    return make_napari_viewer()


@pytest.fixture
def widget(viewer):
    """Return the plugin's dock widget, docked in ``viewer`` as a user would."""
    _, plugin_widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    return plugin_widget
