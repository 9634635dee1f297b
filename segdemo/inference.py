"""Turning a photo into a mask: the one place that knows how a trained model is fed.

`Segmenter` loads a model folder once and maps any PIL image (any size, mode or EXIF
orientation) to class probabilities and a label mask at the image's original resolution:
PIL downscale to the input size, one network call through a `runtimes.Runner`, labels resized
back along class edges only (`upsample.bilinear_labels`).

Why this path (measured by `python -m segdemo benchmark`, figures in the README):

- `model.predict(x[None])`, the tutorials' call, builds a data adapter, a callback list and a
  one-step epoch for every image; `model(x)` eagerly runs every layer from Python. On TF the
  network runs as one `tf.function` with a fixed `[None, H, W, 3] uint8` signature (no
  retracing over photo sizes); ONNX Runtime or LiteRT run the same graph converted, faster on
  these CPUs for some models; `runtime="auto"` takes the one `benchmark` found fastest among
  those whose masks match the Keras model's (`runtimes`).
- XLA (`jit_compile=True`) is off by default: on CPU it was slower than the plain graph (TF's
  oneDNN convolutions beat XLA's CPU code), much more so at batch 16, and it compiles once per
  new batch size.
- The labels are those of bilinearly resizing the float32 probabilities and taking the argmax,
  but only pixels between differently labelled neighbours are interpolated (exact: see
  `upsample`); a 12-megapixel mask costs about its own size in memory traffic instead of three
  float maps of 12 M pixels. Resizing uint8-quantised probabilities changed labels near
  boundaries; argmax at the input size followed by a nearest-neighbour upscale, the tutorials'
  shortcut, changed about 1.5 % of the pixels of real photos. Neither is used. The confidence map
  (a full float resize) is computed only when asked for (`Prediction.confidence`).

TensorFlow is imported when a `Segmenter` is built, not with this module: the dashboard imports the
drawing helpers below for its first page, which must not wait for TensorFlow's import (seconds).
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from PIL import Image

from segdemo.artifacts import load_model
from segdemo.calibrate import apply_bias, bias_vector
from segdemo.classes import ClassInfo
from segdemo.images import ImageSource, model_input, open_image
from segdemo.upsample import bilinear_labels

if TYPE_CHECKING:
    from segdemo.runtimes import Runner


TTA_MODES = ("none", "flip")


@dataclass
class Prediction:
    """A model's answer for one image; masks are at the image's original resolution.

    The confidence map costs a full-size float resize (~100 ms at 12 MP), so `Segmenter` leaves
    it to be computed on first access (`resolve_confidence`); most callers only need the mask."""

    mask: np.ndarray            # (H, W) uint8 class indices
    _confidence: np.ndarray | None = field(repr=False)  # (H, W) float32, or None: on demand
    input_probabilities: np.ndarray = field(repr=False)  # (h, w, C) at the model's input size
    seconds: float = 0.0
    resolve_confidence: Callable[[np.ndarray, tuple[int, int]], np.ndarray] | None = field(
        default=None, repr=False, compare=False)

    @property
    def confidence(self) -> np.ndarray:
        """(H, W) float32: the probability of the chosen class, bilinear like the mask."""
        if self._confidence is None:
            resolve = self.resolve_confidence or _resized_max
            self._confidence = resolve(self.input_probabilities, self.size)
        return self._confidence

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as PIL reports sizes."""
        return self.mask.shape[1], self.mask.shape[0]

    def probabilities(self) -> np.ndarray:
        """Class probabilities (H, W, C) at the original resolution, computed on demand."""
        import tensorflow as tf

        resized = tf.image.resize(self.input_probabilities, self.mask.shape, method="bilinear")
        return resized.numpy()


