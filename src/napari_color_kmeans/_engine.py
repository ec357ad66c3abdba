"""K-means colour segmentation of RGB(A) images, without napari or Qt.

The public entry points are ``segment_colors`` and ``iter_segment_colors``.
8-bit data (uint8, and uint16 or float images that hold only 8-bit levels)
are clustered on their distinct colours weighted by pixel counts, which
minimises the same objective as a fit on every pixel. Other data are fitted
on a seeded subsample or a histogram and then every pixel is assigned to its
nearest centre.
"""

from __future__ import annotations

import logging
import numbers
import warnings
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from napari_color_kmeans import _axes, _dask, _plan
from napari_color_kmeans._errors import ColorKMeansError, ColorKMeansWarning
from napari_color_kmeans._features import check_mask, make_feature_space

logger = logging.getLogger(__name__)

METHODS = ("auto", "exact", "fast")
SUPPORTED_DTYPES = (np.uint8, np.uint16, np.float32, np.float64)
MAX_CLUSTERS = 65535
# Squared distances summed over millions of pixels overflow float64 (about
# 1.8e308) when values approach 1e150; real image data stay far below 1e100.
MAX_FLOAT_MAGNITUDE = 1e100
PEAK_CHUNK_ROWS = 1 << 20


@dataclass(frozen=True)
class ProgressStep:
    """Progress report yielded by ``iter_segment_colors``."""

    stage: str
    done: int
    total: int


@dataclass(frozen=True)
class SegmentationResult:
    """Outcome of one K-means colour segmentation.

    ``labels`` has the image's shape without the channel axis, with values
    1..n_clusters and 0 for pixels left out. Label 1 is the largest cluster.
    ``cluster_centers`` (n_clusters, 3) and ``segmented`` are in the image's
    own units. ``feature_centers`` are the centres in the clustering space
    (columns ``feature_names``), and ``inertia`` is the sum of squared
    distances in that space; for "rgb" without a spatial weight both are in
    the image's units. ``method`` names the algorithm that ran.
    """

    labels: np.ndarray
    cluster_centers: np.ndarray
    segmented: np.ndarray
    inertia: float
    counts: np.ndarray
    n_clusters: int
    method: str
    random_state: int
    warnings: tuple[str, ...]
    feature_centers: np.ndarray | None = None
    color_space: str = "rgb"
    spatial_weight: float = 0.0
    feature_names: tuple[str, ...] = ("red", "green", "blue")


def segment_colors(
    image,
    n_clusters: int = 8,
    *,
    random_state: int = 42,
    method: str = "auto",
    n_init: int | None = None,
    color_space: str = "rgb",
    spatial_weight: float = 0.0,
    mask=None,
) -> SegmentationResult:
    """Segment an RGB(A) image into ``n_clusters`` colours with K-means.

    See ``iter_segment_colors`` for the parameters; this runs it to the end.
    """
    steps = iter_segment_colors(
        image,
        n_clusters,
        random_state=random_state,
        method=method,
        n_init=n_init,
        color_space=color_space,
        spatial_weight=spatial_weight,
        mask=mask,
    )
    return run_to_end(steps)


def iter_segment_colors(
    image,
    n_clusters: int = 8,
    *,
    random_state: int = 42,
    method: str = "auto",
    n_init: int | None = None,
    color_space: str = "rgb",
    spatial_weight: float = 0.0,
    mask=None,
) -> Generator[ProgressStep, None, SegmentationResult]:
    """Segment an RGB(A) image with K-means, yielding progress between steps.

    Parameters
    ----------
    image : numpy.ndarray
        uint8, uint16, float32 or float64 array of shape (..., H, W, 3 or 4).
        All leading axes are more pixels that share one palette.
    n_clusters : int
        Requested number of colours (>= 1). Fewer are used, with a warning,
        when the image has fewer distinct colours.
    random_state : int
        Seed of every random choice; the same seed gives the same result.
    method : {"auto", "exact", "fast"}
        "exact" fits every distinct colour weighted by its pixel count.
        "fast" searches K-means++ starts on a 4-bit colour histogram and
        refits the best on a 6-bit histogram. "auto" then polishes the two
        best histogram fits with exact Lloyd iterations on the distinct
        colours. Data that are not 8-bit are fitted on a seeded subsample
        and every pixel is assigned to its nearest centre;
        ``SegmentationResult.method`` names the method that ran.
    n_init : int or None
        Number of K-means++ starts: on the 4-bit histogram for "auto" and
        "fast" (None: 40), on the distinct colours for "exact" (None: 3 to
        10, fewer for images with more distinct colours).
    color_space : {"rgb", "lab", "hsv"}
        Space in which colour distances are measured: RGB, CIELAB, or HSV
        with the hue as its cosine and sine. Centres are still reported as
        RGB in ``cluster_centers``.
    spatial_weight : float
        Weight (>= 0) of the pixel's (row, column) position; 0 clusters on
        colour only. Above 0 the fit runs on a seeded pixel sample, so it
        is per pixel and slower.
    mask : numpy.ndarray of bool or None
        Pixels to cluster, with the image's shape without the channel axis
        (or its last two axes). Pixels outside the mask get label 0.

    Returns
    -------
    SegmentationResult
        As the generator's return value (``StopIteration.value``). Closing
        the generator early cancels the work.

    Raises
    ------
    ColorKMeansError
        For an invalid image or parameter, or when no pixel can be clustered.
    """
    _check_parameters(n_clusters, random_state, method, n_init)
    image = _check_image(image)
    space = make_feature_space(color_space, spatial_weight, image.dtype, image.shape[:-1])
    mask = check_mask(mask, image.shape[:-1])

    request = _plan.Request(
        image=image,
        n_clusters=int(n_clusters),
        random_state=int(random_state),
        method=method,
        n_init=None if n_init is None else int(n_init),
        color_space=space.color_space,
        spatial_weight=space.spatial_weight,
        mask=mask,
    )
    # Dask arrays are fitted chunk by chunk and labelled lazily.
    pipeline = _dask if _dask.is_dask_array(image) else _plan
    progress = _Progress(pipeline.estimate_steps(request))
    outcome = yield from progress.wrap(pipeline.run(request))

    for message in outcome.warnings:
        warnings.warn(message, ColorKMeansWarning, stacklevel=2)
    logger.debug("segmented %s image with %s", image.shape, outcome.method)

    return SegmentationResult(
        labels=outcome.labels,
        cluster_centers=outcome.cluster_centers,
        segmented=outcome.segmented,
        inertia=outcome.inertia,
        counts=outcome.counts,
        n_clusters=len(outcome.counts),
        method=outcome.method,
        random_state=int(random_state),
        warnings=tuple(outcome.warnings),
        feature_centers=(
            outcome.cluster_centers if outcome.feature_centers is None else outcome.feature_centers
        ),
        color_space=space.color_space,
        spatial_weight=space.spatial_weight,
        feature_names=space.names,
    )


