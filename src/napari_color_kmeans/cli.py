"""Command line: ``napari-color-kmeans segment INPUT.png [...] -k 8 --seed 42 --out DIR``.

For each input PNG and each k it writes the segmented image, the labels as an
indexed PNG and a JSON file of the cluster centres, counts and fractions.
With several k values it also writes a side-by-side comparison figure.

It runs without a display: it imports neither Qt nor napari, and draws the
figure with matplotlib's Agg canvas, never through pyplot.

Exit status: 0 when every input was segmented, 1 when at least one input
failed (the others still finish), 2 for invalid arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_color_kmeans import __version__
from napari_color_kmeans._engine import (
    MAX_CLUSTERS,
    METHODS,
    ColorKMeansError,
    ColorKMeansWarning,
    SegmentationResult,
    segment_colors,
)
from napari_color_kmeans._png import (
    DEFAULT_MAX_PIXELS,
    MAX_PIXELS_ENV,
    PngError,
    max_pixels_from_environment,
    read_png,
)
from napari_color_kmeans._png_encode import PngWriteError, write_label_png, write_png
from napari_color_kmeans._reader import is_png_name, list_png_files

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_INPUT_FAILED = 1
EXIT_USAGE = 2
PROGRESS_MIN_FILES = 4
"""Batches of at least this many inputs show a progress bar on stderr."""


@dataclass
class InputOutcome:
    """Files written for one input, or the reason it failed."""

    source: Path
    written: list[Path] = field(default_factory=list)
    error: str | None = None


# -- arguments -------------------------------------------------------------------


def parse_k_values(text: str) -> list[int]:
    """Parse ``-k`` as one cluster count or a comma-separated list such as ``10,8,6``."""
    values: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            value = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"invalid k {part!r} in {text!r}: give whole numbers such as 8 or 10,8,6,4,2"
            ) from None
        if not 1 <= value <= MAX_CLUSTERS:
            raise argparse.ArgumentTypeError(
                f"invalid k {value}: the number of clusters must be from 1 to {MAX_CLUSTERS}"
            )
        if value not in values:
            values.append(value)
    return values


def parse_positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: give a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid count {value}: it must be 1 or more")
    return value


def parse_seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seed {text!r}: give a whole number") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"invalid seed {value}: use 0 to {2**32 - 1}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-color-kmeans",
        description="K-means colour segmentation of PNG images, without napari.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    segment = commands.add_parser(
        "segment",
        help="segment PNG images into k colours and write PNG and JSON results",
        description=(
            "Segment each input PNG into k colours with K-means. For each input and k, "
            "write STEM_kK_segmented.png (every pixel replaced by its cluster centre, in "
            "the input's bit depth), STEM_kK_labels.png (cluster labels 1..k as an indexed "
            "PNG coloured by the centres, label 0 transparent for pixels left out) and "
            "STEM_kK_clusters.json (centres, pixel counts and fractions). With several k "
            "values, also write STEM_comparison.png showing the original and each k."
        ),
        epilog=(
            "exit status: 0 when every input was segmented, 1 when at least one input "
            "failed (missing, not a valid PNG, too large, not a colour image, or outputs "
            "already exist) while the others still finished, 2 for invalid arguments."
        ),
    )
    add_segment_arguments(segment)
    return parser


def add_segment_arguments(segment: argparse.ArgumentParser) -> None:
    segment.add_argument(
        "inputs", nargs="+", metavar="INPUT",
        help="PNG files, or folders whose PNG files (not subfolders) are all segmented",
    )
    segment.add_argument(
        "-k", "--k", dest="k_values", type=parse_k_values, default=[8], metavar="K[,K...]",
        help="number of colours (clusters); a comma-separated list such as 10,8,6,4,2 "
        "runs each and writes a comparison figure (default: 8)",
    )
    segment.add_argument(
        "--seed", type=parse_seed, default=42,
        help="random seed (random_state) of the K-means initialisation; the same seed "
        "gives the same result (default: %(default)s)",
    )
    segment.add_argument(
        "--out", type=Path, default=Path("."), metavar="DIR",
        help="folder for the output files, created if missing (default: the current folder)",
    )
    segment.add_argument(
        "--method", choices=METHODS, default="auto",
        help="auto: fast 6-bit colour histogram refined to the exact result; exact: "
        "K-means on every distinct colour; fast: histogram only (default: %(default)s)",
    )
    segment.add_argument(
        "--overwrite", action="store_true",
        help="replace existing output files; without it an input whose outputs exist "
        "is skipped and reported as failed (default: off)",
    )
    segment.add_argument(
        "--max-pixels", type=parse_positive_int, default=None, metavar="N",
        help="largest image to read, in pixels (width x height); larger files are "
        f"rejected before decoding (default: ${MAX_PIXELS_ENV} if set, else "
        f"{DEFAULT_MAX_PIXELS})",
    )
    segment.add_argument(
        "--no-progress", action="store_true",
        help=f"hide the progress bar that batches of {PROGRESS_MIN_FILES} or more inputs "
        "show on stderr (default: shown)",
    )


# -- running ---------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")

    try:
        max_pixels = args.max_pixels or max_pixels_from_environment()
    except ValueError as error:
        parser.error(str(error))
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {str(args.out)!r} is a file, not a folder; give a folder path")

    sources, missing = collect_inputs(args.inputs)
    outcomes = [InputOutcome(Path(item), error=reason) for item, reason in missing]
    outcomes += run_batch(sources, args, max_pixels)
    return report(outcomes, args.out)


def collect_inputs(inputs: Sequence[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand folders into their PNG files; return the sources and (input, error) pairs."""
    sources: list[Path] = []
    problems: list[tuple[str, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = list_png_files(path)
            if not files:
                problems.append((item, "folder contains no .png files"))
            sources.extend(files)
        elif not path.exists():
            problems.append((item, "file not found; check the path"))
        elif not is_png_name(path):
            problems.append((item, "not a .png file; give PNG files or folders of them"))
        else:
            sources.append(path)
    return sources, problems


def run_batch(sources: list[Path], args: argparse.Namespace, max_pixels: int) -> list[InputOutcome]:
    """Segment every source in turn; a failing source does not stop the others."""
    show_progress = len(sources) >= PROGRESS_MIN_FILES and not args.no_progress
    claimed: dict[Path, Path] = {}
    outcomes = []
    for source in _progress(sources, show_progress):
        outcome = InputOutcome(source)
        try:
            outcome.written = segment_file(source, args, max_pixels, claimed)
        except (OSError, PngError, PngWriteError, ColorKMeansError, ValueError) as error:
            outcome.error = str(error)
        outcomes.append(outcome)
    return outcomes


def _progress(sources: list[Path], enabled: bool):
    if not enabled:
        return sources
    from tqdm import tqdm

    return tqdm(sources, desc="segmenting", unit="file", file=sys.stderr)


def segment_file(
    source: Path, args: argparse.Namespace, max_pixels: int, claimed: dict[Path, Path]
) -> list[Path]:
    """Segment one PNG for every k and write its outputs; return the written paths."""
    planned = planned_outputs(source, args.out, args.k_values)
    check_outputs_free(source, planned, claimed, args.overwrite)
    image = read_png(source, max_pixels=max_pixels)

    results = []
    for n_clusters in args.k_values:
        result = run_engine(image, n_clusters, args.seed, args.method)
        for message in result.warnings:
            print(f"warning: {source}: k={n_clusters}: {message}", file=sys.stderr)
        results.append(result)

    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    for result, n_clusters in zip(results, args.k_values):
        written += write_result(source, image, result, planned[n_clusters])
    if len(args.k_values) > 1:
        written.append(write_comparison(image, results, args.k_values, planned["comparison"]))
    return written


def planned_outputs(source: Path, out: Path, k_values: list[int]) -> dict:
    """Map each k to its output paths, and "comparison" to the figure path."""
    planned: dict = {
        n_clusters: {
            "segmented": out / f"{source.stem}_k{n_clusters}_segmented.png",
            "labels": out / f"{source.stem}_k{n_clusters}_labels.png",
            "clusters": out / f"{source.stem}_k{n_clusters}_clusters.json",
        }
        for n_clusters in k_values
    }
    if len(k_values) > 1:
        planned["comparison"] = out / f"{source.stem}_comparison.png"
    return planned


def check_outputs_free(
    source: Path, planned: dict, claimed: dict[Path, Path], overwrite: bool
) -> None:
    """Raise FileExistsError if an output exists (no --overwrite) or another input claimed it."""
    paths = [path for value in planned.values() for path in _paths_of(value)]
    for path in paths:
        if path in claimed:
            raise FileExistsError(
                f"its output {path} would replace the output of {claimed[path]} from this "
                "run, because both inputs have the same file name; rename one or run them "
                "with different --out folders"
            )
        if path.exists() and not overwrite:
            raise FileExistsError(
                f"output {path} already exists; pass --overwrite to replace it or choose "
                "another --out folder"
            )
    for path in paths:
        claimed[path] = source


def _paths_of(value) -> list[Path]:
    return list(value.values()) if isinstance(value, dict) else [value]


def run_engine(image: np.ndarray, n_clusters: int, seed: int, method: str) -> SegmentationResult:
    with warnings.catch_warnings():
        # The result carries the same messages in result.warnings, printed by the caller.
        warnings.simplefilter("ignore", ColorKMeansWarning)
        return segment_colors(image, n_clusters, random_state=seed, method=method)


# -- output files -------------------------------------------------------------------


def write_result(
    source: Path, image: np.ndarray, result: SegmentationResult, paths: dict[str, Path]
) -> list[Path]:
    full_scale = float(np.iinfo(image.dtype).max)
    colors = np.ones((result.n_clusters + 1, 4))
    colors[1:, :3] = np.clip(result.cluster_centers / full_scale, 0.0, 1.0)
    metadata = cluster_summary(source, image, result)

    write_png(paths["segmented"], result.segmented)
    write_label_png(paths["labels"], result.labels, colors, metadata={
        "name": paths["labels"].stem,
        "n_clusters": result.n_clusters,
        "random_state": result.random_state,
        "cluster_centers": result.cluster_centers,
    })
    paths["clusters"].write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return [paths["segmented"], paths["labels"], paths["clusters"]]


def cluster_summary(source: Path, image: np.ndarray, result: SegmentationResult) -> dict:
    """Describe the clusters: centre in image units, hex colour, pixel count and fraction.

    Fractions are of the clustered pixels, so they add up to 1. Pixels left
    out (label 0, for example fully transparent ones) are counted separately.
    """
    full_scale = float(np.iinfo(image.dtype).max)
    clustered = int(result.counts.sum())
    clusters = []
    for label, (center, count) in enumerate(zip(result.cluster_centers, result.counts), start=1):
        rgb = np.round(np.clip(center / full_scale, 0.0, 1.0) * 255).astype(int)
        clusters.append({
            "label": label,
            "center": [float(value) for value in center],
            "hex": "#{:02x}{:02x}{:02x}".format(*rgb),
            "count": int(count),
            "fraction": int(count) / clustered if clustered else 0.0,
        })
    return {
        "input": str(source),
        "image_shape": list(image.shape),
        "image_dtype": str(image.dtype),
        "n_clusters": result.n_clusters,
        "random_state": result.random_state,
        "method": result.method,
        "inertia": float(result.inertia),
        "clustered_pixels": clustered,
        "left_out_pixels": int(np.count_nonzero(result.labels == 0)),
        "clusters": clusters,
    }


def write_comparison(
    image: np.ndarray, results: list[SegmentationResult], k_values: list[int], path: Path
) -> Path:
    """Draw the original and each segmented image side by side, three panels per row."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [("Original image", image)] + [
        (f"{n_clusters} colours", result.segmented) for n_clusters, result in zip(k_values, results)
    ]
    n_columns = min(3, len(panels))
    n_rows = -(-len(panels) // n_columns)
    height, width = image.shape[:2]
    panel_width = 4.0
    panel_height = panel_width * height / width + 0.4
    figure = Figure(figsize=(panel_width * n_columns, panel_height * n_rows))
    FigureCanvasAgg(figure)
    full_scale = float(np.iinfo(image.dtype).max)
    for index, (title, data) in enumerate(panels, start=1):
        axes = figure.add_subplot(n_rows, n_columns, index)
        axes.imshow(data.astype(np.float32) / full_scale)
        axes.set_title(title)
        axes.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def report(outcomes: list[InputOutcome], out: Path) -> int:
    """Print written files to stdout and errors to stderr; return the exit status."""
    failed = [outcome for outcome in outcomes if outcome.error]
    for outcome in outcomes:
        for path in outcome.written:
            print(path)
    for outcome in failed:
        print(f"error: {outcome.source}: {outcome.error}", file=sys.stderr)

    done = len(outcomes) - len(failed)
    if failed:
        print(
            f"{done} of {len(outcomes)} inputs segmented into {out}; {len(failed)} failed.",
            file=sys.stderr,
        )
        return EXIT_INPUT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
