"""FCN-8s (Long et al., 2015) on a VGG16 encoder.

Class scores from the deepest features are upsampled x2 and added to scores from pool4, again x2
and added to scores from pool3, then x8 to the input size, so coarse semantics meet finer detail.

Lighter head than the paper: fc6 is a 3x3 convolution to `head_filters` (512) channels instead of
7x7 to 4096, fc7 a 1x1 to the same, each followed by dropout. The paper's head alone holds 134 M
weights (537 MB), far beyond our 32 MB per-model budget; on small datasets it mostly overfits.
Upsampling layers are learned transposed convolutions initialised to bilinear interpolation, and
the skip score layers start at zero, both as in the paper, so training starts from FCN-32s.
"""
from __future__ import annotations

import os

import keras
from keras import layers

from segdemo.models.backbones import build_encoder
from segdemo.models.blocks import bilinear_kernel, check_input_size, check_num_classes

TAPS = ("block3_pool", "block4_pool", "block5_pool")


def _upscore(x, num_classes: int, factor: int, name: str):
    """Transposed conv that multiplies H and W by `factor` (kernel 2 * factor)."""
    return layers.Conv2DTranspose(num_classes, 2 * factor, strides=factor, padding="same",
                                  use_bias=False, name=name)(x)


def build_fcn8s(num_classes: int, input_size: tuple[int, int] = (224, 224),
                encoder_weights: str | os.PathLike | None = None, *, width: float = 0.5,
                head_filters: int = 512, dropout: float = 0.5,
                name: str = "fcn8s_vgg16") -> keras.Model:
    """Logits (N, H, W, num_classes) for Caffe-preprocessed inputs (N, H, W, 3); H, W % 32 == 0.

    `width` scales VGG16's channels (ImageNet weights need 1.0).
    """
    check_num_classes(num_classes)
    height, width_px = check_input_size(input_size, 32, name)
    inputs = keras.Input(shape=(height, width_px, 3), name="image")
    encoder = build_encoder("vgg16", (height, width_px, 3), TAPS, width=width,
                            encoder_weights=encoder_weights)
    pool3, pool4, pool5 = encoder(inputs)
    x = layers.Conv2D(head_filters, 3, padding="same", activation="relu", name="fc6")(pool5)
    x = layers.Dropout(dropout, name="fc6_dropout")(x)
    x = layers.Conv2D(head_filters, 1, activation="relu", name="fc7")(x)
    x = layers.Dropout(dropout, name="fc7_dropout")(x)
    x = layers.Conv2D(num_classes, 1, name="score_fr")(x)
    x = _upscore(x, num_classes, 2, "upscore2")
    skip = layers.Conv2D(num_classes, 1, kernel_initializer="zeros", name="score_pool4")(pool4)
    x = layers.Add(name="fuse_pool4")([x, skip])
    x = _upscore(x, num_classes, 2, "upscore_pool4")
    skip = layers.Conv2D(num_classes, 1, kernel_initializer="zeros", name="score_pool3")(pool3)
    x = layers.Add(name="fuse_pool3")([x, skip])
    logits = _upscore(x, num_classes, 8, "logits")
    model = keras.Model(inputs, logits, name=name)
    for layer_name in ("upscore2", "upscore_pool4", "logits"):
        layer = model.get_layer(layer_name)
        layer.set_weights([bilinear_kernel(layer.kernel.shape[0], num_classes)])
    return model
