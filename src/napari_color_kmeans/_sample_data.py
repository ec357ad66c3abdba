"""Sample photos for File > Open Sample, taken from scikit-image's bundled data.

Both photos ship inside the scikit-image wheel under CC0, so the plugin adds
no data of its own and needs no download.
"""

from __future__ import annotations

from napari.types import LayerDataTuple
from skimage import data as skimage_data


def coffee() -> list[LayerDataTuple]:
    """Return the coffee-cup photo (400 x 600 RGB, CC0, by Rachel Michetti)."""
    return [(skimage_data.coffee(), {"name": "coffee", "rgb": True}, "image")]


def chelsea() -> list[LayerDataTuple]:
    """Return the photo of Chelsea the cat (300 x 451 RGB, CC0, by Stefan van der Walt)."""
    return [(skimage_data.chelsea(), {"name": "chelsea", "rgb": True}, "image")]
