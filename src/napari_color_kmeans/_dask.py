"""K-means colour segmentation of dask arrays, without loading them whole.

The fit reads the image chunk by chunk and reduces each batch of chunks to
a small summary on the dask scheduler in use (a dask.distributed Client's
workers when one is active):

1. every batch is reduced to its 8-bit distinct colours with pixel counts,
   its valid-pixel counts and its per-channel range;
2. for data that are not 8-bit, a second pass reduces the pixels to their
   distinct colours (when few enough to fit them all, as the numpy path
   does) or to a histogram of every pixel, and a third pass counts the
   pixels of each cluster.

Labels and the segmented image come back as lazy dask arrays with the
source's chunks, computed per chunk by an ``Assignment``. 8-bit data are
labelled through the same lookup table as the numpy path, so their labels
are identical to an in-memory run.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Generator, Sequence
from dataclasses import dataclass

import numpy as np

from napari_color_kmeans import _colors, _fit, _plan
from napari_color_kmeans._errors import ColorKMeansError

logger = logging.getLogger(__name__)

# The fit passes merge source chunks into blocks of about this many pixels,
# so a tiled array with small chunks does not turn into thousands of tasks.
# Source chunks are merged whole and never split, so a zarr chunk is read
# once per pass.
FIT_BLOCK_PIXELS = 2**22

# Minimum number of fit blocks reduced per progress step; with more worker
# threads a step covers two blocks per thread.
MIN_BLOCKS_PER_STEP = 4

# Bits per channel of the histogram that data which are not 8-bit are
# fitted on when they have more valid pixels than the numpy path fits
# directly (``_plan.SUBSAMPLE_PIXELS``, or ``_plan.EXACT_MAX_PIXELS`` for
# method="exact").
HISTOGRAM_BITS = 7


def is_dask_array(image) -> bool:
    """Return whether ``image`` is a dask array, without importing dask."""
    module = sys.modules.get("dask.array")
    return module is not None and isinstance(image, module.Array)


def estimate_steps(request: _plan.Request) -> int:
    """Return the expected number of stages for a dask ``request.image``."""
    chunks = _fit_chunks(request.image)
    n_blocks = int(np.prod([len(sizes) for sizes in chunks]))
    n_steps = -(-n_blocks // _blocks_per_step())
    n_init = request.n_init or _plan.N_INIT_HISTOGRAM
    passes = 1 if request.image.dtype == np.uint8 else 3
    return passes * n_steps + n_init + 2


def run(request: _plan.Request) -> Generator[str, None, _plan.Outcome]:
    """Segment the dask array ``request.image``; yield stage names, return the Outcome.

    The Outcome's ``labels`` and ``segmented`` are lazy dask arrays.
    """
    _check_rgb_only(request)
    assignment, outcome = yield from fit_assignment(request)
    image = _merge_color_axis(request.image)
    outcome.labels = assignment.labels(image)
    outcome.segmented = assignment.segmented(image)
    return outcome


def _check_rgb_only(request: _plan.Request) -> None:
    """Raise for clustering options that the chunked pipeline does not implement."""
    color_space = getattr(request, "color_space", "rgb")
    spatial_weight = getattr(request, "spatial_weight", 0.0)
    mask = getattr(request, "mask", None)
    if color_space != "rgb" or spatial_weight != 0 or mask is not None:
        raise ColorKMeansError(
            f"a dask array was passed with color_space={color_space!r}, "
            f"spatial_weight={spatial_weight!r} and mask={'set' if mask is not None else None}, "
            "but dask arrays are clustered in RGB only; use color_space='rgb', "
            "spatial_weight=0 and no mask, or pass image.compute() to use those options."
        )


@dataclass(frozen=True)
class Assignment:
    """Fitted palette that labels any RGB(A) array of the fitted dtype, chunk by chunk.

    ``centers`` are the non-empty fitted centres in fit order and ``labels_of``
    their 1-based labels, both in image units. ``table`` maps packed 8-bit
    colours to labels, or is None when the fit data were not 8-bit. Blocks
    that are not 8-bit, or have no table, go to the nearest centre.
    """

    centers: np.ndarray
    labels_of: np.ndarray
    cluster_centers: np.ndarray
    label_dtype: np.dtype
    dtype: np.dtype
    table: np.ndarray | None

    def labels(self, image):
        """Return lazy labels of the dask array ``image`` (..., H, W, C), one block per chunk."""
        import dask.array as da

        image = _merge_color_axis(image)
        self._check_dtype(image)
        return da.map_blocks(
            label_block,
            image,
            _graph_argument(self),
            drop_axis=image.ndim - 1,
            dtype=self.label_dtype,
            meta=np.empty((0,) * (image.ndim - 1), dtype=self.label_dtype),
        )

    def segmented(self, image):
        """Return the lazy segmented copy of the dask array ``image``, one block per chunk."""
        import dask.array as da

        image = _merge_color_axis(image)
        self._check_dtype(image)
        return da.map_blocks(
            segment_block,
            image,
            _graph_argument(self),
            dtype=image.dtype,
            meta=np.empty((0,) * image.ndim, dtype=image.dtype),
        )

    def _check_dtype(self, image) -> None:
        if image.dtype != self.dtype:
            raise ColorKMeansError(
                f"image has dtype {image.dtype}, but the palette was fitted on {self.dtype} "
                f"data; convert the image to {self.dtype} first."
            )


def label_block(block: np.ndarray, assignment: Assignment) -> np.ndarray:
    """Return the labels of one block (..., C) under ``assignment``; 0 marks left-out pixels."""
    pixels = block.reshape(-1, block.shape[-1])
    labels = np.zeros(len(pixels), dtype=assignment.label_dtype)

    if assignment.table is not None:
        packed = np.empty(len(pixels), dtype=np.uint32)
        if _colors.pack_8bit(pixels, packed):
            np.take(assignment.table, packed, out=labels)
            # Colours absent from the fitted data (e.g. on another pyramid
            # level) are not in the table and go to their nearest centre.
            unknown = (labels == 0) & (packed != _colors.LEFT_OUT)
            if unknown.any():
                nearest, _ = _fit.nearest_centers(pixels[unknown, :3], assignment.centers)
                labels[unknown] = assignment.labels_of[nearest]
            return labels.reshape(block.shape[:-1])

    mask = _colors.valid_mask(pixels)
    rgb = pixels[:, :3] if mask is None else pixels[mask, :3]
    nearest, _ = _fit.nearest_centers(rgb, assignment.centers)
    if mask is None:
        labels[:] = assignment.labels_of[nearest]
    else:
        labels[mask] = assignment.labels_of[nearest]
    return labels.reshape(block.shape[:-1])


def segment_block(block: np.ndarray, assignment: Assignment) -> np.ndarray:
    """Return ``block`` with every clustered pixel's RGB set to its centre.

    Left-out pixels and the alpha channel keep their values, as in the numpy path.
    """
    labels = label_block(block, assignment).reshape(-1)
    palette = _plan._palette_in_dtype(assignment.cluster_centers, np.dtype(block.dtype))

    segmented = np.array(block, order="C").reshape(-1, block.shape[-1])
    clustered = labels > 0
    segmented[clustered, :3] = palette[labels[clustered]]
    return segmented.reshape(block.shape)


# ---------------------------------------------------------------- fit passes


@dataclass
class _ColorSummary:
    """Pass-one summary of some pixels; ``colors`` is None once data are not 8-bit."""

    n_nonfinite: int
    n_transparent: int
    n_valid: int
    low: np.ndarray
    high: np.ndarray
    colors: np.ndarray | None
    counts: np.ndarray | None


def fit_assignment(
    request: _plan.Request,
) -> Generator[str, None, tuple[Assignment, _plan.Outcome]]:
    """Fit the palette of the dask array ``request.image`` chunk by chunk.

    Return the Assignment and an Outcome whose ``labels`` and ``segmented``
    are still None.
    """
    image = _merge_color_axis(request.image)
    batches = _step_batches(_fit_blocks(image))
    messages: list[str] = []

    summary = yield from _summarise_colors(batches)
    _check_valid(summary, image, messages)

    if summary.colors is not None:
        result = yield from _fit_8bit(request, image.dtype, summary, messages)
    else:
        result = yield from _fit_general(request, image.dtype, batches, summary, messages)
    return result


def _summarise_colors(batches: list[list]) -> Generator[str, None, _ColorSummary]:
    """Run pass one over every batch, counting 8-bit colours until a block is not 8-bit."""
    import dask

    totals = np.zeros(_colors.N_PACKED_COLORS + 1, dtype=np.int64)
    is_8bit = True
    summary = None
    for index, batch in enumerate(batches):
        yield f"counting colours, step {index + 1} of {len(batches)}"
        parts = [dask.delayed(_summarise_block)(block, is_8bit) for block in batch]
        (part,) = dask.compute(_tree_reduce(parts, _merge_color_summaries))

        if is_8bit and part.colors is not None:
            totals[part.colors] += part.counts
        else:
            is_8bit = False
        part.colors = part.counts = None
        summary = part if summary is None else _merge_color_summaries(summary, part)

    if is_8bit:
        summary.colors = np.flatnonzero(totals[: _colors.LEFT_OUT])
        summary.counts = totals[summary.colors]
    return summary


def _summarise_block(block: np.ndarray, count_colors: bool) -> _ColorSummary:
    pixels = block.reshape(-1, block.shape[-1])
    finite = np.ones(len(pixels), dtype=bool)
    if pixels.dtype.kind == "f":
        finite = np.isfinite(pixels).all(axis=1)
    opaque = pixels[:, 3] != 0 if pixels.shape[1] == 4 else np.ones(len(pixels), dtype=bool)
    n_nonfinite = int(np.count_nonzero(~finite))
    n_transparent = int(np.count_nonzero(finite & ~opaque))

    rgb = pixels[finite & opaque, :3]
    low = rgb.min(axis=0).astype(np.float64) if len(rgb) else np.full(3, np.inf)
    high = rgb.max(axis=0).astype(np.float64) if len(rgb) else np.full(3, -np.inf)

    colors = counts = None
    if count_colors:
        packed = np.empty(len(pixels), dtype=np.uint32)
        if _colors.pack_8bit(pixels, packed):
            colors, counts, _ = _colors.count_packed(packed)
    return _ColorSummary(n_nonfinite, n_transparent, len(rgb), low, high, colors, counts)


def _merge_color_summaries(first: _ColorSummary, second: _ColorSummary) -> _ColorSummary:
    colors = counts = None
    if first.colors is not None and second.colors is not None:
        colors, counts = _merge_counts(
            [first.colors, second.colors], [first.counts, second.counts]
        )
    return _ColorSummary(
        first.n_nonfinite + second.n_nonfinite,
        first.n_transparent + second.n_transparent,
        first.n_valid + second.n_valid,
        np.minimum(first.low, second.low),
        np.maximum(first.high, second.high),
        colors,
        counts,
    )


def _merge_counts(
    keys: Sequence[np.ndarray], counts: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Return the sorted distinct integer keys of all parts with their summed counts."""
    merged, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    totals = np.bincount(inverse, weights=np.concatenate(counts), minlength=len(merged))
    return merged, totals.astype(np.int64)


