"""Plotly figures for the dashboard: training curves, per-class IoU, confusion matrices and the
map of where models disagree. Pure functions of plain data, so they are testable without a server.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

COLOURS = qualitative.Plotly
# (panel title, training key, validation key); None = the panel has only a validation curve.
HISTORY_PANELS = (("Loss", "loss", "val_loss"), ("Pixel accuracy", "accuracy", "val_accuracy"),
                  ("Validation mIoU", None, "val_miou"))
# Larger maps are shrunk (nearest) before plotting: a heatmap cell per pixel would be megabytes.
MAP_SIDE = 256


def history_figure(histories: Mapping[str, Sequence[Mapping]]) -> go.Figure:
    """Loss, accuracy and validation mIoU per epoch, one colour per model (solid = training,
    dashed = validation), overlaid so that models can be compared epoch by epoch."""
    fig = make_subplots(rows=1, cols=len(HISTORY_PANELS),
                        subplot_titles=[p[0] for p in HISTORY_PANELS], horizontal_spacing=0.07)
    longest = 1
    for m, (model, history) in enumerate(histories.items()):
        colour = COLOURS[m % len(COLOURS)]
        epochs = [r.get("epoch", i + 1) for i, r in enumerate(history)]
        longest = max(longest, len(epochs))
        for col, (_, train_key, val_key) in enumerate(HISTORY_PANELS, 1):
            for key, dash in ((train_key, "solid"), (val_key, "dash")):
                if key is None:
                    continue
                values = [_finite(r.get(key)) for r in history]
                if all(v is None for v in values):
                    continue
                fig.add_trace(go.Scatter(  # one legend entry per model; the curve is on hover
                    x=epochs, y=values, mode="lines+markers", name=model, meta=key,
                    legendgroup=model, showlegend=not any(t.legendgroup == model for t in fig.data),
                    line={"color": colour, "dash": dash}, marker={"size": 4},
                    hovertemplate=f"{key}: %{{y:.4f}}<br>epoch %{{x}}",
                ), row=1, col=col)
    fig.update_xaxes(title_text="epoch", tick0=1, dtick=max(1, -(-longest // 10)))
    fig.update_layout(height=380, margin={"t": 40, "b": 10, "l": 10, "r": 10},
                      hovermode="x unified",
                      legend={"orientation": "h", "y": -0.22,
                              "title": {"text": "solid: training, dashed: validation  "}})
    return fig


def _finite(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and np.isfinite(value) else None


def iou_bars(per_model: Mapping[str, Mapping[str, float | None]]) -> go.Figure:
    """Grouped bars of per-class IoU (test split, original resolution), one group per class."""
    fig = go.Figure()
    for m, (model, ious) in enumerate(per_model.items()):
        names = list(ious)
        fig.add_trace(go.Bar(
            x=names, y=[_finite(ious[n]) for n in names], name=model,
            marker_color=COLOURS[m % len(COLOURS)], texttemplate="%{y:.2f}",
            hovertemplate=f"{model}<br>%{{x}}: IoU %{{y:.3f}}<extra></extra>"))
    fig.update_layout(barmode="group", height=340, yaxis={"range": [0, 1], "title": "IoU"},
                      margin={"t": 30, "b": 10, "l": 10, "r": 10}, title="Per-class IoU (test)")
    return fig


def confusion_figure(matrix: Sequence[Sequence[int]], class_names: Sequence[str],
                     title: str = "") -> go.Figure:
    """Row-normalised confusion matrix: each row (true class) sums to 100 %; counts on hover."""
    counts = np.asarray(matrix, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    fig = go.Figure(go.Heatmap(
        z=share, x=list(class_names), y=list(class_names), zmin=0, zmax=1, colorscale="Blues",
        customdata=counts.astype(np.int64), text=np.round(share * 100).astype(int),
        texttemplate="%{text}%",
        hovertemplate="true %{y} → predicted %{x}<br>%{z:.1%} of the row (%{customdata:,} px)"
                      "<extra></extra>"))
    fig.update_layout(title=title or "Confusion matrix", height=360,
                      xaxis={"title": "predicted"}, margin={"t": 40, "b": 10, "l": 10, "r": 10},
                      yaxis={"title": "true", "autorange": "reversed"})
    return fig


def disagreement_figure(counts: np.ndarray, model_count: int) -> go.Figure:
    """Where models disagree: per pixel, how many models differ from the majority vote."""
    height, width = counts.shape
    step = max(1, int(np.ceil(max(height, width) / MAP_SIDE)))
    small = counts[::step, ::step]
    fig = go.Figure(go.Heatmap(
        z=small, x=np.arange(small.shape[1]) * step, y=np.arange(small.shape[0]) * step,
        zmin=0, zmax=max(1, model_count - 1), colorscale=[[0, "#f4f4f4"], [1, "#d62728"]],
        colorbar={"title": "models<br>off majority", "dtick": 1},
        hovertemplate="x %{x}, y %{y}: %{z} model(s) disagree<extra></extra>"))
    fig.update_layout(height=380, margin={"t": 30, "b": 10, "l": 10, "r": 10},
                      title=f"Models disagree on {np.mean(counts > 0):.1%} of the pixels",
                      yaxis={"autorange": "reversed", "scaleanchor": "x", "showgrid": False},
                      xaxis={"showgrid": False, "constrain": "domain"})
    return fig
