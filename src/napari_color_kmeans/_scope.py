"""Choose what part of a layer's data the engine segments, without Qt.

A layer contains a 2-D RGB image, an n-D stack (..., H, W, 3 or 4), or a
multiscale pyramid of either, as numpy or dask arrays. A ``Job`` records
which engine entry point fits the chosen scope; ``iter_job`` runs it and
``place_plane`` puts a single plane's result back into the stack's shape.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_color_kmeans import _dask
from napari_color_kmeans._engine import ColorKMeansError, ProgressStep, iter_segment_colors
from napari_color_kmeans._multiscale import iter_segment_multiscale
from napari_color_kmeans._stack import iter_segment_planes

WHOLE_STACK = "whole stack, one palette"
EACH_PLANE = "each plane, own palette"
CURRENT_PLANE = "current plane only"
SCOPES = (WHOLE_STACK, EACH_PLANE, CURRENT_PLANE)


@dataclass(frozen=True)
class Job:
    """The data to segment and how: one palette, one per plane, or a pyramid.

    ``plane_index`` is set for the "current plane only" scope: it is the
    plane's position on the leading axes, and ``stack_shape`` the full
    shape of the layer's data, so the result can be placed back.
    """

    image: Any
    per_plane: bool = False
    multiscale: bool = False
    plane_index: tuple[int, ...] | None = None
    stack_shape: tuple[int, ...] | None = None


def make_job(data, *, multiscale: bool, scope: str, current_step: Sequence[int]) -> Job:
    """Build the job for a layer's ``data`` and the user's ``scope``.

    ``current_step`` is the layer's current position on each of its axes
    (without the colour axis), as napari's dims report it. numpy and dask
    arrays are passed on as they are, so a dask layer is never loaded whole.
    """
    if scope not in SCOPES:
        raise ColorKMeansError(f"scope {scope!r} is not one of {', '.join(map(repr, SCOPES))}.")
    if multiscale:
        if scope != WHOLE_STACK:
            raise ColorKMeansError(
                f"scope {scope!r} is not available for a multiscale layer; "
                f"choose {WHOLE_STACK!r}, which fits one palette for every level."
            )
        return Job(image=list(data), multiscale=True)

    image = data if _dask.is_dask_array(data) else np.asarray(data)
    n_leading = image.ndim - 3
    if n_leading <= 0 or scope == WHOLE_STACK:
        return Job(image=image)
    if scope == EACH_PLANE:
        return Job(image=image, per_plane=True)

    plane_index = tuple(
        int(np.clip(step, 0, size - 1))
        for step, size in zip(current_step[:n_leading], image.shape[:n_leading])
    )
    return Job(image=image[plane_index], plane_index=plane_index, stack_shape=tuple(image.shape))


def iter_job(
    job: Job, n_clusters: int, *, random_state: int, method: str, **options
) -> Generator[ProgressStep, None, Any]:
    """Run the engine entry point that fits ``job``; return its result.

    ``options`` (color_space, spatial_weight, mask) only apply to a single
    palette over plain arrays; other scopes reject a non-default option.
    """
    if job.multiscale or job.per_plane:
        _check_default_options(options, "multiscale layers" if job.multiscale else "per-plane scope")
        entry = iter_segment_multiscale if job.multiscale else iter_segment_planes
        return (yield from entry(job.image, n_clusters, random_state=random_state, method=method))
    return (
        yield from iter_segment_colors(
            job.image, n_clusters, random_state=random_state, method=method, **options
        )
    )


def _check_default_options(options: dict, where: str) -> None:
    defaults = {"color_space": "rgb", "spatial_weight": 0.0, "mask": None}
    for name, value in options.items():
        default = defaults.get(name)
        changed = value is not None if default is None else value != default
        if changed:
            raise ColorKMeansError(
                f"{name}={value!r} is not supported for {where}; set it back to "
                f"{default!r}, or segment one plane with the {CURRENT_PLANE!r} scope."
            )


def place_plane(plane_array, job: Job, channels: int | None):
    """Return an array of the whole stack's shape holding ``plane_array`` at the job's plane.

    Other planes are 0 (label 0, "left out"). ``channels`` is None for
    labels and the channel count for the segmented image.
    """
    spatial_shape = job.stack_shape[:-1] if channels is None else job.stack_shape
    if _dask.is_dask_array(plane_array):
        import dask.array as da

        full = da.zeros(spatial_shape, dtype=plane_array.dtype)
        full[job.plane_index] = plane_array
        return full
    full = np.zeros(spatial_shape, dtype=plane_array.dtype)
    full[job.plane_index] = plane_array
    return full
