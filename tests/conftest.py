from pathlib import Path

import pytest

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "napari-color-kmeans"
WIDGET = "K-means Color Segmentation"
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
