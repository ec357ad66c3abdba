"""Opening and saving PNGs through a real napari viewer and its plugin manager."""

import numpy as np
import png as pypng
import pytest
from conftest import PLUGIN
from napari import settings as napari_settings
from napari.layers import Image, Labels
from napari.settings import NapariSettings
from napari.utils.colormaps import DirectLabelColormap

from napari_color_kmeans._png import PngError


@pytest.fixture
def fileless_settings(monkeypatch):
    """Give napari settings that are never saved, so the user's settings file stays untouched."""
    settings = NapariSettings(config_path=None)
    monkeypatch.setattr(napari_settings, "_SETTINGS", settings)
    return settings


def test_reader_preference_setting(fileless_settings, make_napari_viewer, pngsuite_dir):
    viewer = make_napari_viewer()
    plugin_settings = napari_settings.get_settings().plugins
    original = dict(plugin_settings.extension2reader)
    try:
        plugin_settings.extension2reader = {**original, "*.png": PLUGIN}
        # plugin=None makes viewer.open consult the preference, as File > Open
        # and drag-and-drop do; the default plugin="napari" would bypass it.
        layers = viewer.open(str(pngsuite_dir / "s08n3p02.png"), plugin=None)
    finally:
        plugin_settings.extension2reader = original

    assert napari_settings.get_settings().plugins.extension2reader == original
    assert len(layers) == 1
    assert layers[0].source.reader_plugin == PLUGIN
    assert layers[0].rgb is True
    assert layers[0].name == "s08n3p02"


def test_open_with_plugin_argument(fileless_settings, make_napari_viewer, pngsuite_dir):
    viewer = make_napari_viewer()

    layers = viewer.open(str(pngsuite_dir / "basn2c16.png"), plugin=PLUGIN)

    assert layers[0].source.reader_plugin == PLUGIN
    assert layers[0].data.dtype == np.uint16
    assert layers[0].metadata["png_color_type"] == "RGB"


def test_open_folder_as_stack(fileless_settings, make_napari_viewer, pngsuite_dir, tmp_path):
    for index, name in enumerate(["basn2c08", "f00n2c08", "f01n2c08"]):
        (tmp_path / f"frame{index}.png").write_bytes((pngsuite_dir / f"{name}.png").read_bytes())
    viewer = make_napari_viewer()

    layers = viewer.open(str(tmp_path), plugin=PLUGIN)

    assert len(layers) == 1
    assert layers[0].data.shape == (3, 32, 32, 3)
    assert layers[0].rgb is True


def test_layer_save_with_plugin(fileless_settings, make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    colormap = DirectLabelColormap(
        color_dict={None: np.zeros(4), 0: np.zeros(4), 1: [1.0, 0.0, 0.0, 1.0], 2: [0.0, 0.0, 1.0, 1.0]}
    )
    labels = viewer.add_layer(Labels(np.array([[0, 1], [2, 1]], dtype=np.uint8), colormap=colormap))
    image = viewer.add_layer(Image(np.full((2, 2, 3), 40000, dtype=np.uint16), rgb=True))

    labels_paths = labels.save(str(tmp_path / "labels.png"), plugin=PLUGIN)
    image_paths = image.save(str(tmp_path / "image.png"), plugin=PLUGIN)

    reader = pypng.Reader(filename=labels_paths[0])
    reader.read()
    assert reader.color_type == 3
    assert reader.palette(alpha="force")[1] == (255, 0, 0, 255)
    _, _, _, image_info = pypng.Reader(filename=image_paths[0]).read()
    assert image_info["bitdepth"] == 16
    reopened = viewer.open(labels_paths[0], plugin=PLUGIN)[0]
    assert isinstance(reopened, Labels)
    np.testing.assert_array_equal(reopened.data, labels.data)


def test_open_corrupt_file_names_it(fileless_settings, make_napari_viewer, pngsuite_dir):
    viewer = make_napari_viewer()
    path = pngsuite_dir / "xcsn0g01.png"

    with pytest.raises(PngError, match="not a valid PNG") as caught:
        viewer.open(str(path), plugin=PLUGIN)

    assert str(path) in str(caught.value)
    assert len(viewer.layers) == 0
