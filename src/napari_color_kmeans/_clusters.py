"""Per-cluster tables, masks and merges of a SegmentationResult, without Qt.

The cluster table has one row per label 1..n_clusters: label, hex code, RGB
centre (image units), pixel count, fraction of all pixels of the image, and
the centre in the clustering space as ``center_<feature name>`` columns.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np

from napari_color_kmeans._engine import SegmentationResult
from napari_color_kmeans._errors import ColorKMeansError
from napari_color_kmeans._features import full_scale_of


def hex_codes(cluster_centers: np.ndarray, dtype) -> list[str]:
    """Return '#rrggbb' of each RGB centre given in the units of ``dtype``."""
    unit = np.clip(np.asarray(cluster_centers, dtype=np.float64) / full_scale_of(dtype), 0.0, 1.0)
    codes = np.rint(unit * 255).astype(int)
    return [f"#{red:02x}{green:02x}{blue:02x}" for red, green, blue in codes]


def cluster_table(result: SegmentationResult) -> dict[str, np.ndarray]:
    """Return the cluster table of ``result`` as columns of equal length."""
    n_pixels = max(int(result.labels.size), 1)
    counts = np.asarray(result.counts, dtype=np.int64)
    centers = np.asarray(result.cluster_centers, dtype=np.float64)
    table = {
        "label": np.arange(1, result.n_clusters + 1),
        "hex": np.array(hex_codes(centers, result.segmented.dtype)),
        "red": centers[:, 0],
        "green": centers[:, 1],
        "blue": centers[:, 2],
        "pixel_count": counts,
        "fraction": counts / n_pixels,
    }
    for name, column in zip(result.feature_names, _feature_centers(result).T):
        table[f"center_{name}"] = column
    return table


def _feature_centers(result: SegmentationResult) -> np.ndarray:
    if result.feature_centers is None:
        return np.asarray(result.cluster_centers, dtype=np.float64)
    return np.asarray(result.feature_centers, dtype=np.float64)


def write_csv(table: dict[str, np.ndarray], path) -> Path:
    """Write a cluster table to ``path`` as CSV with a header row; return the path."""
    path = Path(path)
    names = list(table)
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(names)
        for index in range(len(table[names[0]])):
            writer.writerow([_csv_value(table[name][index]) for name in names])
    return path


def _csv_value(value):
    if isinstance(value, (np.floating, float)):
        return repr(float(value))
    if isinstance(value, (np.integer, int)):
        return int(value)
    return str(value)


def selection_mask(labels: np.ndarray, selected) -> np.ndarray:
    """Return ``labels`` with every label not in ``selected`` set to 0."""
    keep = np.isin(labels, np.asarray(list(selected), dtype=np.int64))
    return np.where(keep, labels, 0).astype(labels.dtype)


def merge_clusters(result: SegmentationResult, selected) -> SegmentationResult:
    """Merge the clusters in ``selected`` into the smallest of those labels.

    The merged centre is the count-weighted mean of the merged centres, in
    RGB and in the clustering space, and inertia grows by the exact amount
    that moving those pixels to it adds. Labels above a removed label move
    down, so labels stay 1..n_clusters. Pixels of the merged cluster are
    painted in its new colour in ``segmented``.
    """
    selected = sorted({int(label) for label in selected})
    _check_selection(selected, result.n_clusters)
    target = selected[0]
    indices = np.array(selected) - 1
    counts = np.asarray(result.counts, dtype=np.float64)
    weights = counts[indices] / max(counts[indices].sum(), 1)

    feature_centers = _feature_centers(result).copy()
    cluster_centers = np.asarray(result.cluster_centers, dtype=np.float64).copy()
    merged_feature = weights @ feature_centers[indices]
    added_inertia = float(np.dot(counts[indices], ((feature_centers[indices] - merged_feature) ** 2).sum(axis=1)))
    feature_centers[target - 1] = merged_feature
    cluster_centers[target - 1] = weights @ cluster_centers[indices]

    mapping = _merge_mapping(result.n_clusters, selected)
    keep = np.array([label for label in range(1, result.n_clusters + 1) if label not in selected[1:]]) - 1
    new_counts = np.bincount(mapping[1:], weights=counts, minlength=len(keep) + 1)[1:].astype(np.int64)
    labels = mapping[result.labels].astype(result.labels.dtype)

    return dataclasses.replace(
        result,
        labels=labels,
        cluster_centers=cluster_centers[keep],
        feature_centers=feature_centers[keep],
        counts=new_counts,
        n_clusters=len(keep),
        inertia=float(result.inertia) + added_inertia,
        segmented=_repaint(result.segmented, labels, mapping[target], cluster_centers[target - 1]),
    )


def _check_selection(selected: list[int], n_clusters: int) -> None:
    if len(selected) < 2:
        raise ColorKMeansError(
            f"merging needs at least two clusters, got {selected}; select two or more rows."
        )
    if selected[0] < 1 or selected[-1] > n_clusters:
        raise ColorKMeansError(
            f"labels {selected} include a label outside 1..{n_clusters}; "
            "select labels of the current segmentation."
        )


def _merge_mapping(n_clusters: int, selected: list[int]) -> np.ndarray:
    """Return old label -> new label, with 0 -> 0 and every selected label -> one label."""
    mapping = np.zeros(n_clusters + 1, dtype=np.int64)
    next_label = 1
    for label in range(1, n_clusters + 1):
        if label in selected[1:]:
            continue
        mapping[label] = next_label
        next_label += 1
    mapping[selected[1:]] = mapping[selected[0]]
    return mapping


def _repaint(segmented: np.ndarray, labels: np.ndarray, label: int, center: np.ndarray) -> np.ndarray:
    painted = segmented.copy()
    color = np.asarray(center, dtype=np.float64)
    if painted.dtype.kind != "f":
        color = np.clip(np.rint(color), 0, np.iinfo(painted.dtype).max)
    painted[labels == label, :3] = color.astype(painted.dtype)
    return painted
