"""MobileNetV2, Xception and VGG16 feature extractors with keras.applications' exact layer names.

Why our own builders: keras.applications cannot dilate its last stages (DeepLab's output_stride) or
slim its channels (our 32 MB model budget). Reproducing the layer names and structure keeps
ImageNet weights usable: they are copied layer by layer by name (see `encoder_weights.py`).

Options:
- `output_stride` (MobileNetV2, Xception: 32, 16 or 8): stride-2 stages beyond it run at stride 1
  and the spatial convolutions after them are dilated (2, then 4), as in DeepLab.
- `width` (Xception, VGG16): channel multiplier, rounded to multiples of 8; 1.0 is the original.

Heads ask `build_encoder` for the layers they tap; it returns the nested multi-output
`keras.Model` named "encoder" that the trainer freezes.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import keras
from keras import layers

from segdemo.models.encoder_weights import load_encoder_weights

ENCODER_NAME = "encoder"


class _Dilation:
    """Running stride; once it reaches `output_stride`, further strides become dilation."""

    def __init__(self, output_stride: int, stride: int) -> None:
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride!r}.")
        self.output_stride = output_stride
        self.stride = stride
        self.rate = 1

    def downsample(self) -> tuple[int, int]:
        """(stride, dilation) for a layer that nominally has stride 2."""
        rate = self.rate
        if self.stride >= self.output_stride:
            self.rate *= 2
            return 1, rate
        self.stride *= 2
        return 2, rate


def _scaled(filters: int, width: float) -> int:
    """Channel count under a width multiplier, a multiple of 8 (exact at width 1.0)."""
    return max(8, int(filters * width / 8 + 0.5) * 8)


def _check_width(width: float) -> None:
    if not 0 < width <= 1:
        raise ValueError(f"width must be in (0, 1], got {width!r}.")


def _mobilenet_v2_block(x, filters: int, expansion: int, stride: int, block_id: int,
                        dilation: _Dilation):
    """MobileNetV2 inverted residual block, keras.applications layout (alpha 1.0)."""
    in_channels = x.shape[-1]
    prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
    inputs = x
    if block_id:
        x = layers.Conv2D(expansion * in_channels, 1, padding="same", use_bias=False,
                          name=f"{prefix}expand")(x)
        x = layers.BatchNormalization(epsilon=1e-3, momentum=0.999, name=f"{prefix}expand_BN")(x)
        x = layers.ReLU(6.0, name=f"{prefix}expand_relu")(x)
    if stride == 2:
        stride, rate = dilation.downsample()
        if stride == 2:  # keras.applications' asymmetric padding for even sizes
            pad = tuple((size % 2, 1) for size in x.shape[1:3])
        else:  # a 'valid' 3x3 conv dilated by `rate` needs `rate` on each side
            pad = ((rate, rate), (rate, rate))
        x = layers.ZeroPadding2D(padding=pad, name=f"{prefix}pad")(x)
        padding = "valid"
    else:
        rate, padding = dilation.rate, "same"
    x = layers.DepthwiseConv2D(3, strides=stride, dilation_rate=rate, padding=padding,
                               use_bias=False, name=f"{prefix}depthwise")(x)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=0.999, name=f"{prefix}depthwise_BN")(x)
    x = layers.ReLU(6.0, name=f"{prefix}depthwise_relu")(x)
    x = layers.Conv2D(filters, 1, padding="same", use_bias=False, name=f"{prefix}project")(x)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=0.999, name=f"{prefix}project_BN")(x)
    if in_channels == filters and stride == 1:
        return layers.Add(name=f"{prefix}add")([inputs, x])
    return x


# (filters, expansion, stride) of blocks 0..16, as in the paper and keras.applications.
_MOBILENET_V2_BLOCKS = (
    [(16, 1, 1)] + [(24, 6, 2), (24, 6, 1)] + [(32, 6, 2)] + [(32, 6, 1)] * 2
    + [(64, 6, 2)] + [(64, 6, 1)] * 3 + [(96, 6, 1)] * 3
    + [(160, 6, 2)] + [(160, 6, 1)] * 2 + [(320, 6, 1)]
)


def mobilenet_v2(inputs, output_stride: int = 32, width: float = 1.0) -> keras.Model:
    """MobileNetV2 (alpha 1.0, no top); taps at stride 2/4/8/16/32 are the tutorial's
    block_1/3/6/13_expand_relu and block_16_project."""
    if width != 1.0:
        raise ValueError("MobileNetV2 is only available at width 1.0 (alpha 1.0).")
    dilation = _Dilation(output_stride, stride=2)
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="Conv1")(inputs)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=0.999, name="bn_Conv1")(x)
    x = layers.ReLU(6.0, name="Conv1_relu")(x)
    for block_id, (filters, expansion, stride) in enumerate(_MOBILENET_V2_BLOCKS):
        x = _mobilenet_v2_block(x, filters, expansion, stride, block_id, dilation)
    x = layers.Conv2D(1280, 1, use_bias=False, name="Conv_1")(x)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=0.999, name="Conv_1_bn")(x)
    x = layers.ReLU(6.0, name="out_relu")(x)
    return keras.Model(inputs, x, name="mobilenetv2")


class _XceptionNames:
    """keras.applications.Xception leaves its residual layers unnamed; in a fresh session Keras
    calls them conv2d, conv2d_1, ... We use those names (see encoder_weights.canonical_names)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def __call__(self, base: str) -> str:
        count = self.counts.get(base, 0)
        self.counts[base] = count + 1
        return f"{base}_{count}" if count else base


