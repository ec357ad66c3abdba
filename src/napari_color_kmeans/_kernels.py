"""Per-pixel passes over uint8 images, compiled with numba when it is installed.

numba is optional. Without it the engine runs the NumPy passes in
``_colors`` and ``_plan``, which give identical results because every step
here is integer arithmetic or float arithmetic in the same order. The
compiled passes fuse packing with counting and lookup with painting, so they
need no packed copy of the image (4 bytes per pixel) and no int64 counts.
Images below ``NUMBA_MIN_PIXELS`` are counted by a radix sort instead of a
count table.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from napari_color_kmeans._colors import LEFT_OUT, N_PACKED_COLORS, bin_scale

logger = logging.getLogger(__name__)

try:
    import numba
except ImportError:
    numba = None

# Switch for the compiled passes; tests set it to compare both paths.
USE_NUMBA = numba is not None

# Below this many pixels ``distinct_uint8`` sorts the packed colours instead
# of counting them in a table of 2**24 entries, which costs more to scan
# than a small image saves.
NUMBA_MIN_PIXELS = 2**20

# The engine hands the compiled passes this many pixels at a time. On 32 MP
# (2-core test machine) the count took 45 ms in 2**20-pixel chunks and 38 ms
# in one piece, because both threads wait for each other at the end of
# every chunk.
CHUNK_PIXELS = 2**22

# Each pass splits its work over at most this many threads (the kernels
# release the GIL); OMP_NUM_THREADS lowers it, as for scikit-learn's loops.
MAX_THREADS = 2

_compiled = {}
_pool = None


def available_for(pixels: np.ndarray) -> bool:
    """Return whether the compiled passes should handle ``pixels`` (n, 3 or 4)."""
    return USE_NUMBA and pixels.dtype == np.uint8 and len(pixels) >= NUMBA_MIN_PIXELS


def sorts_small(pixels: np.ndarray) -> bool:
    """Return whether ``distinct_uint8`` should count the colours of ``pixels`` (n, 3 or 4).

    It serves uint8 images below ``NUMBA_MIN_PIXELS``, where scanning a
    table of ``2**24`` counts costs more than sorting the packed colours.
    """
    return USE_NUMBA and pixels.dtype == np.uint8 and len(pixels) < NUMBA_MIN_PIXELS


def distinct_uint8(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the distinct packed colours of uint8 ``pixels`` (ascending, int64) and their counts.

    Rows with alpha == 0 are left out. The packed colours are sorted by a
    two-pass radix sort on 12 bits at a time, which took about 2 ms for
    the 426,000 pixels of the tutorial photo where ``np.unique`` took 13 ms.
    """
    kernel = _kernel("distinct", _distinct_loop)
    return kernel(pixels)


