"""Feature spaces for clustering colours: RGB, CIELAB or HSV, plus optional position.

Colours come in as RGB in the image's own units (0..255 for uint8,
0..65535 for uint16, 0..1 for float) and leave as feature rows:

- "rgb": the RGB values themselves, so inertia stays in the image's units.
- "lab": CIELAB from ``skimage.color.rgb2lab`` (D65 white point, its
  default in scikit-image 0.26), L in 0..100.
- "hsv": (cos(2 pi h), sin(2 pi h), s, v) from ``rgb2hsv``. The hue is an
  angle, so its cosine and sine put hue 0.99 next to hue 0.01.

With a spatial weight, two more columns hold the pixel's (row, column)
divided by the larger image side and multiplied by the weight and by the
colour space's ``COLOR_SPAN``. Weight 1 thus makes crossing the whole image
cost as much as going from black to white.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.color import hsv2rgb, lab2rgb, rgb2hsv, rgb2lab

from napari_color_kmeans._errors import ColorKMeansError

COLOR_SPACES = ("rgb", "lab", "hsv")

FEATURE_NAMES = {
    "rgb": ("red", "green", "blue"),
    "lab": ("L", "a", "b"),
    "hsv": ("hue_cos", "hue_sin", "saturation", "value"),
}

# Distance from black to white in each colour space, per unit of the RGB
# full scale; "rgb" is multiplied by the image's full-scale value.
COLOR_SPAN = {"rgb": 1.0, "lab": 100.0, "hsv": 1.0}

SPATIAL_NAMES = ("row", "column")

# Colours transformed per call, to bound the temporary float64 arrays.
TRANSFORM_CHUNK = 2**18


@dataclass(frozen=True)
class FeatureSpace:
    """Feature transform settings for the RGB values of one image.

    ``full_scale`` is the value of full intensity in the image's units
    (255 for uint8, 65535 for uint16, 1.0 for float). ``spatial_size`` is the
    larger side of the image in pixels, which positions are divided by.
    """

    color_space: str = "rgb"
    spatial_weight: float = 0.0
    full_scale: float = 255.0
    spatial_size: int = 1

    @property
    def is_spatial(self) -> bool:
        return self.spatial_weight > 0

    @property
    def names(self) -> tuple[str, ...]:
        names = FEATURE_NAMES[self.color_space]
        return names + SPATIAL_NAMES if self.is_spatial else names

    @property
    def n_color_features(self) -> int:
        return len(FEATURE_NAMES[self.color_space])

    def colors_to_features(self, rgb: np.ndarray) -> np.ndarray:
        """Return the colour feature rows (n, 3 or 4) of RGB rows in image units."""
        rgb = np.asarray(rgb, dtype=np.float64)
        if self.color_space == "rgb":
            return rgb.copy()

        out = np.empty((len(rgb), self.n_color_features), dtype=np.float64)
        for start in range(0, len(rgb), TRANSFORM_CHUNK):
            block = np.clip(rgb[start : start + TRANSFORM_CHUNK] / self.full_scale, 0.0, 1.0)
            out[start : start + len(block)] = _unit_rgb_to_features(block, self.color_space)
        return out

    def position_features(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Return the two scaled position columns for pixel rows and columns."""
        span = COLOR_SPAN[self.color_space]
        if self.color_space == "rgb":
            span *= self.full_scale
        factor = self.spatial_weight * span / max(self.spatial_size, 1)
        return np.column_stack([rows * factor, columns * factor]).astype(np.float64)

    def features_to_colors(self, features: np.ndarray) -> np.ndarray:
        """Return RGB rows in image units for colour feature rows (inverse transform)."""
        colors = np.asarray(features, dtype=np.float64)[:, : self.n_color_features]
        if self.color_space == "rgb":
            return colors.copy()
        if self.color_space == "lab":
            unit = lab2rgb(colors[None, :, :])[0]
        else:
            hue = np.mod(np.arctan2(colors[:, 1], colors[:, 0]) / (2 * np.pi), 1.0)
            hsv = np.column_stack([hue, np.clip(colors[:, 2:4], 0.0, 1.0)])
            unit = hsv2rgb(hsv[None, :, :])[0]
        return np.clip(unit, 0.0, 1.0) * self.full_scale


def _unit_rgb_to_features(rgb: np.ndarray, color_space: str) -> np.ndarray:
    """Transform RGB rows in [0, 1] to ``color_space`` features."""
    if color_space == "lab":
        return rgb2lab(rgb[None, :, :])[0]

    hsv = rgb2hsv(rgb[None, :, :])[0]
    angle = 2 * np.pi * hsv[:, 0]
    return np.column_stack([np.cos(angle), np.sin(angle), hsv[:, 1], hsv[:, 2]])


def full_scale_of(dtype: np.dtype) -> float:
    """Return the value of full intensity for images of ``dtype``."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return 1.0
    return float(np.iinfo(dtype).max)


def make_feature_space(
    color_space: str, spatial_weight: float, dtype: np.dtype, spatial_shape: tuple[int, ...]
) -> FeatureSpace:
    """Check the feature settings and return the FeatureSpace for one image."""
    check_color_space(color_space)
    check_spatial_weight(spatial_weight)
    size = max(spatial_shape[-2:]) if len(spatial_shape) >= 2 else max(spatial_shape, default=1)
    return FeatureSpace(
        color_space=color_space,
        spatial_weight=float(spatial_weight),
        full_scale=full_scale_of(dtype),
        spatial_size=int(size),
    )


def check_color_space(color_space) -> None:
    if not isinstance(color_space, str) or color_space not in COLOR_SPACES:
        raise ColorKMeansError(
            f"color_space must be one of {', '.join(repr(c) for c in COLOR_SPACES)}, "
            f"got {color_space!r}; use 'rgb' unless you need perceptual (lab) or hue-based (hsv) distances."
        )


def check_spatial_weight(spatial_weight) -> None:
    valid = isinstance(spatial_weight, (int, float, np.integer, np.floating)) and not isinstance(
        spatial_weight, bool
    )
    if not valid or not np.isfinite(spatial_weight) or spatial_weight < 0:
        raise ColorKMeansError(
            f"spatial_weight must be a finite number >= 0, got {spatial_weight!r}; "
            "pass 0 to cluster on colour only, or e.g. 0.5 to make clusters more compact."
        )


def check_mask(mask, spatial_shape: tuple[int, ...]) -> np.ndarray | None:
    """Return ``mask`` as a bool array of ``spatial_shape``, or None for no mask.

    A mask of the last two spatial axes (H, W) is broadcast over leading axes.
    """
    if mask is None:
        return None
    array = np.asarray(mask)
    if array.dtype != bool:
        raise ColorKMeansError(
            f"mask has dtype {array.dtype}, but a bool array is needed; "
            "pass e.g. labels != 0 to use a labels image as mask."
        )
    if array.shape == tuple(spatial_shape):
        return array
    if array.shape == tuple(spatial_shape[-2:]):
        return np.broadcast_to(array, spatial_shape)
    raise ColorKMeansError(
        f"mask has shape {array.shape}, but the image has spatial shape {tuple(spatial_shape)}; "
        "pass a bool array of the image's shape without the channel axis."
    )
