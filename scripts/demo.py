"""Open napari with a sample photo and compare k = 10, 8, 6, 4, 2 side by side.

With ``--screenshot FILE`` the script waits for the comparison, saves a
screenshot of the grid view and exits instead of leaving the window open.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

PLUGIN = "napari-color-kmeans"
WIDGET = "K-means Color Segmentation"
TIMEOUT_SECONDS = 300


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", help="PNG file to segment (default: the coffee sample photo)")
    parser.add_argument("--k", default="10, 8, 6, 4, 2", help="cluster counts to compare (default: %(default)s)")
    parser.add_argument("--screenshot", type=Path, help="save a screenshot of the comparison here and exit")
    return parser.parse_args()


def settle(viewer) -> None:
    """Let the canvas lay out the grid, then fit every cell to its image."""
    app = QApplication.instance()
    for _ in range(3):
        app.processEvents()
        viewer.reset_view()
    app.processEvents()


def main() -> int:
    arguments = parse_arguments()
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1600, 1000)
    if arguments.image:
        viewer.open(arguments.image, plugin=PLUGIN)
    else:
        viewer.open_sample(PLUGIN, "coffee")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    widget.compare_k.value = arguments.k
    worker = widget.compare()
    if worker is None:
        print("The comparison did not start; see the notification above.", file=sys.stderr)
        return 1
    if arguments.screenshot is None:
        napari.run()
        return 0

    if not widget.wait(timeout=TIMEOUT_SECONDS):
        print("The comparison produced no layers.", file=sys.stderr)
        return 1
    arguments.screenshot.parent.mkdir(parents=True, exist_ok=True)
    settle(viewer)
    viewer.screenshot(str(arguments.screenshot), canvas_only=False, flash=False)
    print(f"Saved the comparison screenshot to {arguments.screenshot}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
