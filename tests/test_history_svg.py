"""The beside-the-mask training chart: an inline SVG whose points name their epoch on hover."""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from segdemo.history_svg import PANEL_HEIGHT, TOP, history_svg

SVG = "{http://www.w3.org/2000/svg}"


def _history(epochs: int) -> list[dict]:
    return [{"epoch": e, "loss": 1 / e, "val_loss": 1.2 / e, "val_miou": 0.4 + e / 100}
            for e in range(1, epochs + 1)]


def test_points_name_epoch_and_value_and_the_kept_epoch_is_marked():
    svg = history_svg(_history(5), kept_epoch=4)
    root = ET.fromstring(svg)  # well-formed XML, on one line (Markdown ends HTML at blank lines)
    assert "\n" not in svg and root.get("aria-label") == "Training history"
    titles = [t.text for t in root.iter(f"{SVG}title")]
    assert "epoch 2: loss 0.5000" in titles and "epoch 5: val_loss 0.2400" in titles
    assert "epoch 3: val_miou 0.4300" in titles and "kept: epoch 4, val_miou 0.4400" in titles
    assert len(root.findall(f"{SVG}circle")) == 15  # 3 curves x 5 epochs
    panels = [t.text for t in root.findall(f"{SVG}text") if t.get("font-weight") == "bold"]
    assert panels == ["Loss", "Validation mIoU"]
    kept_lines = [l for l in root.findall(f"{SVG}line") if l.get("stroke-dasharray")]
    assert len(kept_lines) == 2 and len({l.get("x1") for l in kept_lines}) == 1  # both panels


def test_curves_are_drawn_to_scale():
    """Lower loss is drawn lower; x is linear in the epoch."""
    root = ET.fromstring(history_svg(_history(4)))
    loss = next(p for p in root.findall(f"{SVG}polyline") if not p.get("stroke-dasharray"))
    points = [tuple(map(float, xy.split(","))) for xy in loss.get("points").split()]
    xs, ys = zip(*points)
    assert all(b > a for a, b in zip(ys, ys[1:]))  # SVG y grows downwards; loss falls
    assert math.isclose(xs[1] - xs[0], xs[3] - xs[2])
    assert all(TOP <= y <= TOP + PANEL_HEIGHT for y in ys)


def test_gaps_missing_curves_and_unknown_kept_epoch():
    history = [{"epoch": 1, "loss": float("nan")}, {"epoch": 2, "loss": 0.5, "val_loss": None},
               {"epoch": 3, "loss": 0.4}]
    svg = history_svg(history, kept_epoch=9)
    root = ET.fromstring(svg)
    titles = [t.text for t in root.iter(f"{SVG}title")]
    assert titles == ["epoch 2: loss 0.5000", "epoch 3: loss 0.4000"]
    assert "Validation mIoU" not in svg and "kept" not in svg
    assert "val_loss" not in svg
    ET.fromstring(history_svg([]))  # nothing to draw is still a valid (empty) chart



def test_every_panel_labels_at_least_two_values():
    root = ET.fromstring(history_svg([{"epoch": 1, "loss": 1.25}, {"epoch": 2, "loss": 0.6}]))
    labels = [float(t.text) for t in root.findall(f"{SVG}text") if t.get("text-anchor") == "end"]
    assert len(labels) >= 2 and all(0.5 < v < 1.35 for v in labels)
