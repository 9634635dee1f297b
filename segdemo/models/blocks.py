"""Layer groups shared by the segmentation heads, plus the checks every builder runs first.

Every helper takes explicit layer names so that model summaries read well and two builds of the same
architecture have the same layer names.
"""
from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import layers


def check_num_classes(num_classes: int) -> None:
    """Segmentation needs at least a foreground and a background class."""
    if int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}.")


def check_input_size(input_size: Sequence[int], multiple: int, arch: str) -> tuple[int, int]:
    """(H, W) as ints; raises when the architecture's down/upsampling cannot round-trip them."""
    if len(input_size) != 2:
        raise ValueError(f"{arch}: input_size must be (height, width), got {input_size!r}.")
    height, width = (int(v) for v in input_size)
    if height <= 0 or width <= 0 or height % multiple or width % multiple:
        raise ValueError(
            f"{arch}: input height and width must be positive multiples of {multiple} "
            f"(the network downsamples by {multiple}), got {height}x{width}. "
            f"Try {max(multiple, round(height / multiple) * multiple)}x"
            f"{max(multiple, round(width / multiple) * multiple)}."
        )
    return height, width


def conv_bn_relu(x, filters: int, kernel_size: int, name: str, dilation_rate: int = 1):
    """Conv (no bias: BatchNorm supplies the shift), BatchNorm, ReLU."""
    x = layers.Conv2D(filters, kernel_size, padding="same", dilation_rate=dilation_rate,
                      use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def separable_conv_bn_relu(x, filters: int, name: str, dilation_rate: int = 1):
    """3x3 depthwise-separable conv, BatchNorm, ReLU: a 3x3 conv at a fraction of the weights."""
    x = layers.SeparableConv2D(filters, 3, padding="same", dilation_rate=dilation_rate,
                               use_bias=False, name=f"{name}_sepconv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def upsample_block(x, filters: int, name: str, dropout: float = 0.0):
    """pix2pix decoder step (as in the TensorFlow segmentation tutorial): doubles H and W."""
    x = layers.Conv2DTranspose(
        filters, 3, strides=2, padding="same", use_bias=False,
        kernel_initializer=keras.initializers.RandomNormal(0.0, 0.02), name=f"{name}_deconv",
    )(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def resize_to(x, size: tuple[int, int], name: str):
    """Bilinear resize to a size known at build time (Resizing runs on every Keras backend)."""
    return layers.Resizing(size[0], size[1], interpolation="bilinear", name=name)(x)


def aspp(x, filters: int, rates: Sequence[int], name: str = "aspp"):
    """Atrous Spatial Pyramid Pooling (DeepLabV3): context at several scales, fused to `filters`.

    Branches: a 1x1 conv, one dilated 3x3 separable conv per rate, and image-level pooling
    (global average, 1x1 conv, broadcast back), concatenated and projected by a 1x1 conv. The
    caller adds the dropout, so a pretrained classifier can read the features undisturbed.
    """
    height, width = x.shape[1], x.shape[2]
    branches = [conv_bn_relu(x, filters, 1, f"{name}_1x1")]
    branches += [separable_conv_bn_relu(x, filters, f"{name}_rate{rate}", dilation_rate=rate)
                 for rate in rates]
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    pooled = conv_bn_relu(pooled, filters, 1, f"{name}_pool_proj")
    branches.append(layers.UpSampling2D(size=(height, width), name=f"{name}_pool_up")(pooled))
    x = layers.Concatenate(name=f"{name}_concat")(branches)
    return conv_bn_relu(x, filters, 1, f"{name}_proj")


def bilinear_kernel(kernel_size: int, channels: int) -> np.ndarray:
    """Conv2DTranspose kernel (k, k, channels, channels) that performs bilinear upsampling.

    FCN initialises its learned upsampling this way so training starts from a sensible
    interpolation instead of noise.
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    grid = np.arange(kernel_size)
    profile = 1 - np.abs(grid - center) / factor
    kernel = np.zeros((kernel_size, kernel_size, channels, channels), dtype="float32")
    kernel[:, :, range(channels), range(channels)] = np.outer(profile, profile)[:, :, None]
    return kernel
