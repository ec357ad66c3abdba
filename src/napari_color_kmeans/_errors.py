"""Exception and warning classes of the engine, importable by every engine module."""


class ColorKMeansError(ValueError):
    """Invalid input to the colour segmentation."""


class ColorKMeansWarning(UserWarning):
    """The segmentation ran but changed or left out part of the request."""
