"""Network runners: the one call that maps a uint8 batch at the input size to class probabilities,
on TensorFlow, ONNX Runtime or LiteRT, behind one small interface (`Runner`).

`inference.Segmenter` feeds a runner (resize in, runner, resize back); `export` converts the
Keras model into the files the ONNX Runtime and LiteRT runners open. Which runner `auto` picks for
a model is recorded by `benchmark` in `weights/<id>/runtime.json` (`read_record`, `choose`): the
fastest whose masks match the Keras model's on the test split, TensorFlow when the record is
absent, was measured on other weights, or names a runtime whose package is not installed.

Why per model and not one runtime for all (measured, README "Runtimes"): ONNX Runtime is fastest
on the U-Nets' transposed convolutions, LiteRT (XNNPACK) on DeepLabV3+'s depthwise convolutions;
TF's own kernels lose on depthwise convolutions (5.6 vs 38 GFLOP/s on 2 cores).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from segdemo.artifacts import read_optional_json, write_json
from segdemo.errors import SegDemoError

RUNTIMES = ("tf", "onnx", "litert")
CHOICES = ("auto", *RUNTIMES)
RECORD_FILE = "runtime.json"  # in a model folder, written by `python -m segdemo benchmark`
_MODULES = {"onnx": "onnxruntime", "litert": "ai_edge_litert"}
_INSTALL = {"onnx": "pip install onnxruntime tf2onnx onnx", "litert": "pip install ai-edge-litert"}
FILE_FORMAT = {"onnx": "onnx", "litert": "tflite"}  # the export format each file runtime opens


class RuntimeUnavailable(SegDemoError, RuntimeError):
    """A runtime that cannot run here (its package is missing, its file unreadable)."""


class Runner(Protocol):
    """uint8 (N, H, W, 3) at the model's input size -> float32 (N, H, W, C) probabilities."""

    name: str

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


def missing_package(runtime: str) -> str | None:
    """Why `runtime` cannot run here (its package is not installed), or None when it can."""
    module = _MODULES.get(runtime)
    if module is None or importlib.util.find_spec(module) is not None:
        return None
    return f"{runtime} needs the {module} package ({_INSTALL[runtime]})"


def _threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class TFRunner:
    """Today's path: `preprocessing.probabilities_function` traced once with a fixed
    `[None, H, W, 3] uint8` signature (optionally XLA-compiled), so sizes never retrace."""

    name = "tf"

    def __init__(self, model, card: dict, jit_compile: bool = False):
        import tensorflow as tf

        from segdemo.preprocessing import probabilities_function

        height, width = card["input_size"]
        probabilities = probabilities_function(model, card)
        self.trace_count = 0

        @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.uint8)],
                     jit_compile=jit_compile)
        @tf.autograph.experimental.do_not_convert  # plain graph code: nothing for AutoGraph to do
        def forward(batch):
            self.trace_count += 1  # runs only while tracing
            return probabilities(batch)
        self._forward = forward

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self._forward(np.asarray(batch, np.uint8)).numpy()


class OnnxRunner:
    """An ONNX file (batch dimension free) on ONNX Runtime's CPU provider, all cores."""

    name = "onnx"

    def __init__(self, path: str | Path, threads: int | None = None):
        problem = missing_package("onnx")
        if problem:
            raise RuntimeUnavailable(problem)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or _threads()
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(path), options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise RuntimeUnavailable(f"{path} is not a readable ONNX model: {exc}") from None
        self._input = self._session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: np.asarray(batch, np.uint8)})[0]


class LiteRTRunner:
    """A TFLite file with a fixed batch of 1 on LiteRT (XNNPACK): a free batch dimension makes the
    transposed convolutions' shapes dynamic and XNNPACK then leaves them to slow kernels, so a
    batch runs image by image."""

    name = "litert"

    def __init__(self, path: str | Path, threads: int | None = None):
        problem = missing_package("litert")
        if problem:
            raise RuntimeUnavailable(problem)
        from ai_edge_litert.interpreter import Interpreter

        try:
            self._interpreter = Interpreter(model_path=str(path), num_threads=threads or _threads())
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise RuntimeUnavailable(f"{path} is not a readable TFLite model: {exc}") from None
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        outputs = []
        for image in np.asarray(batch, np.uint8):
            self._interpreter.set_tensor(self._input, image[None])
            self._interpreter.invoke()
            outputs.append(self._interpreter.get_tensor(self._output)[0])
        return np.stack(outputs).astype(np.float32, copy=False)


class SavedModelRunner:
    """An exported SavedModel's serving signature, as TF Serving or Triton would call it."""

    name = "saved_model"

    def __init__(self, path: str | Path):
        import tensorflow as tf

        try:
            self._signature = tf.saved_model.load(str(path)).signatures["serving_default"]
        except (OSError, KeyError, ValueError) as exc:
            raise RuntimeUnavailable(f"{path} is not a SavedModel with a serving_default "
                                     f"signature: {exc}") from None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        return self._signature(images=tf.constant(batch, tf.uint8))["probabilities"].numpy()


FILE_RUNNERS: dict[str, Callable[[str | Path], Runner]] = {
    "onnx": OnnxRunner, "tflite": LiteRTRunner, "saved_model": SavedModelRunner}


def open_file(fmt: str, path: str | Path) -> Runner:
    """A runner for an exported file of format `fmt` (onnx, tflite, saved_model)."""
    return FILE_RUNNERS[fmt](path)


# --- which runtime a model uses ----------------------------------------------------------------

def read_record(model_dir: str | Path) -> dict | None:
    """weights/<id>/runtime.json, or None when it is absent or unreadable."""
    record = read_optional_json(Path(model_dir) / RECORD_FILE)
    return record if isinstance(record, dict) else None


def write_record(model_dir: str | Path, record: dict) -> Path:
    path = Path(model_dir) / RECORD_FILE
    write_json(path, record)
    return path


def choose(runtime: str, model_dir: str | Path | None, digest: str | None) -> tuple[str, str | None, str]:
    """(runtime, quantisation or None, why) for a requested runtime name.

    An explicit name is taken as asked (`RuntimeUnavailable` when its package is missing); `auto`
    takes the record's choice when it was measured on these weights and its package is
    installed, and TensorFlow otherwise, saying why."""
    if runtime not in CHOICES:
        raise ValueError(f"Unknown runtime {runtime!r}; choose one of {', '.join(CHOICES)}.")
    if runtime != "auto":
        problem = missing_package(runtime)
        if problem:
            raise RuntimeUnavailable(f"runtime {runtime!r} is not available: {problem}.")
        return runtime, None, "requested"
    record = read_record(model_dir) if model_dir is not None else None
    chosen = (record or {}).get("chosen") or {}
    if chosen.get("runtime") not in RUNTIMES:
        return "tf", None, f"no {RECORD_FILE} with a choice (run `python -m segdemo benchmark`)"
    if digest is not None and record.get("digest") != digest:
        return "tf", None, f"{RECORD_FILE} was measured on other weights"
    problem = missing_package(chosen["runtime"])
    if problem:
        return "tf", None, f"{RECORD_FILE} picks {chosen['runtime']}, but {problem}"
    return chosen["runtime"], chosen.get("quantize"), chosen.get("why", f"from {RECORD_FILE}")