def run_to_end(steps: Generator):
    """Drive a progress generator to its end, ignoring its steps; return its return value."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


class _Progress:
    """Counter behind the ProgressStep values; ``total`` never drops below ``done``."""

    def __init__(self, total: int) -> None:
        self.done = 0
        self.total = max(total, 1)

    def wrap(self, stages: Generator[str, None, _plan.Outcome]):
        """Turn the stage names of ``stages`` into ProgressSteps; return its value."""
        try:
            while True:
                stage = next(stages)
                self.total = max(self.total, self.done + 1)
                yield ProgressStep(stage=stage, done=self.done, total=self.total)
                self.done += 1
        except StopIteration as stop:
            return stop.value
        finally:
            stages.close()


def _is_whole_number(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _check_parameters(n_clusters, random_state, method, n_init) -> None:
    """Raise ColorKMeansError for an invalid scalar parameter."""
    if not _is_whole_number(n_clusters) or not 1 <= n_clusters <= MAX_CLUSTERS:
        raise ColorKMeansError(
            f"n_clusters must be a whole number >= 1, got {n_clusters!r}; "
            f"pass an int from 1 to {MAX_CLUSTERS}, e.g. n_clusters=8."
        )

    if not _is_whole_number(random_state) or not 0 <= random_state < 2**32:
        raise ColorKMeansError(
            f"random_state must be a whole number from 0 to 2**32 - 1, got {random_state!r}; "
            "pass an int such as random_state=42 to make the result reproducible."
        )

    if not isinstance(method, str) or method not in METHODS:
        raise ColorKMeansError(
            f"method must be one of {', '.join(repr(m) for m in METHODS)}, got {method!r}; "
            "use 'auto' unless you need a specific algorithm."
        )

    if n_init is not None and (not _is_whole_number(n_init) or n_init < 1):
        raise ColorKMeansError(
            f"n_init must be None or a whole number >= 1, got {n_init!r}; "
            "pass None to use the method's default number of initialisations."
        )


def _check_image(image) -> np.ndarray:
    """Return ``image`` as a numpy array after checking its shape and dtype.

    A dask array is checked and returned as it is, without computing it.
    """
    array = image if _dask.is_dask_array(image) else np.asarray(image)

    channel_axis = _axes.find_channel_first_axis(array.shape)
    if channel_axis is not None:
        raise ColorKMeansError(_axes.channel_first_message(array.shape, channel_axis))

    if array.ndim < 3 or array.shape[-1] not in (3, 4):
        raise ColorKMeansError(
            f"image has shape {array.shape}, but an RGB(A) image of shape (H, W, 3) or "
            "(H, W, 4) is needed; convert a grey or multichannel image to RGB first."
        )

    if array.dtype not in SUPPORTED_DTYPES:
        raise ColorKMeansError(
            f"image has dtype {array.dtype}, which is not supported; convert it to uint8, "
            "uint16, float32 or float64 first, e.g. image.astype(np.float32)."
        )

    if array.size == 0:
        raise ColorKMeansError(
            f"image has shape {array.shape} and contains no pixels; pass a non-empty image."
        )

    if array.dtype.kind == "f" and not _dask.is_dask_array(array):
        peak = _finite_peak(array)
        if peak > MAX_FLOAT_MAGNITUDE:
            raise ColorKMeansError(
                f"image values reach {peak:.3g}, but squared distances overflow float64 above "
                f"about {MAX_FLOAT_MAGNITUDE:.0e}; rescale the image first, e.g. "
                "image / np.abs(image[np.isfinite(image)]).max()."
            )
    return array


def _finite_peak(array: np.ndarray) -> float:
    """Return the largest absolute finite value of a float array, reading it in row blocks."""
    rows = array.reshape(-1, array.shape[-1])
    peak = 0.0
    for start in range(0, len(rows), PEAK_CHUNK_ROWS):
        block = rows[start : start + PEAK_CHUNK_ROWS]
        finite = block[np.isfinite(block)]
        if finite.size:
            peak = max(peak, float(np.abs(finite).max()))
    return peak


__all__ = [
    "ColorKMeansError",
    "ColorKMeansWarning",
    "ProgressStep",
    "SegmentationResult",
    "iter_segment_colors",
    "segment_colors",
]
