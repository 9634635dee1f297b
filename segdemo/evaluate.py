"""Scoring a trained model on a held-out split, at the original resolution (what a user sees)
and at the model's input size (what the network was trained on)."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
from PIL import Image

from segdemo.data import Dataset, dataset_for_card  # noqa: F401 (the CLI and robustness import it from here)
from segdemo.images import resize_nearest
from segdemo.inference import Segmenter
from segdemo.metrics import (BOUNDARY_TOLERANCE, boundary_scores, boundary_tolerance_px,
                             confusion_matrix, foreground_iou, scores)


Transform = Callable[[Image.Image, np.ndarray], tuple[Image.Image, np.ndarray]]


def evaluate(segmenter: Segmenter, dataset: Dataset, split: str = "test",
             progress: Callable[[int, int], None] | None = None,
             transform: Transform | None = None, limit: int | None = None) -> dict:
    """Metrics and confusion matrices over `split`, plus per-image scores (worst first).

    `transform` changes each (photo, mask) pair before prediction, e.g. a robustness
    perturbation; `limit` scores only the split's first images, for quick runs.
    """
    samples = (dataset.splits.get(split) or [])[:limit]
    if not samples:
        raise ValueError(f"The dataset at {dataset.root} has no images in its {split!r} split.")
    if dataset.num_classes != len(segmenter.classes):
        raise ValueError(f"The model predicts {len(segmenter.classes)} classes but the dataset has "
                         f"{dataset.num_classes}.")
    n = dataset.num_classes
    names = [c.name for c in dataset.classes]
    height, width = segmenter.input_size
    cm_original = np.zeros((n, n), dtype=np.int64)
    cm_input = np.zeros((n, n), dtype=np.int64)
    per_image = []
    boundary = {"boundary_precision": 0.0, "boundary_recall": 0.0, "boundary_f": 0.0}
    tolerances = []
    start = time.perf_counter()
    for i, sample in enumerate(samples):
        image = dataset.read_image(sample)
        mask = dataset.read_mask(sample)
        if transform:
            image, mask = transform(image, mask)
        prediction = segmenter.predict(image)
        cm = confusion_matrix(mask, prediction.mask, n, dataset.ignore_index)
        cm_original += cm
        small_mask = resize_nearest(mask, (height, width))
        small_pred = prediction.input_probabilities.argmax(axis=-1)
        cm_input += confusion_matrix(small_mask, small_pred, n, dataset.ignore_index)
        one = scores(cm, names)
        tolerance = boundary_tolerance_px(mask.shape)
        tolerances.append(tolerance)
        edges = boundary_scores(mask, prediction.mask, tolerance, dataset.ignore_index)
        for key in boundary:
            boundary[key] += edges[key] / len(samples)
        per_image.append({"name": sample.name, "miou": one["miou"],
                          "pixel_accuracy": one["pixel_accuracy"],
                          "foreground_iou": foreground_iou(cm, names),
                          "boundary_f": edges["boundary_f"]})
        if progress:
            progress(i + 1, len(samples))
    per_image.sort(key=lambda r: (r["miou"] is None, r["miou"] or 0.0))
    return {
        "model": segmenter.arch_id,
        "tta": getattr(segmenter, "tta", "none"),
        "class_bias": (getattr(segmenter, "card", None) or {}).get("class_bias"),
        "dataset": {"name": dataset.name, "format": dataset.format, "split": split},
        "images": len(samples),
        "original_resolution": {**scores(cm_original, names),
                                "foreground_iou": foreground_iou(cm_original, names), **boundary},
        "boundary_tolerance": (f"{BOUNDARY_TOLERANCE:.1%} of the image diagonal (DAVIS), at "
                               "least 1 px"),
        "boundary_tolerance_px": float(np.median(tolerances)),
        "input_resolution": {"size": [height, width], **scores(cm_input, names)},
        "per_image": per_image,
        "seconds": round(time.perf_counter() - start, 2),
    }


def format_table(metrics: dict) -> str:
    """A plain-text summary for the terminal."""
    lines = [f"{metrics['model']} on {metrics['dataset']['name']} ({metrics['dataset']['split']}, "
             f"{metrics['images']} images)"]
    header = f"{'':22}{'pixel acc':>10}{'mIoU':>8}{'mean acc':>10}{'fg IoU':>8}{'bound. F':>10}"
    lines.append(header)
    for key, label in (("original_resolution", "original resolution"),
                       ("input_resolution", "input size")):
        s = metrics[key]
        lines.append(f"{label:22}{_fmt(s['pixel_accuracy']):>10}{_fmt(s['miou']):>8}"
                     f"{_fmt(s['mean_class_accuracy']):>10}{_fmt(s.get('foreground_iou')):>8}"
                     f"{_fmt(s.get('boundary_f')):>10}")
    if "boundary_tolerance" in metrics:
        lines.append(f"foreground IoU: pet vs background, true border ignored, predicted border "
                     f"as pet; boundary F tolerance: {metrics['boundary_tolerance']}")
    lines.append("per-class IoU (original resolution):")
    for name, value in metrics["original_resolution"]["iou"].items():
        lines.append(f"  {name:20}{_fmt(value):>8}")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