def _check_valid(summary: _ColorSummary, image, messages: list[str]) -> None:
    """Add the numpy path's warning for non-finite pixels; raise if none is clustered."""
    if summary.n_nonfinite:
        messages.append(
            f"{summary.n_nonfinite} pixels with NaN or infinite values were left out of the "
            "clustering (label 0); replace those values to include the pixels."
        )
    if summary.n_transparent:
        logger.info(
            "left %d fully transparent pixels (alpha == 0) out of the clustering",
            summary.n_transparent,
        )
    if summary.n_valid == 0:
        n_pixels = image.size // image.shape[-1]
        raise ColorKMeansError(
            f"no pixel can be clustered: all {n_pixels} pixels have NaN or infinite values "
            "or alpha == 0; pass an image with at least one finite, non-transparent pixel."
        )


def _fit_8bit(
    request: _plan.Request, dtype: np.dtype, summary: _ColorSummary, messages: list[str]
) -> Generator[str, None, tuple[Assignment, _plan.Outcome]]:
    """Fit the distinct 8-bit colours exactly as the numpy path does."""
    colors, color_counts = summary.colors, summary.counts
    samples = _colors.unpack(colors)
    palette = yield from _plan._fit_palette(
        request,
        samples,
        color_counts,
        messages,
        exact_name="exact (distinct colours)",
        value_range=(np.zeros(3), np.full(3, 256.0)),
    )

    yield "building lookup table"
    nearest, distances = _fit.nearest_centers(samples, palette.cluster_centers)
    n_fitted = len(palette.cluster_centers)
    cluster_counts = np.bincount(nearest, weights=color_counts, minlength=n_fitted)
    order, centers, counts = _plan._order_clusters(
        palette.cluster_centers, cluster_counts, request, messages
    )

    scale = _plan._scale_to_units(dtype)
    label_dtype = _plan._label_dtype(len(counts))
    table = _colors.lookup_table(colors, order[nearest], label_dtype)
    inertia = float(np.dot(color_counts, distances)) * scale**2
    assignment = _make_assignment(palette.cluster_centers * scale, order, centers * scale, dtype, table)
    return assignment, _outcome(centers * scale, counts, inertia, palette.method, messages)


