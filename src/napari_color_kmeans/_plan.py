"""The steps of one colour segmentation, as a generator of stage names.

``run`` yields a plain-words stage name before each step (so the caller can
report progress and cancel between steps) and returns an ``Outcome``.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from dataclasses import dataclass, field

import numpy as np

from napari_color_kmeans import _colors, _fit, _kernels, _lloyd, _search
from napari_color_kmeans._errors import ColorKMeansError

logger = logging.getLogger(__name__)

# Default number of K-means++ starts: on the coarse colour histogram for
# "auto" and "fast" (each start costs about a millisecond there), and on the
# distinct colours for "exact": as many as fit in a budget of
# EXACT_INIT_BUDGET samples x starts, from N_INIT_EXACT_MIN to N_INIT_EXACT.
N_INIT_HISTOGRAM = 40
N_INIT_EXACT = 10
N_INIT_EXACT_MIN = 3
EXACT_INIT_BUDGET = 1_000_000

# "auto" polishes this many of the best histogram fits with exact Lloyd
# iterations on the distinct colours and keeps the lowest inertia.
N_POLISHED = 2
POLISH_MAX_ITER = 100

# Data that are not 8-bit are fitted on at most this many pixels, drawn with
# the random_state; "exact" uses every pixel up to EXACT_MAX_PIXELS.
SUBSAMPLE_PIXELS = 200_000
EXACT_MAX_PIXELS = 2**22

HISTOGRAM_BITS = 6


@dataclass(frozen=True)
class Request:
    image: np.ndarray
    n_clusters: int
    random_state: int
    method: str
    n_init: int | None
    color_space: str = "rgb"
    spatial_weight: float = 0.0
    mask: np.ndarray | None = None


@dataclass
class Outcome:
    labels: np.ndarray
    cluster_centers: np.ndarray
    segmented: np.ndarray
    inertia: float
    counts: np.ndarray
    method: str
    warnings: list[str] = field(default_factory=list)
    # Centres in the clustering space; None means the same as cluster_centers.
    feature_centers: np.ndarray | None = None


@dataclass
class _Palette:
    """Fitted centres with the method that produced them, before ordering."""

    cluster_centers: np.ndarray
    method: str
    # Nearest centre and squared distance of every sample, when the fit
    # computed them for these centres.
    labels: np.ndarray | None = None
    distances: np.ndarray | None = None


def estimate_steps(request: Request) -> int:
    """Return the expected number of stages, for the progress total."""
    n_pixels = request.image.size // request.image.shape[-1]
    # Three NumPy passes of CHUNK_PIXELS (pack, assign, paint), or two
    # compiled passes of larger chunks (count, paint) for uint8 data.
    n_chunk_steps = 3 * -(-n_pixels // _colors.CHUNK_PIXELS)
    if _kernels.USE_NUMBA and request.image.dtype == np.uint8:
        n_chunk_steps = 2 * -(-n_pixels // _kernels.CHUNK_PIXELS)
    if request.method == "exact":
        n_fits = request.n_init or N_INIT_EXACT
    else:
        # One batch of coarse starts (usually) and one refining stage.
        n_fits = 2
    if request.method == "auto":
        n_fits += N_POLISHED
    return n_chunk_steps + n_fits + 3


def run(request: Request) -> Generator[str, None, Outcome]:
    """Segment ``request.image``; yield stage names, return the Outcome."""
    # Local imports, because these modules build on this module's helpers.
    from napari_color_kmeans import _fast8, _feature_plan

    if _feature_plan.needs_feature_path(request):
        return (yield from _feature_plan.run(request))

    image = request.image
    pixels = image.reshape(-1, image.shape[-1])
    messages: list[str] = []

    n_valid = yield from _count_valid(pixels, messages)

    if _fast8.applies(request, pixels):
        outcome = yield from _fast8.run(request, pixels, messages)
        if outcome is not None:
            outcome.warnings = messages
            return outcome

    index = yield from index_8bit(pixels)
    if index is not None:
        outcome = yield from run_8bit(request, index, messages)
    else:
        outcome = yield from _run_general(request, pixels, n_valid, messages)
    return outcome


def _count_valid(pixels: np.ndarray, messages: list[str]) -> Generator[str, None, int]:
    """Return how many pixels are clustered; add a warning for non-finite ones."""
    n_pixels = len(pixels)
    if pixels.dtype.kind != "f" and pixels.shape[1] == 3:
        return n_pixels

    n_nonfinite = 0
    n_transparent = 0
    n_valid = 0
    for chunk in _colors.iter_chunks(n_pixels):
        yield "checking pixels"
        block = pixels[chunk]
        finite = np.isfinite(block).all(axis=1)
        opaque = block[:, 3] != 0 if block.shape[1] == 4 else np.ones(len(block), bool)
        n_nonfinite += int(np.count_nonzero(~finite))
        n_transparent += int(np.count_nonzero(finite & ~opaque))
        n_valid += int(np.count_nonzero(finite & opaque))

    if n_nonfinite:
        messages.append(
            f"{n_nonfinite} pixels with NaN or infinite values were left out of the "
            "clustering (label 0); replace those values to include the pixels."
        )
    if n_transparent:
        logger.info("left %d fully transparent pixels (alpha == 0) out of the clustering", n_transparent)

    if n_valid == 0:
        raise ColorKMeansError(
            f"no pixel can be clustered: all {n_pixels} pixels have NaN or infinite values "
            "or alpha == 0; pass an image with at least one finite, non-transparent pixel."
        )
    return n_valid


def _pack(pixels: np.ndarray) -> Generator[str, None, np.ndarray | None]:
    """Return every pixel's packed 8-bit colour, or None if the data are not 8-bit."""
    packed = np.empty(len(pixels), dtype=np.uint32)
    for chunk in _colors.iter_chunks(len(pixels)):
        yield "reading colours"
        if not _colors.pack_8bit(pixels[chunk], packed[chunk]):
            return None
    return packed


