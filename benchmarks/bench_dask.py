"""Benchmark the dask path: large zarr images, time-lapse stacks and a LocalCluster.

Every case runs in a fresh child process, so its peak resident memory
(VmHWM) is its own; LocalCluster workers report theirs separately. Images are made from ladybug.png tiled over the
requested size plus seeded uniform noise of +-8 levels, written to a zarr
array in a temporary folder that is deleted afterwards.

Example (the run recorded in docs/benchmarks.md):

    .venv/bin/python benchmarks/bench_dask.py --sizes-mp 1 10 100 1000 --cluster-mp 100
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PHOTO = Path(__file__).resolve().parents[2] / "shared" / "data" / "ladybug.png"
CHUNK = 4096
NOISE = 8


def make_tile(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Return the photo tiled over ``shape`` (H, W) with seeded noise, as uint8 RGB."""
    import skimage.io

    photo = skimage.io.imread(PHOTO)[..., :3].astype(np.int16)
    reps = (-(-shape[0] // photo.shape[0]), -(-shape[1] // photo.shape[1]), 1)
    tiled = np.tile(photo, reps)[: shape[0], : shape[1]]
    noise = np.random.default_rng(seed).integers(-NOISE, NOISE + 1, size=tiled.shape, dtype=np.int16)
    return np.clip(tiled + noise, 0, 255).astype(np.uint8)


def write_zarr(path: Path, side: int) -> None:
    """Write a (side, side, 3) uint8 zarr array with CHUNK x CHUNK chunks, chunk by chunk."""
    import zarr

    array = zarr.open_array(path, mode="w", shape=(side, side, 3), chunks=(CHUNK, CHUNK, 3), dtype=np.uint8)
    for row in range(0, side, CHUNK):
        for column in range(0, side, CHUNK):
            height, width = min(CHUNK, side - row), min(CHUNK, side - column)
            array[row : row + height, column : column + width] = make_tile((height, width), row * side + column)


def peak_rss_mib() -> float:
    """Return this process's peak resident memory (VmHWM) in MiB.

    VmHWM starts afresh at exec, unlike ``ru_maxrss``, which on Linux keeps
    the peak of the forked parent.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM not found in /proc/self/status; this benchmark needs Linux.")


def case_read(path: str) -> dict:
    """Read every chunk once, one after the other: the floor for any full pass."""
    import zarr

    array = zarr.open_array(path, mode="r")
    start = time.perf_counter()
    checksum = 0
    for row in range(0, array.shape[0], CHUNK):
        for column in range(0, array.shape[1], CHUNK):
            checksum += int(array[row : row + CHUNK, column : column + CHUNK, 0].max())
    return {"read_s": time.perf_counter() - start}


def case_segment(path: str, out: str, workers: int) -> dict:
    """Fit on the zarr image, then write full-resolution labels to a zarr array."""
    import dask.array as da

    from napari_color_kmeans import segment_colors

    client = None
    if workers:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, host="127.0.0.1", processes=True, dashboard_address=None
        )
        client = Client(cluster)

    image = da.from_zarr(path)
    start = time.perf_counter()
    result = segment_colors(image, 8)
    fitted = time.perf_counter()
    result.labels.to_zarr(out, overwrite=True)
    written = time.perf_counter()

    timings = {"fit_s": fitted - start, "labels_s": written - fitted, "method": result.method}
    if client is not None:
        timings["worker_peak_rss_mib"] = sorted(client.run(peak_rss_mib).values())
        client.close()
        cluster.close()
    return timings


def case_stack(scope: str, n_frames: int) -> dict:
    """Segment a (n_frames, 1024, 1024, 3) in-memory time-lapse with one scope."""
    from napari_color_kmeans import segment_colors
    from napari_color_kmeans._stack import segment_planes

    stack = np.stack([make_tile((1024, 1024), seed)[::-1 if seed % 2 else 1] for seed in range(n_frames)])
    start = time.perf_counter()
    if scope == "shared":
        segment_colors(stack, 8)
    else:
        segment_planes(stack, 8)
    return {"seconds": time.perf_counter() - start}


def run_child(*arguments: str) -> dict:
    """Run one case in a fresh interpreter; return its timings and peak memory in MiB."""
    output = subprocess.run(
        [sys.executable, __file__, "--child", *arguments], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def child_main(arguments: list[str]) -> None:
    name, *rest = arguments
    if name == "read":
        result = case_read(rest[0])
    elif name == "segment":
        result = case_segment(rest[0], rest[1], int(rest[2]))
    else:
        result = case_stack(rest[0], int(rest[1]))
    result["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(result))


def print_versions() -> None:
    import dask
    import distributed
    import sklearn
    import zarr

    print(
        f"python {platform.python_version()}, numpy {np.__version__}, dask {dask.__version__}, "
        f"distributed {distributed.__version__}, zarr {zarr.__version__}, scikit-learn {sklearn.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mp", type=float, nargs="*", default=[1, 10, 100, 1000],
                        help="image sizes in megapixels (square images, 1 MP = 2**20 pixels)")
    parser.add_argument("--cluster-mp", type=float, nargs="*", default=[100],
                        help="sizes in megapixels also run on a 2-worker LocalCluster")
    parser.add_argument("--frames", type=int, default=20, help="frames of the 1024 x 1024 time-lapse; 0 skips it")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        child_main(options.child)
        return

    print_versions()
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as folder:
        for size in options.sizes_mp:
            side = int(round((size * 2**20) ** 0.5))
            path = str(Path(folder) / f"image-{size}.zarr")
            start = time.perf_counter()
            write_zarr(Path(path), side)
            print(f"\n{size:g} MP ({side} x {side}), written in {time.perf_counter() - start:.1f} s")
            print("  sequential read:", run_child("read", path))
            print("  engine, threads:", run_child("segment", path, path + ".labels", "0"))
            if size in options.cluster_mp:
                print("  engine, LocalCluster 2x1:", run_child("segment", path, path + ".labels", "2"))
            subprocess.run(["rm", "-rf", path, path + ".labels"], check=True)

        if options.frames:
            print(f"\ntime-lapse ({options.frames}, 1024, 1024, 3)")
            for scope in ("shared", "per-plane"):
                print(f"  {scope}:", run_child("stack", scope, str(options.frames)))


if __name__ == "__main__":
    main()
