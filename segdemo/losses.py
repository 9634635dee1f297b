"""Segmentation losses as small composable Keras objects.

All take logits (N, H, W, C) and targets that are either integer label maps (N, H, W) or
per-pixel class distributions (N, H, W, C), the soft targets of distillation (`segdemo.distill`).
Pixels labelled `ignore_index` (VOC's 255 boundary), or whose distribution is all zeros,
contribute nothing. Only `keras.ops` is used, so they run on any backend.
"""
from __future__ import annotations

from typing import Sequence

import keras
from keras import ops


def target_distribution(y_true, num_classes: int, ignore_index: int):
    """Targets as per-pixel distributions (N, H, W, C) and the float mask of pixels that count:
    labels become one-hot rows (ignored pixels all zeros); soft targets pass through."""
    if len(y_true.shape) == 4:
        y_true = ops.cast(y_true, "float32")
        return y_true, ops.cast(ops.sum(y_true, axis=-1) > 0, "float32")
    y_true = ops.cast(y_true, "int32")
    valid = ops.not_equal(y_true, ignore_index)
    onehot = ops.one_hot(ops.where(valid, y_true, 0), num_classes)
    valid = ops.cast(valid, "float32")
    return onehot * valid[..., None], valid


class _SegmentationLoss(keras.losses.Loss):
    def __init__(
        self,
        ignore_index: int = 255,
        class_weights: Sequence[float] | None = None,
        name: str | None = None,
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.ignore_index = int(ignore_index)
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]

    def get_config(self) -> dict:
        return {**super().get_config(), "ignore_index": self.ignore_index,
                "class_weights": self.class_weights}


class MaskedCrossEntropy(_SegmentationLoss):
    """Sparse categorical cross-entropy from logits, averaged over non-ignored pixels.

    With class weights, each pixel counts with its class's weight (a weighted mean), which
    keeps the loss scale comparable to the unweighted one.
    """

    def __init__(self, ignore_index: int = 255, class_weights: Sequence[float] | None = None,
                 name: str = "masked_cross_entropy", **kwargs):
        super().__init__(ignore_index, class_weights, name=name, **kwargs)

    def call(self, y_true, y_pred):
        logits = ops.cast(y_pred, "float32")
        target, valid = target_distribution(y_true, ops.shape(logits)[-1], self.ignore_index)
        ce = -ops.sum(target * ops.log_softmax(logits, axis=-1), axis=-1)
        weights = valid
        if self.class_weights is not None:  # a soft target's weight: its classes' mean weight
            weights = ops.sum(target * ops.convert_to_tensor(self.class_weights), axis=-1)
        return ops.sum(ce * weights) / ops.maximum(ops.sum(weights), 1e-6)


class DiceLoss(_SegmentationLoss):
    """1 - soft Dice, per class over the whole batch, then averaged over classes.

    Classes absent from both the batch's labels and predictions score a Dice of 1 thanks to the
    smoothing term, so they neither reward nor punish.
    """

    def __init__(self, ignore_index: int = 255, class_weights: Sequence[float] | None = None,
                 smooth: float = 1.0, name: str = "dice", **kwargs):
        super().__init__(ignore_index, class_weights, name=name, **kwargs)
        self.smooth = float(smooth)

    def call(self, y_true, y_pred):
        onehot, valid = target_distribution(y_true, ops.shape(y_pred)[-1], self.ignore_index)
        probs = ops.softmax(ops.cast(y_pred, "float32"), axis=-1) * valid[..., None]
        axes = tuple(range(len(y_pred.shape) - 1))
        intersection = ops.sum(probs * onehot, axis=axes)
        total = ops.sum(probs, axis=axes) + ops.sum(onehot, axis=axes)
        dice = (2.0 * intersection + self.smooth) / (total + self.smooth)
        if self.class_weights is None:
            return 1.0 - ops.mean(dice)
        weights = ops.convert_to_tensor(self.class_weights)
        return 1.0 - ops.sum(dice * weights) / ops.sum(weights)

    def get_config(self) -> dict:
        return {**super().get_config(), "smooth": self.smooth}


class DiceCrossEntropy(_SegmentationLoss):
    """Cross-entropy plus Dice, as in the DeepLabV3+ seed: CE for calibrated pixels, Dice for
    classes that cover little of the image."""

    def __init__(self, ignore_index: int = 255, class_weights: Sequence[float] | None = None,
                 name: str = "dice_cross_entropy", **kwargs):
        super().__init__(ignore_index, class_weights, name=name, **kwargs)
        self._ce = MaskedCrossEntropy(ignore_index, class_weights)
        self._dice = DiceLoss(ignore_index, class_weights)

    def call(self, y_true, y_pred):
        return self._ce.call(y_true, y_pred) + self._dice.call(y_true, y_pred)


LOSSES = {"ce": MaskedCrossEntropy, "dice": DiceLoss, "dice_ce": DiceCrossEntropy}


def get_loss(name: str, ignore_index: int = 255,
             class_weights: Sequence[float] | None = None) -> keras.losses.Loss:
    """The loss called `name` (`ce`, `dice` or `dice_ce`)."""
    if name not in LOSSES:
        raise ValueError(f"Unknown loss {name!r}; choose one of: {', '.join(LOSSES)}.")
    return LOSSES[name](ignore_index=ignore_index, class_weights=class_weights)