def _fit_general(
    request: _plan.Request,
    dtype: np.dtype,
    batches: list[list],
    summary: _ColorSummary,
    messages: list[str],
) -> Generator[str, None, tuple[Assignment, _plan.Outcome]]:
    """Fit data that are not 8-bit on their distinct colours or a histogram of all pixels."""
    limit = _plan.EXACT_MAX_PIXELS if request.method == "exact" else _plan.SUBSAMPLE_PIXELS
    if summary.n_valid <= limit:
        samples, weights = yield from _reduce_distinct(batches)
        value_range = (samples.min(axis=0), samples.max(axis=0))
        exact_name = "exact (distinct colours)"
    else:
        value_range = (summary.low, summary.high)
        samples, weights = yield from _reduce_histogram(batches, *value_range)
        exact_name = f"exact on a {HISTOGRAM_BITS}-bit histogram of all pixels"

    palette = yield from _plan._fit_palette(
        request, samples, weights, messages, exact_name=exact_name, value_range=value_range
    )
    method = palette.method
    if summary.n_valid > limit:
        if not method.startswith("exact"):
            method = f"{method} on a {HISTOGRAM_BITS}-bit histogram of all pixels"
        method = f"{method} + exact assignment"

    cluster_counts, inertia = yield from _reduce_assignment(batches, palette.cluster_centers)
    order, centers, counts = _plan._order_clusters(
        palette.cluster_centers, cluster_counts, request, messages
    )
    assignment = _make_assignment(palette.cluster_centers, order, centers, dtype, None)
    return assignment, _outcome(centers, counts, inertia, method, messages)