def _scale_to_units(dtype: np.dtype) -> float:
    """Return the factor from 8-bit codes to the units of ``dtype``."""
    if dtype == np.uint16:
        return 257.0
    if dtype.kind == "f":
        return 1.0 / 255.0
    return 1.0


@dataclass
class ColorIndex:
    """The distinct 8-bit colours of an image, and the pixels to map back to them.

    ``packed`` contains every pixel's packed colour on the NumPy path; it is
    None when the compiled passes of ``_kernels`` recompute it from
    ``pixels``.
    """

    pixels: np.ndarray
    colors: np.ndarray
    color_counts: np.ndarray
    packed: np.ndarray | None

    @property
    def samples(self) -> np.ndarray:
        return _colors.unpack(self.colors)


def index_8bit(pixels: np.ndarray) -> Generator[str, None, ColorIndex | None]:
    """Count the distinct colours of 8-bit ``pixels``; return None for other data."""
    if not (_kernels.available_for(pixels) or _kernels.sorts_small(pixels)):
        packed = yield from _pack(pixels)
        if packed is None:
            return None
        yield "counting colours"
        colors, color_counts, _ = _colors.count_packed(packed)
        return ColorIndex(pixels, colors, color_counts, packed)

    if _kernels.sorts_small(pixels):
        yield "counting colours"
        colors, color_counts = _kernels.distinct_uint8(pixels)
        return ColorIndex(pixels, colors, color_counts, None)

    counts = _kernels.new_counts(len(pixels))
    for chunk in _colors.iter_chunks(len(pixels), _kernels.CHUNK_PIXELS):
        yield "counting colours"
        _kernels.count_uint8(pixels[chunk], counts)
    colors, color_counts = _kernels.nonzero_counts(counts)
    return ColorIndex(pixels, colors, color_counts, None)


