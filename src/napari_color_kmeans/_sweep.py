"""Segment one image for several n_clusters values, counting its colours once.

For a plain RGB(A) numpy image with 8-bit levels the distinct-colour pass
(the one step that reads every pixel before the fit) runs once and every
n_clusters value reuses it. Any other input runs ``iter_segment_colors``
once per value.
"""

from __future__ import annotations

import warnings
from collections.abc import Generator, Iterable

from napari_color_kmeans import _engine, _plan
from napari_color_kmeans._engine import ProgressStep, SegmentationResult
from napari_color_kmeans._errors import ColorKMeansError, ColorKMeansWarning


def segment_colors_many(
    image,
    n_clusters_values: Iterable[int],
    *,
    random_state: int = 42,
    method: str = "auto",
    n_init: int | None = None,
    **options,
) -> list[SegmentationResult]:
    """Segment ``image`` once per value of ``n_clusters_values``; see ``iter_segment_colors_many``."""
    steps = iter_segment_colors_many(
        image, n_clusters_values, random_state=random_state, method=method, n_init=n_init, **options
    )
    return _engine.run_to_end(steps)


def iter_segment_colors_many(
    image,
    n_clusters_values: Iterable[int],
    *,
    random_state: int = 42,
    method: str = "auto",
    n_init: int | None = None,
    **options,
) -> Generator[ProgressStep, None, list[SegmentationResult]]:
    """Segment ``image`` once per n_clusters value, yielding progress between steps.

    Returns the results in the order of ``n_clusters_values``, each equal
    to what ``iter_segment_colors`` returns for that value. ``options``
    (color_space, spatial_weight, mask) go to ``iter_segment_colors``.
    """
    values = list(n_clusters_values)
    if not values:
        raise ColorKMeansError(
            "n_clusters_values is empty; pass at least one n_clusters value, e.g. [2, 4, 8]."
        )
    for n_clusters in values:
        _engine._check_parameters(n_clusters, random_state, method, n_init)
    image = _engine._check_image(image)

    if not _shares_colors(image, options):
        results = []
        for n_clusters in values:
            steps = _engine.iter_segment_colors(
                image, n_clusters, random_state=random_state, method=method, n_init=n_init, **options
            )
            results.append((yield from steps))
        return results

    requests = [
        _plan.Request(
            image=image,
            n_clusters=int(n_clusters),
            random_state=int(random_state),
            method=method,
            n_init=None if n_init is None else int(n_init),
        )
        for n_clusters in values
    ]
    progress = _engine._Progress(sum(_plan.estimate_steps(request) for request in requests))
    outcomes = yield from progress.wrap(_run_shared(requests))
    return [_to_result(outcome, int(random_state)) for outcome in outcomes]


def _shares_colors(image, options: dict) -> bool:
    """Return whether the requests can share one distinct-colour pass."""
    plain_options = (
        options.get("color_space", "rgb") == "rgb"
        and not options.get("spatial_weight", 0.0)
        and options.get("mask") is None
    )
    return plain_options and type(image).__module__.startswith("numpy")


def _run_shared(requests: list[_plan.Request]) -> Generator[str, None, list[_plan.Outcome]]:
    """Count the colours once, then fit and label once per request."""
    image = requests[0].image
    pixels = image.reshape(-1, image.shape[-1])
    messages: list[str] = []
    n_valid = yield from _plan._count_valid(pixels, messages)

    index = yield from _plan.index_8bit(pixels)
    outcomes = []
    for request in requests:
        if index is None:
            outcome = yield from _plan._run_general(request, pixels, n_valid, list(messages))
        else:
            outcome = yield from _plan.run_8bit(request, index, list(messages))
        outcomes.append(outcome)
    return outcomes


def _to_result(outcome: _plan.Outcome, random_state: int) -> SegmentationResult:
    for message in outcome.warnings:
        warnings.warn(message, ColorKMeansWarning, stacklevel=3)

    return SegmentationResult(
        labels=outcome.labels,
        cluster_centers=outcome.cluster_centers,
        segmented=outcome.segmented,
        inertia=outcome.inertia,
        counts=outcome.counts,
        n_clusters=len(outcome.counts),
        method=outcome.method,
        random_state=random_state,
        warnings=tuple(outcome.warnings),
        feature_centers=outcome.cluster_centers,
    )
