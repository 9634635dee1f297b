"""Segmentation scores, all derived from one confusion matrix.

Convention for a class that appears neither in the labels nor in the predictions of the
evaluated set: its IoU, Dice and accuracy are undefined (NaN in per-class lists, `null` in
JSON) and it is left out of the means. A class present in the labels but never predicted
scores 0; one predicted but absent from the labels scores 0 IoU (its pixels are all false
positives) and has an undefined accuracy. Keras' `MeanIoU` follows the same rule.
"""
from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops


def confusion_matrix(
    labels: np.ndarray, predictions: np.ndarray, num_classes: int, ignore_index: int = 255
) -> np.ndarray:
    """Counts[i, j] = pixels of true class i predicted as j; ignored pixels are dropped."""
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    predictions = np.asarray(predictions).reshape(-1).astype(np.int64)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels and predictions differ in size: {labels.size} vs {predictions.size}.")
    keep = labels != ignore_index
    labels, predictions = labels[keep], predictions[keep]
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"label values must lie in [0, {num_classes}) or equal {ignore_index}.")
    return np.bincount(labels * num_classes + predictions,
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)


def scores(cm: np.ndarray, class_names: list[str] | None = None) -> dict:
    """Pixel accuracy, mean class accuracy, per-class IoU and Dice, mIoU and mean Dice."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    label_count = cm.sum(axis=1)
    pred_count = cm.sum(axis=0)
    union = label_count + pred_count - tp
    iou = _ratio(tp, union)
    dice = _ratio(2 * tp, label_count + pred_count)
    class_acc = _ratio(tp, label_count)
    total = cm.sum()
    names = class_names or [str(i) for i in range(len(tp))]

    def mean(values: np.ndarray) -> float | None:
        return float(np.nanmean(values)) if np.any(~np.isnan(values)) else None

    def per_class(values: np.ndarray) -> dict:
        return {n: (None if math.isnan(v) else float(v)) for n, v in zip(names, values)}

    return {
        "pixel_accuracy": float(tp.sum() / total) if total else None,
        "mean_class_accuracy": mean(class_acc),
        "miou": mean(iou),
        "mean_dice": mean(dice),
        "iou": per_class(iou),
        "dice": per_class(dice),
        "class_accuracy": per_class(class_acc),
        "pixels": int(total),
        "confusion_matrix": cm.astype(np.int64).tolist(),
    }


# Pet trimaps: the classes of a cut-out. Border pixels of the truth are left out; a predicted
# border counts as pet (it would be kept, soft-edged, in a cut-out).
FOREGROUND, BACKGROUND, UNSURE = "pet", "background", "border"
# Boundary tolerance as a share of the image diagonal: DAVIS's default (0.008), at least 1 px.
BOUNDARY_TOLERANCE = 0.008


def foreground_iou(cm: np.ndarray, class_names: list[str]) -> float | None:
    """Pet-vs-background IoU from a confusion matrix of pet/background/border classes: true
    border pixels are ignored, predicted border counts as pet. None for other class sets or when
    neither pet nor predicted pet occurs."""
    if not {FOREGROUND, BACKGROUND, UNSURE} <= set(class_names):
        return None
    cm = np.asarray(cm, dtype=np.float64)
    fg, bg, unsure = (class_names.index(n) for n in (FOREGROUND, BACKGROUND, UNSURE))
    kept_as_pet = [fg, unsure]
    true_positive = cm[fg, kept_as_pet].sum()
    false_positive = cm[bg, kept_as_pet].sum()
    false_negative = cm[fg, bg]
    union = true_positive + false_positive + false_negative
    return float(true_positive / union) if union else None


def class_edges(labels: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Pixels whose right or lower neighbour has another class (one-pixel class edges); with
    `valid`, only between two valid pixels."""
    labels = np.asarray(labels)
    valid = np.ones(labels.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    edges = np.zeros(labels.shape, dtype=bool)
    edges[:, :-1] |= (labels[:, :-1] != labels[:, 1:]) & valid[:, :-1] & valid[:, 1:]
    edges[:-1, :] |= (labels[:-1, :] != labels[1:, :]) & valid[:-1, :] & valid[1:, :]
    return edges


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a (2r+1)^2 square, via an integral image (no SciPy needed)."""
    if radius <= 0:
        return mask.copy()
    padded = np.pad(mask.astype(np.int32), radius + 1)
    integral = padded.cumsum(0).cumsum(1)
    size = 2 * radius + 1
    height, width = mask.shape
    window = (integral[size:size + height, size:size + width] - integral[:height, size:size + width]
              - integral[size:size + height, :width] + integral[:height, :width])
    return window > 0


def boundary_tolerance_px(shape: tuple[int, int], fraction: float = BOUNDARY_TOLERANCE) -> int:
    """The tolerance band for an image of `shape`: `fraction` of its diagonal, at least 1 px."""
    return max(1, math.ceil(fraction * math.hypot(*shape[:2])))


def boundary_scores(labels: np.ndarray, predictions: np.ndarray, tolerance: int,
                    ignore_index: int = 255) -> dict:
    """Boundary precision, recall and F-score (DAVIS's F measure) of one image: a predicted class
    edge is right when a true edge lies within `tolerance` px (square band), and vice versa.
    Edges inside ignored areas are dropped; an image with no edges at all scores 1."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ in size.")
    valid = labels != ignore_index
    true_edges = class_edges(labels, valid)
    predicted_edges = class_edges(predictions, valid)
    n_true, n_predicted = int(true_edges.sum()), int(predicted_edges.sum())
    if n_true == 0 and n_predicted == 0:
        return {"boundary_precision": 1.0, "boundary_recall": 1.0, "boundary_f": 1.0}
    precision = (float((predicted_edges & _dilate(true_edges, tolerance)).sum() / n_predicted)
                 if n_predicted else 0.0)
    recall = float((true_edges & _dilate(predicted_edges, tolerance)).sum() / n_true) if n_true else 0.0
    f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"boundary_precision": precision, "boundary_recall": recall, "boundary_f": f}


