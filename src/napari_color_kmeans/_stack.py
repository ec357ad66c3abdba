"""Per-plane K-means colour segmentation of n-D RGB(A) stacks, without napari or Qt.

``segment_colors`` treats the leading axes of a (..., H, W, C) stack as more
pixels with one shared palette. The functions here give every 2-D plane its
own palette instead, for numpy and dask stacks alike. Labels and the
segmented image keep the stack's full shape.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Generator, Iterator
from dataclasses import dataclass

import numpy as np

from napari_color_kmeans import _dask, _engine, _plan
from napari_color_kmeans._engine import ColorKMeansWarning, ProgressStep

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlaneResult:
    """Palette of one 2-D plane; fields as in ``SegmentationResult``.

    ``index`` is the plane's position on the leading axes, e.g. (t, z).
    """

    index: tuple[int, ...]
    cluster_centers: np.ndarray
    counts: np.ndarray
    inertia: float
    n_clusters: int
    method: str
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class StackSegmentationResult:
    """Outcome of a per-plane segmentation of a (..., H, W, C) stack.

    ``labels`` (..., H, W) and ``segmented`` (..., H, W, C) have the stack's
    shape and are dask arrays when the stack is one. ``planes`` lists the
    per-plane palettes in C order of the leading axes. Labels are numbered
    per plane, so label 1 is the largest cluster of each plane and the same
    label can be a different colour in another plane.
    """

    labels: np.ndarray
    segmented: np.ndarray
    planes: tuple[PlaneResult, ...]
    random_state: int

    @property
    def leading_shape(self) -> tuple[int, ...]:
        return tuple(self.labels.shape[:-2])

    @property
    def cluster_centers(self) -> np.ndarray:
        """Centres as an array (..., max n_clusters, 3), padded with NaN rows."""
        width = max(plane.n_clusters for plane in self.planes)
        centers = np.full((len(self.planes), width, 3), np.nan)
        for row, plane in enumerate(self.planes):
            centers[row, : plane.n_clusters] = plane.cluster_centers
        return centers.reshape(*self.leading_shape, width, 3)

    @property
    def counts(self) -> np.ndarray:
        """Pixel counts as an array (..., max n_clusters), padded with zeros."""
        width = max(plane.n_clusters for plane in self.planes)
        counts = np.zeros((len(self.planes), width), dtype=np.int64)
        for row, plane in enumerate(self.planes):
            counts[row, : plane.n_clusters] = plane.counts
        return counts.reshape(*self.leading_shape, width)


def segment_planes(
    image,
    n_clusters: int = 8,
    *,
    random_state: int = 42,
    method: str = "auto",
    n_init: int | None = None,
) -> StackSegmentationResult:
    """Segment every 2-D plane of a (..., H, W, C) stack with its own palette.

    See ``iter_segment_planes`` for the parameters; this runs it to the end.
    """
    steps = iter_segment_planes(
        image, n_clusters, random_state=random_state, method=method, n_init=n_init
    )
    return _engine.run_to_end(steps)


def iter_segment_planes(
    image,
    n_clusters: int = 8,
    *,
    random_state: int = 42,
    method: str = "auto",
    n_init: int | None = None,
) -> Generator[ProgressStep, None, StackSegmentationResult]:
    """Segment every 2-D plane of a stack with its own palette, yielding progress.

    ``image`` is a numpy or dask array (..., H, W, 3 or 4); a single
    (H, W, C) image is one plane. Every plane is fitted with the same
    ``random_state``, so identical planes get identical palettes. Stage
    names start with "plane i of n"; closing the generator stops the run
    between two steps, before the next plane or chunk batch is read.
    Parameters and errors are those of ``iter_segment_colors``; warnings
    name the plane they come from.
    """
    _engine._check_parameters(n_clusters, random_state, method, n_init)
    image = _engine._check_image(image)
    is_dask = _dask.is_dask_array(image)
    pipeline = _dask if is_dask else _plan

    indices = list(_plane_indices(image.shape[:-3]))
    requests = [_plane_request(image[index], n_clusters, random_state, method, n_init) for index in indices]
    per_plane = pipeline.estimate_steps(requests[0])
    progress = _engine._Progress(per_plane * len(indices))

    stages = _run_planes(pipeline, requests, indices)
    planes, outputs = yield from progress.wrap(stages)

    for plane in planes:
        for message in plane.warnings:
            warnings.warn(f"plane {plane.index}: {message}", ColorKMeansWarning, stacklevel=2)

    labels, segmented = _assemble(image, outputs, int(n_clusters), is_dask)
    return StackSegmentationResult(labels, segmented, tuple(planes), int(random_state))


def _plane_indices(leading_shape: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    return itertools.product(*(range(size) for size in leading_shape))


def _plane_request(plane, n_clusters, random_state, method, n_init) -> _plan.Request:
    return _plan.Request(
        image=plane,
        n_clusters=int(n_clusters),
        random_state=int(random_state),
        method=method,
        n_init=None if n_init is None else int(n_init),
    )


def _run_planes(pipeline, requests, indices) -> Generator[str, None, tuple[list, list]]:
    """Run ``pipeline`` on every plane; return the PlaneResults and (labels, segmented) pairs."""
    planes = []
    outputs = []
    for number, (request, index) in enumerate(zip(requests, indices), start=1):
        stages = pipeline.run(request)
        try:
            while True:
                stage = next(stages)
                yield f"plane {number} of {len(requests)}: {stage}"
        except StopIteration as stop:
            outcome = stop.value
        finally:
            stages.close()

        logger.debug("segmented plane %s with %s", index, outcome.method)
        planes.append(_plane_result(index, outcome))
        outputs.append((outcome.labels, outcome.segmented))
    return planes, outputs


def _plane_result(index: tuple[int, ...], outcome: _plan.Outcome) -> PlaneResult:
    return PlaneResult(
        index=index,
        cluster_centers=outcome.cluster_centers,
        counts=outcome.counts,
        inertia=outcome.inertia,
        n_clusters=len(outcome.counts),
        method=outcome.method,
        warnings=tuple(outcome.warnings),
    )


def _assemble(image, outputs: list, n_clusters: int, is_dask: bool):
    """Return the full-shape labels and segmented arrays from per-plane outputs."""
    label_dtype = _plan._label_dtype(n_clusters)
    if is_dask:
        import dask.array as da

        leading = image.shape[:-3]
        labels = _nest([out[0].astype(label_dtype) for out in outputs], leading, da.stack)
        segmented = _nest([out[1] for out in outputs], leading, da.stack)
        return labels, segmented

    labels = np.empty(image.shape[:-1], dtype=label_dtype)
    segmented = np.empty(image.shape, dtype=image.dtype)
    for index, (plane_labels, plane_segmented) in zip(_plane_indices(image.shape[:-3]), outputs):
        labels[index] = plane_labels
        segmented[index] = plane_segmented
    return labels, segmented


def _nest(arrays: list, leading_shape: tuple[int, ...], stack):
    """Stack a C-ordered list of per-plane arrays back into ``leading_shape``."""
    if not leading_shape:
        return arrays[0]
    size = int(np.prod(leading_shape[1:], dtype=np.int64))
    groups = [arrays[start : start + size] for start in range(0, len(arrays), size)]
    return stack([_nest(group, leading_shape[1:], stack) for group in groups])
