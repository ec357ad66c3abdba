"""Colour bookkeeping for the engine: 8-bit packing, distinct colours and lookups.

An 8-bit RGB triple packs into one integer ``R << 16 | G << 8 | B`` below
``2**24``. Pixels that are left out of the clustering (NaN or inf in a
channel, or alpha == 0) get the packed value ``LEFT_OUT`` (``2**24``), so one
lookup table of ``2**24 + 1`` entries maps every pixel to its label, with
label 0 for left-out pixels.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import numpy as np

N_PACKED_COLORS = 2**24
LEFT_OUT = N_PACKED_COLORS
CHUNK_PIXELS = 2**20

# Above this many pixels one np.bincount over all 2**24 colours is cheaper
# than sorting the packed values with np.unique.
BINCOUNT_MIN_PIXELS = 2**22


def iter_chunks(n_pixels: int, chunk_pixels: int = CHUNK_PIXELS) -> Iterator[slice]:
    """Yield consecutive slices that cover ``range(n_pixels)``."""
    for start in range(0, n_pixels, chunk_pixels):
        yield slice(start, min(start + chunk_pixels, n_pixels))


def valid_mask(pixels: np.ndarray) -> np.ndarray | None:
    """Return which rows of ``pixels`` (n, 3 or 4) are clustered, or None if all are.

    A pixel is left out when any channel is NaN or infinite, or when it has
    an alpha channel equal to 0 (fully transparent).
    """
    mask = None
    if pixels.dtype.kind == "f":
        finite = np.isfinite(pixels).all(axis=1)
        if not finite.all():
            mask = finite
    if pixels.shape[1] == 4:
        opaque = pixels[:, 3] != 0
        if not opaque.all():
            mask = opaque if mask is None else mask & opaque
    return mask


def _float_8bit_table(dtype: np.dtype) -> np.ndarray:
    """Return the values ``k / 255`` for k = 0..255 in ``dtype``, two ways.

    ``k / 255`` divided in float32 and ``k / 255`` divided in float64 then
    rounded to float32 can differ in the last bit, and both are common
    ways to write 8-bit images as float, so row 0 and row 1 hold the two.
    """
    codes = np.arange(256)
    direct = np.divide(codes, 255, dtype=dtype)
    via_float64 = (codes / 255.0).astype(np.float32).astype(dtype)
    return np.stack([direct, via_float64])


def _codes_8bit(rgb: np.ndarray) -> np.ndarray | None:
    """Return the 8-bit codes (uint32) of ``rgb`` if it is 8-bit data, else None.

    uint8 is always 8-bit data. uint16 is when every value is a multiple of
    257 (``k * 257`` maps 0..255 onto 0..65535). float is when every value is
    exactly ``k / 255`` for an integer k in 0..255. ``rgb`` must contain only
    clustered pixels (finite values).
    """
    if rgb.dtype == np.uint8:
        return rgb.astype(np.uint32)

    if rgb.dtype == np.uint16:
        codes, remainders = np.divmod(rgb, 257)
        if remainders.any():
            return None
        return codes.astype(np.uint32)

    scaled = np.rint(rgb.astype(np.float64) * 255.0)
    if scaled.size and (scaled.min() < 0 or scaled.max() > 255):
        return None
    codes = scaled.astype(np.uint32)
    table = _float_8bit_table(rgb.dtype)
    exact = (rgb == table[0][codes]) | (rgb == table[1][codes])
    if not exact.all():
        return None
    return codes


def pack_8bit(pixels: np.ndarray, out: np.ndarray) -> bool:
    """Write the packed 8-bit colour of every row of ``pixels`` into ``out``.

    ``pixels`` is (n, 3 or 4) and ``out`` a uint32 array of n entries.
    Left-out pixels get ``LEFT_OUT``. Return False, with ``out`` partly
    written, when the data are not 8-bit quantised (see ``_codes_8bit``).
    """
    mask = valid_mask(pixels)
    rgb = pixels[:, :3] if mask is None else pixels[mask, :3]

    codes = _codes_8bit(rgb)
    if codes is None:
        return False

    packed = (codes[:, 0] << 16) | (codes[:, 1] << 8) | codes[:, 2]
    if mask is None:
        out[:] = packed
    else:
        out[:] = LEFT_OUT
        out[mask] = packed
    return True


def unpack(packed: np.ndarray) -> np.ndarray:
    """Return the (m, 3) float64 RGB codes of packed colours below ``2**24``."""
    if sys.byteorder == "little" and packed.dtype == np.int64 and packed.flags.c_contiguous:
        # Bytes 2, 1 and 0 of each little-endian value are R, G and B. This
        # view took a fifth of the time of the shifts below on 551,000 colours.
        return packed.view(np.uint8).reshape(-1, 8)[:, 2::-1].astype(np.float64)
    packed = packed.astype(np.int64, copy=False)
    return np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=1).astype(
        np.float64
    )


def count_packed(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Return the distinct packed colours, their pixel counts and the left-out count.

    The distinct colours come back sorted and exclude ``LEFT_OUT``.
    """
    if packed.size >= BINCOUNT_MIN_PIXELS:
        counts = np.bincount(packed, minlength=N_PACKED_COLORS + 1)
        n_left_out = int(counts[LEFT_OUT])
        colors = np.flatnonzero(counts[:LEFT_OUT])
        return colors, counts[colors].astype(np.int64), n_left_out

    colors, counts = np.unique(packed, return_counts=True)
    n_left_out = 0
    if colors.size and colors[-1] == LEFT_OUT:
        n_left_out = int(counts[-1])
        colors, counts = colors[:-1], counts[:-1]
    return colors.astype(np.int64), counts.astype(np.int64), n_left_out


