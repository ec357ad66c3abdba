"""K-means colour segmentation of multiscale (pyramid) images, without napari or Qt.

A multiscale image is a list of levels, finest first, each a numpy or dask
array (..., H, W, 3 or 4) of one dtype. One level is fitted chunk by chunk
and its palette labels every level lazily, so the output levels line up with
the source levels one to one.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Generator, Sequence
from dataclasses import dataclass

import numpy as np

from napari_color_kmeans import _dask, _engine, _plan
from napari_color_kmeans._engine import ColorKMeansError, ColorKMeansWarning, ProgressStep

logger = logging.getLogger(__name__)

# Default for ``memory_budget``: the finest level of at most this many bytes
# is fitted. The fit reads that level once or three times, chunk by chunk,
# so the budget bounds the data read by the fit and hence its run time. The
# fit's peak memory depends on the chunk size, not on the level's size.
DEFAULT_MEMORY_BUDGET = 2**30


@dataclass(frozen=True)
class MultiscaleSegmentationResult:
    """Outcome of a multiscale segmentation.

    ``labels`` and ``segmented`` hold one lazy dask array per source level,
    finest first, each with its level's shape. The palette fields are those
    of ``SegmentationResult`` and describe the fit on level ``fit_level``;
    ``counts`` and ``inertia`` count that level's pixels only.
    """

    labels: tuple
    segmented: tuple
    cluster_centers: np.ndarray
    counts: np.ndarray
    inertia: float
    n_clusters: int
    method: str
    random_state: int
    warnings: tuple[str, ...]
    fit_level: int


def choose_fit_level(levels: Sequence, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> int:
    """Return the index of the finest level whose size in bytes is at most ``memory_budget``.

    When every level is larger, return the coarsest level's index.
    """
    for index, level in enumerate(levels):
        if level.size * level.dtype.itemsize <= memory_budget:
            return index
    logger.info("no level fits memory_budget=%d bytes; fitting the coarsest level", memory_budget)
    return len(levels) - 1


def segment_multiscale(
    levels: Sequence,
    n_clusters: int = 8,
    *,
    random_state: int = 42,
    method: str = "auto",
    n_init: int | None = None,
    fit_level: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> MultiscaleSegmentationResult:
    """Segment every level of a multiscale image with one palette.

    See ``iter_segment_multiscale`` for the parameters; this runs it to the end.
    """
    steps = iter_segment_multiscale(
        levels,
        n_clusters,
        random_state=random_state,
        method=method,
        n_init=n_init,
        fit_level=fit_level,
        memory_budget=memory_budget,
    )
    return _engine.run_to_end(steps)


def iter_segment_multiscale(
    levels: Sequence,
    n_clusters: int = 8,
    *,
    random_state: int = 42,
    method: str = "auto",
    n_init: int | None = None,
    fit_level: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> Generator[ProgressStep, None, MultiscaleSegmentationResult]:
    """Fit one level of a multiscale image and label every level lazily, yielding progress.

    Parameters
    ----------
    levels : sequence of numpy or dask arrays
        The pyramid, finest level first, each (..., H, W, 3 or 4) with the
        same dtype and number of axes, e.g. a napari layer's ``data``.
    fit_level : int or None
        Level to fit on; None picks one with ``choose_fit_level``.
    memory_budget : int
        Bytes; with ``fit_level=None`` the finest level of at most this size
        is fitted (default ``DEFAULT_MEMORY_BUDGET``, 1 GiB).

    The other parameters, and the errors, are those of ``iter_segment_colors``.
    The labels of the fitted level equal those of ``segment_colors`` on it.
    """
    _engine._check_parameters(n_clusters, random_state, method, n_init)
    levels = _check_levels(levels)
    if fit_level is None:
        fit_level = choose_fit_level(levels, memory_budget)
    fit_level = _check_fit_level(fit_level, len(levels))

    request = _plan.Request(
        image=levels[fit_level],
        n_clusters=int(n_clusters),
        random_state=int(random_state),
        method=method,
        n_init=None if n_init is None else int(n_init),
    )
    progress = _engine._Progress(_dask.estimate_steps(request))
    assignment, outcome = yield from progress.wrap(_dask.fit_assignment(request))

    for message in outcome.warnings:
        warnings.warn(message, ColorKMeansWarning, stacklevel=2)
    logger.debug("fitted level %d of %d with %s", fit_level, len(levels), outcome.method)

    return MultiscaleSegmentationResult(
        labels=tuple(assignment.labels(level) for level in levels),
        segmented=tuple(assignment.segmented(level) for level in levels),
        cluster_centers=outcome.cluster_centers,
        counts=outcome.counts,
        inertia=outcome.inertia,
        n_clusters=len(outcome.counts),
        method=outcome.method,
        random_state=int(random_state),
        warnings=tuple(outcome.warnings),
        fit_level=fit_level,
    )


def as_dask_array(image):
    """Return ``image`` as a dask array with its colour axis in one chunk."""
    import dask.array as da

    if _dask.is_dask_array(image):
        return image
    array = np.asarray(image)
    return da.from_array(array, chunks=(*["auto"] * (array.ndim - 1), -1))


def _check_levels(levels: Sequence) -> list:
    """Return the levels as dask arrays after checking that they form one pyramid."""
    if isinstance(levels, np.ndarray) or _dask.is_dask_array(levels) or len(levels) == 0:
        raise ColorKMeansError(
            f"levels must be a non-empty list of arrays, finest first, got {type(levels).__name__}; "
            "pass a multiscale layer's data, or [image] for a single image."
        )

    checked = [as_dask_array(_engine._check_image(level)) for level in levels]
    first = checked[0]
    for index, level in enumerate(checked[1:], start=1):
        if level.dtype != first.dtype or level.ndim != first.ndim or level.shape[-1] != first.shape[-1]:
            raise ColorKMeansError(
                f"level {index} has shape {level.shape} and dtype {level.dtype}, but level 0 "
                f"has shape {first.shape} and dtype {first.dtype}; all levels need the same "
                "dtype, number of axes and channels."
            )
        if level.size > checked[index - 1].size:
            raise ColorKMeansError(
                f"level {index} (shape {level.shape}) is larger than level {index - 1} "
                f"(shape {checked[index - 1].shape}); order the levels finest first."
            )
    return checked


def _check_fit_level(fit_level, n_levels: int) -> int:
    if not _engine._is_whole_number(fit_level) or not -n_levels <= fit_level < n_levels:
        raise ColorKMeansError(
            f"fit_level must be None or a level index from 0 to {n_levels - 1}, got {fit_level!r}; "
            "pass None to pick the finest level within memory_budget."
        )
    return int(fit_level) % n_levels