def run_8bit(
    request: Request, index: ColorIndex, messages: list[str]
) -> Generator[str, None, Outcome]:
    """Cluster the distinct 8-bit colours, then label pixels through a lookup table."""
    pixels, colors, color_counts = index.pixels, index.colors, index.color_counts
    samples = index.samples

    palette = yield from _fit_palette(
        request,
        samples,
        color_counts,
        messages,
        exact_name="exact (distinct colours)",
        value_range=(np.zeros(3), np.full(3, 256.0)),
    )

    nearest, distances = palette.labels, palette.distances
    if nearest is None:
        nearest, distances = _lloyd.nearest(samples, palette.cluster_centers)
    cluster_counts = np.bincount(nearest, weights=color_counts, minlength=len(palette.cluster_centers))
    order, centers, counts = _order_clusters(palette.cluster_centers, cluster_counts, request, messages)

    scale = _scale_to_units(pixels.dtype)
    inertia = float(np.einsum("i,i->", color_counts.astype(np.float64), distances)) * scale**2
    label_dtype = _label_dtype(len(counts))
    table = _colors.lookup_table(colors, order[nearest], label_dtype)

    centers_in_units = centers * scale
    labels = np.empty(len(pixels), dtype=label_dtype)
    segmented = None
    if index.packed is None:
        segmented = np.empty_like(pixels, order="C")
        colors_in_dtype = _palette_in_dtype(centers_in_units, pixels.dtype)
        for chunk in _colors.iter_chunks(len(pixels), _kernels.CHUNK_PIXELS):
            # One pass labels and paints, so the stage ends as the NumPy path does.
            yield "painting segmented image"
            _kernels.label_and_paint_uint8(
                pixels[chunk], table, colors_in_dtype, labels[chunk], segmented[chunk]
            )
    else:
        for chunk in _colors.iter_chunks(len(pixels)):
            yield "assigning pixels"
            np.take(table, index.packed[chunk], out=labels[chunk])
    del table

    outcome = yield from _finish(
        request, pixels, labels, centers_in_units, counts, inertia, palette.method, segmented=segmented
    )
    outcome.warnings = messages
    return outcome


def _run_general(
    request: Request, pixels: np.ndarray, n_valid: int, messages: list[str]
) -> Generator[str, None, Outcome]:
    """Fit on all or a seeded subsample of the pixels, then assign every pixel."""
    limit = EXACT_MAX_PIXELS if request.method == "exact" else SUBSAMPLE_PIXELS
    yield "sampling pixels"
    if n_valid <= limit:
        rows = _valid_rows(pixels)
        exact_name = "exact (distinct colours)"
    else:
        rows = _sample_rows(pixels, n_valid, limit, request.random_state)
        exact_name = f"subsample {limit} px + exact assignment"

    samples, sample_counts = np.unique(rows.astype(np.float64), axis=0, return_counts=True)
    del rows
    if n_valid > limit and len(samples) < request.n_clusters:
        # Fewer distinct colours in the sample than clusters requested: the
        # image may have only these colours, so count them over all pixels.
        yield "counting colours"
        samples, sample_counts = _distinct_rows(pixels)
        exact_name = "exact (distinct colours)"
    value_range = (samples.min(axis=0), samples.max(axis=0))
    palette = yield from _fit_palette(
        request, samples, sample_counts, messages, exact_name=exact_name, value_range=value_range
    )
    if n_valid > limit and palette.method.startswith("fast"):
        palette.method = f"fast ({HISTOGRAM_BITS}-bit histogram of a {limit} px subsample) + exact assignment"

    labels = np.zeros(len(pixels), dtype=_label_dtype(len(palette.cluster_centers)))
    cluster_counts = np.zeros(len(palette.cluster_centers), dtype=np.int64)
    inertia = 0.0
    for chunk in _colors.iter_chunks(len(pixels)):
        yield "assigning pixels"
        inertia += _assign_chunk(pixels[chunk], palette.cluster_centers, labels[chunk], cluster_counts)

    order, centers, counts = _order_clusters(palette.cluster_centers, cluster_counts, request, messages)
    relabel = np.concatenate([[0], order]).astype(labels.dtype)
    for chunk in _colors.iter_chunks(len(pixels)):
        labels[chunk] = relabel[labels[chunk]]
    labels = labels.astype(_label_dtype(len(counts)), copy=False)

    outcome = yield from _finish(request, pixels, labels, centers, counts, inertia, palette.method)
    outcome.warnings = messages
    return outcome