class PixelAccuracy(keras.metrics.Metric):
    """Share of non-ignored pixels whose arg-max class equals the label (logits in)."""

    def __init__(self, ignore_index: int = 255, name: str = "accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.ignore_index = int(ignore_index)
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = hard_labels(y_true, self.ignore_index)
        predicted = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        valid = ops.not_equal(y_true, self.ignore_index)
        hits = ops.logical_and(valid, ops.equal(predicted, y_true))
        self.correct.assign_add(ops.sum(ops.cast(hits, "float32")))
        self.total.assign_add(ops.sum(ops.cast(valid, "float32")))

    def result(self):
        return self.correct / ops.maximum(self.total, 1.0)

    def reset_state(self):
        self.correct.assign(0.0)
        self.total.assign(0.0)

    def get_config(self) -> dict:
        return {**super().get_config(), "ignore_index": self.ignore_index}


def hard_labels(y_true, ignore_index: int = 255):
    """Integer labels (N, H, W) from labels or from soft targets (N, H, W, C): a distribution's
    most likely class, `ignore_index` where it is all zeros."""
    if len(y_true.shape) == 4:
        counted = ops.sum(y_true, axis=-1) > 0
        return ops.where(counted, ops.cast(ops.argmax(y_true, axis=-1), "int32"), ignore_index)
    return ops.cast(y_true, "int32")


class MeanIoU(keras.metrics.MeanIoU):
    """Keras' streaming mIoU on logits that also takes soft targets (distillation)."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(hard_labels(y_true, self.ignore_class), y_pred, sample_weight)


def mean_iou_metric(num_classes: int, ignore_index: int = 255) -> keras.metrics.Metric:
    """Streaming mIoU on logits, reported as `miou` / `val_miou` during training."""
    return MeanIoU(num_classes=num_classes, name="miou", ignore_class=ignore_index,
                   sparse_y_true=True, sparse_y_pred=False)
