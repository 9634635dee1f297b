"""U-Net with a MobileNetV2 encoder: the model of TensorFlow's image segmentation tutorial.

The encoder is tapped at the end of each resolution level (stride 2 to 32); four pix2pix upsample
blocks climb back, each joined with the encoder feature of the same size, and a last transposed
convolution returns to full resolution with one logit per class.
"""
from __future__ import annotations

import os

import keras
from keras import layers

from segdemo.models.backbones import build_encoder
from segdemo.models.blocks import check_input_size, check_num_classes, upsample_block

TAPS = ("block_1_expand_relu", "block_3_expand_relu", "block_6_expand_relu",
        "block_13_expand_relu", "block_16_project")
DECODER_FILTERS = (512, 256, 128, 64)


def build_unet_mobilenetv2(num_classes: int, input_size: tuple[int, int] = (128, 128),
                           encoder_weights: str | os.PathLike | None = None,
                           name: str = "unet_mobilenetv2") -> keras.Model:
    """Logits (N, H, W, num_classes) for inputs (N, H, W, 3) scaled to [-1, 1]; H, W % 32 == 0."""
    check_num_classes(num_classes)
    height, width = check_input_size(input_size, 32, name)
    inputs = keras.Input(shape=(height, width, 3), name="image")
    encoder = build_encoder("mobilenetv2", (height, width, 3), TAPS,
                            encoder_weights=encoder_weights)
    *skips, x = encoder(inputs)
    for level, (filters, skip) in enumerate(zip(DECODER_FILTERS, reversed(skips)), 1):
        x = upsample_block(x, filters, name=f"up{level}")
        x = layers.Concatenate(name=f"up{level}_concat")([x, skip])
    logits = layers.Conv2DTranspose(num_classes, 3, strides=2, padding="same", name="logits")(x)
    return keras.Model(inputs, logits, name=name)
