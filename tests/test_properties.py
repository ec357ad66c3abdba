"""Property-based tests of the engine over random images, dtypes, k and seeds.

Images are built from a small random palette (so k can exceed the number of
distinct colours) or from noise, in every supported dtype, with 3 or 4
channels, and with NaN, inf and fully transparent pixels mixed in. Pixel
values come from a NumPy generator seeded by hypothesis, which keeps large
images cheap to draw while hypothesis still shrinks the seed, shape and k.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_color_kmeans._engine import (
    ColorKMeansError,
    ColorKMeansWarning,
    SegmentationResult,
    segment_colors,
)
from napari_color_kmeans._features import make_feature_space

DTYPES = (np.uint8, np.uint16, np.float32, np.float64)
MAX_SIDE = 200

# Tolerance of the nearest-centre check, relative to the squared value range.
# The engine picks centres with |x|^2 - 2 x.c + |c|^2 in float64 (error about
# 1e-16 of the squared range) and clusters float32 images that hold 8-bit
# levels on their exact codes k / 255, which differ from the stored float32
# values by up to 2**-24 relative (about 6e-8). So a pixel almost exactly
# between two centres may take either, and its squared distance to its own
# centre can exceed the minimum by about 1e-7 of the squared range, and
# 1e-6 leaves a margin of ten above that.
NEAREST_RELATIVE_TOL = 1e-6

PROPERTY_SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass(frozen=True)
class Case:
    """One generated input: the image and the call's parameters."""

    image: np.ndarray
    n_clusters: int
    random_state: int
    method: str

    @property
    def clustered(self) -> np.ndarray:
        """Bool array of the spatial shape: finite pixels with alpha != 0."""
        return clustered_pixels(self.image)


def clustered_pixels(image: np.ndarray) -> np.ndarray:
    clustered = np.ones(image.shape[:-1], dtype=bool)
    if image.dtype.kind == "f":
        clustered &= np.isfinite(image).all(axis=-1)
    if image.shape[-1] == 4:
        clustered &= image[..., 3] != 0
    return clustered


def full_scale(dtype: np.dtype) -> float:
    return 1.0 if np.dtype(dtype).kind == "f" else float(np.iinfo(dtype).max)


def palette_values(rng: np.random.Generator, dtype, n_colors: int, levels_8bit: bool) -> np.ndarray:
    """Return ``n_colors`` RGB rows in ``dtype``: 8-bit levels or any value of the dtype."""
    codes = rng.integers(0, 256, size=(n_colors, 3))
    if np.dtype(dtype) == np.uint8:
        return codes.astype(np.uint8)
    if np.dtype(dtype) == np.uint16:
        if levels_8bit:
            return (codes * 257).astype(np.uint16)
        return rng.integers(0, 65536, size=(n_colors, 3)).astype(np.uint16)
    if levels_8bit:
        return (codes / 255.0).astype(dtype)
    return rng.uniform(-0.25, 1.5, size=(n_colors, 3)).astype(dtype)


@st.composite
def images(draw) -> np.ndarray:
    """Draw an RGB(A) image with optional NaN, inf and transparent pixels."""
    height = draw(st.integers(1, MAX_SIDE))
    width = draw(st.integers(1, MAX_SIDE))
    dtype = draw(st.sampled_from(DTYPES))
    n_channels = draw(st.sampled_from((3, 4)))
    n_colors = draw(st.integers(1, 12))
    noise = draw(st.booleans())
    levels_8bit = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    if noise:
        palette = palette_values(rng, dtype, height * width, levels_8bit)
        rgb = palette.reshape(height, width, 3)
    else:
        palette = palette_values(rng, dtype, n_colors, levels_8bit)
        rgb = palette[rng.integers(0, n_colors, size=(height, width))]

    image = rgb
    if n_channels == 4:
        alpha = np.full((height, width, 1), full_scale(dtype), dtype=dtype)
        image = np.concatenate([rgb, alpha], axis=-1)
        transparent_fraction = draw(st.sampled_from((0.0, 0.1, 0.5, 1.0)))
        image[rng.random((height, width)) < transparent_fraction, 3] = 0

    if np.dtype(dtype).kind == "f":
        nonfinite_fraction = draw(st.sampled_from((0.0, 0.0, 0.05, 0.3)))
        hit = rng.random((height, width)) < nonfinite_fraction
        channel = rng.integers(0, 3, size=hit.sum())
        image[hit, channel] = rng.choice([np.nan, np.inf, -np.inf], size=hit.sum())
    return image


