"""The "fast" method for uint8 images, from cell statistics instead of distinct colours.

"fast" fits on the 6-bit histogram and then labels every pixel with its
nearest centre. Neither step needs the count of every distinct colour,
which costs a 64 MiB table and a scan of it at 32 MP:

1. One compiled pass adds each pixel to its cell (the top 6 bits of every
   channel): a count and the sums of the two low bits. The fine
   histogram's means follow exactly, as integer sums divided by counts.
2. After the search, every cell belongs to the centre nearest to its mean.
   A table from colour to label contains that centre for all colours of
   the cell, except for colours of cells on a border whose own nearest
   centre differs; those are looked up and counted one by one while
   painting (about 1 % of the pixels of a photo at k = 8).
3. Each centre's pixel count and channel sums follow from the cell
   statistics and the counted colours, and with the sum of squared
   channel values they give the inertia.

Labels are written in the order that the histogram's own counts give. When
the exact counts order the clusters differently, one more pass renumbers
the labels. The result equals the distinct-colour path in
``_plan.run_8bit`` (tests compare them), except that the inertia is summed
in another order.
"""

from __future__ import annotations

from collections.abc import Generator
from fractions import Fraction

import numpy as np

from napari_color_kmeans import _colors, _fit, _kernels, _plan, _search

METHOD_NAME = f"fast ({_plan.HISTOGRAM_BITS}-bit histogram)"


def applies(request: _plan.Request, pixels: np.ndarray) -> bool:
    """Return whether ``run`` serves ``request`` on ``pixels`` (n, 3 or 4)."""
    return (
        request.method == "fast"
        and _kernels.USE_NUMBA
        and pixels.dtype == np.uint8
        and _kernels.CELL_BITS == _plan.HISTOGRAM_BITS == _search.FINE_BITS
    )


def run(
    request: _plan.Request, pixels: np.ndarray, messages: list[str]
) -> Generator[str, None, _plan.Outcome | None]:
    """Segment uint8 ``pixels``; return None when the histogram has no more cells than clusters.

    The caller then takes the distinct-colour path, which handles images
    with that few colours.
    """
    stats = _kernels.new_cell_stats(len(pixels))
    squares = 0
    for chunk in _colors.iter_chunks(len(pixels), _kernels.CHUNK_PIXELS):
        yield "counting colours"
        squares += _kernels.add_cell_stats(pixels[chunk], stats)
    cells, cell_counts, cell_sums = _kernels.occupied_cells(stats)
    del stats
    if len(cells) <= request.n_clusters:
        return None

    label_dtype = _plan._label_dtype(request.n_clusters)
    labels = np.empty(len(pixels), dtype=label_dtype)
    segmented = np.empty_like(pixels, order="C")
    table = np.zeros(_kernels.N_PACKED_COLORS, dtype=label_dtype)
    touching = []
    if len(pixels) >= _kernels.TOUCH_MIN_PIXELS:
        touching = _kernels.touch_pages_in_background([labels, segmented, table])

    weights = cell_counts.astype(np.float64)
    means = cell_sums.astype(np.float64) / weights[:, None]
    seeds = _fit.derive_seeds(request.random_state, request.n_init or _plan.N_INIT_HISTOGRAM)
    value_range = (np.zeros(3), np.full(3, 256.0))
    fits = yield from _search.search_fine(means, weights, request.n_clusters, seeds, value_range)
    centers = fits[0].cluster_centers

    # Every cell goes to the centre nearest to its mean, as the fit labelled it.
    # In split cells, the colours with another nearest centre are counted while painting.
    majority = fits[0].labels
    ranking = _rank(centers, np.bincount(majority, weights=weights, minlength=len(centers)))
    center_labels = np.empty(len(centers), dtype=np.int64)
    center_labels[ranking] = np.arange(1, len(centers) + 1)

    split = _kernels.cell_labels(cells, centers) < 0
    split_cells = cells[split]
    split_nearest = _kernels.nearest_in_cells(split_cells, centers)
    split_majority = np.repeat(majority[split], _kernels.CELL_WIDTH**3)
    minority = np.flatnonzero(split_nearest != split_majority)
    minority_colors = _kernels.cell_colors(split_cells, minority)

    for future in touching:
        future.result()
    _kernels.cell_lookup_table(cells, center_labels[majority], label_dtype, out=table)
    table[_kernels.cell_table_index(minority_colors)] = 0
    split_blocks = np.zeros(_kernels.N_CELLS, dtype=np.int32)
    split_blocks[split_cells] = np.arange(len(split_cells))
    split_labels = center_labels[split_nearest].astype(label_dtype)

    palette = _plan._palette_in_dtype(centers[ranking], pixels.dtype)
    thread_counts = np.zeros((_kernels.n_threads(), len(split_nearest)), dtype=np.int64)
    for chunk in _colors.iter_chunks(len(pixels), _kernels.CHUNK_PIXELS):
        yield "painting segmented image"
        _kernels.label_and_paint_cells(
            pixels[chunk], table, split_blocks, split_labels, palette,
            labels[chunk], segmented[chunk], thread_counts,
        )
    del table
    moved = thread_counts.sum(axis=0)[minority]

    # Pixel counts and channel sums per centre: whole cells go to their
    # majority centre, and counted colours move from it to their own.
    moved_sums = moved[:, None] * minority_colors
    cluster_counts = _add_by(majority, cell_counts, len(centers))
    cluster_sums = _add_by(majority, cell_sums, len(centers))
    cluster_counts -= _add_by(split_majority[minority], moved, len(centers))
    cluster_sums -= _add_by(split_majority[minority], moved_sums, len(centers))
    cluster_counts += _add_by(split_nearest[minority], moved, len(centers))
    cluster_sums += _add_by(split_nearest[minority], moved_sums, len(centers))

    order, ordered_centers, counts = _plan._order_clusters(centers, cluster_counts, request, messages)
    if not np.array_equal(order, center_labels):
        renumber = np.zeros(len(centers) + 1, dtype=label_dtype)
        renumber[center_labels] = order
        for chunk in _colors.iter_chunks(len(pixels)):
            yield "assigning pixels"
            np.take(renumber, labels[chunk], out=labels[chunk])

    # Labels were written for every centre; with empty clusters dropped, 255
    # or fewer may be left, which fit in uint8 as on the other paths.
    labels = labels.astype(_plan._label_dtype(len(counts)), copy=False)
    inertia = _inertia(cluster_counts, cluster_sums, centers, squares)
    return (
        yield from _plan._finish(
            request, pixels, labels, ordered_centers, counts, inertia, METHOD_NAME, segmented=segmented
        )
    )