def _assign_chunk(
    block: np.ndarray, centers: np.ndarray, labels: np.ndarray, cluster_counts: np.ndarray
) -> float:
    """Write 1-based nearest-centre indices of ``block`` into ``labels``; return inertia.

    Left-out pixels keep label 0. ``cluster_counts`` is updated in place.
    """
    mask = _colors.valid_mask(block)
    rgb = block[:, :3] if mask is None else block[mask, :3]
    nearest, distances = _fit.nearest_centers(rgb, centers)

    if mask is None:
        labels[:] = nearest + 1
    else:
        labels[mask] = nearest + 1
    cluster_counts += np.bincount(nearest, minlength=len(centers))
    return float(distances.sum())


def _distinct_rows(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the distinct clustered colours (float64) of all pixels and their counts.

    NOTE: this sorts a float64 copy of every clustered pixel (24 bytes per
    pixel), so it only runs when a subsample suggests very few colours.
    """
    rows = _valid_rows(pixels).astype(np.float64)
    return np.unique(rows, axis=0, return_counts=True)


def _valid_rows(pixels: np.ndarray) -> np.ndarray:
    mask = _colors.valid_mask(pixels)
    return pixels[:, :3] if mask is None else pixels[mask, :3]


def _sample_rows(pixels: np.ndarray, n_valid: int, size: int, random_state: int) -> np.ndarray:
    """Return ``size`` clustered pixels drawn without replacement with ``random_state``."""
    rng = np.random.default_rng(random_state)
    ranks = np.sort(rng.choice(n_valid, size=size, replace=False))

    rows = []
    seen = 0
    for chunk in _colors.iter_chunks(len(pixels)):
        block = pixels[chunk]
        mask = _colors.valid_mask(block)
        valid = block[:, :3] if mask is None else block[mask, :3]
        start, stop = np.searchsorted(ranks, [seen, seen + len(valid)])
        rows.append(valid[ranks[start:stop] - seen])
        seen += len(valid)
    return np.concatenate(rows)


def _fit_palette(
    request: Request,
    samples: np.ndarray,
    sample_weight: np.ndarray,
    messages: list[str],
    *,
    exact_name: str,
    value_range: tuple[np.ndarray, np.ndarray],
) -> Generator[str, None, _Palette]:
    """Fit request.n_clusters centres to weighted samples with request.method."""
    n_distinct = len(samples)
    n_clusters = request.n_clusters
    if n_clusters > n_distinct:
        messages.append(
            f"n_clusters={n_clusters} was requested, but the clustered pixels have only "
            f"{n_distinct} distinct colour(s), so n_clusters={n_distinct} was used."
        )
        n_clusters = n_distinct
    if n_clusters == n_distinct:
        return _Palette(samples.copy(), exact_name)

    fits = None
    if request.method != "exact":
        seeds = _fit.derive_seeds(request.random_state, request.n_init or N_INIT_HISTOGRAM)
        fits = yield from _search.search_histograms(
            samples, sample_weight, n_clusters, seeds, value_range
        )

    if fits is None:
        # "exact", or a histogram with no more occupied bins than clusters.
        seeds = _fit.derive_seeds(request.random_state, request.n_init or exact_n_init(n_distinct))
        fit = yield from _fit.fit_best_of(samples, sample_weight, n_clusters, seeds, "initialisation")
        return _Palette(fit.cluster_centers, exact_name)

    if request.method == "fast":
        return _Palette(fits[0].cluster_centers, f"fast ({HISTOGRAM_BITS}-bit histogram)")

    polished = yield from _polish(samples, sample_weight, n_clusters, fits[:N_POLISHED])
    name = "histogram + exact polish"
    if exact_name.startswith("subsample"):
        name = f"histogram + exact polish on {exact_name}"
    return _Palette(polished.cluster_centers, name, polished.labels, polished.distances)


def exact_n_init(n_samples: int) -> int:
    """Return the default number of exact K-means++ starts for ``n_samples`` colours."""
    return int(np.clip(EXACT_INIT_BUDGET // max(n_samples, 1), N_INIT_EXACT_MIN, N_INIT_EXACT))


def _polish(
    samples: np.ndarray, sample_weight: np.ndarray, n_clusters: int, starts: list[_fit.Fit]
) -> Generator[str, None, _fit.Fit]:
    """Run exact Lloyd iterations from each start and return the lowest-inertia fit.

    All starts run in one call, so the compiled loop can spread them over threads.
    """
    yield f"polishing {len(starts)} candidates"
    initial = np.stack([start.cluster_centers for start in starts])
    fits = _lloyd.fit_from(samples, sample_weight, initial, max_iter=POLISH_MAX_ITER)
    return min(fits, key=lambda fit: fit.inertia)


def _order_clusters(
    centers: np.ndarray, cluster_counts: np.ndarray, request: Request, messages: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order clusters by count (descending), then centre R, G, B (ascending).

    Empty clusters are dropped. Return ``order`` (old index -> new 1-based
    label, 0 for dropped clusters), the ordered centres and their counts.
    """
    cluster_counts = np.asarray(cluster_counts).astype(np.int64)
    keys = (centers[:, 2], centers[:, 1], centers[:, 0], -cluster_counts)
    ranking = np.lexsort(keys)
    ranking = ranking[cluster_counts[ranking] > 0]

    n_empty = len(centers) - len(ranking)
    if n_empty:
        messages.append(
            f"{n_empty} of {len(centers)} clusters ended up with no pixels and were dropped, "
            f"so {len(ranking)} clusters were used instead of the requested {request.n_clusters}."
        )

    order = np.zeros(len(centers), dtype=np.int64)
    order[ranking] = np.arange(1, len(ranking) + 1)
    return order, centers[ranking], cluster_counts[ranking]


def _label_dtype(n_clusters: int) -> np.dtype:
    return np.dtype(np.uint8) if n_clusters <= 255 else np.dtype(np.uint16)


def _palette_in_dtype(centers: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Return the centres as pixel values of ``dtype``, with a dummy row 0 for label 0."""
    palette = np.vstack([np.zeros((1, 3)), centers])
    if dtype.kind == "f":
        return palette.astype(dtype)
    limit = np.iinfo(dtype).max
    return np.clip(np.rint(palette), 0, limit).astype(dtype)


def _paint(
    pixels: np.ndarray, labels: np.ndarray, palette: np.ndarray
) -> Generator[str, None, np.ndarray]:
    """Return pixels (n, C) painted with ``palette[label]``; label 0 keeps the input."""
    segmented = np.empty_like(pixels, order="C")
    for chunk in _colors.iter_chunks(len(pixels)):
        yield "painting segmented image"
        block_labels = labels[chunk]
        target = segmented[chunk]
        if pixels.shape[1] == 3 and block_labels.all():
            np.take(palette, block_labels, axis=0, out=target)
            continue
        target[:] = pixels[chunk]
        clustered = block_labels > 0
        target[clustered, :3] = palette[block_labels[clustered]]
    return segmented


def _finish(
    request: Request,
    pixels: np.ndarray,
    labels: np.ndarray,
    centers: np.ndarray,
    counts: np.ndarray,
    inertia: float,
    method: str,
    *,
    segmented: np.ndarray | None = None,
) -> Generator[str, None, Outcome]:
    """Paint the segmented image, unless ``segmented`` is given, and package the Outcome."""
    image = request.image
    if segmented is None:
        segmented = yield from _paint(pixels, labels, _palette_in_dtype(centers, image.dtype))

    return Outcome(
        labels=labels.reshape(image.shape[:-1]),
        cluster_centers=np.ascontiguousarray(centers, dtype=np.float64),
        segmented=segmented.reshape(image.shape),
        inertia=float(inertia),
        counts=counts,
        method=method,
    )
