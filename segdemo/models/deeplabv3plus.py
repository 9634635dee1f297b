"""DeepLabV3+ (Chen et al., 2018): ASPP context on a dilated encoder plus a light decoder.

The encoder runs at output stride 16 (or 8: finer, slower) by dilating its last stages; ASPP
gathers context at several scales; the decoder upsamples to stride 4, joins a 48-channel
projection of the encoder's stride-4 feature for sharp boundaries, refines with two separable
3x3 convolutions and resizes the class logits to the input size.
"""
from __future__ import annotations

import os

import keras
from keras import layers, ops

from segdemo.models.backbones import build_encoder
from segdemo.models.blocks import (aspp, check_input_size, check_num_classes, conv_bn_relu,
                                   resize_to, separable_conv_bn_relu)
from segdemo.models.voc_head import VOC_LOGITS, VOC_NUM_CLASSES, VOC_PET_CLASSES

# (stride-4 low-level feature, last feature) per backbone.
TAPS = {
    "mobilenetv2": ("block_3_expand_relu", "block_16_project"),
    "xception": ("block3_sepconv2_bn", "block14_sepconv2_act"),
}
ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}
# head="mobile": the mobile DeepLabV3 head (a 1x1 branch and image pooling, no atrous branches),
# the layout of the PASCAL VOC DeepLab, so its head weights load (segdemo.models.voc_head). It
# reads the last feature after its BatchNorm, as that model does.
HEADS = ("atrous", "mobile")
MOBILE_LAST_TAP = {"mobilenetv2": "block_16_project_BN"}
FILTERS = 256
LOW_LEVEL_FILTERS = 48


@keras.saving.register_keras_serializable("segdemo")
class PetPrior(layers.Layer):
    """Log-probabilities [pet, background, 0...] from the VOC model's 21-class logits.

    Added to the decoder's logits (voc_prior=True), they start training from the VOC model's own
    cut-out, which holds on breeds our photos never show (cat or dog = pet, any other class =
    background); the decoder learns the border band and corrections on top, instead of
    re-learning pet vs background from three breeds. Classes past the first two (the border)
    get the lesser of the two: level with the runner-up where the VOC model is sure, level with
    both where it hesitates, which is where a border lies.
    """

    def __init__(self, num_classes: int, pet_classes: tuple[int, ...] = VOC_PET_CLASSES, **kwargs):
        super().__init__(**kwargs)
        self.num_classes, self.pet_classes = int(num_classes), tuple(int(c) for c in pet_classes)

    def call(self, logits):
        others = [c for c in range(logits.shape[-1]) if c not in self.pet_classes]
        total = ops.logsumexp(logits, axis=-1, keepdims=True)
        pet = ops.logsumexp(ops.take(logits, self.pet_classes, axis=-1), axis=-1, keepdims=True)
        background = ops.logsumexp(ops.take(logits, others, axis=-1), axis=-1, keepdims=True)
        pet, background = pet - total, background - total
        rest = [ops.minimum(pet, background)] * (self.num_classes - 2)
        return ops.concatenate([pet, background, *rest], axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes,
                "pet_classes": list(self.pet_classes)}


def build_deeplabv3plus(num_classes: int, input_size: tuple[int, int] = (224, 224),
                        encoder_weights: str | os.PathLike | None = None, *,
                        backbone: str = "mobilenetv2", output_stride: int = 16,
                        width: float = 1.0, dropout: float = 0.1, head: str = "atrous",
                        voc_prior: bool = False, name: str | None = None) -> keras.Model:
    """Logits (N, H, W, num_classes) for inputs (N, H, W, 3) scaled to [-1, 1]; H, W % 32 == 0.

    `width` slims Xception's channels (MobileNetV2 only has 1.0); `dropout` follows ASPP;
    `head` is "atrous" (the paper's ASPP) or "mobile" (see HEADS); `voc_prior` (mobile head
    only) adds the VOC model's pet-vs-background cut-out to the logits (see PetPrior), read by
    its frozen 21-class classifier from the head's features (load it with voc_head).
    """
    name = name or f"deeplabv3plus_{backbone}"
    if backbone not in TAPS:
        raise ValueError(f"{name}: backbone must be one of {', '.join(TAPS)}, got {backbone!r}.")
    if output_stride not in ASPP_RATES:
        raise ValueError(f"{name}: output_stride must be 16 or 8, got {output_stride!r}.")
    if head not in HEADS or (head == "mobile" and backbone not in MOBILE_LAST_TAP):
        raise ValueError(f"{name}: head must be 'atrous' or, on {', '.join(MOBILE_LAST_TAP)}, "
                         f"'mobile'; got {head!r}.")
    if voc_prior and (head != "mobile" or num_classes < 2):
        raise ValueError(f"{name}: voc_prior needs head='mobile' and at least the classes pet "
                         "and background.")
    check_num_classes(num_classes)
    height, width_px = check_input_size(input_size, 32, name)
    inputs = keras.Input(shape=(height, width_px, 3), name="image")
    taps = TAPS[backbone] if head == "atrous" else (TAPS[backbone][0], MOBILE_LAST_TAP[backbone])
    encoder = build_encoder(backbone, (height, width_px, 3), taps,
                            output_stride=output_stride, width=width,
                            encoder_weights=encoder_weights)
    low_level, x = encoder(inputs)
    features = aspp(x, FILTERS, ASPP_RATES[output_stride] if head == "atrous" else ())
    x = layers.Dropout(dropout, name="aspp_dropout")(features)
    low_level = conv_bn_relu(low_level, LOW_LEVEL_FILTERS, 1, "decoder_low_level")
    x = resize_to(x, tuple(low_level.shape[1:3]), "decoder_upsample")
    x = layers.Concatenate(name="decoder_concat")([x, low_level])
    x = separable_conv_bn_relu(x, FILTERS, "decoder_conv1")
    x = separable_conv_bn_relu(x, FILTERS, "decoder_conv2")
    x = layers.Conv2D(num_classes, 1, name="classifier")(x)
    if voc_prior:
        voc = layers.Conv2D(VOC_NUM_CLASSES, 1, name=VOC_LOGITS, trainable=False)(features)
        prior = PetPrior(num_classes, name="voc_prior")(voc)
        x = layers.Add(name="classifier_plus_prior")(
            [x, resize_to(prior, tuple(x.shape[1:3]), "voc_prior_upsample")])
    logits = resize_to(x, (height, width_px), "logits")
    return keras.Model(inputs, logits, name=name)
