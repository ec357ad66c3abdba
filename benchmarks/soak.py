"""Run many consecutive segmentations in one viewer and watch for leaks.

Run under a display (here Xvfb):
    xvfb-run -a .venv/bin/python benchmarks/soak.py [--runs 200] [--k 8]
        [--method auto] [--baseline-run 10] [--json soak.json]

The script opens the tutorial photo ladybug.png with the plugin's reader,
docks the K-means widget, and presses Run ``--runs`` times, waiting for each
run to add or update its output layers. After the ``--baseline-run``-th run
and after the last one it records, after a garbage collection:

- resident memory (RSS, from psutil),
- the number of layers in the viewer,
- OS threads of the process and Python threads (``threading``),
- Qt objects: widgets (``QApplication.allWidgets``), QObjects in the trees
  of the application and its top-level widgets, and QObjects that Python
  wraps (found with ``gc``),
- entries in the window's task list. napari 0.9.2 keeps one entry, and
  through it the finished worker and its signals QObject, per run for the
  life of the window. The check below therefore subtracts these entries
  from the wrapped QObjects and reports their growth without failing.

With ``--k 8,6,4`` the runs cycle through several k, so output layers are
both added and updated in place. The exit status is 1 when RSS grew by more
than ``--rss-tolerance`` (10 % by default) or any count grew between the two
records.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import napari
import psutil
from qtpy.QtCore import QObject
from qtpy.QtWidgets import QApplication

PLUGIN = "napari-color-kmeans"
WIDGET = "K-means Color Segmentation"
LADYBUG = Path(__file__).resolve().parents[2] / "shared" / "data" / "ladybug.png"
RUN_TIMEOUT_SECONDS = 600


@dataclass
class Snapshot:
    """Resource counts of the process after one run."""

    run: int
    rss_mib: float
    layers: int
    os_threads: int
    python_threads: int
    qt_widgets: int
    qt_objects_in_tree: int
    qt_objects_wrapped: int
    napari_tasks: int


def count_qobject_tree(app: QApplication) -> int:
    """Count QObjects owned by the application or by a top-level widget, roots included."""
    roots = [app, *app.topLevelWidgets()]
    return sum(1 + len(root.findChildren(QObject)) for root in roots)


def take_snapshot(run: int, viewer) -> Snapshot:
    app = QApplication.instance()
    app.processEvents()
    gc.collect()
    app.processEvents()
    # type() rather than isinstance(): isinstance() on a weak proxy whose
    # object is gone raises ReferenceError, and a proxy is not a wrapper.
    wrapped = sum(1 for item in gc.get_objects() if issubclass(type(item), QObject))
    process = psutil.Process()
    return Snapshot(
        run=run,
        rss_mib=process.memory_info().rss / 2**20,
        layers=len(viewer.layers),
        os_threads=process.num_threads(),
        python_threads=threading.active_count(),
        qt_widgets=len(app.allWidgets()),
        qt_objects_in_tree=count_qobject_tree(app),
        qt_objects_wrapped=wrapped,
        # NOTE: a private napari attribute (0.9.2); there is no public count.
        napari_tasks=len(viewer.window._task_status_manager._tasks),
    )


def run_once(widget, run: int) -> None:
    """Press Run and wait for the output layers; raise if the run did not finish."""
    if widget() is None:
        raise RuntimeError(f"run {run} did not start; see the napari notification")
    results = widget.wait(timeout=RUN_TIMEOUT_SECONDS)
    if not results:
        raise RuntimeError(f"run {run} produced no results; see the napari notification")


def soak(
    image_path: Path, runs: int, k_values: list[int], method: str, baseline_run: int
) -> tuple[Snapshot, Snapshot, float]:
    """Segment ``image_path`` ``runs`` times; return the two snapshots and the seconds taken."""
    viewer = napari.Viewer(show=True)
    try:
        viewer.open(image_path, plugin=PLUGIN)
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
        widget.method.value = method
        baseline = None
        start = time.perf_counter()
        for run in range(1, runs + 1):
            widget.n_clusters.value = k_values[(run - 1) % len(k_values)]
            run_once(widget, run)
            if run == baseline_run:
                baseline = take_snapshot(run, viewer)
            if run % 20 == 0:
                print(f"run {run} of {runs} done", file=sys.stderr, flush=True)
        seconds = time.perf_counter() - start
        final = take_snapshot(runs, viewer)
    finally:
        viewer.close()
    return baseline, final, seconds


def growth_problems(baseline: Snapshot, final: Snapshot, rss_tolerance: float) -> list[str]:
    """List every count that grew, and RSS growth beyond ``rss_tolerance`` (a fraction)."""
    problems = []
    if final.rss_mib > baseline.rss_mib * (1 + rss_tolerance):
        problems.append(
            f"RSS grew from {baseline.rss_mib:.1f} MiB to {final.rss_mib:.1f} MiB, "
            f"more than {rss_tolerance:.0%}"
        )
    for name in ("layers", "os_threads", "python_threads", "qt_widgets", "qt_objects_in_tree"):
        before, after = getattr(baseline, name), getattr(final, name)
        if after > before:
            problems.append(f"{name} grew from {before} to {after}")

    wrapped_before = baseline.qt_objects_wrapped - baseline.napari_tasks
    wrapped_after = final.qt_objects_wrapped - final.napari_tasks
    if wrapped_after > wrapped_before:
        problems.append(
            f"wrapped QObjects other than napari's task list grew from {wrapped_before} "
            f"to {wrapped_after}"
        )
    return problems


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=LADYBUG, help="PNG file to segment")
    parser.add_argument("--runs", type=int, default=200, help="number of runs (default: %(default)s)")
    parser.add_argument("--k", default="8", help="k per run, cycled, e.g. 8,6,4 (default: %(default)s)")
    parser.add_argument("--method", default="auto", choices=("auto", "exact", "fast"))
    parser.add_argument("--baseline-run", type=int, default=10,
                        help="run after which the baseline is recorded (default: %(default)s)")
    parser.add_argument("--rss-tolerance", type=float, default=0.10,
                        help="allowed RSS growth as a fraction of the baseline (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the snapshots to this JSON file")
    arguments = parser.parse_args(argv)
    if not 1 <= arguments.baseline_run < arguments.runs:
        parser.error(
            f"--baseline-run {arguments.baseline_run} must be from 1 to --runs - 1 "
            f"({arguments.runs - 1}); lower it or raise --runs."
        )
    return arguments


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    k_values = [int(part) for part in arguments.k.replace(",", " ").split()]
    baseline, final, seconds = soak(
        arguments.image, arguments.runs, k_values, arguments.method, arguments.baseline_run
    )

    print(f"machine: {platform.platform()}, {psutil.cpu_count()} CPUs, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB; napari {napari.__version__}")
    print(f"{arguments.runs} runs of k={arguments.k} ({arguments.method}) on "
          f"{arguments.image.name} in {seconds:.0f} s")
    for snapshot in (baseline, final):
        print(json.dumps(asdict(snapshot)))
    if arguments.json is not None:
        arguments.json.write_text(json.dumps([asdict(baseline), asdict(final)], indent=2))

    print(f"note: napari's task list grew from {baseline.napari_tasks} to "
          f"{final.napari_tasks} entries (one finished worker per run)")
    problems = growth_problems(baseline, final, arguments.rss_tolerance)
    for problem in problems:
        print(f"problem: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