def _make_assignment(
    fitted_centers: np.ndarray,
    order: np.ndarray,
    cluster_centers: np.ndarray,
    dtype: np.dtype,
    table: np.ndarray | None,
) -> Assignment:
    """Keep the non-empty centres in fit order, so ties resolve as in the numpy path."""
    kept = np.flatnonzero(order > 0)
    return Assignment(
        centers=np.ascontiguousarray(fitted_centers[kept], dtype=np.float64),
        labels_of=order[kept],
        cluster_centers=np.ascontiguousarray(cluster_centers, dtype=np.float64),
        label_dtype=_plan._label_dtype(len(kept)),
        dtype=np.dtype(dtype),
        table=table,
    )


def _outcome(centers, counts, inertia, method, messages) -> _plan.Outcome:
    return _plan.Outcome(
        labels=None,
        cluster_centers=np.ascontiguousarray(centers, dtype=np.float64),
        segmented=None,
        inertia=float(inertia),
        counts=np.asarray(counts, dtype=np.int64),
        method=method,
        warnings=messages,
    )


def _reduce_distinct(batches: list[list]) -> Generator[str, None, tuple[np.ndarray, np.ndarray]]:
    """Return every distinct valid RGB row (float64, sorted) with its pixel count."""
    import dask

    rows, counts = [], []
    for index, batch in enumerate(batches):
        yield f"collecting colours, step {index + 1} of {len(batches)}"
        parts = [dask.delayed(_distinct_rows)(block) for block in batch]
        (part,) = dask.compute(_tree_reduce(parts, _merge_distinct_rows))
        rows.append(part[0])
        counts.append(part[1])
    return _merge_distinct_rows((np.concatenate(rows), np.concatenate(counts)), None)


