"""Pretrained encoder weights: fetched or read through keras.applications, copied in by layer name.

Our backbones reproduce keras.applications' layer names, so the single `load_encoder_weights` works
for every encoder whatever its input size or output stride (kernels do not depend on either).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from segdemo.errors import SegDemoError

if TYPE_CHECKING:  # keras is imported where it runs: the registry must import without TensorFlow
    import keras

# keras.applications constructor for each backbone, looked up at call time.
REFERENCE_MODELS = {"mobilenetv2": "MobileNetV2", "xception": "Xception", "vgg16": "VGG16"}
EXAMPLE_WEIGHTS_FILE = "../shared/pretrained/mobilenet_v2_1.0_224_imagenet_no_top.weights.h5"
# Any size works for copying kernels; 224 suits every reference model and ImageNet file name.
_REFERENCE_INPUT_SHAPE = (224, 224, 3)
# Names Keras gives layers created without one (e.g. Xception's residual branches).
_AUTO_NAME = re.compile(r"^(conv2d|batch_normalization|add)(_\d+)?$")


class EncoderWeightsError(SegDemoError, RuntimeError):
    """Pretrained encoder weights could not be obtained or did not fit the encoder."""


def canonical_names(model: keras.Model) -> dict[str, keras.layers.Layer]:
    """Layers by name, with Keras' automatic names renumbered from 0 in graph order.

    Automatic names depend on how many layers the session built before (conv2d_7, ...); renumbered
    they match what our backbones name those layers (conv2d, conv2d_1, ...).
    """
    counts: dict[str, int] = {}
    named = {}
    for layer in model.layers:
        match = _AUTO_NAME.match(layer.name)
        name = layer.name
        if match:
            count = counts.get(match.group(1), 0)
            counts[match.group(1)] = count + 1
            name = f"{match.group(1)}_{count}" if count else match.group(1)
        named[name] = layer
    return named


def _reference_model(backbone: str, encoder_weights: str | os.PathLike) -> keras.Model:
    """keras.applications' version of `backbone`, holding the requested weights."""
    import keras

    class_name = REFERENCE_MODELS[backbone]
    constructor = getattr(keras.applications, class_name)
    expected = (f"a Keras 3 .weights.h5 file of keras.applications.{class_name}"
                "(include_top=False, weights=None)")
    if isinstance(encoder_weights, str) and encoder_weights == "imagenet":
        try:
            return constructor(include_top=False, weights="imagenet",
                               input_shape=_REFERENCE_INPUT_SHAPE)
        except Exception as error:  # keras' get_file raises a bare Exception on network failure
            raise EncoderWeightsError(
                f"Downloading the ImageNet weights for {class_name} failed ({error}). "
                "Without internet access, either pass encoder_weights=None to train the encoder "
                f"from scratch, or pass the path to a local file: {expected}, such as "
                f"{EXAMPLE_WEIGHTS_FILE}."
            ) from error
    path = Path(encoder_weights)
    if not path.is_file():
        raise EncoderWeightsError(
            f"Encoder weights file {str(path)!r} does not exist; expected {expected}, "
            f"such as {EXAMPLE_WEIGHTS_FILE}. Pass encoder_weights=None to train from scratch."
        )
    model = constructor(include_top=False, weights=None, input_shape=_REFERENCE_INPUT_SHAPE)
    try:
        model.load_weights(str(path))
    except Exception as error:  # Keras raises ValueError, h5py OSError/KeyError for foreign files
        raise EncoderWeightsError(
            f"Encoder weights file {str(path)!r} does not fit {class_name}; expected {expected}. "
            f"Keras said: {error}"
        ) from error
    return model


def load_encoder_weights(encoder: keras.Model, backbone: str,
                         encoder_weights: str | os.PathLike | None) -> None:
    """Fill `encoder` (one of our backbones, or a part of one) with pretrained weights.

    `encoder_weights`: None leaves the random initialisation; "imagenet" downloads Keras' file;
    a path names a local keras.applications no-top `.weights.h5` file. Raises EncoderWeightsError.
    """
    if encoder_weights is None:
        return
    if backbone not in REFERENCE_MODELS:
        raise ValueError(f"No pretrained weights are known for backbone {backbone!r}.")
    source = canonical_names(_reference_model(backbone, encoder_weights))
    for layer in encoder.layers:
        if not layer.weights:
            continue
        if layer.name not in source:
            raise EncoderWeightsError(
                f"Layer {layer.name!r} of our {backbone} has no counterpart in "
                f"keras.applications.{REFERENCE_MODELS[backbone]}."
            )
        values = source[layer.name].get_weights()
        shapes = [tuple(v.shape) for v in values]
        expected = [tuple(w.shape) for w in layer.weights]
        if shapes != expected:
            raise EncoderWeightsError(
                f"Layer {layer.name!r}: pretrained weight shapes {shapes} differ from ours "
                f"{expected}."
            )
        layer.set_weights(values)
