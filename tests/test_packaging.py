"""The manifest at the repository root reaches napari through wheels and editable installs."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import npe2
import pytest

from conftest import REPOSITORY_ROOT

PLUGIN = "napari-color-kmeans"
BIN = Path(sys.executable).parent


def test_wheel_contains_manifest(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path),
         str(REPOSITORY_ROOT)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("napari_color_kmeans-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packaged = archive.read("napari_color_kmeans/napari.yaml")
        entry_points = archive.read(
            next(name for name in archive.namelist() if name.endswith("entry_points.txt"))
        ).decode()
    assert packaged == (REPOSITORY_ROOT / "napari.yaml").read_bytes()
    assert "napari_color_kmeans:napari.yaml" in entry_points


def test_install_is_editable():
    direct_url = json.loads(metadata.distribution(PLUGIN).read_text("direct_url.json") or "{}")
    assert direct_url.get("dir_info", {}).get("editable") is True, (
        "the tests expect `pip install -e .`; run scripts/test.sh"
    )


def test_npe2_validate_passes():
    completed = subprocess.run(
        [str(BIN / "npe2"), "validate", PLUGIN], capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_napari_lists_plugin():
    completed = subprocess.run(
        [str(BIN / "npe2"), "list", "--fields", "name,version"], capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr
    assert PLUGIN in completed.stdout


def test_manifest_contributions():
    manifest = npe2.PluginManifest.from_distribution(PLUGIN)
    assert manifest.name == PLUGIN
    assert manifest.display_name == "K-means Color Segmentation"
    assert set(manifest.categories) == {"Segmentation", "Image Processing"}
    widget_names = [widget.display_name for widget in manifest.contributions.widgets]
    assert widget_names == ["K-means Color Segmentation"]
    segment_menu = manifest.contributions.menus["napari/layers/segment"]
    assert [item.command for item in segment_menu] == ["napari-color-kmeans.make_widget"]
    assert manifest.contributions.readers[0].filename_patterns == ["*.png"]
    assert manifest.contributions.sample_data


@pytest.mark.parametrize("module", ["_engine", "_layers"])
def test_module_imports_no_qt(module):
    code = (
        f"import sys, napari_color_kmeans.{module}; "
        "loaded = [name for name in ('PyQt6', 'PyQt5', 'PySide6', 'qtpy') if name in sys.modules]; "
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stdout + completed.stderr
