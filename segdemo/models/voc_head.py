"""Start DeepLabV3+'s mobile head from the PASCAL VOC DeepLab's own head, not only its encoder.

The VOC model's ASPP (a 1x1 branch, image pooling and their projection) already tells cats and
dogs from their surroundings on breeds our training set never shows; starting there, training
only has to learn the border band and the decoder. The `.npz` holds the dequantised, BN-folded
convolutions (see ../shared/pretrained/README-voc-deeplab.md); each maps to our conv (no bias) +
BatchNorm set to add exactly that bias. Those BatchNorms stay frozen while training
(`HEAD_BATCHNORM`): batch statistics of 8 photos would rescale what the next convolution expects;
with `--freeze-head` the convolutions (`HEAD_CONVS`) freeze with the encoder
(`--freeze-encoder-epochs`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from segdemo.errors import SegDemoError

if TYPE_CHECKING:
    import keras

# our layer prefix -> the .npz array prefix (see blocks.aspp for our names)
_LAYERS = {"aspp_1x1": "aspp0", "aspp_pool_proj": "image_pooling", "aspp_proj": "concat_projection"}
HEAD_CONVS = tuple(f"{prefix}_conv" for prefix in _LAYERS)
HEAD_BATCHNORM = tuple(f"{prefix}_bn" for prefix in _LAYERS)
# The VOC model's 21-class classifier, kept (frozen) in a DeepLabV3+ built with voc_prior=True.
VOC_LOGITS = "voc_logits"
VOC_NUM_CLASSES = 21
VOC_PET_CLASSES = (8, 12)  # cat, dog (segdemo.classes.VOC_NAMES)
EXAMPLE_HEAD_FILE = "../shared/pretrained/deeplabv3_mnv2_pascal_head.npz"


class HeadWeightsError(SegDemoError, RuntimeError):
    """Pretrained head weights could not be read or do not fit the model."""


def load_voc_head(model: keras.Model, path: str | os.PathLike) -> None:
    """Copy the VOC DeepLab head in `path` into `model` (DeepLabV3+ built with head="mobile")."""
    path = Path(path)
    if not path.is_file():
        raise HeadWeightsError(f"Head weights file {str(path)!r} does not exist; expected the "
                               f"PASCAL VOC DeepLab head, such as {EXAMPLE_HEAD_FILE}.")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            source = {k: arrays[k] for k in arrays.files}
    except Exception as error:  # zipfile, OSError or ValueError for a foreign file
        raise HeadWeightsError(
            f"Head weights file {str(path)!r} is not a readable .npz: {error}") from error
    names = {layer.name for layer in model.layers}
    missing = [f"{p}_conv" for p in _LAYERS if f"{p}_conv" not in names]
    atrous = any(name.startswith("aspp_rate") for name in names)
    if missing or atrous:
        found = "has atrous ASPP branches" if atrous else "has no " + ", ".join(missing)
        raise HeadWeightsError(
            f"Model {model.name!r} {found}: VOC head weights need DeepLabV3+ built with "
            "head='mobile' (train with --option head=mobile).")
    for ours, theirs in _LAYERS.items():
        if f"{theirs}_kernel" not in source or f"{theirs}_bias" not in source:
            raise HeadWeightsError(f"{str(path)!r} lacks {theirs}_kernel / {theirs}_bias.")
        kernel, bias = source[f"{theirs}_kernel"], source[f"{theirs}_bias"]
        if theirs == "concat_projection":  # VOC concatenates [pooling, 1x1]; we concatenate [1x1, pooling]
            half = kernel.shape[2] // 2
            kernel = np.concatenate([kernel[:, :, half:], kernel[:, :, :half]], axis=2)
        conv = model.get_layer(f"{ours}_conv")
        if tuple(conv.kernel.shape) != kernel.shape:
            raise HeadWeightsError(f"{ours}_conv: VOC kernel {kernel.shape} does not fit ours "
                                   f"{tuple(conv.kernel.shape)}.")
        conv.set_weights([kernel])
        bn = model.get_layer(f"{ours}_bn")
        ones = np.ones_like(bias)  # mean 0, variance 1 - eps: BatchNorm adds `bias`, nothing else
        bn.set_weights([ones, bias, np.zeros_like(bias), ones - bn.epsilon])
    if VOC_LOGITS in names:  # voc_prior=True: the VOC classifier reads the same features
        if "logits_kernel" not in source or "logits_bias" not in source:
            raise HeadWeightsError(f"{str(path)!r} lacks logits_kernel / logits_bias, which "
                                   "voc_prior needs.")
        model.get_layer(VOC_LOGITS).set_weights([source["logits_kernel"], source["logits_bias"]])
