"""K-means colour segmentation of RGB images, as a napari plugin and a plain library."""

from napari_color_kmeans._engine import (
    ColorKMeansError,
    ColorKMeansWarning,
    SegmentationResult,
    iter_segment_colors,
    segment_colors,
)

__version__ = "0.1.0"

__all__ = [
    "ColorKMeansError",
    "ColorKMeansWarning",
    "SegmentationResult",
    "iter_segment_colors",
    "segment_colors",
]
