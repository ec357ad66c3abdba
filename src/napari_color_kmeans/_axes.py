"""Colour-axis checks and moves for numpy and dask images, without napari or Qt.

The engine needs the colour axis last, as in (..., H, W, 3 or 4). Data from
microscopy or PyTorch often put it first, as in (3, H, W) or (T, 3, H, W).
"""

from __future__ import annotations

import numpy as np

from napari_color_kmeans._errors import ColorKMeansError

N_CHANNELS = (3, 4)


def find_channel_first_axis(shape: tuple[int, ...]) -> int | None:
    """Return the axis that looks like a colour axis placed before (H, W), or None.

    That is the last axis before the final two whose size is 3 or 4, when the
    last axis itself is not of size 3 or 4. An image whose last axis is 3 or
    4 long is taken as colour-last and returns None.
    """
    if len(shape) < 3 or shape[-1] in N_CHANNELS:
        return None
    for axis in reversed(range(len(shape) - 2)):
        if shape[axis] in N_CHANNELS:
            return axis
    return None


def channel_first_message(shape: tuple[int, ...], axis: int) -> str:
    """Return the error message for an image whose colour axis is at ``axis``."""
    return (
        f"image has shape {tuple(shape)} with what looks like a colour axis at axis {axis}, "
        "but the colour axis must be last, as in (..., H, W, 3) or (..., H, W, 4); "
        f"move it with napari_color_kmeans.move_color_axis_last(image, axis={axis}) "
        f"or numpy.moveaxis(image, {axis}, -1)."
    )


def move_color_axis_last(image, axis: int | None = None):
    """Return a view of ``image`` (numpy or dask) with its colour axis moved last.

    ``axis`` is the colour axis; None finds it with ``find_channel_first_axis``.
    The data are not copied, and a dask array stays lazy.

    Raises
    ------
    ColorKMeansError
        When ``axis`` is None and no axis looks like a colour axis, or when
        the chosen axis is not 3 or 4 long.
    """
    shape = tuple(image.shape)
    if axis is None:
        axis = find_channel_first_axis(shape)
        if axis is None:
            raise ColorKMeansError(
                f"image has shape {shape}, in which no axis before the last two is 3 or 4 "
                "long; pass the colour axis explicitly, e.g. move_color_axis_last(image, axis=0)."
            )

    if not -len(shape) <= axis < len(shape) or shape[axis] not in N_CHANNELS:
        raise ColorKMeansError(
            f"axis={axis} is not a colour axis of an image of shape {shape}; "
            "pass the index of an axis that is 3 (RGB) or 4 (RGBA) long."
        )
    return np.moveaxis(image, axis, -1)