@st.composite
def cases(draw) -> Case:
    image = draw(images())
    return Case(
        image=image,
        n_clusters=draw(st.integers(1, 16)),
        random_state=draw(st.integers(0, 2**32 - 1)),
        method=draw(st.sampled_from(("auto", "exact", "fast"))),
    )


def array_hash(array: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(array).tobytes())
    digest.update(f"{array.shape}{array.dtype}".encode())
    return digest.hexdigest()


def run_quietly(image: np.ndarray, n_clusters: int, **options) -> SegmentationResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ColorKMeansWarning)
        return segment_colors(image, n_clusters, **options)


def distinct_colors(image: np.ndarray, clustered: np.ndarray) -> np.ndarray:
    return np.unique(image[clustered][:, :3].astype(np.float64), axis=0)


def squared_distances(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Return the (n, k) squared distances, computed directly in float64."""
    offsets = points[:, None, :] - centers[None, :, :]
    return np.einsum("ijk,ijk->ij", offsets, offsets)


def assert_nearest(points: np.ndarray, labels: np.ndarray, centers: np.ndarray) -> None:
    """Check that every point's label is 1 + the index of a nearest centre."""
    value_range = max(1.0, float(np.abs(points).max()), float(np.abs(centers).max()))
    tolerance = NEAREST_RELATIVE_TOL * value_range**2
    for start in range(0, len(points), 4096):
        block = squared_distances(points[start : start + 4096], centers)
        own = block[np.arange(len(block)), labels[start : start + 4096] - 1]
        excess = own - block.min(axis=1)
        assert excess.max() <= tolerance, (
            f"a pixel is {excess.max():.3g} (squared) farther from its centre than from "
            f"the nearest one; tolerance {tolerance:.3g}"
        )


def expected_segmented(result: SegmentationResult, image: np.ndarray) -> np.ndarray:
    """Return ``cluster_centers[labels - 1]`` cast to the image dtype, input where label 0."""
    expected = image.copy()
    labelled = result.labels > 0
    painted = result.cluster_centers[result.labels[labelled] - 1]
    if image.dtype.kind != "f":
        painted = np.clip(np.rint(painted), 0, np.iinfo(image.dtype).max)
    expected[labelled, :3] = painted.astype(image.dtype)
    return expected


@PROPERTY_SETTINGS
@given(case=cases())
def test_segmentation_properties(case: Case):
    image = case.image
    before = array_hash(image)
    clustered = case.clustered
    options = {"random_state": case.random_state, "method": case.method}

    if not clustered.any():
        with pytest.raises(ColorKMeansError, match="no pixel can be clustered"):
            run_quietly(image, case.n_clusters, **options)
        assert array_hash(image) == before
        return

    result = run_quietly(image, case.n_clusters, **options)
    labels = result.labels
    n_distinct = len(distinct_colors(image, clustered))

    assert array_hash(image) == before
    assert labels.shape == image.shape[:-1]
    assert labels.dtype.kind == "u"
    assert 1 <= result.n_clusters <= min(case.n_clusters, n_distinct)
    if case.n_clusters >= n_distinct:
        assert result.n_clusters == n_distinct
    assert labels.max() <= result.n_clusters
    np.testing.assert_array_equal(labels > 0, clustered)

    assert result.cluster_centers.shape == (result.n_clusters, 3)
    assert len(result.counts) == result.n_clusters
    assert int(result.counts.sum()) == int(clustered.sum())
    np.testing.assert_array_equal(
        result.counts, np.bincount(labels.ravel(), minlength=result.n_clusters + 1)[1:]
    )
    assert np.all(np.diff(result.counts) <= 0), "label 1 must be the largest cluster"

    points = image[clustered][:, :3].astype(np.float64)
    assert_nearest(points, labels[clustered], result.cluster_centers)

    own = squared_distances(points, result.cluster_centers)[
        np.arange(len(points)), labels[clustered] - 1
    ]
    np.testing.assert_allclose(result.inertia, own.sum(), rtol=1e-6, atol=1e-9)

    assert result.segmented.dtype == image.dtype
    assert result.segmented.shape == image.shape
    np.testing.assert_array_equal(result.segmented, expected_segmented(result, image))

    again = run_quietly(image, case.n_clusters, **options)
    np.testing.assert_array_equal(again.labels, labels)
    np.testing.assert_array_equal(again.cluster_centers, result.cluster_centers)
    assert again.inertia == result.inertia
    assert array_hash(image) == before


@st.composite
def feature_cases(draw) -> tuple[Case, str, float, np.ndarray | None]:
    """Draw a case with a colour space, a spatial weight and an optional mask."""
    case = draw(cases())
    color_space = draw(st.sampled_from(("rgb", "lab", "hsv")))
    spatial_weight = draw(st.sampled_from((0.0, 0.0, 0.3, 1.0)))
    mask = None
    if draw(st.booleans()):
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        mask = rng.random(case.image.shape[:-1]) < draw(st.sampled_from((0.2, 0.7, 1.0)))
    return case, color_space, spatial_weight, mask


def pixel_feature_rows(image, clustered, color_space, spatial_weight) -> np.ndarray:
    """Return the feature rows of the clustered pixels, as the engine defines them."""
    space = make_feature_space(color_space, spatial_weight, image.dtype, image.shape[:-1])
    features = space.colors_to_features(image[clustered][:, :3])
    if spatial_weight == 0:
        return features
    rows, columns = np.nonzero(clustered)
    return np.hstack([features, space.position_features(rows, columns)])


@settings(PROPERTY_SETTINGS, max_examples=40)
@given(drawn=feature_cases())
def test_feature_space_properties(drawn):
    case, color_space, spatial_weight, mask = drawn
    image = case.image
    before = array_hash(image)
    clustered = case.clustered if mask is None else case.clustered & mask
    options = {
        "random_state": case.random_state,
        "method": case.method,
        "color_space": color_space,
        "spatial_weight": spatial_weight,
        "mask": mask,
    }

    if not clustered.any():
        with pytest.raises(ColorKMeansError, match="no pixel can be clustered"):
            run_quietly(image, case.n_clusters, **options)
        return

    result = run_quietly(image, case.n_clusters, **options)
    labels = result.labels

    assert array_hash(image) == before
    assert labels.shape == image.shape[:-1]
    assert 1 <= result.n_clusters <= case.n_clusters
    np.testing.assert_array_equal(labels > 0, clustered)
    assert int(result.counts.sum()) == int(clustered.sum())
    np.testing.assert_array_equal(
        result.counts, np.bincount(labels.ravel(), minlength=result.n_clusters + 1)[1:]
    )

    features = pixel_feature_rows(image, clustered, color_space, spatial_weight)
    assert result.feature_centers.shape == (result.n_clusters, features.shape[1])
    assert_nearest(features, labels[clustered], result.feature_centers)
    np.testing.assert_array_equal(result.segmented, expected_segmented(result, image))

    again = run_quietly(image, case.n_clusters, **options)
    np.testing.assert_array_equal(again.labels, labels)
    np.testing.assert_array_equal(again.feature_centers, result.feature_centers)
