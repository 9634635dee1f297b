"""Turning a photo into a mask: the one place that knows how a trained model is fed.

`Segmenter` loads a model folder once and maps any PIL image (any size, mode or EXIF
orientation) to class probabilities and a label mask at the image's original resolution. The
network runs in a traced function with a fixed input signature, so differently sized photos never
cause retracing; resizing back to the original size happens in a second traced function.

Why this path (measured by `python -m segdemo benchmark`, figures in the README):

- `model.predict(x[None])`, the tutorials' call, builds a data adapter, a callback list and a
  one-step epoch for every image; `model(x)` eagerly runs every layer from Python. One call of a
  `tf.function` with a fixed `[None, H, W, 3] uint8` signature runs the whole preprocessing +
  network + softmax as a single graph: several times faster for one image on CPU.
- XLA (`jit_compile=True`) is off by default: on CPU it was slower than the plain graph (TF's
  oneDNN convolutions beat XLA's CPU code), much more so at batch 16, and it compiles once per
  new batch size. It applies only to the network, whose input size is fixed; the resize back
  has a different shape for every photo, which would mean one XLA compilation per photo size.
- The probabilities are resized back bilinearly in float32, in the graph, then argmax'd: faster
  than PIL per channel, and exact. Resizing uint8-quantised probabilities changed labels near
  boundaries (and was not faster); argmax at the input size followed by a nearest-neighbour
  upscale, the tutorials' shortcut, changed about 1.5 % of the pixels of real photos. Neither
  is used. The argmax is taken in int32 (not TF's default int64) to keep 12-megapixel masks small.

TensorFlow is imported when a `Segmenter` is built, not with this module: the dashboard imports the
drawing helpers below for its first page, which must not wait for TensorFlow's import (seconds).
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from segdemo.artifacts import load_model
from segdemo.classes import ClassInfo
from segdemo.images import ImageSource, open_image
from segdemo.preprocessing import get_preprocessor


TTA_MODES = ("none", "flip")


@dataclass
class Prediction:
    """A model's answer for one image; masks are at the image's original resolution."""

    mask: np.ndarray            # (H, W) uint8 class indices
    confidence: np.ndarray      # (H, W) float32, probability of the chosen class
    input_probabilities: np.ndarray = field(repr=False)  # (h, w, C) at the model's input size
    seconds: float = 0.0

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as PIL reports sizes."""
        return self.mask.shape[1], self.mask.shape[0]

    def probabilities(self) -> np.ndarray:
        """Class probabilities (H, W, C) at the original resolution, computed on demand."""
        import tensorflow as tf

        resized = tf.image.resize(self.input_probabilities, self.mask.shape, method="bilinear")
        return resized.numpy()


class Segmenter:
    """A loaded model plus everything needed to apply it to user images."""

    def __init__(self, model, card: dict, jit_compile: bool = False, tta: str = "none"):
        """`jit_compile` compiles the network (not the resize back) with XLA; off by default
        because it was slower on CPU. Worth measuring on a GPU (`benchmark` reports both).
        `tta="flip"` averages the probabilities of the photo and its mirror image (test-time
        augmentation: twice the network time)."""
        import tensorflow as tf

        if tta not in TTA_MODES:
            raise ValueError(f"Unknown test-time augmentation {tta!r}; choose one of "
                             f"{', '.join(TTA_MODES)}.")
        self.model = model
        self.tta = tta
        self.jit_compile = bool(jit_compile)
        self.card = card
        self.classes = [ClassInfo.from_json(c) for c in card["classes"]]
        self.input_size: tuple[int, int] = tuple(card["input_size"])  # (H, W)
        self.trace_count = 0
        preprocess = get_preprocessor(card["preprocessing"])
        height, width = self.input_size

        @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.uint8)],
                     jit_compile=self.jit_compile)
        @tf.autograph.experimental.do_not_convert  # plain graph code: nothing for AutoGraph to do
        def forward(batch):
            self.trace_count += 1  # runs only while tracing
            images = preprocess(tf.cast(batch, tf.float32))
            probs = tf.nn.softmax(tf.cast(model(images, training=False), tf.float32), axis=-1)
            if tta == "flip":
                mirrored = model(tf.reverse(images, axis=[2]), training=False)
                mirrored = tf.nn.softmax(tf.cast(mirrored, tf.float32), axis=-1)
                probs = (probs + tf.reverse(mirrored, axis=[2])) / 2
            return probs

        @tf.function(input_signature=[tf.TensorSpec([None, None, len(self.classes)], tf.float32),
                                      tf.TensorSpec([2], tf.int32)])
        @tf.autograph.experimental.do_not_convert
        def to_original(probs, size):
            self.trace_count += 1
            resized = tf.image.resize(probs, size, method="bilinear")
            labels = tf.argmax(resized, axis=-1, output_type=tf.int32)
            return tf.cast(labels, tf.uint8), tf.reduce_max(resized, axis=-1)

        self._forward = forward
        self._to_original = to_original

    @classmethod
    def load(cls, model_dir: str | Path, jit_compile: bool = False,
             tta: str = "none") -> "Segmenter":
        """Load a trained model folder (raises `ModelLoadError` with the reason)."""
        model, card = load_model(model_dir)
        return cls(model, card, jit_compile=jit_compile, tta=tta)

    def warm_up(self) -> float:
        """Trace and run both graphs once on a small blank image, so that the first real photo
        does not pay for tracing and graph optimisation; returns the seconds it took."""
        start = time.perf_counter()
        self.predict(Image.new("RGB", (8, 8)))
        return time.perf_counter() - start

    @property
    def arch_id(self) -> str:
        return self.card["id"]

    def prepare(self, image: ImageSource) -> tuple[np.ndarray, tuple[int, int]]:
        """RGB uint8 array at the model's input size, and the original (width, height)."""
        image = open_image(image)
        height, width = self.input_size
        resized = image.resize((width, height), Image.BILINEAR)
        return np.asarray(resized, dtype=np.uint8), image.size

    def input_probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Softmax probabilities (N, h, w, C) for a uint8 batch already at the input size."""
        import tensorflow as tf

        return self._forward(tf.convert_to_tensor(batch, tf.uint8)).numpy()

    def full_mask(self, input_probabilities: np.ndarray,
                  size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(mask, confidence) at size=(width, height) from a `Prediction.input_probabilities`:
        the same graph as `predict_batch`, so the same labels, for callers that keep only the
        small input-size probabilities and need the full resolution later (a download)."""
        import tensorflow as tf

        width, height = size
        mask, confidence = self._to_original(np.asarray(input_probabilities, np.float32),
                                             tf.constant([height, width], tf.int32))
        return mask.numpy(), confidence.numpy()

    def predict(self, image: ImageSource) -> Prediction:
        """Segment one image."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[ImageSource]) -> list[Prediction]:
        """Segment several images with one network call."""
        start = time.perf_counter()
        prepared = [self.prepare(image) for image in images]
        probs = self.input_probabilities(np.stack([p[0] for p in prepared]))
        results = [Prediction(*self.full_mask(p, size), p) for p, (_, size) in zip(probs, prepared)]
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
