"""Plotly figures for the dashboard: training curves (all models overlaid; one model's beside its
masks is `history_svg`, without Plotly), the mask inspector (class probabilities under the
pointer, a photo/mask slider), per-class IoU, confusion matrices and the map of where models
disagree. Pure functions of plain data, so they are testable without a server.
"""
from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.colors import qualitative
from plotly.subplots import make_subplots

COLOURS = qualitative.Plotly
# (panel title, training key, validation key); None = the panel has only a validation curve.
HISTORY_PANELS = (("Loss", "loss", "val_loss"), ("Pixel accuracy", "accuracy", "val_accuracy"),
                  ("Validation mIoU", None, "val_miou"))
# Larger maps are shrunk (nearest) before plotting: a heatmap cell per pixel would be megabytes.
MAP_SIDE = 256
# The inspector's slider between photo (0) and mask (100): percent of mask shown.
SLIDER_STEPS = (0, 25, 50, 75, 100)
# Plot height per unit of the photo's aspect (height / width) at a typical column width, and
# the room the slider takes under it.
INSPECT_WIDTH_PX, SLIDER_PX = 260, 64
# For every small figure beside a photo: no toolbar, no zoom (a drag on a phone scrolls the page).
STILL_CONFIG = {"displayModeBar": False, "scrollZoom": False, "doubleClick": False}


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
                values = [finite(r.get(key)) for r in history]
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


def _data_uri(image: Image.Image, format: str) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **({"quality": 85} if format == "JPEG" else {}))
    return f"data:image/{format.lower()};base64,{base64.b64encode(buffer.getvalue()).decode()}"


def inspect_figure(photo: Image.Image, mask: Image.Image, grid: np.ndarray,
                   size: tuple[int, int], class_names: Sequence[str]) -> go.Figure:
    """The coloured mask over the photo, in the photo's pixel coordinates (size=(width, height)):
    hovering (tapping, on a phone) shows every class's probability there (`grid`: whole
    percentages, (h, w, C), from `dashboard.probability_grid`), and a slider fades from the photo
    (0 %) to the mask (100 %). Both happen in the browser: the probabilities travel with the
    figure and the slider restyles the mask layer, so neither asks the server anything."""
    width, height = size
    fig = go.Figure()
    for name, image, format in (("photo", photo, "JPEG"), ("mask", mask, "PNG")):
        dx, dy = width / image.width, height / image.height
        fig.add_trace(go.Image(source=_data_uri(image.convert("RGB"), format), name=name,
                               x0=dx / 2, dx=dx, y0=dy / 2, dy=dy, hoverinfo="skip"))
    rows, cols = grid.shape[:2]
    lines = "<br>".join(f"{_escape(n)}: %{{customdata[{i}]}}%" for i, n in enumerate(class_names))
    fig.add_trace(go.Heatmap(  # invisible: only there to be hovered
        z=grid.argmax(axis=-1).astype(np.uint8), customdata=grid, name="probabilities",
        x=np.floor((np.arange(cols) + 0.5) * width / cols).astype(np.int32),
        y=np.floor((np.arange(rows) + 0.5) * height / rows).astype(np.int32),
        opacity=0, showscale=False, colorscale=[[0, "#000"], [1, "#000"]],
        hovertemplate=f"x %{{x}}, y %{{y}}<br>{lines}<extra></extra>"))
    steps = [{"label": {0: "photo", 100: "mask"}.get(v, f"{v}%"), "value": str(v),
              "method": "restyle", "args": [{"opacity": v / 100}, [1]]} for v in SLIDER_STEPS]
    plot_height = int(np.clip(INSPECT_WIDTH_PX * height / width, 160, 440))
    fig.update_layout(
        height=plot_height + SLIDER_PX, margin={"t": 0, "b": SLIDER_PX, "l": 0, "r": 0},
        dragmode=False, hovermode="closest",
        xaxis={"visible": False, "range": [0, width], "fixedrange": True, "constrain": "domain"},
        yaxis={"visible": False, "range": [height, 0], "fixedrange": True, "scaleanchor": "x",
               "constrain": "domain"},
        sliders=[{"active": len(steps) - 1, "steps": steps, "x": 0.05, "len": 0.9, "y": 0,
                  "yanchor": "top", "pad": {"t": 8, "b": 0}, "currentvalue": {"visible": False},
                  "ticklen": 3, "font": {"size": 11}}])
    return fig


def figure_bytes(figure: go.Figure) -> int:
    """About what a figure holds: its embedded images and data arrays (for byte-bounded caches)."""
    total = 0
    for trace in figure.data:
        for name in ("source", "customdata", "z"):
            value = getattr(trace, name, None)
            total += len(value) if isinstance(value, str) else getattr(value, "nbytes", 0)
    return total


def _escape(text: str) -> str:
    """Plotly renders hover text as a small HTML subset."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def finite(value) -> float | None:
    """The value as a float, or None for a missing, non-numeric or non-finite one (a gap)."""
    return float(value) if isinstance(value, (int, float)) and np.isfinite(value) else None


def iou_bars(per_model: Mapping[str, Mapping[str, float | None]]) -> go.Figure:
    """Grouped bars of per-class IoU (test split, original resolution), one group per class."""
    fig = go.Figure()
    for m, (model, ious) in enumerate(per_model.items()):
        names = list(ious)
        fig.add_trace(go.Bar(
            x=names, y=[finite(ious[n]) for n in names], name=model,
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
