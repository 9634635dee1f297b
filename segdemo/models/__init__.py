"""Segmentation models: the architecture registry and what callers need around it."""
from segdemo.models.encoder_weights import EncoderWeightsError
from segdemo.models.registry import (
    ARCHITECTURES,
    Architecture,
    UnknownArchitectureError,
    build_model,
    get_architecture,
)

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "EncoderWeightsError",
    "UnknownArchitectureError",
    "build_model",
    "get_architecture",
]