def xception(inputs, output_stride: int = 32, width: float = 1.0) -> keras.Model:
    """Xception (no top); the entry flow's stride-4 feature is block3_sepconv2_bn, the last
    feature block14_sepconv2_act."""
    _check_width(width)
    dilation = _Dilation(output_stride, stride=2)
    auto = _XceptionNames()

    def f(filters: int) -> int:
        return _scaled(filters, width)

    def sepconv_bn(x, filters: int, name: str):
        x = layers.SeparableConv2D(f(filters), 3, padding="same", dilation_rate=dilation.rate,
                                   use_bias=False, name=name)(x)
        return layers.BatchNormalization(name=f"{name}_bn")(x)

    def downsampling_block(x, filters: tuple[int, int], block: int, relu_first: bool):
        inputs = x
        if relu_first:
            x = layers.Activation("relu", name=f"block{block}_sepconv1_act")(x)
        x = sepconv_bn(x, filters[0], f"block{block}_sepconv1")
        x = layers.Activation("relu", name=f"block{block}_sepconv2_act")(x)
        x = sepconv_bn(x, filters[1], f"block{block}_sepconv2")
        stride, _ = dilation.downsample()
        x = layers.MaxPooling2D(3, strides=stride, padding="same", name=f"block{block}_pool")(x)
        residual = layers.Conv2D(f(filters[1]), 1, strides=stride, padding="same",
                                 use_bias=False, name=auto("conv2d"))(inputs)
        residual = layers.BatchNormalization(name=auto("batch_normalization"))(residual)
        return layers.Add(name=auto("add"))([x, residual])

    x = layers.Conv2D(f(32), 3, strides=2, use_bias=False, name="block1_conv1")(inputs)
    x = layers.BatchNormalization(name="block1_conv1_bn")(x)
    x = layers.Activation("relu", name="block1_conv1_act")(x)
    x = layers.Conv2D(f(64), 3, use_bias=False, name="block1_conv2")(x)
    x = layers.BatchNormalization(name="block1_conv2_bn")(x)
    x = layers.Activation("relu", name="block1_conv2_act")(x)

    x = downsampling_block(x, (128, 128), 2, relu_first=False)
    x = downsampling_block(x, (256, 256), 3, relu_first=True)
    x = downsampling_block(x, (728, 728), 4, relu_first=True)
    for block in range(5, 13):
        residual = x
        for conv in (1, 2, 3):
            x = layers.Activation("relu", name=f"block{block}_sepconv{conv}_act")(x)
            x = sepconv_bn(x, 728, f"block{block}_sepconv{conv}")
        x = layers.Add(name=auto("add"))([x, residual])
    x = downsampling_block(x, (728, 1024), 13, relu_first=True)

    x = sepconv_bn(x, 1536, "block14_sepconv1")
    x = layers.Activation("relu", name="block14_sepconv1_act")(x)
    x = sepconv_bn(x, 2048, "block14_sepconv2")
    x = layers.Activation("relu", name="block14_sepconv2_act")(x)
    return keras.Model(inputs, x, name="xception")


def vgg16(inputs, output_stride: int = 32, width: float = 1.0) -> keras.Model:
    """VGG16 convolutional part (no top); FCN taps block3/4/5_pool at stride 8/16/32."""
    if output_stride != 32:
        raise ValueError("VGG16 supports output_stride 32 only.")
    _check_width(width)
    x = inputs
    for block, (filters, convs) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], 1):
        for conv in range(1, convs + 1):
            x = layers.Conv2D(_scaled(filters, width), 3, activation="relu", padding="same",
                              name=f"block{block}_conv{conv}")(x)
        x = layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)
    return keras.Model(inputs, x, name="vgg16")


BACKBONES: dict[str, Callable[..., keras.Model]] = {
    "mobilenetv2": mobilenet_v2,
    "xception": xception,
    "vgg16": vgg16,
}


def build_backbone(backbone: str, input_shape: tuple[int, int, int], output_stride: int = 32,
                   width: float = 1.0) -> keras.Model:
    """The whole randomly initialised backbone, mirroring keras.applications' `include_top=False`."""
    if backbone not in BACKBONES:
        raise ValueError(f"Unknown backbone {backbone!r}; known: {', '.join(BACKBONES)}.")
    inputs = keras.Input(shape=input_shape, name="image")
    return BACKBONES[backbone](inputs, output_stride=output_stride, width=width)


def build_encoder(backbone: str, input_shape: tuple[int, int, int], taps: Sequence[str], *,
                  output_stride: int = 32, width: float = 1.0,
                  encoder_weights: str | os.PathLike | None = None) -> keras.Model:
    """Multi-output model named "encoder" returning the outputs of the `taps` layers, in order.

    `encoder_weights`: None (random), "imagenet" or a path to a keras.applications no-top
    `.weights.h5` file; pretrained weights exist only at width 1.0.
    """
    if encoder_weights is not None and width != 1.0:
        raise ValueError(
            f"Pretrained {backbone} weights exist only at width 1.0, got width={width}; "
            "use width=1.0 or encoder_weights=None."
        )
    full = build_backbone(backbone, input_shape, output_stride=output_stride, width=width)
    encoder = keras.Model(full.input, [full.get_layer(name).output for name in taps],
                          name=ENCODER_NAME)
    load_encoder_weights(encoder, backbone, encoder_weights)
    return encoder