def histogram_bins(
    samples: np.ndarray, sample_weight: np.ndarray, bits: int, low: np.ndarray, high: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return what ``_colors.histogram_bins`` returns, in one compiled pass over ``samples``.

    The bin numbers come from the same float64 operations, and every bin
    adds its weights and weighted colours in sample order, as np.bincount
    does, so both functions return identical arrays.
    """
    kernel = _kernel("histogram", _histogram_loop)
    return kernel(
        np.ascontiguousarray(samples, dtype=np.float64),
        np.ascontiguousarray(sample_weight, dtype=np.float64),
        2**bits,
        np.asarray(low, dtype=np.float64),
        bin_scale(bits, low, high),
    )


def new_counts(n_pixels: int) -> np.ndarray:
    """Return zeroed per-colour counts, uint32 unless ``n_pixels`` could overflow it."""
    dtype = np.uint32 if n_pixels < 2**32 else np.int64
    return np.zeros(N_PACKED_COLORS + 1, dtype=dtype)


def n_threads() -> int:
    """Return how many threads a pass may use: MAX_THREADS, lowered by the CPU count and OMP_NUM_THREADS."""
    limit = min(MAX_THREADS, os.cpu_count() or 1)
    setting = os.environ.get("OMP_NUM_THREADS", "")
    if setting.isdigit() and int(setting) > 0:
        limit = min(limit, int(setting))
    return limit


def _run_parts(function, arguments: list[tuple]) -> list:
    """Call ``function`` once per argument tuple, on the thread pool when there are several."""
    global _pool
    if len(arguments) == 1:
        return [function(*arguments[0])]
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=MAX_THREADS, thread_name_prefix="color-kmeans")
    return list(_pool.map(lambda part: function(*part), arguments))


def count_uint8(pixels: np.ndarray, counts: np.ndarray) -> None:
    """Add the packed colour of every row of uint8 ``pixels`` to ``counts``.

    Rows with alpha == 0 are counted at ``LEFT_OUT``. With several threads,
    each thread scans every row but counts only the colours whose red
    value falls in its own range, so no two threads write the same entry.
    The ranges split a sample of the red values evenly.
    """
    kernel = _kernel("count", _count_loop)
    bounds = _red_bounds(pixels, n_threads())
    parts = [
        (pixels, counts, LEFT_OUT, int(low), int(high), index == 0)
        for index, (low, high) in enumerate(zip(bounds[:-1], bounds[1:]))
    ]
    _run_parts(kernel, parts)


def _red_bounds(pixels: np.ndarray, n_parts: int) -> np.ndarray:
    """Return n_parts + 1 red bounds from 0 to 256 that split a sample of rows evenly."""
    if n_parts == 1:
        return np.array([0, 256])
    sample = pixels[:: max(1, len(pixels) // 4096), 0]
    inner = np.quantile(sample, np.arange(1, n_parts) / n_parts, method="higher")
    return np.concatenate([[0], np.sort(inner.astype(int)), [256]])


def nonzero_colors(counts: np.ndarray) -> np.ndarray:
    """Return the packed colours below ``LEFT_OUT`` whose count is not zero, ascending.

    Equal to ``np.flatnonzero(counts[:LEFT_OUT])``.
    """
    return nonzero_counts(counts)[0]


def nonzero_counts(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the colours of ``nonzero_colors`` and their counts, both int64.

    Each thread scans one range of colours. The counts come from the same
    scan, which saves a gather from the 64 MiB of counts.
    """
    kernel = _kernel("nonzero", _nonzero_loop)
    # The scan reads 8 bytes at a time and looks inside only non-zero words.
    words = counts[:LEFT_OUT].view(np.uint64)
    per_word = LEFT_OUT // len(words)
    bounds = np.linspace(0, len(words), n_threads() + 1).astype(np.int64)
    parts = [(counts, words, per_word, int(low), int(high)) for low, high in zip(bounds[:-1], bounds[1:])]
    found = _run_parts(kernel, parts)
    return np.concatenate([part[0] for part in found]), np.concatenate([part[1] for part in found])


def label_and_paint_uint8(
    pixels: np.ndarray,
    table: np.ndarray,
    palette: np.ndarray,
    labels: np.ndarray,
    segmented: np.ndarray,
) -> None:
    """Write each row's label from ``table`` and its painted colour from ``palette``.

    Rows with alpha == 0 get label 0 and keep their values in
    ``segmented``; alpha is copied unchanged. Each thread takes one
    range of rows.
    """
    if pixels.shape[1] == 3:
        kernel = _kernel("paint rgb", _label_and_paint_rgb_loop)
    else:
        kernel = _kernel("paint", _label_and_paint_loop)
    bounds = np.linspace(0, len(pixels), n_threads() + 1).astype(np.int64)
    parts = [
        (pixels[low:high], table, palette, labels[low:high], segmented[low:high])
        for low, high in zip(bounds[:-1], bounds[1:])
    ]
    _run_parts(kernel, parts)


def _kernel(name: str, function):
    """Return ``function`` compiled by numba, compiling it on first use."""
    if name not in _compiled:
        logger.debug("compiling %s with numba %s", name, numba.__version__)
        _compiled[name] = numba.njit(cache=True, nogil=True)(function)
    return _compiled[name]


def _count_loop(pixels, counts, left_out, red_low, red_high, count_left_out):
    has_alpha = pixels.shape[1] == 4
    for row in range(pixels.shape[0]):
        if has_alpha and pixels[row, 3] == 0:
            if count_left_out:
                counts[left_out] += 1
            continue
        if pixels[row, 0] < red_low or pixels[row, 0] >= red_high:
            continue
        packed = (
            (np.uint32(pixels[row, 0]) << 16)
            | (np.uint32(pixels[row, 1]) << 8)
            | np.uint32(pixels[row, 2])
        )
        counts[packed] += 1


def _distinct_loop(pixels):
    has_alpha = pixels.shape[1] == 4
    packed = np.empty(pixels.shape[0], dtype=np.uint32)
    n_packed = 0
    for row in range(pixels.shape[0]):
        if has_alpha and pixels[row, 3] == 0:
            continue
        packed[n_packed] = (
            (np.uint32(pixels[row, 0]) << 16)
            | (np.uint32(pixels[row, 1]) << 8)
            | np.uint32(pixels[row, 2])
        )
        n_packed += 1
    packed = packed[:n_packed]

    # Bucket starts for the low and the high 12 bits, from one counting pass.
    low_starts = np.zeros(4097, dtype=np.int64)
    high_starts = np.zeros(4097, dtype=np.int64)
    for value in packed:
        low_starts[(value & 4095) + 1] += 1
        high_starts[(value >> 12) + 1] += 1
    low_starts = np.cumsum(low_starts)
    high_starts = np.cumsum(high_starts)

    by_low = np.empty(n_packed, dtype=np.uint32)
    for value in packed:
        bucket = value & 4095
        by_low[low_starts[bucket]] = value
        low_starts[bucket] += 1
    for value in by_low:
        bucket = value >> 12
        packed[high_starts[bucket]] = value
        high_starts[bucket] += 1

    n_distinct = 0
    for position in range(n_packed):
        if position == 0 or packed[position] != packed[position - 1]:
            n_distinct += 1
    colors = np.empty(n_distinct, dtype=np.int64)
    counts = np.zeros(n_distinct, dtype=np.int64)
    slot = -1
    for position in range(n_packed):
        if position == 0 or packed[position] != packed[position - 1]:
            slot += 1
            colors[slot] = packed[position]
        counts[slot] += 1
    return colors, counts


def _histogram_loop(samples, weights, n_bins, low, scale):
    totals = np.zeros(n_bins**3)
    sums = np.zeros((n_bins**3, 3))
    for row in range(samples.shape[0]):
        index = 0
        for channel in range(3):
            code = np.int64((samples[row, channel] - low[channel]) * scale[channel])
            code = min(max(code, 0), n_bins - 1)
            index = index * n_bins + code
        weight = weights[row]
        totals[index] += weight
        for channel in range(3):
            product = weight * samples[row, channel]
            sums[index, channel] += product

    n_occupied = 0
    for index in range(n_bins**3):
        if totals[index] != 0:
            n_occupied += 1
    means = np.empty((n_occupied, 3))
    bin_weights = np.empty(n_occupied)
    slot = 0
    for index in range(n_bins**3):
        if totals[index] != 0:
            for channel in range(3):
                means[slot, channel] = sums[index, channel] / totals[index]
            bin_weights[slot] = totals[index]
            slot += 1
    return means, bin_weights


def _nonzero_loop(counts, words, per_word, start, stop):
    # The first pass also counts the colours of each block of 1024 words, so
    # the second pass reads only blocks that have any.
    block_size = 1024
    n_blocks = (stop - start + block_size - 1) // block_size
    block_found = np.zeros(n_blocks, dtype=np.int64)
    for word in range(start, stop):
        if words[word] != 0:
            for color in range(word * per_word, (word + 1) * per_word):
                if counts[color] != 0:
                    block_found[(word - start) // block_size] += 1

    found = np.empty(block_found.sum(), dtype=np.int64)
    found_counts = np.empty(len(found), dtype=np.int64)
    position = 0
    for block in range(n_blocks):
        if block_found[block] == 0:
            continue
        for word in range(start + block * block_size, min(start + (block + 1) * block_size, stop)):
            if words[word] != 0:
                for color in range(word * per_word, (word + 1) * per_word):
                    if counts[color] != 0:
                        found[position] = color
                        found_counts[position] = counts[color]
                        position += 1
    return found, found_counts


def _label_and_paint_rgb_loop(pixels, table, palette, labels, segmented):
    # The RGB case of _label_and_paint_loop, which reads each value once.
    # It took 35 ms instead of 47 ms for 32 MP on the 2-core test machine.
    for row in range(pixels.shape[0]):
        red = pixels[row, 0]
        green = pixels[row, 1]
        blue = pixels[row, 2]
        label = table[(np.uint32(red) << 16) | (np.uint32(green) << 8) | np.uint32(blue)]
        labels[row] = label
        if label == 0:
            segmented[row, 0] = red
            segmented[row, 1] = green
            segmented[row, 2] = blue
        else:
            segmented[row, 0] = palette[label, 0]
            segmented[row, 1] = palette[label, 1]
            segmented[row, 2] = palette[label, 2]


def _label_and_paint_loop(pixels, table, palette, labels, segmented):
    n_channels = pixels.shape[1]
    for row in range(pixels.shape[0]):
        label = 0
        if n_channels == 3 or pixels[row, 3] != 0:
            packed = (
                (np.uint32(pixels[row, 0]) << 16)
                | (np.uint32(pixels[row, 1]) << 8)
                | np.uint32(pixels[row, 2])
            )
            label = table[packed]
        labels[row] = label

        if label == 0:
            for channel in range(n_channels):
                segmented[row, channel] = pixels[row, channel]
            continue
        for channel in range(3):
            segmented[row, channel] = palette[label, channel]
        if n_channels == 4:
            segmented[row, 3] = pixels[row, 3]