def _distinct_rows(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pixels = block.reshape(-1, block.shape[-1])
    mask = _colors.valid_mask(pixels)
    rgb = pixels[:, :3] if mask is None else pixels[mask, :3]
    rows, counts = np.unique(rgb.astype(np.float64), axis=0, return_counts=True)
    return rows, counts.astype(np.int64)


def _merge_distinct_rows(first, second) -> tuple[np.ndarray, np.ndarray]:
    rows, counts = first if second is None else (
        np.concatenate([first[0], second[0]]),
        np.concatenate([first[1], second[1]]),
    )
    merged, inverse = np.unique(rows, axis=0, return_inverse=True)
    totals = np.bincount(inverse.reshape(-1), weights=counts, minlength=len(merged))
    return merged, totals.astype(np.int64)


def _reduce_histogram(
    batches: list[list], low: np.ndarray, high: np.ndarray
) -> Generator[str, None, tuple[np.ndarray, np.ndarray]]:
    """Return the mean colour and pixel count of every occupied histogram bin."""
    import dask

    parts_of_steps = []
    for index, batch in enumerate(batches):
        yield f"building colour histogram, step {index + 1} of {len(batches)}"
        parts = [dask.delayed(_histogram_block)(block, low, high) for block in batch]
        (part,) = dask.compute(_tree_reduce(parts, _merge_histograms))
        parts_of_steps.append(part)

    bins, weights, sums = parts_of_steps[0]
    for part in parts_of_steps[1:]:
        bins, weights, sums = _merge_histograms((bins, weights, sums), part)
    return sums / weights[:, None], weights


def _histogram_block(block: np.ndarray, low: np.ndarray, high: np.ndarray):
    """Return occupied bin indices, pixel counts and per-channel sums of one block."""
    pixels = block.reshape(-1, block.shape[-1])
    mask = _colors.valid_mask(pixels)
    rgb = (pixels[:, :3] if mask is None else pixels[mask, :3]).astype(np.float64)

    n_bins = 2**HISTOGRAM_BITS
    width = np.where(high > low, high - low, 1.0)
    codes = np.floor((rgb - low) / width * n_bins).astype(np.int64)
    np.clip(codes, 0, n_bins - 1, out=codes)
    bin_index = (codes[:, 0] * n_bins + codes[:, 1]) * n_bins + codes[:, 2]

    bins, inverse = np.unique(bin_index, return_inverse=True)
    weights = np.bincount(inverse, minlength=len(bins)).astype(np.float64)
    sums = np.stack(
        [np.bincount(inverse, weights=rgb[:, c], minlength=len(bins)) for c in range(3)], axis=1
    )
    return bins, weights, sums


def _merge_histograms(first, second):
    bins = np.concatenate([first[0], second[0]])
    merged, inverse = np.unique(bins, return_inverse=True)
    weights = np.bincount(inverse, np.concatenate([first[1], second[1]]), len(merged))
    both = np.concatenate([first[2], second[2]])
    sums = np.stack([np.bincount(inverse, both[:, c], len(merged)) for c in range(3)], axis=1)
    return merged, weights, sums


def _reduce_assignment(
    batches: list[list], fitted_centers: np.ndarray
) -> Generator[str, None, tuple[np.ndarray, float]]:
    """Return the pixel count of every fitted centre and the total inertia."""
    import dask

    cluster_counts = np.zeros(len(fitted_centers), dtype=np.int64)
    inertia = 0.0
    for index, batch in enumerate(batches):
        yield f"counting cluster sizes, step {index + 1} of {len(batches)}"
        parts = [dask.delayed(_assign_block)(block, fitted_centers) for block in batch]
        (part,) = dask.compute(_tree_reduce(parts, _add_pairs))
        cluster_counts += part[0]
        inertia += part[1]
    return cluster_counts, inertia


def _assign_block(block: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, float]:
    pixels = block.reshape(-1, block.shape[-1])
    mask = _colors.valid_mask(pixels)
    rgb = pixels[:, :3] if mask is None else pixels[mask, :3]
    nearest, distances = _fit.nearest_centers(rgb, centers)
    return np.bincount(nearest, minlength=len(centers)).astype(np.int64), float(distances.sum())


def _add_pairs(first, second):
    return first[0] + second[0], first[1] + second[1]


# ---------------------------------------------------------------- chunking


def _merge_color_axis(image):
    """Return ``image`` with its colour axis in one chunk; other chunks stay as they are."""
    if len(image.chunks[-1]) == 1:
        return image
    logger.debug("rechunking colour axis of %s chunks %s", image.shape, image.chunks[-1])
    return image.rechunk({image.ndim - 1: -1})


def _fit_chunks(image) -> tuple[tuple[int, ...], ...]:
    """Return chunks of about FIT_BLOCK_PIXELS pixels made of whole source chunks."""
    chunks = list(image.chunks[:-1])
    for axis in reversed(range(len(chunks))):
        others = int(np.prod([max(sizes) for i, sizes in enumerate(chunks) if i != axis]))
        chunks[axis] = _group_chunks(chunks[axis], max(FIT_BLOCK_PIXELS // max(others, 1), 1))
    return (*chunks, (image.shape[-1],))


def _fit_blocks(image) -> list:
    """Return the delayed blocks of ``image`` (colour axis in one chunk) for the fit passes."""
    merged = image.rechunk(_fit_chunks(image))
    return list(merged.to_delayed().reshape(-1))


def _group_chunks(sizes: tuple[int, ...], target: int) -> tuple[int, ...]:
    """Join consecutive chunk sizes while each group stays at or below ``target``."""
    groups = []
    current = 0
    for size in sizes:
        if current and current + size > target:
            groups.append(current)
            current = 0
        current += size
    groups.append(current)
    return tuple(groups)


def _step_batches(blocks: list) -> list[list]:
    """Split ``blocks`` into the batches reduced in one progress step each."""
    per_step = _blocks_per_step()
    return [blocks[start : start + per_step] for start in range(0, len(blocks), per_step)]


def _blocks_per_step() -> int:
    return max(MIN_BLOCKS_PER_STEP, 2 * _count_threads())


def _count_threads() -> int:
    """Return the worker threads of the active dask.distributed Client, else the CPU count."""
    client = _active_client()
    if client is not None:
        return max(sum(client.nthreads().values()), 1)
    return os.cpu_count() or 1


def _active_client():
    """Return the default dask.distributed Client, or None when there is none."""
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None


def _graph_argument(value):
    """Wrap ``value`` so that a dask graph contains it once, not once per task.

    NOTE: with a dask.distributed Client every compute still sends the value
    with the graph (16 MiB for an 8-bit lookup table, which distributed
    warns about). Scattering it instead lost the data: the graph did not
    keep the Future alive.
    """
    import dask

    return dask.delayed(value, pure=True)


def _tree_reduce(parts: list, merge):
    """Combine delayed ``parts`` pairwise with ``merge``, in a tree of delayed calls."""
    import dask

    while len(parts) > 1:
        paired = [dask.delayed(merge)(a, b) for a, b in zip(parts[::2], parts[1::2])]
        if len(parts) % 2:
            paired.append(parts[-1])
        parts = paired
    return parts[0]
