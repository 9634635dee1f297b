"""One model's training history as a small inline SVG, drawn beside its masks.

Why not Plotly here: a page with any Plotly chart makes each visitor's browser load and run the
charting library (measured: 4.5 CPU-seconds a session for two result rows, against 1.3 without
Plotly), and with many visitors on one machine that is what made them wait. An SVG is drawn by
the browser itself; each point's <title> is its hover text (epoch and value), so the chart still
answers "which epoch?" without a script. The Training tab keeps the interactive overlay of all
models. A pure function of plain data, testable without a server. The dashboard shows it with
`st.markdown(..., unsafe_allow_html=True)` (st.html drops SVG); it is one line, as Markdown ends
an HTML block at a blank line.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

from segdemo.plots import finite

WIDTH, PANEL_HEIGHT, GAP = 300, 110, 34
LEFT, RIGHT, TOP, BOTTOM = 40, 8, 18, 30
# (panel title, [(history key, colour, dashed)]), in the colours of the Training tab (plots.COLOURS)
PANELS = (("Loss", (("loss", "#636efa", False), ("val_loss", "#ef553b", True))),
          ("Validation mIoU", (("val_miou", "#00cc96", False),)))
KEPT_COLOUR = "#d62728"


def _ticks(low: float, high: float) -> list[float]:
    """Two to five round values within [low, high], for the y axis labels."""
    if high <= low:
        return [low]
    step = 10 ** math.floor(math.log10(high - low))
    step *= next(m for m in (1, 2, 5, 10) if (high - low) / (step * m) <= 4)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def history_svg(history: Sequence[Mapping], kept_epoch: int | None = None) -> str:
    """Loss and val_loss above, val mIoU below, the kept epoch marked on both (a dotted line and
    a star); hovering a point shows its epoch and value. Gaps (missing or NaN values) are skipped."""
    epochs = [r.get("epoch", i + 1) for i, r in enumerate(history)]
    panels = [(title, [(key, colour, dashed, [finite(r.get(key)) for r in history])
                       for key, colour, dashed in curves])
              for title, curves in PANELS]
    panels = [(t, [c for c in curves if any(v is not None for v in c[3])]) for t, curves in panels]
    panels = [(t, curves) for t, curves in panels if curves]
    height = TOP + len(panels) * (PANEL_HEIGHT + GAP) - GAP + BOTTOM
    first, last = (min(epochs), max(epochs)) if epochs else (1, 1)
    span = max(last - first, 1)

    def x_of(epoch: float) -> float:
        return LEFT + (epoch - first) / span * (WIDTH - LEFT - RIGHT)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
             f'width="100%" role="img" aria-label="Training history" '
             f'style="font: 10px sans-serif; max-width: {WIDTH * 1.6:.0f}px">']
    for index, (title, curves) in enumerate(panels):
        top = TOP + index * (PANEL_HEIGHT + GAP)
        values = [v for *_, vs in curves for v in vs if v is not None]
        low, high = min(values), max(values)
        pad = (high - low) * 0.08 or abs(high) * 0.1 or 0.1
        low, high = low - pad, high + pad

        def y_of(value: float, top=top, low=low, high=high) -> float:
            return top + (high - value) / (high - low) * PANEL_HEIGHT

        parts.append(f'<text x="{LEFT}" y="{top - 5}" font-weight="bold">{escape(title)}</text>')
        parts.append(f'<rect x="{LEFT}" y="{top}" width="{WIDTH - LEFT - RIGHT}" '
                     f'height="{PANEL_HEIGHT}" fill="none" stroke="#ccc"/>')
        for tick in _ticks(low, high):
            y = y_of(tick)
            parts.append(f'<line x1="{LEFT - 3}" x2="{LEFT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#999"/>'
                         f'<text x="{LEFT - 5}" y="{y + 3:.1f}" text-anchor="end">{tick:g}</text>')
        if kept_epoch in epochs:
            x = x_of(kept_epoch)
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + PANEL_HEIGHT}" '
                         'stroke="#888" stroke-dasharray="2 2"/>')
        for key, colour, dashed, series in curves:
            points = [(x_of(e), y_of(v), e, v) for e, v in zip(epochs, series) if v is not None]
            dash = ' stroke-dasharray="5 3"' if dashed else ""
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                         f'stroke-width="1.5"{dash}/>')
            parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}">'
                      f'<title>epoch {e}: {key} {v:.4f}</title></circle>' for x, y, e, v in points]
            if key == "val_miou" and kept_epoch in epochs:
                value = series[epochs.index(kept_epoch)]
                if value is not None:
                    x, y = x_of(kept_epoch), y_of(value)
                    parts.append(f'<text x="{x:.1f}" y="{y + 5:.1f}" text-anchor="middle" '
                                 f'font-size="15" fill="{KEPT_COLOUR}">★<title>kept: epoch '
                                 f'{kept_epoch}, val_miou {value:.4f}</title></text>')
    bottom = height - BOTTOM
    for epoch in sorted({first, last, kept_epoch} & set(epochs)):
        parts.append(f'<text x="{x_of(epoch):.1f}" y="{bottom + 12}" '
                     f'text-anchor="middle">{epoch}</text>')
    legend = " · ".join(f'<tspan fill="{colour}">{"- -" if dashed else "—"} {escape(key)}</tspan>'
                        for _, curves in panels for key, colour, dashed, _ in curves)
    parts.append(f'<text x="{LEFT}" y="{bottom + 26}">epoch · {legend}</text>')
    parts.append("</svg>")
    return "".join(parts)
