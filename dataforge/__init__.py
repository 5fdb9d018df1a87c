"""dataforge: computer-vision datasets from import to evaluation."""

__version__ = "0.1.0"
