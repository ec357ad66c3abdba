"""K-means colour segmentation of RGB images, as a napari plugin and a plain library."""

from napari_color_kmeans._axes import move_color_axis_last
from napari_color_kmeans._engine import (
    ColorKMeansError,
    ColorKMeansWarning,
    ProgressStep,
    SegmentationResult,
    iter_segment_colors,
    segment_colors,
)
from napari_color_kmeans._multiscale import (
    MultiscaleSegmentationResult,
    iter_segment_multiscale,
    segment_multiscale,
)
from napari_color_kmeans._palette import Palette, apply_palette, load_palette, palette_from_result, save_palette
from napari_color_kmeans._png import PngError, read_png
from napari_color_kmeans._stack import StackSegmentationResult, iter_segment_planes, segment_planes
from napari_color_kmeans._suggest import KSweep, iter_suggest_k, suggest_k
from napari_color_kmeans._sweep import iter_segment_colors_many, segment_colors_many

__version__ = "0.1.0"

__all__ = [
    "ColorKMeansError",
    "ColorKMeansWarning",
    "KSweep",
    "MultiscaleSegmentationResult",
    "Palette",
    "PngError",
    "ProgressStep",
    "SegmentationResult",
    "StackSegmentationResult",
    "apply_palette",
    "iter_segment_colors",
    "iter_segment_colors_many",
    "iter_segment_multiscale",
    "iter_segment_planes",
    "iter_suggest_k",
    "load_palette",
    "move_color_axis_last",
    "palette_from_result",
    "read_png",
    "save_palette",
    "segment_colors",
    "segment_colors_many",
    "segment_multiscale",
    "segment_planes",
    "suggest_k",
]
