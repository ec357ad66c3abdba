"""Tests of the compiled "fast" path for uint8 images (_fast8), against the NumPy path.

The NumPy path fits on the distinct colours' 6-bit histogram and labels
every distinct colour by its nearest centre; _fast8 reaches the same
result from cell statistics. Every test here compares the two, or compares
_fast8 with a brute-force nearest-centre labelling.
"""

import itertools

import numpy as np
import pytest
import skimage.io

from napari_color_kmeans import (
    ColorKMeansWarning,
    _kernels,
    _lloyd,
    iter_segment_colors,
    segment_colors,
)

pytestmark = pytest.mark.skipif(_kernels.numba is None, reason="numba is not installed")


def both_paths(monkeypatch, image, n_clusters, **options):
    """Return the "fast" results of the compiled path and the NumPy path."""
    monkeypatch.setattr(_kernels, "USE_NUMBA", True)
    compiled = segment_colors(image, n_clusters, method="fast", **options)
    monkeypatch.setattr(_kernels, "USE_NUMBA", False)
    plain = segment_colors(image, n_clusters, method="fast", **options)
    return compiled, plain


def assert_same(compiled, plain):
    np.testing.assert_array_equal(compiled.labels, plain.labels)
    np.testing.assert_array_equal(compiled.segmented, plain.segmented)
    np.testing.assert_array_equal(compiled.cluster_centers, plain.cluster_centers)
    np.testing.assert_array_equal(compiled.counts, plain.counts)
    assert compiled.inertia == pytest.approx(plain.inertia, rel=1e-12, abs=1e-9)
    assert compiled.method == plain.method


def brute_force_inertia(image, result):
    pixels = image.reshape(-1, image.shape[-1])[:, :3].astype(np.float64)
    labels = result.labels.reshape(-1)
    clustered = labels > 0
    offsets = pixels[clustered] - result.cluster_centers[labels[clustered] - 1]
    return float((offsets**2).sum())


@pytest.mark.parametrize(
    ("shape", "n_clusters"),
    [((1000, 1001, 3), 2), ((1000, 1001, 3), 6), ((64, 63, 4), 6), ((64, 63, 4), 40), ((3, 3, 3), 6), ((1, 5, 3), 2)],
)
def test_noise_matches_numpy_path(monkeypatch, shape, n_clusters):
    # Noise puts most cells on a border between centres, so many pixels are counted.
    # 1000 x 1001 leaves rows after the last multiple of four; 64 x 63 has transparent rows.
    rng = np.random.default_rng(n_clusters)
    image = rng.integers(0, 256, size=shape, dtype=np.uint8)
    if shape[-1] == 4:
        image[::5, :, 3] = 0

    compiled, plain = both_paths(monkeypatch, image, n_clusters)

    assert_same(compiled, plain)
    assert compiled.inertia == pytest.approx(brute_force_inertia(image, compiled), rel=1e-9)


def test_unaligned_pixels_match(monkeypatch):
    # Pixels that start one byte into a buffer cannot be read as 4-byte
    # words, so painting takes the row-by-row loop.
    rng = np.random.default_rng(5)
    shape = (300, 401, 3)
    buffer = np.empty(np.prod(shape) + 1, dtype=np.uint8)
    image = buffer[1:].reshape(shape)
    image[:] = rng.integers(0, 256, size=shape, dtype=np.uint8)
    assert image.ctypes.data % 4 != 0

    compiled, plain = both_paths(monkeypatch, image, 5)

    assert_same(compiled, plain)
    assert compiled.inertia == pytest.approx(brute_force_inertia(image, compiled), rel=1e-9)


def test_chunk_remainder_matches(monkeypatch):
    # The first chunk is painted four rows at a time, split over the threads.
    # The second contains 3 rows, fewer than the 4 of a word, so it takes the row loop.
    n_pixels = _kernels.CHUNK_PIXELS + 3
    rng = np.random.default_rng(8)
    image = rng.integers(0, 256, size=(1, n_pixels, 3), dtype=np.uint8)

    compiled, plain = both_paths(monkeypatch, image, 4)

    assert_same(compiled, plain)
    assert compiled.inertia == pytest.approx(brute_force_inertia(image, compiled), rel=1e-9)


def test_closed_run_leaves_next_intact(monkeypatch):
    # Closing the generator once the search starts can leave the pool threads
    # touching the pages of that run's outputs, which must not change later runs.
    rng = np.random.default_rng(11)
    image = rng.integers(0, 256, size=(1024, 1030, 3), dtype=np.uint8)
    monkeypatch.setattr(_kernels, "USE_NUMBA", True)
    steps = iter_segment_colors(image, 5, method="fast")
    stage = next(step.stage for step in steps if step.stage != "counting colours")
    steps.close()

    compiled, plain = both_paths(monkeypatch, image, 5)

    assert image[..., 0].size >= _kernels.TOUCH_MIN_PIXELS
    assert stage.startswith("initialisation")
    assert steps.gi_frame is None
    assert_same(compiled, plain)


