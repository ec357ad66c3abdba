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
import sys
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from threadpoolctl import ThreadpoolController

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
# threadpoolctl's view of the loaded OpenMP runtimes, made on first use.
_openmp = None


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
    """Return how many threads a pass may use: MAX_THREADS, lowered by the CPU count and OpenMP limits.

    The OpenMP limits are OMP_NUM_THREADS and the current limit of the
    OpenMP runtimes that threadpoolctl finds (scikit-learn's), so a
    ``threadpool_limits(1)`` block also keeps these passes on one thread.
    """
    global _openmp
    limit = min(MAX_THREADS, os.cpu_count() or 1)
    setting = os.environ.get("OMP_NUM_THREADS", "")
    if setting.isdigit() and int(setting) > 0:
        limit = min(limit, int(setting))
    if _openmp is None:
        _openmp = ThreadpoolController().select(user_api="openmp")
    for runtime in _openmp.info():
        limit = min(limit, max(int(runtime["num_threads"]), 1))
    return limit


def _run_parts(function, arguments: list[tuple]) -> list:
    """Call ``function`` once per argument tuple, on the thread pool when there are several."""
    if len(arguments) == 1:
        return [function(*arguments[0])]
    return list(_thread_pool().map(lambda part: function(*part), arguments))


def _thread_pool() -> ThreadPoolExecutor:
    """Return the pool of MAX_THREADS threads that runs the passes, starting it on first use."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=MAX_THREADS, thread_name_prefix="color-kmeans")
    return _pool


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



# The "fast" method for uint8 images (``_fast8``) bins each pixel by the top
# CELL_BITS bits of every channel: a cell of the fine histogram is a block of
# 4 x 4 x 4 colours. Per-thread tables of cell statistics (a count and the
# sums of the two low bits of each channel) take 4 MiB each, where the count
# of every distinct colour takes 64 MiB and a scan for its non-zero entries.
CELL_BITS = 6
N_CELLS = 2 ** (3 * CELL_BITS)
CELL_WIDTH = 2 ** (8 - CELL_BITS)

# A cell takes one label for all its colours when every other centre is
# farther from each of its colours by more than this (in squared 8-bit
# units). Distances of 8-bit colours round off by about 1e-11, so a cell
# that passes labels its colours as a per-colour distance loop would.
CELL_MARGIN = 1e-6

# Step of touch_pages_in_background: the base page size of x86-64 Linux.
# Where pages are larger, the extra writes cost little.
PAGE_BYTES = 4096

# Smaller outputs are not worth a thread that touches their pages.
TOUCH_MIN_PIXELS = 2**20

# The painting pass relabels rows with counted colours after every this
# many words of four rows.
FIX_WORDS = 1024

# Ranges of rows that one thread bins in turn (see _cell_stats_loop).
CELL_STREAMS = 4

# Images below this many pixels are binned by one thread.
CELL_SPLIT_MIN_PIXELS = 2**16


def new_cell_stats(n_pixels: int) -> np.ndarray:
    """Return zeroed cell statistics (tables, N_CELLS, 4), uint32 unless ``n_pixels`` could overflow it.

    Each row contains a cell's pixel count and the sums of the low
    ``8 - CELL_BITS`` bits of red, green and blue (at most 3 per pixel).
    """
    dtype = np.uint32 if 3 * n_pixels < 2**32 else np.int64
    n_tables = n_threads() if n_pixels >= CELL_SPLIT_MIN_PIXELS else 1
    return np.zeros((n_tables, N_CELLS, 4), dtype=dtype)


def add_cell_stats(pixels: np.ndarray, stats: np.ndarray) -> int:
    """Add every clustered row of uint8 ``pixels`` to its cell in ``stats``.

    Each thread takes one range of rows and its own table ``stats[t]``.
    Return the sum of the squared red, green and blue values of the
    clustered rows (alpha != 0), which a separate loop adds up because
    NumPy-style loops vectorise and the binning loop does not.
    """
    kernel = _kernel("cell stats", _cell_stats_loop)
    bounds = np.linspace(0, len(pixels), len(stats) + 1).astype(np.int64)
    ranges = list(zip(bounds[:-1], bounds[1:]))
    parts = [(pixels[low:high], stats[index]) for index, (low, high) in enumerate(ranges)]
    if pixels.shape[1] == 3 and pixels.flags.c_contiguous:
        squares = _kernel("squares", _squares_loop)
        flat = pixels.reshape(-1)
        parts_squares = [(flat[3 * low : 3 * high],) for low, high in ranges]
    else:
        squares = _kernel("squares of rows", _row_squares_loop)
        parts_squares = [(pixels[low:high],) for low, high in ranges]
    _run_parts(kernel, parts)
    return sum(int(part) for part in _run_parts(squares, parts_squares))


def occupied_cells(stats: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the occupied cells (ascending), their pixel counts and their channel sums, all int64."""
    return _kernel("occupied cells", _occupied_cells_loop)(stats, CELL_BITS)