def _resized_max(input_probabilities: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import tensorflow as tf

    resized = tf.image.resize(input_probabilities, (size[1], size[0]), method="bilinear")
    return tf.reduce_max(resized, axis=-1).numpy()


def _runner(runtime: "str | Runner", model, card: dict, jit_compile: bool,
            model_dir: str | Path | None) -> tuple["Runner", str]:
    """The network runner for a runtime name (see `Segmenter`) and why it is the one."""
    from segdemo import runtimes

    if not isinstance(runtime, str):
        return runtime, "given"
    digest = None
    if runtime == "auto" and model_dir is not None and runtimes.read_record(model_dir):
        from segdemo.export import model_digest

        digest = model_digest(model, card)
    name, quantize, why = runtimes.choose(runtime, model_dir, digest)
    if name == "tf":
        return runtimes.TFRunner(model, card, jit_compile), why
    try:
        from segdemo.export import file_runner

        return file_runner(name, quantize, model, card, digest), why
    except Exception as exc:  # a failed conversion: auto falls back, an explicit choice says why
        if runtime != "auto":
            raise
        return runtimes.TFRunner(model, card, jit_compile), f"{name} failed ({exc}); TensorFlow"


class Segmenter:
    """A loaded model plus everything needed to apply it to user images."""

    def __init__(self, model, card: dict, jit_compile: bool = False, tta: str = "none",
                 runtime: "str | Runner" = "tf", model_dir: str | Path | None = None):
        """`jit_compile` compiles the TF network with XLA; off by default because it was slower on
        CPU. `tta="flip"` averages the probabilities of the photo and its mirror image
        (test-time augmentation: twice the network time). `runtime` runs the network on
        TensorFlow ("tf"), ONNX Runtime ("onnx"), LiteRT ("litert"), "auto" (the choice
        `benchmark` recorded in `model_dir`/runtime.json, else TF) or a ready `Runner`; the
        converted file is built from the Keras model on first use and cached (`export`)."""
        if tta not in TTA_MODES:
            raise ValueError(f"Unknown test-time augmentation {tta!r}; choose one of "
                             f"{', '.join(TTA_MODES)}.")
        self.model = model
        self.tta = tta
        self.jit_compile = bool(jit_compile)
        self.card = card
        self.classes = [ClassInfo.from_json(c) for c in card["classes"]]
        # the card's calibrated class offsets (`segdemo.calibrate`), applied after TTA
        self.class_bias = bias_vector(card.get("class_bias"), [c.name for c in self.classes])
        self.input_size: tuple[int, int] = tuple(card["input_size"])  # (H, W)
        self.runner, self.runtime_note = _runner(runtime, model, card, self.jit_compile, model_dir)
        self._confidence_traces = 0
        import tensorflow as tf

        @tf.function(input_signature=[tf.TensorSpec([None, None, len(self.classes)], tf.float32),
                                      tf.TensorSpec([2], tf.int32)])
        @tf.autograph.experimental.do_not_convert
        def confidence(probs, size):
            self._confidence_traces += 1  # runs only while tracing
            return tf.reduce_max(tf.image.resize(probs, size, method="bilinear"), axis=-1)
        self._confidence = confidence

    @property
    def runtime(self) -> str:
        """The runtime the network runs on: tf, onnx, litert (with -int8/-float16 if quantised)."""
        return self.runner.name

    @property
    def trace_count(self) -> int:
        """How often a TF graph was traced (the network on TF, the confidence map's resize)."""
        return getattr(self.runner, "trace_count", 0) + self._confidence_traces

    @classmethod
    def load(cls, model_dir: str | Path, jit_compile: bool = False, tta: str = "none",
             runtime: str = "auto") -> "Segmenter":
        """Load a trained model folder (raises `ModelLoadError` with the reason); `runtime`
        defaults to the folder's recorded choice (`auto`)."""
        model, card = load_model(model_dir)
        return cls(model, card, jit_compile=jit_compile, tta=tta, runtime=runtime,
                   model_dir=model_dir)

    def warm_up(self) -> float:
        """Run the network and the confidence map's graph once on a small blank image, so that the
        first real photo does not pay for tracing and graph optimisation; returns the seconds."""
        start = time.perf_counter()
        _ = self.predict(Image.new("RGB", (8, 8))).confidence
        return time.perf_counter() - start

    @property
    def arch_id(self) -> str:
        return self.card["id"]

    def prepare(self, image: ImageSource) -> tuple[np.ndarray, tuple[int, int]]:
        """RGB uint8 array at the model's input size, and the original (width, height)."""
        image = open_image(image)
        return model_input(image, self.input_size), image.size

    def input_probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Softmax probabilities (N, h, w, C) for a uint8 batch already at the input size."""
        batch = np.asarray(batch, np.uint8)
        probs = self.runner(batch)
        if self.tta == "flip":
            mirrored = self.runner(np.ascontiguousarray(batch[:, :, ::-1]))
            probs = (probs + mirrored[:, :, ::-1]) / 2
        return apply_bias(probs, self.class_bias)

    def full_mask(self, input_probabilities: np.ndarray,
                  size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(mask, confidence) at size=(width, height) from a `Prediction.input_probabilities`:
        the same labels as `predict_batch`, for callers that keep only the small input-size
        probabilities and need the full resolution later (a download)."""
        return self.full_labels(input_probabilities, size), self.confidence(input_probabilities, size)

    def full_labels(self, input_probabilities: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """The label mask at size=(width, height): the argmax of the bilinearly resized
        probabilities, computed along class edges only (`upsample.bilinear_labels`)."""
        width, height = size
        return bilinear_labels(input_probabilities, (height, width))

    def confidence(self, input_probabilities: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """The highest class probability per pixel at size=(width, height) (bilinear, in TF)."""
        import tensorflow as tf

        width, height = size
        return self._confidence(np.asarray(input_probabilities, np.float32),
                                tf.constant([height, width], tf.int32)).numpy()

    def predict(self, image: ImageSource) -> Prediction:
        """Segment one image."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[ImageSource]) -> list[Prediction]:
        """Segment several images with one network call."""
        start = time.perf_counter()
        prepared = [self.prepare(image) for image in images]
        probs = self.input_probabilities(np.stack([p[0] for p in prepared]))
        results = [Prediction(self.full_labels(p, size), None, p, resolve_confidence=self.confidence)
                   for p, (_, size) in zip(probs, prepared)]
        elapsed = (time.perf_counter() - start) / len(results)
        for r in results:
            r.seconds = elapsed
        return results


def palette_array(classes: Sequence[ClassInfo]) -> np.ndarray:
    """(C, 3) uint8 colours for indexing a mask."""
    return np.array([c.color for c in classes], dtype=np.uint8)


def _full_palette(classes: Sequence[ClassInfo]) -> np.ndarray:
    """(256, 3) colours: any uint8 label indexes it safely, unknown labels are black."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: len(classes)] = palette_array(classes)
    return palette


def colorize(mask: np.ndarray, classes: Sequence[ClassInfo]) -> np.ndarray:
    """RGB image (H, W, 3) of a label mask in the classes' colours; unknown labels are black."""
    return np.take(_full_palette(classes), mask, axis=0)  # same as palette[mask], ~3x faster on large masks


def overlay(image: Image.Image, mask: np.ndarray, classes: Sequence[ClassInfo],
            opacity: float = 0.5) -> Image.Image:
    """The photo with the coloured mask blended on top (`opacity` 0 = photo only, 1 = mask only)."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must lie in [0, 1], got {opacity}.")
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    if base.shape[:2] != mask.shape:
        raise ValueError(f"image is {base.shape[1]}x{base.shape[0]} but mask is "
                         f"{mask.shape[1]}x{mask.shape[0]}.")
    blended = base * (1.0 - opacity) + colorize(mask, classes).astype(np.float32) * opacity
    return Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8), "RGB")


def mask_png(mask: np.ndarray, classes: Sequence[ClassInfo]) -> bytes:
    """A palette PNG whose pixel values are the class indices and whose colours are the classes'."""
    image = Image.fromarray(mask.astype(np.uint8), "P")
    image.putpalette(_full_palette(classes).reshape(-1).tolist())
    return png_bytes(image)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def class_shares(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Fraction of the image each class covers."""
    counts = np.bincount(mask.reshape(-1), minlength=num_classes)[:num_classes]
    return counts / max(mask.size, 1)
