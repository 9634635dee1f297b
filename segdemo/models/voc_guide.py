"""A trained pet model guided by the zero-shot PASCAL VOC DeepLab, in one network.

Fine-tuning on three breeds makes a model forget part of what the VOC model knew about cats and
dogs in general (pet-vs-background IoU on unseen breeds: 0.93 zero-shot, 0.86-0.90 after
training), while only training teaches the border band. The guided model runs both on the same
input: the trained model keeps its own probability for the border (and any class past the
first two); how the rest splits into pet and background is a geometric blend of the trained
model's split and the VOC model's cat-or-dog probability, `weight` of the way towards the VOC
model (`GuideFusion`). The VOC branch (`voc_guide`, its MobileNetV2 encoder at output stride 16,
the mobile DeepLabV3 head and its 21-class classifier) is frozen and ships inside the model's
weights file, so loading needs no `../shared`; `graft_voc_guide` builds one from a trained
model folder. Option `voc_guide=<weight>` (0 = off) on any model fed `[-1, 1]` inputs
("tf" preprocessing) with the classes pet and background first.
"""
from __future__ import annotations

import os

import keras
from keras import layers, ops

from segdemo.models.backbones import build_encoder
from segdemo.models.blocks import aspp, resize_to
from segdemo.models.deeplabv3plus import FILTERS, MOBILE_LAST_TAP, PetPrior
from segdemo.models.encoder_weights import load_encoder_weights
from segdemo.models.voc_head import VOC_LOGITS, VOC_NUM_CLASSES, load_voc_head

GUIDE_NAME = "voc_guide"
GUIDE_PREPROCESSING = "tf"  # the VOC encoder reads p / 127.5 - 1


@keras.saving.register_keras_serializable("segdemo")
class GuideFusion(layers.Layer):
    """Log-probabilities: the trained model's for classes 2+, its pet/background share split
    by a blend of its own split and the VOC model's (inputs: [our logits, VOC 21-class logits],
    the same height and width)."""

    def __init__(self, weight: float, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < float(weight) <= 1.0:
            raise ValueError(f"The VOC guide's weight must be in (0, 1], got {weight!r}.")
        self.weight = float(weight)
        self._voc_split = PetPrior(2)

    def call(self, inputs):
        ours, voc = inputs
        log_p = ops.log_softmax(ours, axis=-1)
        pet_or_background = ops.logsumexp(log_p[..., :2], axis=-1, keepdims=True)
        split = self.weight * self._voc_split(voc) + (1.0 - self.weight) * (
            log_p[..., :2] - pet_or_background)
        split = split - ops.logsumexp(split, axis=-1, keepdims=True)
        return ops.concatenate([pet_or_background + split, log_p[..., 2:]], axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "weight": self.weight}


def build_voc_guide(input_shape: tuple[int, int, int]) -> keras.Model:
    """The VOC DeepLabV3 (MobileNetV2, OS 16, mobile head) to its 21-class logits, frozen."""
    inputs = keras.Input(shape=input_shape, name="guide_image")
    encoder = build_encoder("mobilenetv2", input_shape, (MOBILE_LAST_TAP["mobilenetv2"],),
                            output_stride=16)
    (features,) = encoder(inputs)
    x = aspp(features, FILTERS, ())
    logits = layers.Conv2D(VOC_NUM_CLASSES, 1, name=VOC_LOGITS)(x)
    guide = keras.Model(inputs, logits, name=GUIDE_NAME)
    guide.trainable = False
    return guide


def with_voc_guide(model: keras.Model, weight: float, preprocessing: str) -> keras.Model:
    """`model` (logits at its input size) with a frozen VOC branch fused into its output."""
    if preprocessing != GUIDE_PREPROCESSING:
        raise ValueError(f"voc_guide needs a model fed [-1, 1] inputs (preprocessing "
                         f"{GUIDE_PREPROCESSING!r}), not {preprocessing!r}.")
    if model.output.shape[-1] < 2:
        raise ValueError("voc_guide needs at least the classes pet and background.")
    height, width = model.input.shape[1:3]
    guide = build_voc_guide((height, width, 3))
    voc = resize_to(guide(model.input), (height, width), "voc_guide_upsample")
    fused = GuideFusion(weight, name="voc_guide_fusion")([model.output, voc])
    return keras.Model(model.input, fused, name=model.name)


def load_voc_guide(model: keras.Model, encoder_weights: str | os.PathLike,
                   head_weights: str | os.PathLike) -> None:
    """Fill a guided model's VOC branch from the VOC encoder `.weights.h5` and head `.npz`
    (../shared/pretrained); raises EncoderWeightsError / HeadWeightsError naming the file."""
    guide = model.get_layer(GUIDE_NAME)
    load_encoder_weights(guide.get_layer("encoder"), "mobilenetv2", encoder_weights)
    load_voc_head(guide, head_weights)
