"""Classic U-Net (Ronneberger et al., 2015) trained from scratch, with no pretrained encoder.

Each level applies two 3x3 conv-BN-ReLU layers; the contracting path halves the size with max
pooling and doubles the filters, the expanding path undoes it with transposed convolutions and
concatenates the matching contracting feature so fine detail survives.
"""
from __future__ import annotations

import keras
from keras import layers

from segdemo.models.blocks import check_input_size, check_num_classes, conv_bn_relu


def _double_conv(x, filters: int, name: str):
    x = conv_bn_relu(x, filters, 3, f"{name}_a")
    return conv_bn_relu(x, filters, 3, f"{name}_b")


def build_unet(num_classes: int, input_size: tuple[int, int] = (128, 128),
               encoder_weights: None = None, base_filters: int = 32, depth: int = 4,
               name: str = "unet") -> keras.Model:
    """Logits (N, H, W, num_classes) for inputs (N, H, W, 3) in [0, 1]; H, W % 2**depth == 0.

    `base_filters` filters at full resolution, doubled at each of the `depth` poolings.
    """
    check_num_classes(num_classes)
    if encoder_weights is not None:
        raise ValueError(f"{name} is trained from scratch; it takes no encoder_weights.")
    if depth < 1 or base_filters < 1:
        raise ValueError(f"depth and base_filters must be >= 1, got {depth}, {base_filters}.")
    height, width = check_input_size(input_size, 2**depth, name)
    inputs = keras.Input(shape=(height, width, 3), name="image")
    x, skips = inputs, []
    for level in range(depth):
        x = _double_conv(x, base_filters * 2**level, f"down{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"down{level}_pool")(x)
    x = _double_conv(x, base_filters * 2**depth, "bottom")
    for level in reversed(range(depth)):
        x = layers.Conv2DTranspose(base_filters * 2**level, 2, strides=2,
                                   name=f"up{level}_deconv")(x)
        x = layers.Concatenate(name=f"up{level}_concat")([x, skips[level]])
        x = _double_conv(x, base_filters * 2**level, f"up{level}")
    logits = layers.Conv2D(num_classes, 1, name="logits")(x)
    return keras.Model(inputs, logits, name=name)
