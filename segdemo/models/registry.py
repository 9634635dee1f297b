"""The architectures the project offers: the single source of truth for builders and defaults.

Adding an architecture = one builder module + one entry in ARCHITECTURES.
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from segdemo.errors import SegDemoError

if TYPE_CHECKING:
    import keras


class UnknownArchitectureError(SegDemoError, KeyError):
    """An architecture id that is not in the registry."""

    def __str__(self) -> str:  # KeyError would show the message quoted
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Architecture:
    """One segmentation architecture and everything needed to build and feed it."""

    id: str
    title: str
    description: str  # one paragraph for non-programmers
    builder: Callable[..., keras.Model]  # builder(num_classes, input_size, encoder_weights, **options)
    input_size: tuple[int, int]  # default (H, W)
    preprocessing: str  # key of segdemo.preprocessing.PREPROCESSORS
    encoder: str | None  # "mobilenetv2", "xception", "vgg16" or None (trained from scratch)
    options: dict = field(default_factory=dict)  # default builder options

    def build(self, num_classes: int, input_size: tuple[int, int] | None = None,
              encoder_weights: str | os.PathLike | None = None, **options) -> keras.Model:
        """Build with the defaults, overridden by the arguments given. Option `voc_guide`
        (a weight in (0, 1]; 0 = off) wraps any architecture in the frozen VOC guide
        (`segdemo.models.voc_guide`)."""
        options = {**self.options, **options}
        guide = float(options.pop("voc_guide", 0) or 0)
        model = self.builder(num_classes, input_size=tuple(input_size or self.input_size),
                             encoder_weights=encoder_weights, **options)
        if guide:
            from segdemo.models.voc_guide import with_voc_guide

            model = with_voc_guide(model, guide, self.preprocessing)
        return model


def _lazy(module: str, name: str, **bound) -> Callable[..., keras.Model]:
    """`module.name` (with `bound` keywords), imported on the first build: the registry's titles
    and sizes then load without Keras, so the dashboard's first page does not wait for
    TensorFlow."""
    def build(*args, **kwargs):
        return getattr(importlib.import_module(f"segdemo.models.{module}"), name)(
            *args, **{**bound, **kwargs})
    return build


ARCHITECTURES: dict[str, Architecture] = {
    arch.id: arch
    for arch in (
        Architecture(
            id="unet_mobilenetv2",
            title="U-Net with MobileNetV2 encoder",
            description=(
                "The model from TensorFlow's segmentation tutorial. A compact image-recognition "
                "network (MobileNetV2, which can start from ImageNet training) condenses the "
                "picture step by step; a mirror-image decoder then paints the class of every "
                "pixel back at full size, reusing the detail seen at each step. Small and fast; "
                "a good first choice."
            ),
            builder=_lazy("unet_mobilenetv2", "build_unet_mobilenetv2"),
            input_size=(128, 128),
            preprocessing="tf",
            encoder="mobilenetv2",
        ),
        Architecture(
            id="deeplabv3plus_mobilenetv2",
            title="DeepLabV3+ with MobileNetV2 encoder",
            description=(
                "A widely used segmentation design. It looks at each part of the image at several "
                "zoom levels at once (to understand context such as 'road under car'), then sharpens "
                "object outlines with detail from early in the network. The MobileNetV2 encoder "
                "keeps it light; it can start from ImageNet training or, as the shipped one "
                "does, from a DeepLab trained on PASCAL VOC, whose classes include cats and dogs."
            ),
            builder=_lazy("deeplabv3plus", "build_deeplabv3plus", backbone="mobilenetv2"),
            input_size=(224, 224),
            preprocessing="tf",
            encoder="mobilenetv2",
            options={"output_stride": 16},
        ),
        Architecture(
            id="deeplabv3plus_xception",
            title="DeepLabV3+ with Xception encoder (40% width)",
            description=(
                "The same DeepLabV3+ design with the Xception encoder of the original paper, "
                "slimmed to 40% of its channels so it fits the size budget. Larger and slower than "
                "the MobileNetV2 version; here it trains from scratch, as ImageNet weights exist "
                "only for the full-width encoder."
            ),
            builder=_lazy("deeplabv3plus", "build_deeplabv3plus", backbone="xception"),
            input_size=(224, 224),
            preprocessing="tf",
            encoder="xception",
            options={"output_stride": 16, "width": 0.4},
        ),
        Architecture(
            id="fcn8s_vgg16",
            title="FCN-8s with VGG16 encoder (half width)",
            description=(
                "The first deep network built for segmentation (2015). A classic recognition "
                "network (VGG16, slimmed to half its channels) makes a coarse class map, which is "
                "enlarged in three steps, each adding detail from an earlier, sharper layer. "
                "Simple and historically important; usually less precise than DeepLabV3+."
            ),
            builder=_lazy("fcn", "build_fcn8s"),
            input_size=(224, 224),
            preprocessing="caffe",
            encoder="vgg16",
            options={"width": 0.5},
        ),
        Architecture(
            id="unet",
            title="U-Net (from scratch)",
            description=(
                "The classic U-Net from medical imaging: a symmetric network that shrinks the image "
                "to grasp what is in it and grows it back to label every pixel, passing fine detail "
                "across at every size. It learns everything from your images alone, with no "
                "pretraining, so it suits simple or unusual images more than everyday photos."
            ),
            builder=_lazy("unet", "build_unet"),
            input_size=(128, 128),
            preprocessing="unit",
            encoder=None,
            options={"base_filters": 32, "depth": 4},
        ),
    )
}


def get_architecture(arch_id: str) -> Architecture:
    """The registered architecture `arch_id`; UnknownArchitectureError names the known ids."""
    try:
        return ARCHITECTURES[arch_id]
    except KeyError:
        raise UnknownArchitectureError(
            f"Unknown architecture {arch_id!r}; known: {', '.join(ARCHITECTURES)}."
        ) from None


def build_model(arch_id: str, num_classes: int, input_size: tuple[int, int] | None = None,
                encoder_weights: str | os.PathLike | None = None, **options) -> keras.Model:
    """Build architecture `arch_id` for `num_classes` classes (logits at input resolution)."""
    return get_architecture(arch_id).build(num_classes, input_size=input_size,
                                           encoder_weights=encoder_weights, **options)
