"""Tests of the napari writer contributions with real napari layers."""

import numpy as np
import png as pypng
import pytest
from napari.layers import Image, Labels
from napari.utils.colormaps import DirectLabelColormap

from napari_color_kmeans._png_encode import PngWriteError
from napari_color_kmeans import segment_colors
from napari_color_kmeans._png import read_png
from napari_color_kmeans._reader import napari_get_reader
from napari_color_kmeans._writer import write_image, write_labels


def cluster_colormap(cluster_centers: np.ndarray) -> DirectLabelColormap:
    """Colour label i by cluster centre i - 1 of an 8-bit image, label 0 transparent."""
    color_dict = {None: np.zeros(4), 0: np.zeros(4)}
    for label, center in enumerate(cluster_centers, start=1):
        color_dict[label] = np.append(np.asarray(center) / 255.0, 1.0)
    return DirectLabelColormap(color_dict=color_dict)


def cluster_labels_layer(labels, cluster_centers, name="ladybug k=3 labels") -> Labels:
    return Labels(
        labels,
        name=name,
        colormap=cluster_colormap(cluster_centers),
        metadata={"cluster_centers": np.asarray(cluster_centers), "n_clusters": len(cluster_centers)},
    )


def read_back(path):
    return napari_get_reader(str(path))(str(path))[0]


def pypng_palette(path):
    reader = pypng.Reader(filename=str(path))
    _, _, rows, _ = reader.read()
    indices = np.array([list(row) for row in rows])
    return reader.color_type, indices, np.array(reader.palette(alpha="force"))


@pytest.fixture(scope="module")
def ladybug_result(ladybug_path):
    return segment_colors(read_png(ladybug_path), 8, random_state=42)


def test_write_labels_palette_from_colormap(tmp_path):
    centers = np.array([[250.0, 10.0, 5.0], [20.0, 120.0, 30.0], [0.0, 0.0, 255.0]])
    labels = np.array([[0, 1, 2, 3], [3, 2, 1, 0]], dtype=np.int32)
    layer = cluster_labels_layer(labels, centers)

    written = write_labels(str(tmp_path / "labels.png"), layer.data, layer._get_state())

    color_type, indices, palette = pypng_palette(written[0])
    assert written == [str(tmp_path / "labels.png")]
    assert color_type == 3
    np.testing.assert_array_equal(indices, labels)
    np.testing.assert_array_equal(palette[0], [0, 0, 0, 0])
    np.testing.assert_array_equal(palette[1:, :3], np.round(centers).astype(int))
    np.testing.assert_array_equal(palette[1:, 3], [255, 255, 255])


def test_write_labels_reads_back_as_labels(tmp_path):
    centers = np.array([[250.0, 10.0, 5.0], [20.0, 120.0, 30.0]])
    labels = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    layer = cluster_labels_layer(labels, centers, name="cup k=2 labels")
    path = write_labels(str(tmp_path / "cup"), layer.data, layer._get_state())[0]

    data, kwargs, layer_type = read_back(path)

    assert path.endswith("cup.png")
    assert layer_type == "labels"
    assert kwargs["name"] == "cup k=2 labels"
    np.testing.assert_array_equal(data, labels)
    np.testing.assert_allclose(kwargs["metadata"]["cluster_centers"], centers)
    reopened = Labels(data, **kwargs)
    np.testing.assert_allclose(reopened.colormap.map(np.array([1, 2]))[:, :3], np.round(centers) / 255, atol=1e-6)


def test_write_labels_default_colormap(tmp_path):
    layer = Labels(np.array([[0, 1], [2, 3]], dtype=np.int64))
    expected = np.round(layer.colormap.map(np.arange(4)) * 255)

    path = write_labels(str(tmp_path / "plain.png"), layer.data, layer._get_state())[0]

    _, _, palette = pypng_palette(path)
    np.testing.assert_array_equal(palette[1:], expected[1:])
    np.testing.assert_array_equal(palette[0], [0, 0, 0, 0])


def test_write_labels_over_256_is_16bit_grey(tmp_path):
    labels = np.arange(600, dtype=np.int32).reshape(20, 30)
    layer = Labels(labels)

    path = write_labels(str(tmp_path / "many.png"), layer.data, layer._get_state())[0]

    _, _, _, info = pypng.Reader(filename=path).read()
    data, _, layer_type = read_back(path)
    assert info["greyscale"] is True
    assert info["bitdepth"] == 16
    assert layer_type == "labels"
    np.testing.assert_array_equal(data, labels)


def test_write_labels_rejects_3d(tmp_path):
    layer = Labels(np.zeros((2, 4, 4), dtype=np.uint8))

    with pytest.raises(PngWriteError, match=r"shape \(2, 4, 4\)"):
        write_labels(str(tmp_path / "stack.png"), layer.data, layer._get_state())


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [3, 4])
def test_write_image_keeps_dtype(tmp_path, dtype, channels):
    rng = np.random.default_rng(2)
    data = rng.integers(0, np.iinfo(dtype).max, size=(6, 9, channels), endpoint=True).astype(dtype)
    layer = Image(data, rgb=True)

    path = write_image(str(tmp_path / "image.png"), layer.data, layer._get_state())[0]

    read, kwargs, _ = read_back(path)
    assert read.dtype == dtype
    assert kwargs["rgb"] is True
    np.testing.assert_array_equal(read, data)


def test_write_image_rejects_float(tmp_path):
    layer = Image(np.zeros((4, 4, 3), dtype=np.float32), rgb=True)

    with pytest.raises(PngWriteError, match="dtype float32"):
        write_image(str(tmp_path / "float.png"), layer.data, layer._get_state())


def test_write_image_rejects_stack(tmp_path):
    layer = Image(np.zeros((3, 4, 4), dtype=np.uint8), rgb=False)

    with pytest.raises(PngWriteError, match="stack of 3 planes"):
        write_image(str(tmp_path / "stack.png"), layer.data, layer._get_state())


def test_round_trip_segment_save_read(tmp_path, ladybug_path, ladybug_result):
    labels_layer = cluster_labels_layer(ladybug_result.labels, ladybug_result.cluster_centers)
    image_layer = Image(ladybug_result.segmented, rgb=True)
    labels_path = write_labels(str(tmp_path / "labels.png"), labels_layer.data, labels_layer._get_state())[0]
    image_path = write_image(str(tmp_path / "segmented.png"), image_layer.data, image_layer._get_state())[0]

    labels, labels_kwargs, labels_type = read_back(labels_path)
    segmented, image_kwargs, image_type = read_back(image_path)

    assert labels_type == "labels"
    assert image_type == "image"
    assert image_kwargs["rgb"] is True
    np.testing.assert_array_equal(labels, ladybug_result.labels)
    np.testing.assert_array_equal(segmented, ladybug_result.segmented)
    np.testing.assert_array_equal(
        labels_kwargs["metadata"]["cluster_centers"], ladybug_result.cluster_centers
    )


def test_layer_save_shows_writer_error(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.zeros((4, 4, 3), dtype=np.float32), rgb=True)

    with pytest.raises(PngWriteError, match="dtype float32"):
        layer.save(str(tmp_path / "float.png"), plugin="napari-color-kmeans")
