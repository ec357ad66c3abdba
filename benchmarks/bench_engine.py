"""Compare the engine's methods with scikit-learn's default KMeans on real photos.

Run: .venv/bin/python benchmarks/bench_engine.py [--sizes ladybug,2,8,32]
     [--ks 2,4,6,8,10] [--methods sklearn,auto,exact,fast] [--memory-k 8]
     [--repeat 7] [--sklearn-repeat 3] [--no-sweep] [--output results.md]

Images: the tutorial photo ladybug.png (0.43 MP) and scikit-image's "coffee"
photo (600 x 400) resized with bilinear interpolation to about 2, 8 and 32
megapixels. For every image, k and method the script records:

- wall time of one call, the median of --repeat calls of our methods
  (``segment_colors(image, k, method=...)``, which also paints the image)
  and of --sklearn-repeat calls of scikit-learn
  (``KMeans(n_clusters=k, random_state=42).fit(X)`` then ``predict(X)``
  with all defaults),
- inertia over all pixels, recomputed here in float64 from the labels and
  centres each method returns, so every method is scored the same way,
- peak extra memory (tracemalloc, which tracks NumPy buffers) for k = --memory-k,
  in a second call so that tracing does not slow the timed one,
- the time of one plain copy of the image array as a floor, the median
  of COPY_REPEAT copies.

The sweep row times k = 10, 8, 6, 4, 2 on the tutorial photo: five
scikit-learn fits against one ``segment_colors_many`` call.
numba's one-time compilation runs before any timing.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import time
import tracemalloc
from pathlib import Path

import numpy as np
import skimage
import skimage.data
import skimage.io
import skimage.transform
import sklearn
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_info

from napari_color_kmeans import _kernels, segment_colors
from napari_color_kmeans._sweep import segment_colors_many

LADYBUG = Path(__file__).resolve().parents[2] / "shared" / "data" / "ladybug.png"
SWEEP_KS = (10, 8, 6, 4, 2)
# Copies of the image whose median time is the floor (one copy of 32 MP took
# about 8 ms on the 2-core test machine).
COPY_REPEAT = 11
CHUNK = 2**20


def load_image(size: str) -> tuple[str, np.ndarray]:
    """Return a name and a uint8 RGB image for ``size`` ("ladybug" or megapixels)."""
    if size == "ladybug":
        return "ladybug", skimage.io.imread(LADYBUG)

    megapixels = float(size)
    photo = skimage.data.coffee()
    scale = np.sqrt(megapixels * 1e6 / (photo.shape[0] * photo.shape[1]))
    shape = (round(photo.shape[0] * scale), round(photo.shape[1] * scale))
    resized = skimage.transform.resize(photo, shape, order=1, anti_aliasing=False)
    return f"coffee {size} MP", np.rint(resized * 255).astype(np.uint8)


def inertia_all_pixels(image: np.ndarray, labels: np.ndarray, centers: np.ndarray) -> float:
    """Return the float64 sum of squared distances of every pixel to its centre."""
    pixels = image.reshape(-1, 3)
    labels = labels.reshape(-1)
    total = 0.0
    for start in range(0, len(pixels), CHUNK):
        block = pixels[start : start + CHUNK].astype(np.float64)
        offsets = block - centers[labels[start : start + CHUNK]]
        total += float(np.einsum("ij,ij->", offsets, offsets))
    return total


def run_sklearn(image: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    samples = image.reshape(-1, 3)
    model = KMeans(n_clusters=k, random_state=42).fit(samples)
    return model.predict(samples), model.cluster_centers_


def run_engine(image: np.ndarray, k: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    result = segment_colors(image, k, method=method)
    # Labels are 1-based; a dummy row 0 keeps the indexing of run_sklearn.
    centers = np.vstack([np.zeros((1, 3)), result.cluster_centers])
    return result.labels, centers


def run_method(image: np.ndarray, k: int, method: str):
    if method == "sklearn":
        return run_sklearn(image, k)
    return run_engine(image, k, method)


def timed(function, *args):
    gc.collect()
    start = time.perf_counter()
    value = function(*args)
    return time.perf_counter() - start, value


def peak_extra_bytes(function, *args) -> int:
    """Return the peak of NumPy and Python allocations during one call."""
    gc.collect()
    tracemalloc.start()
    baseline, _ = tracemalloc.get_traced_memory()
    function(*args)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak - baseline


def copy_floor(image: np.ndarray) -> float:
    times = [timed(np.copy, image)[0] for _ in range(COPY_REPEAT)]
    return statistics.median(times)


def timed_median(repeat: int, function, *args):
    """Return the median wall time of ``repeat`` calls and the last call's value."""
    times = []
    for _ in range(repeat):
        seconds, value = timed(function, *args)
        times.append(seconds)
    return statistics.median(times), value