def _rank(centers: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Return centre indices by count (descending), then R, G, B (ascending).

    The order is that of ``_plan._order_clusters``, without dropping empty clusters.
    """
    return np.lexsort((centers[:, 2], centers[:, 1], centers[:, 0], -np.asarray(counts)))


def _add_by(groups: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Return the int64 sums of integer ``values`` (n,) or (n, 3) per group in ``range(n_groups)``.

    np.bincount adds in float64, which is exact below 2**53; np.add.at
    took 3 ms for 23,000 rows on the 2-core test machine.
    """
    columns = values.reshape(len(values), int(np.prod(values.shape[1:])))
    totals = [np.bincount(groups, weights=column, minlength=n_groups) for column in columns.T]
    return np.rint(np.stack(totals, axis=-1).reshape((n_groups,) + values.shape[1:])).astype(np.int64)


def _inertia(counts: np.ndarray, sums: np.ndarray, centers: np.ndarray, squares: int) -> float:
    """Return the summed squared distance of all pixels to their centres.

    ``counts`` and ``sums`` are each centre's pixel count and channel sums,
    ``squares`` the sum of all squared channel values. The clusters' scatter
    around their means, ``squares - sum(|S|**2 / n)``, is computed in exact
    rational numbers, so a small inertia does not vanish when large terms
    cancel. Each mean's offset from its centre adds ``n |S / n - c|**2``.
    """
    filled = counts > 0
    scatter = Fraction(squares)
    for count, total in zip(counts[filled].tolist(), sums[filled].tolist()):
        scatter -= Fraction(sum(value * value for value in total), count)
    offsets = sums[filled] / counts[filled, None] - centers[filled]
    weights = counts[filled].astype(np.float64)
    return float(scatter) + float(np.einsum("i,ij,ij->", weights, offsets, offsets))
