"""The errors whose messages are meant for the person using SegDemo (CLI and dashboard show them
as they are, without a traceback)."""
from __future__ import annotations

from segdemo.artifacts import ModelLoadError
from segdemo.benchmark import BenchmarkError
from segdemo.data import DataError
from segdemo.images import ImageError
from segdemo.models import EncoderWeightsError, UnknownArchitectureError
from segdemo.reference import ReferenceModelError
from segdemo.robustness import RobustnessError
from segdemo.train import TrainError

USER_ERRORS: tuple[type[Exception], ...] = (
    DataError, ImageError, ModelLoadError, TrainError, UnknownArchitectureError, EncoderWeightsError,
    BenchmarkError, RobustnessError, ReferenceModelError,
)
