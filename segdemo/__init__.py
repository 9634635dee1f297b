"""SegDemo: train, compare and show semantic-segmentation models."""

__version__ = "0.1.0"