def test_more_than_255_clusters_match(monkeypatch):
    # Colours from 40 x 40 x 40 values fill 1000 cells with many colours each.
    rng = np.random.default_rng(3)
    image = rng.integers(100, 140, size=(100, 200, 3), dtype=np.uint8)

    compiled, plain = both_paths(monkeypatch, image, 300)

    assert compiled.labels.dtype == np.uint16
    assert_same(compiled, plain)


@pytest.mark.parametrize(("seed", "n_clusters"), [(0, 4), (4, 4), (7, 3), (16, 2), (23, 3)])
def test_renumbered_labels_match(monkeypatch, seed, n_clusters):
    # Colours from 12 x 12 x 12 values fill few cells, with several colours per cell.
    # In these images the exact counts order the clusters differently from the
    # histogram's counts, so _fast8 renumbers its labels after painting.
    rng = np.random.default_rng(seed)
    image = rng.integers(100, 112, size=(8, 40, 3)).astype(np.uint8)

    compiled, plain = both_paths(monkeypatch, image, n_clusters, random_state=seed)

    assert_same(compiled, plain)
    assert list(compiled.counts) == sorted(compiled.counts, reverse=True)


def test_ladybug_matches_numpy_path(monkeypatch, ladybug_path):
    image = skimage.io.imread(ladybug_path)

    compiled, plain = both_paths(monkeypatch, image, 8)

    assert_same(compiled, plain)


def test_small_inertia_survives_large_values():
    # The squares of these values add up to about 2e8 while the inertia is 4000,
    # which float sums of squares minus cross terms would round off.
    colors = np.array([[250, 250, 250], [254, 250, 250], [10, 10, 10]], dtype=np.uint8)
    image = np.repeat(colors, [500, 500, 10], axis=0)[None]

    result = segment_colors(image, 2, method="fast")

    assert result.method.startswith("fast")
    assert result.inertia == pytest.approx(brute_force_inertia(image, result), rel=1e-12)
    assert result.inertia == pytest.approx(1000 * 2.0**2)


def test_tied_cell_is_split():
    # Red 4 is as far from red 0 as from red 8: the cell of reds 4..7 is split.
    centers = np.array([[8.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    cells = np.array([0, 1 << 12])  # reds 0..3 and reds 4..7; green and blue 0..3

    owners = _kernels.cell_labels(cells, centers)
    nearest = _kernels.nearest_in_cells(cells, centers)

    assert owners[0] == 1
    assert owners[1] == -1
    colors = _kernels.cell_colors(cells).astype(np.float64)
    expected, _ = _lloyd.nearest(colors, centers)
    np.testing.assert_array_equal(nearest, expected)
    red_four = (colors[:, 0] == 4) & (colors[:, 1] == 0) & (colors[:, 2] == 0)
    assert nearest[red_four].tolist() == [0]


def test_cell_statistics_give_the_histogram_means():
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, size=(5000, 3), dtype=np.uint8)
    stats = _kernels.new_cell_stats(len(pixels))

    squares = _kernels.add_cell_stats(pixels, stats)
    cells, counts, sums = _kernels.occupied_cells(stats)

    codes = pixels.astype(np.int64) >> 2
    packed_codes = codes[:, 0] << 12 | codes[:, 1] << 6 | codes[:, 2]
    expected_cells, expected_counts = np.unique(packed_codes, return_counts=True)
    np.testing.assert_array_equal(cells, expected_cells)
    np.testing.assert_array_equal(counts, expected_counts)
    assert sums.sum(axis=0).tolist() == pixels.astype(np.int64).sum(axis=0).tolist()
    assert squares == int((pixels.astype(np.int64) ** 2).sum())


def test_few_cells_fall_back_to_distinct_colours():
    # Two cells and three clusters: _fast8 hands over to the exact path.
    image = np.array([[[0, 0, 0], [1, 1, 1], [200, 0, 0], [201, 0, 0]]], dtype=np.uint8)

    result = segment_colors(image, 3, method="fast")

    assert result.method == "exact (distinct colours)"
    assert result.n_clusters == 3


def test_dropped_cluster_keeps_uint8_labels(monkeypatch):
    # 253 spread colours, and a cell with (4, 4, 4) and (7, 7, 7) between (3, 3, 3)
    # and (8, 8, 8). The fit gives that cell its own centre, but its pixels are
    # nearer to the neighbours, so 1 of 256 clusters stays empty.
    spread = list(itertools.product(range(48, 241, 32), repeat=3))[:253]
    colors = spread + [(3, 3, 3), (4, 4, 4), (7, 7, 7), (8, 8, 8), (100, 100, 99), (100, 100, 100)]
    repeats = [100] * 253 + [100, 50, 50, 100, 1, 1]
    image = np.repeat(np.array(colors, dtype=np.uint8), repeats, axis=0)[None]

    with pytest.warns(ColorKMeansWarning, match="dropped"):
        compiled, plain = both_paths(monkeypatch, image, 256)

    assert compiled.n_clusters == 255
    assert compiled.labels.dtype == np.uint8
    assert_same(compiled, plain)
