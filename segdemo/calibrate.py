"""Class-bias calibration: one class's log-probability shifted by a constant, chosen on the
validation split (never on the test split or the probe) and kept in the model's card, so every
path that segments (dashboard, CLI, serving, ensembles) applies it.

Why: on Oxford-IIIT Pet the trimap's border band is a thin, uncertain class, and a trained model
spreads it beyond the pet's outline into the background. Lowering the border's log-probability
gives those pixels back to the background: that is what a cut-out (pet-vs-background IoU, where a
predicted border counts as pet) is judged on, and on the validation split it also raised mIoU.
Applied as `probs * exp(bias)` renormalised, which is the softmax of the logits plus `bias`.
"""
from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence

import numpy as np

from segdemo.errors import SegDemoError

DEFAULT_GRID = (0.5, 0.25, 0.0, -0.25, -0.5, -0.75, -1.0, -1.25, -1.5, -2.0)


class CalibrationError(SegDemoError, ValueError):
    """A class bias that cannot be used: an unknown class, a bad value, no validation images."""


def bias_vector(bias: Mapping[str, float] | None, class_names: Sequence[str]) -> np.ndarray | None:
    """The card's {class name: log-probability offset} as a (C,) array; None when it shifts
    nothing."""
    if not bias:
        return None
    if not isinstance(bias, Mapping):
        raise CalibrationError(f"class_bias must map class names to numbers, not {bias!r}.")
    vector = np.zeros(len(class_names), np.float32)
    for name, value in bias.items():
        if name not in class_names:
            raise CalibrationError(f"class_bias names the class {name!r}, but the model's classes "
                                   f"are {', '.join(class_names)}.")
        if not isinstance(value, (int, float)) or not np.isfinite(value):
            raise CalibrationError(f"class_bias for {name!r} must be a finite number, not "
                                   f"{value!r}.")
        vector[list(class_names).index(name)] = value
    return vector if vector.any() else None


def apply_bias(probs: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """Probabilities (..., C) with each class's log-probability shifted by `bias`."""
    if bias is None:
        return probs
    shifted = np.asarray(probs, np.float32) * np.exp(bias)
    return shifted / shifted.sum(axis=-1, keepdims=True)


def calibrate(segmenter, dataset, class_name: str = "border", split: str = "val",
              grid: Sequence[float] = DEFAULT_GRID) -> dict:
    """Score every offset of `grid` for `class_name` on `split` at the photos' original
    resolution (the network runs once per photo; the offsets only re-decide its output) and pick
    the best mIoU (ties: the smaller shift). `segmenter` is a `Segmenter` built without a class
    bias. Returns the record `write_calibration` keeps."""
    from segdemo.metrics import confusion_matrix, foreground_iou, scores

    if segmenter.class_bias is not None:
        raise CalibrationError("Calibrate the model's own output: build the segmenter from a card "
                               "without class_bias.")
    names = [c.name for c in segmenter.classes]
    if class_name not in names:
        raise CalibrationError(f"The model has no class {class_name!r}; its classes are "
                               f"{', '.join(names)}.")
    samples = dataset.splits.get(split) or []
    if not samples:
        raise CalibrationError(f"The dataset at {dataset.root} has no images in its {split!r} "
                               "split to calibrate on.")
    kept = []
    for sample in samples:
        pixels, _ = segmenter.prepare(dataset.read_image(sample))
        probs = segmenter.input_probabilities(pixels[None])[0]
        kept.append((probs.astype(np.float16), dataset.read_mask(sample)))
    index, n = names.index(class_name), len(names)
    rows = []
    for offset in grid:
        bias = np.zeros(n, np.float32)
        bias[index] = offset
        cm = np.zeros((n, n), np.int64)
        for probs, mask in kept:
            labels = segmenter.full_labels(apply_bias(probs, bias), (mask.shape[1], mask.shape[0]))
            cm += confusion_matrix(mask, labels, n, dataset.ignore_index)
        rows.append({"bias": float(offset), "miou": scores(cm, names)["miou"],
                     "foreground_iou": foreground_iou(cm, names)})
    best = max(rows, key=lambda r: (round(r["miou"], 4), -abs(r["bias"])))
    return {"class": class_name, "bias": best["bias"], "split": split, "images": len(samples),
            "chosen_by": "mIoU at the original resolution (ties: the smaller shift)",
            "grid": rows, "date": _dt.date.today().isoformat()}


# Scores the card kept from training: they describe the model before the offset, so they go
# (the dashboard then reads metrics.json, which `evaluate` rewrites with the offset applied).
_STALE = ("test_miou", "test_pixel_accuracy")


def write_calibration(card: dict, record: dict) -> dict:
    """The card with the chosen offset in `class_bias` and the record under `calibration`."""
    bias = {k: v for k, v in (card.get("class_bias") or {}).items() if k != record["class"]}
    if record["bias"]:
        bias[record["class"]] = record["bias"]
    kept = {k: v for k, v in card.items() if k not in _STALE}
    return {**kept, "class_bias": bias or None, "calibration": record}


def format_grid(record: dict) -> str:
    """The calibration's grid as a plain-text table, the chosen offset marked."""
    lines = [f"{record['class']} offset   val mIoU   val pet-vs-bg IoU"]
    for row in record["grid"]:
        mark = "  <- chosen" if row["bias"] == record["bias"] else ""
        fg = "n/a" if row["foreground_iou"] is None else f"{row['foreground_iou']:.4f}"
        lines.append(f"{row['bias']:+13.2f}   {row['miou']:.4f}     {fg}{mark}")
    return "\n".join(lines)