def cell_labels(cells: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Return the nearest centre of all colours of each cell, or -1 where the colours disagree.

    A cell gets centre ``i`` when, for every other centre ``j``, the
    smallest of ``|x - c_j|**2 - |x - c_i|**2`` over the cell's colours
    exceeds ``CELL_MARGIN``. That difference is a sum of one linear
    function per channel, so its smallest value lies at a corner.
    """
    kernel = _kernel("cell labels", _cell_labels_loop)
    centers = np.ascontiguousarray(centers, dtype=np.float64)
    return kernel(cells, centers, CELL_BITS, CELL_WIDTH, CELL_MARGIN)


def cell_colors(cells: np.ndarray, positions: np.ndarray | None = None) -> np.ndarray:
    """Return the colours of ``cells`` as int64 rows, CELL_WIDTH**3 per cell, red slowest, blue fastest.

    ``positions`` picks colours from that sequence; by default all of them.
    """
    n_colors = CELL_WIDTH**3
    if positions is None:
        positions = np.arange(len(cells) * n_colors)
    low = positions % n_colors
    shift = 8 - CELL_BITS
    offsets = np.stack([low >> (2 * shift), low >> shift, low], axis=1) & (CELL_WIDTH - 1)
    owner = cells[positions // n_colors]
    codes = (owner[:, None] >> np.array([2 * CELL_BITS, CELL_BITS, 0])) & (2**CELL_BITS - 1)
    return codes * CELL_WIDTH + offsets


def nearest_in_cells(cells: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Return the nearest centre of every colour of ``cells``, in the order of ``cell_colors``.

    Distances and ties are those of ``_lloyd.nearest``, so both give the
    same centres.
    """
    kernel = _kernel("nearest in cells", _nearest_in_cells_loop)
    return kernel(cells, np.ascontiguousarray(centers, dtype=np.float64), CELL_BITS)


def cell_table_index(colors: np.ndarray) -> np.ndarray:
    """Return the index of integer colour rows (n, 3) in a ``cell_lookup_table``: ``r | g << 8 | b << 16``.

    That is the colour's three bytes read as one little-endian word, so
    the painting pass reads four pixels as three 4-byte words and takes
    each index with two shifts and a mask.
    """
    colors = np.asarray(colors, dtype=np.int64)
    return colors[:, 0] | (colors[:, 1] << 8) | (colors[:, 2] << 16)


def cell_lookup_table(
    cells: np.ndarray, cell_labels: np.ndarray, dtype: np.dtype, out: np.ndarray | None = None
) -> np.ndarray:
    """Return a table from colour to label, ``cell_labels[i]`` for every colour of ``cells[i]``.

    Colours are indexed by ``cell_table_index``. Other colours map
    to 0. Labels in ``cell_labels`` start at 1. ``out``, if given, is a
    zeroed table of N_PACKED_COLORS entries of ``dtype`` to fill.
    """
    table = np.zeros(N_PACKED_COLORS, dtype=dtype) if out is None else out
    _kernel("fill cells", _fill_cells_loop)(cells, cell_labels.astype(dtype), table, CELL_BITS)
    return table


def label_and_paint_cells(
    pixels: np.ndarray,
    table: np.ndarray,
    split_blocks: np.ndarray,
    split_labels: np.ndarray,
    palette: np.ndarray,
    labels: np.ndarray,
    segmented: np.ndarray,
    split_counts: np.ndarray,
) -> None:
    """Label and paint every row of uint8 ``pixels``, as ``label_and_paint_uint8`` does.

    ``table`` maps a colour (indexed by ``cell_table_index``) to its
    label, or to 0 for a colour that is counted. For such a colour,
    ``split_blocks[cell]`` is the number ``i`` of its cell among the split
    cells, and ``low`` combines the two low bits of each channel as in
    ``cell_colors``. Its label is
    ``split_labels[64 i + low]``, and the pass adds 1 to
    ``split_counts[t, 64 i + low]``, where ``t`` is the thread. Rows with
    alpha == 0 get label 0 and keep their values in ``segmented``. Each
    thread takes one range of rows; ``split_counts`` has ``n_threads()``
    rows.
    """
    n_parts = len(split_counts)
    if _paints_by_words(pixels, labels, segmented):
        # Four rows at a time, from row 0 to the last multiple of 4.
        n_words = len(pixels) // 4
        bounds = 4 * np.linspace(0, n_words, n_parts + 1).astype(np.int64)
        palette_words = palette[:, 0].astype(np.int64) | (palette[:, 1].astype(np.int64) << 8)
        palette_words |= palette[:, 2].astype(np.int64) << 16
        kernel = _kernel("paint cells by words", _label_and_paint_cells_words_loop)
        parts = [
            (
                pixels[low:high].reshape(-1), pixels[low:high].reshape(-1).view(np.uint32), table, split_blocks,
                split_labels, palette_words, labels[low:high], labels[low:high].view(np.uint32),
                segmented[low:high].reshape(-1).view(np.uint32), split_counts[index], CELL_BITS,
                np.empty(FIX_WORDS + 1, dtype=np.int64),
            )
            for index, (low, high) in enumerate(zip(bounds[:-1], bounds[1:]))
        ]
        _run_parts(kernel, parts)
        if bounds[-1] == len(pixels):
            return
        pixels, labels, segmented = (array[bounds[-1] :] for array in (pixels, labels, segmented))
        split_counts, n_parts = split_counts[:1], 1

    # Row by row: RGBA, uint16 labels, unaligned arrays, and the rows after
    # the last multiple of four. A copy of this loop without the alpha test
    # painted 32 MP RGB in 42 ms instead of 49 ms, but the word loop now
    # paints nearly all RGB rows, so that copy is gone.
    kernel = _kernel("paint cells", _label_and_paint_cells_loop)
    bounds = np.linspace(0, len(pixels), n_parts + 1).astype(np.int64)
    parts = [
        (
            pixels[low:high], table, split_blocks, split_labels, palette,
            labels[low:high], segmented[low:high], split_counts[index], CELL_BITS,
        )
        for index, (low, high) in enumerate(zip(bounds[:-1], bounds[1:]))
    ]
    _run_parts(kernel, parts)


def _paints_by_words(pixels: np.ndarray, labels: np.ndarray, segmented: np.ndarray) -> bool:
    """Return whether ``_label_and_paint_cells_words_loop`` can take these RGB arrays.

    It reads pixels and writes labels and segmented colours as 4-byte
    words, so all three must be C-contiguous and 4-byte aligned, with
    uint8 labels.
    """
    return (
        sys.byteorder == "little"
        and pixels.shape[1] == 3
        and len(pixels) >= 4
        and labels.dtype == np.uint8
        and pixels.flags.c_contiguous
        and labels.flags.c_contiguous
        and segmented.flags.c_contiguous
        and pixels.ctypes.data % 4 == 0
        and labels.ctypes.data % 4 == 0
        and segmented.ctypes.data % 4 == 0
    )


def touch_pages_in_background(arrays: list[np.ndarray]) -> list[Future]:
    """Start writing a zero into every memory page of the C-contiguous ``arrays`` on the thread pool.

    A new array's first write costs the kernel a page fault and the zeroing
    of that page, about 12 ms on one core for the 128 MiB of outputs of a
    32 MP image on the 2-core test machine. Each pool thread takes an equal
    share of every array, while the "fast" method's search starts on the
    calling thread. Return the futures to wait for before writing to the
    arrays, none with a single thread.
    """
    if n_threads() < 2:
        return []
    kernel = _kernel("touch pages", _touch_pages_loop)
    views = [array.reshape(-1).view(np.uint8) for array in arrays]
    shares = [np.array_split(view, n_threads()) for view in views]
    return [
        _thread_pool().submit(lambda part: [kernel(share[part], PAGE_BYTES) for share in shares], part)
        for part in range(n_threads())
    ]


def _cell_stats_loop(pixels, stats):
    if pixels.shape[1] == 4:
        for row in range(pixels.shape[0]):
            if pixels[row, 3] != 0:
                _add_to_cell(pixels, row, stats)
        return

    # Neighbouring pixels mostly share a cell, and each addition to a cell
    # waits for the one before it. Rows from CELL_STREAMS far-apart ranges
    # take turns, so additions to different cells overlap: 27 ms instead of
    # 31 ms for 32 MP on the 2-core test machine. An alpha test in this
    # loop would cost that gain.
    n_per_stream = pixels.shape[0] // CELL_STREAMS
    for index in range(n_per_stream):
        for stream in range(CELL_STREAMS):
            _add_to_cell(pixels, index + stream * n_per_stream, stats)
    for row in range(CELL_STREAMS * n_per_stream, pixels.shape[0]):
        _add_to_cell(pixels, row, stats)


def _add_to_cell(pixels, row, stats):
    # Add one row of uint8 pixels to its cell (see new_cell_stats).
    shift = 8 - CELL_BITS
    low_mask = CELL_WIDTH - 1
    red = np.int64(pixels[row, 0])
    green = np.int64(pixels[row, 1])
    blue = np.int64(pixels[row, 2])
    cell = (((red >> shift) << (2 * CELL_BITS)) | ((green >> shift) << CELL_BITS)) | (blue >> shift)
    stats[cell, 0] += 1
    stats[cell, 1] += red & low_mask
    stats[cell, 2] += green & low_mask
    stats[cell, 3] += blue & low_mask


def _squares_loop(values):
    total = 0
    for index in range(values.shape[0]):
        value = np.int64(values[index])
        total += value * value
    return total


def _row_squares_loop(pixels):
    has_alpha = pixels.shape[1] == 4
    total = 0
    for row in range(pixels.shape[0]):
        if has_alpha and pixels[row, 3] == 0:
            continue
        for channel in range(3):
            value = np.int64(pixels[row, channel])
            total += value * value
    return total


def _occupied_cells_loop(stats, bits):
    n_cells = stats.shape[1]
    width = 2 ** (8 - bits)
    n_occupied = 0
    for cell in range(n_cells):
        for table in range(stats.shape[0]):
            if stats[table, cell, 0] != 0:
                n_occupied += 1
                break
    cells = np.empty(n_occupied, dtype=np.int64)
    counts = np.zeros(n_occupied, dtype=np.int64)
    sums = np.zeros((n_occupied, 3), dtype=np.int64)
    slot = 0
    for cell in range(n_cells):
        count = 0
        for table in range(stats.shape[0]):
            count += np.int64(stats[table, cell, 0])
        if count == 0:
            continue
        cells[slot] = cell
        counts[slot] = count
        for channel in range(3):
            code = (cell >> (bits * (2 - channel))) & (2**bits - 1)
            total = count * code * width
            for table in range(stats.shape[0]):
                total += np.int64(stats[table, cell, channel + 1])
            sums[slot, channel] = total
        slot += 1
    return cells, counts, sums


def _cell_labels_loop(cells, centers, bits, width, margin):
    n_clusters = centers.shape[0]
    labels = np.empty(len(cells), dtype=np.int64)
    low = np.empty(3)
    high = np.empty(3)
    for slot in range(len(cells)):
        cell = cells[slot]
        for channel in range(3):
            low[channel] = ((cell >> (bits * (2 - channel))) & (2**bits - 1)) * width
            high[channel] = low[channel] + (width - 1)

        # Candidate: the centre nearest to the middle of the cell.
        best = nearest_center(
            0.5 * (low[0] + high[0]), 0.5 * (low[1] + high[1]), 0.5 * (low[2] + high[2]), centers
        )[0]

        for index in range(n_clusters):
            if index == best:
                continue
            smallest = 0.0
            for channel in range(3):
                other = centers[index, channel]
                own = centers[best, channel]
                at_low = (low[channel] - other) ** 2 - (low[channel] - own) ** 2
                at_high = (high[channel] - other) ** 2 - (high[channel] - own) ** 2
                smallest += min(at_low, at_high)
            if smallest <= margin:
                best = -1
                break
        labels[slot] = best
    return labels


def _nearest_in_cells_loop(cells, centers, bits):
    width = 2 ** (8 - bits)
    mask = 2**bits - 1
    nearest = np.empty(len(cells) * width**3, dtype=np.int64)
    slot = 0
    for cell in cells:
        red = ((cell >> (2 * bits)) & mask) * width
        green = ((cell >> bits) & mask) * width
        blue = (cell & mask) * width
        for r in range(red, red + width):
            for g in range(green, green + width):
                for b in range(blue, blue + width):
                    nearest[slot] = nearest_center(np.float64(r), np.float64(g), np.float64(b), centers)[0]
                    slot += 1
    return nearest


def _fill_cells_loop(cells, cell_labels, table, bits):
    width = 2 ** (8 - bits)
    mask = 2**bits - 1
    for slot in range(len(cells)):
        cell = cells[slot]
        red = ((cell >> (2 * bits)) & mask) * width
        green = ((cell >> bits) & mask) * width
        blue = (cell & mask) * width
        for r in range(red, red + width):
            for g in range(green, green + width):
                start = r | (g << 8) | (blue << 16)
                for b in range(width):
                    table[start + (b << 16)] = cell_labels[slot]


def nearest_center(x0, x1, x2, centers):
    """Return the index of the centre nearest to colour (x0, x1, x2) and its squared distance.

    Distances are ``(x0 - c0)**2 + (x1 - c1)**2 + (x2 - c2)**2`` in float64,
    added in that order, and ties go to the lower index: the rule of every
    compiled loop here and of ``_lloyd``.
    """
    best = 0
    best_distance = np.inf
    for index in range(centers.shape[0]):
        offset = x0 - centers[index, 0]
        distance = offset * offset
        offset = x1 - centers[index, 1]
        distance += offset * offset
        offset = x2 - centers[index, 2]
        distance += offset * offset
        if distance < best_distance:
            best_distance = distance
            best = index
    return best, best_distance


def _split_slot(red, green, blue, split_blocks, bits):
    # Position of a colour in the split-cell arrays of label_and_paint_cells.
    shift = 8 - bits
    low_mask = 2**shift - 1
    cell = (((red >> shift) << (2 * bits)) | ((green >> shift) << bits)) | (blue >> shift)
    low = ((red & low_mask) << (2 * shift)) | ((green & low_mask) << shift) | (blue & low_mask)
    return np.int64(split_blocks[cell]) * 2 ** (3 * shift) + low


if numba is not None:
    # Compiled kernels, here and in _lloyd, inline these helpers by name.
    # NOTE: numba's on-disk cache checks only the file of the cached kernel
    # (numba 0.68), so after an edit here _lloyd's kernels keep the old
    # helper until their __pycache__/*.nbi and *.nbc files are removed.
    nearest_center = numba.njit(inline="always")(nearest_center)
    _split_slot = numba.njit(inline="always")(_split_slot)
    _add_to_cell = numba.njit(inline="always")(_add_to_cell)


def _label_and_paint_cells_words_loop(
    values, value_words, table, split_blocks, split_labels, palette_words, labels, label_words, color_words,
    split_counts, bits, fixes
):
    # _label_and_paint_cells_loop for four RGB rows at a time, which reads
    # their 12 bytes of colour as three 4-byte words ``value_words`` and
    # writes their labels as one word and their segmented colours as three.
    # Reading words instead of bytes took 29 ms instead of 32 ms for 16 MP
    # on one core of the 2-core test machine.
    # Words with a counted colour (label 0 in the table) are noted in
    # ``fixes`` without a branch and relabelled one row at a time after
    # every FIX_WORDS words, while those rows are still cached.
    n_words = label_words.shape[0]
    for first in range(0, n_words, FIX_WORDS):
        n_fixes = 0
        for word in range(first, min(first + FIX_WORDS, n_words)):
            w0 = np.int64(value_words[3 * word])
            w1 = np.int64(value_words[3 * word + 1])
            w2 = np.int64(value_words[3 * word + 2])
            l0 = np.int64(table[w0 & 0xFFFFFF])
            l1 = np.int64(table[(w0 >> 24) | ((w1 & 0xFFFF) << 8)])
            l2 = np.int64(table[(w1 >> 16) | ((w2 & 0xFF) << 16)])
            l3 = np.int64(table[w2 >> 8])
            fixes[n_fixes] = word
            n_fixes += (l0 == 0) | (l1 == 0) | (l2 == 0) | (l3 == 0)
            label_words[word] = np.uint32(l0 | (l1 << 8) | (l2 << 16) | (l3 << 24))

        for fix in range(n_fixes):
            for row in range(4 * fixes[fix], 4 * fixes[fix] + 4):
                if labels[row] != 0:
                    continue
                red = np.int64(values[3 * row])
                green = np.int64(values[3 * row + 1])
                blue = np.int64(values[3 * row + 2])
                slot = _split_slot(red, green, blue, split_blocks, bits)
                labels[row] = split_labels[slot]
                split_counts[slot] += 1

    # Painting from the finished labels in a second loop took 25 ms instead
    # of 29 ms for 16 MP on one core, against painting in the loop above.
    for word in range(n_words):
        packed = np.int64(label_words[word])
        c0 = palette_words[packed & 0xFF]
        c1 = palette_words[(packed >> 8) & 0xFF]
        c2 = palette_words[(packed >> 16) & 0xFF]
        c3 = palette_words[packed >> 24]
        color_words[3 * word] = np.uint32((c0 | (c1 << 24)) & 0xFFFFFFFF)
        color_words[3 * word + 1] = np.uint32((c1 >> 8) | ((c2 << 16) & 0xFFFFFFFF))
        color_words[3 * word + 2] = np.uint32((c2 >> 16) | (c3 << 8))


def _label_and_paint_cells_loop(
    pixels, table, split_blocks, split_labels, palette, labels, segmented, split_counts, bits
):
    has_alpha = pixels.shape[1] == 4
    for row in range(pixels.shape[0]):
        red = pixels[row, 0]
        green = pixels[row, 1]
        blue = pixels[row, 2]
        if has_alpha and pixels[row, 3] == 0:
            labels[row] = 0
            segmented[row, 0] = red
            segmented[row, 1] = green
            segmented[row, 2] = blue
            segmented[row, 3] = 0
            continue
        label = table[np.uint32(red) | (np.uint32(green) << 8) | (np.uint32(blue) << 16)]
        if label == 0:
            slot = _split_slot(np.int64(red), np.int64(green), np.int64(blue), split_blocks, bits)
            label = split_labels[slot]
            split_counts[slot] += 1
        labels[row] = label
        segmented[row, 0] = palette[label, 0]
        segmented[row, 1] = palette[label, 1]
        segmented[row, 2] = palette[label, 2]
        if has_alpha:
            segmented[row, 3] = pixels[row, 3]


def _touch_pages_loop(values, step):
    for index in range(0, values.shape[0], step):
        values[index] = 0
