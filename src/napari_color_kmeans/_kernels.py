"""Per-pixel passes over uint8 images, compiled with numba when it is installed.

numba is optional. Without it, or for images below ``NUMBA_MIN_PIXELS``,
the engine runs the NumPy passes in ``_colors`` and ``_plan``, which give
identical results because every step here is integer arithmetic. The
compiled passes fuse packing with counting and lookup with painting, so they
need no packed copy of the image (4 bytes per pixel) and no int64 counts.
"""

from __future__ import annotations

import logging

import numpy as np

from napari_color_kmeans._colors import LEFT_OUT, N_PACKED_COLORS

logger = logging.getLogger(__name__)

try:
    import numba
except ImportError:
    numba = None

# Switch for the compiled passes; tests set it to compare both paths.
USE_NUMBA = numba is not None

# Below this many pixels the NumPy passes take less time than compiling the
# loops once per process (about 1 s).
NUMBA_MIN_PIXELS = 2**20

_compiled = {}


def available_for(pixels: np.ndarray) -> bool:
    """Return whether the compiled passes should handle ``pixels`` (n, 3 or 4)."""
    return USE_NUMBA and pixels.dtype == np.uint8 and len(pixels) >= NUMBA_MIN_PIXELS


def new_counts(n_pixels: int) -> np.ndarray:
    """Return zeroed per-colour counts, uint32 unless ``n_pixels`` could overflow it."""
    dtype = np.uint32 if n_pixels < 2**32 else np.int64
    return np.zeros(N_PACKED_COLORS + 1, dtype=dtype)


def count_uint8(pixels: np.ndarray, counts: np.ndarray) -> None:
    """Add the packed colour of every row of uint8 ``pixels`` to ``counts``.

    Rows with alpha == 0 are counted at ``LEFT_OUT``.
    """
    _kernel("count", _count_loop)(pixels, counts, LEFT_OUT)


def label_and_paint_uint8(
    pixels: np.ndarray,
    table: np.ndarray,
    palette: np.ndarray,
    labels: np.ndarray,
    segmented: np.ndarray,
) -> None:
    """Write each row's label from ``table`` and its painted colour from ``palette``.

    Rows with alpha == 0 get label 0 and keep their values in
    ``segmented``; alpha is copied unchanged.
    """
    _kernel("paint", _label_and_paint_loop)(pixels, table, palette, labels, segmented)


def _kernel(name: str, function):
    """Return ``function`` compiled by numba, compiling it on first use."""
    if name not in _compiled:
        logger.debug("compiling %s with numba %s", name, numba.__version__)
        _compiled[name] = numba.njit(cache=True, nogil=True)(function)
    return _compiled[name]


def _count_loop(pixels, counts, left_out):
    has_alpha = pixels.shape[1] == 4
    for row in range(pixels.shape[0]):
        if has_alpha and pixels[row, 3] == 0:
            counts[left_out] += 1
            continue
        packed = (
            (np.uint32(pixels[row, 0]) << 16)
            | (np.uint32(pixels[row, 1]) << 8)
            | np.uint32(pixels[row, 2])
        )
        counts[packed] += 1


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
