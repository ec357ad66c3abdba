"""Regenerate the screenshots in docs/images from a real napari viewer.

Run on a display, or on a virtual one:
    xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python scripts/make_screenshots.py

Every picture starts from the scikit-image coffee photo that the plugin
offers as sample data, so the pictures can be remade anywhere.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication
from skimage import data as skimage_data

from napari_color_kmeans._png_encode import write_png

PLUGIN = "napari-color-kmeans"
WIDGET = "K-means Color Segmentation"
WINDOW_SIZE = (1600, 1000)
TIMEOUT_SECONDS = 300


def settle(viewer: napari.Viewer) -> None:
    """Let Qt lay out and draw everything, then fit the view to the layers."""
    app = QApplication.instance()
    for _ in range(3):
        app.processEvents()
        viewer.reset_view()
    app.processEvents()


def new_viewer() -> napari.Viewer:
    viewer = napari.Viewer(show=True)
    viewer.window.resize(*WINDOW_SIZE)
    return viewer


def save(viewer: napari.Viewer, path: Path) -> None:
    settle(viewer)
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(f"wrote {path}")


def shoot_reader(folder: Path, png_path: Path) -> None:
    viewer = new_viewer()
    viewer.open(png_path, plugin=PLUGIN)
    save(viewer, folder / "open_png.png")
    viewer.close()


def shoot_widget_and_table(folder: Path, png_path: Path) -> None:
    viewer = new_viewer()
    viewer.open(png_path, plugin=PLUGIN)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    widget.n_clusters.value = 6
    widget()
    widget.wait(timeout=TIMEOUT_SECONDS)
    viewer.layers["coffee k=6"].visible = False
    save(viewer, folder / "widget.png")

    widget.cluster_table.select_labels([1, 3])
    widget.cluster_table.add_mask_layer()
    save(viewer, folder / "cluster_mask.png")
    viewer.close()


def shoot_compare(folder: Path, png_path: Path) -> None:
    viewer = new_viewer()
    viewer.open(png_path, plugin=PLUGIN)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    widget.compare_k.value = "10, 8, 6, 4, 2"
    widget.compare()
    widget.wait(timeout=TIMEOUT_SECONDS)
    save(viewer, folder / "compare.png")
    viewer.close()


def shoot_suggest(folder: Path, png_path: Path) -> None:
    viewer = new_viewer()
    viewer.open(png_path, plugin=PLUGIN)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    widget.analysis.suggest()
    deadline = time.monotonic() + TIMEOUT_SECONDS
    app = QApplication.instance()
    while widget.analysis.is_suggesting and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)
    save(viewer, folder / "suggest_k.png")
    viewer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images"), help="output folder (default: %(default)s)")
    arguments = parser.parse_args()
    arguments.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as temporary:
        png_path = Path(temporary) / "coffee.png"
        write_png(png_path, skimage_data.coffee())
        shoot_reader(arguments.out, png_path)
        shoot_widget_and_table(arguments.out, png_path)
        shoot_compare(arguments.out, png_path)
        shoot_suggest(arguments.out, png_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
