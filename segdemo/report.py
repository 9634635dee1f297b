"""The README's results table, generated from the shipped model folders (never typed by hand)."""
from __future__ import annotations

from pathlib import Path

from segdemo.artifacts import CARD_FILE, METRICS_FILE, read_optional_json


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _duration(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def results_table(weights_dir: str | Path) -> str:
    """Markdown table of every model folder under `weights_dir` that has a card and metrics."""
    rows = []
    class_names: list[str] = []
    for folder in sorted(p for p in Path(weights_dir).iterdir() if p.is_dir()):
        card = read_optional_json(folder / CARD_FILE)
        metrics = read_optional_json(folder / METRICS_FILE)
        if not card or not metrics:
            continue
        scores = metrics["original_resolution"]
        class_names = class_names or list(scores["iou"])
        size = "x".join(str(v) for v in card["input_size"])
        rows.append(
            [f"`{card['id']}`", size, f"{card['parameters'] / 1e6:.2f} M", f"{card['file_mb']:.1f}",
             _pct(scores["pixel_accuracy"]), _pct(scores["miou"]),
             *(_pct(scores["iou"].get(n)) for n in class_names),
             _duration(card["training_seconds"]), card.get("hardware", "")]
        )
    header = ["model", "input", "parameters", "MB", "pixel acc.", "mIoU",
              *(f"IoU {n}" for n in class_names), "training time", "trained on"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