def histogram_bins(
    samples: np.ndarray,
    sample_weight: np.ndarray,
    bits: int,
    low: np.ndarray,
    high: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Group colours into ``2**bits`` equal bins per channel between ``low`` and ``high``.

    ``samples`` is (m, 3) float64 with weights ``sample_weight``; ``low`` and
    ``high`` are per-channel bounds (for 8-bit codes 0 and 256, so that a
    bin holds the colours that share their top ``bits`` bits). Return the
    weighted mean colour of every occupied bin and the bin's total weight,
    ordered by bin index.
    """
    n_bins = 2**bits
    scale = bin_scale(bits, low, high)
    bin_index = np.zeros(len(samples), dtype=np.int64)
    for channel in range(3):
        # Samples are at least ``low``, so truncation towards zero is the floor.
        codes = ((samples[:, channel] - low[channel]) * scale[channel]).astype(np.int64)
        np.clip(codes, 0, n_bins - 1, out=codes)
        bin_index *= n_bins
        bin_index += codes

    # np.bincount over all n_bins**3 bins (at most 2**24 for 8 bits) is
    # faster than sorting the bin indices with np.unique.
    weights = np.bincount(bin_index, weights=sample_weight, minlength=n_bins**3)
    occupied = np.flatnonzero(weights)
    sums = np.stack(
        [
            np.bincount(bin_index, weights=sample_weight * samples[:, c], minlength=n_bins**3)[occupied]
            for c in range(3)
        ],
        axis=1,
    )
    weights = weights[occupied]
    return sums / weights[:, None], weights


def bin_scale(bits: int, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Return the per-channel factor from ``value - low`` to a bin number of ``histogram_bins``."""
    width = np.where(high > low, high - low, 1.0)
    return 2**bits / width


def lookup_table(colors: np.ndarray, labels: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Return a table that maps every packed colour (and ``LEFT_OUT``) to a label.

    Colours not in ``colors`` and ``LEFT_OUT`` map to 0.
    """
    table = np.zeros(N_PACKED_COLORS + 1, dtype=dtype)
    table[colors] = labels
    return table
