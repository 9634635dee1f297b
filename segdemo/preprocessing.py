"""Per-architecture input normalisation, named so that cards and the registry can refer to it.

Each function maps RGB pixel values in [0, 255] (float) to what an encoder expects. They use only
arithmetic and slicing, so they work on NumPy arrays, TensorFlow tensors and Keras tensors alike.
"""
from __future__ import annotations

from typing import Any, Callable

_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def scale_minus_one_one(x: Any) -> Any:
    """[-1, 1], as MobileNetV2 and Xception were trained (`mode="tf"` in Keras)."""
    return x / 127.5 - 1.0


def scale_unit(x: Any) -> Any:
    """[0, 1], for models trained from scratch."""
    return x / 255.0


def caffe_bgr(x: Any) -> Any:
    """BGR with the ImageNet mean removed, as VGG16's original weights expect (`mode="caffe"`)."""
    bgr = x[..., ::-1]
    return bgr - _CAFFE_MEAN_BGR


PREPROCESSORS: dict[str, Callable[[Any], Any]] = {
    "tf": scale_minus_one_one,
    "unit": scale_unit,
    "caffe": caffe_bgr,
}


def get_preprocessor(name: str) -> Callable[[Any], Any]:
    """The normalisation function called `name`; a clear error for an unknown one."""
    try:
        return PREPROCESSORS[name]
    except KeyError:
        raise ValueError(
            f"Unknown preprocessing {name!r}; known: {', '.join(sorted(PREPROCESSORS))}."
        ) from None


def probabilities_function(model, card: dict) -> Callable[[Any], Any]:
    """The graph every runtime runs: a uint8 RGB batch (N, H, W, 3) at the model's input size ->
    softmax class probabilities (N, H, W, C) in float32, normalisation included. The TF path
    traces it, the SavedModel / TFLite / ONNX exports are converted from it, so all of them feed
    the network the same way."""
    import tensorflow as tf

    preprocess = get_preprocessor(card["preprocessing"])

    def probabilities(batch):
        logits = model(preprocess(tf.cast(batch, tf.float32)), training=False)
        return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
    return probabilities
