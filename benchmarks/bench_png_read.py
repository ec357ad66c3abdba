"""Measure PNG read speed of the candidate decoders on a large photo-like PNG.

Run: .venv/bin/python benchmarks/bench_png_read.py [--repeats 5]

The test image is ladybug.png (800 x 533 RGB) tiled 5 x 5 with mirrored
copies, 4000 x 2665 pixels, written once as 8-bit and once as 16-bit RGB
(each 8-bit value v stored as v * 257). Each decoder reads each file from
disk; the script prints the median wall time of the repeats.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import imagecodecs
import numpy as np
import png as pypng
from PIL import Image

from napari_color_kmeans._png import read_png

LADYBUG = Path(__file__).resolve().parents[2] / "shared" / "data" / "ladybug.png"
TILES = 5


def make_large_images(folder: Path) -> dict[str, Path]:
    photo = read_png(LADYBUG)
    row = np.concatenate([photo if i % 2 == 0 else photo[:, ::-1] for i in range(TILES)], axis=1)
    large = np.concatenate([row if i % 2 == 0 else row[::-1] for i in range(TILES)], axis=0)
    paths = {"8-bit": folder / "large8.png", "16-bit": folder / "large16.png"}
    paths["8-bit"].write_bytes(imagecodecs.png_encode(large))
    paths["16-bit"].write_bytes(imagecodecs.png_encode(large.astype(np.uint16) * 257))
    return paths


def read_with_pypng(path: Path) -> np.ndarray:
    width, height, rows, info = pypng.Reader(filename=str(path)).asDirect()
    dtype = np.uint16 if info["bitdepth"] > 8 else np.uint8
    return np.vstack([np.asarray(row, dtype=dtype) for row in rows]).reshape(height, width, -1)


def read_with_pillow(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


DECODERS = {
    "napari_color_kmeans read_png (chunk/CRC check + libpng)": read_png,
    "imagecodecs.png_decode (libpng)": lambda path: imagecodecs.png_decode(path.read_bytes()),
    "imagecodecs.spng_decode (libspng)": lambda path: imagecodecs.spng_decode(path.read_bytes()),
    "pypng asDirect (pure Python)": read_with_pypng,
    "Pillow Image.open (reference)": read_with_pillow,
}


def time_decoder(decode, path: Path, repeats: int) -> tuple[float, str]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        data = decode(path)
        times.append(time.perf_counter() - start)
    return statistics.median(times), f"{data.dtype} {data.shape}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed reads per decoder and file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        for label, path in make_large_images(Path(folder)).items():
            size_mb = path.stat().st_size / 1e6
            print(f"\n{label} RGB 4000 x 2665, {size_mb:.1f} MB on disk")
            for name, decode in DECODERS.items():
                repeats = 1 if "pypng" in name else args.repeats
                try:
                    seconds, result = time_decoder(decode, path, repeats)
                except Exception as error:  # report decoders that cannot read this file
                    print(f"  {name:58s} failed: {type(error).__name__}: {error}")
                    continue
                print(f"  {name:58s} {seconds * 1000:8.0f} ms  -> {result}")


if __name__ == "__main__":
    main()