def bench_image(name, image, ks, methods, memory_k, repeat, sklearn_repeat) -> list[dict]:
    n_pixels = image.shape[0] * image.shape[1]
    floor = copy_floor(image)
    print(f"\n{name}: {image.shape}, copy floor {floor * 1e3:.1f} ms", flush=True)
    rows = []
    for k in ks:
        reference = None
        for method in methods:
            calls = sklearn_repeat if method == "sklearn" else repeat
            seconds, (labels, centers) = timed_median(calls, run_method, image, k, method)
            row = {
                "image": name,
                "megapixels": n_pixels / 1e6,
                "k": k,
                "method": method,
                "seconds": seconds,
                "inertia": inertia_all_pixels(image, labels, centers),
                "floor": floor,
                "peak_bytes": None,
            }
            del labels
            if k == memory_k:
                row["peak_bytes"] = peak_extra_bytes(run_method, image, k, method)
            if method == "sklearn":
                reference = row
            row["speedup"] = reference["seconds"] / seconds if reference else None
            row["inertia_ratio"] = row["inertia"] / reference["inertia"] if reference else None
            rows.append(row)
            print(format_row(row), flush=True)
    return rows


def bench_sweep(image, repeat, sklearn_repeat) -> dict:
    sklearn_seconds = 0.0
    for k in SWEEP_KS:
        sklearn_seconds += timed_median(sklearn_repeat, run_sklearn, image, k)[0]
    ours_seconds, _ = timed_median(repeat, segment_colors_many, image, SWEEP_KS)
    return {"sklearn": sklearn_seconds, "ours": ours_seconds}


def format_row(row: dict) -> str:
    peak = row["peak_bytes"]
    memory = "" if peak is None else f"{peak / 2**20:.0f} MB ({peak / (row['megapixels'] * 1e6):.1f} B/px)"
    speedup = "" if row["speedup"] is None else f"{row['speedup']:.1f}x"
    ratio = "" if row["inertia_ratio"] is None else f"{row['inertia_ratio']:.5f}"
    return (
        f"| {row['image']} | {row['k']} | {row['method']} | {row['seconds']:.3f} | {speedup} "
        f"| {row['seconds'] / row['floor']:.0f} | {row['inertia']:.6g} | {ratio} | {memory} |"
    )


TABLE_HEADER = (
    "| image | k | method | seconds | speed-up vs sklearn | time / copy | inertia | "
    "inertia / sklearn | peak extra memory |\n|---|---|---|---|---|---|---|---|---|"
)


def describe_machine() -> str:
    openmp = [info for info in threadpool_info() if info["user_api"] == "openmp"]
    threads = openmp[0]["num_threads"] if openmp else "unknown"
    numba_version = _kernels.numba.__version__ if _kernels.numba else "not installed"
    return (
        f"Python {platform.python_version()}, NumPy {np.__version__}, scikit-learn "
        f"{sklearn.__version__}, scikit-image {skimage.__version__}, numba {numba_version}; "
        f"{platform.machine()}, OpenMP threads {threads}"
    )


def warm_up() -> None:
    """Compile the numba passes of every method once so that no timed call pays for it."""
    image = np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    seconds = 0.0
    for method in ("auto", "exact", "fast"):
        seconds += timed(run_engine, image[:, :64], 2, method)[0]
        seconds += timed(run_engine, image, 2, method)[0]
    print(f"warm-up (includes numba compilation if not cached): {seconds:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="ladybug,2,8", help="ladybug and/or megapixels, comma-separated")
    parser.add_argument("--ks", default="2,4,6,8,10", help="n_clusters values, comma-separated")
    parser.add_argument("--methods", default="sklearn,auto,exact,fast", help="sklearn must come first")
    parser.add_argument("--memory-k", type=int, default=8, help="k whose peak memory is measured")
    parser.add_argument(
        "--repeat", type=int, default=7, help="calls per timing of our methods; the median is reported"
    )
    parser.add_argument(
        "--sklearn-repeat", type=int, default=3,
        help="calls per timing of scikit-learn (about 17 s each at 32 MP and k = 8); the median is reported",
    )
    parser.add_argument("--no-sweep", action="store_true", help="skip the k sweep on ladybug")
    parser.add_argument("--output", type=Path, help="also write the results as a Markdown table")
    options = parser.parse_args()

    ks = [int(k) for k in options.ks.split(",")]
    methods = options.methods.split(",")
    print(describe_machine())
    warm_up()
    print(TABLE_HEADER)

    rows = []
    for size in options.sizes.split(","):
        name, image = load_image(size)
        rows += bench_image(
            name, image, ks, methods, options.memory_k, options.repeat, options.sklearn_repeat
        )
        del image

    lines = [describe_machine(), "", TABLE_HEADER] + [format_row(row) for row in rows]
    if not options.no_sweep:
        sweep = bench_sweep(load_image("ladybug")[1], options.repeat, options.sklearn_repeat)
        line = (
            f"k sweep {SWEEP_KS} on ladybug: scikit-learn {sweep['sklearn']:.2f} s, "
            f"segment_colors_many {sweep['ours']:.2f} s, {sweep['sklearn'] / sweep['ours']:.1f}x"
        )
        print(line)
        lines += ["", line]
    if options.output:
        options.output.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
