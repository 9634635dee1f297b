"""SegDemo dashboard: `streamlit run streamlit_app.py [-- --data PATH --format oxford]`.

Layout and widgets only; what is shown comes from `segdemo.dashboard` and `segdemo.plots`.
Models load once per process and predictions are cached per (image content, model), so moving a
slider, switching tabs or toggling the legend re-runs no inference.
"""
from __future__ import annotations

import os
import sys
from functools import partial
from pathlib import Path

import streamlit as st

from segdemo import dashboard as db
from segdemo import plots
from segdemo.artifacts import ModelLoadError
from segdemo.data import DataError, load_dataset
from segdemo.images import ImageError
from segdemo.inference import class_shares, colorize, mask_png, overlay, png_bytes

st.set_page_config(page_title="SegDemo", page_icon="🐾", layout="wide")
CONFIG = db.parse_config(sys.argv[1:], os.environ)
TABS = ("Segment", "Compare", "Training", "Evaluation")
Input = tuple[str, "db.InputImage | str"]  # (name, decoded image or the error shown for it)
BROWSE_PAGE = 4  # evaluation images shown at a time


# ----------------------------------------------------------------------------- cached resources


@st.cache_resource(show_spinner=False)
def device() -> str:
    return db.device_label()


@st.cache_resource(show_spinner=False, max_entries=8)
def model(cache_key: str, _folder: Path):
    """(Segmenter, None) or (None, reason): a failed load is remembered too, not retried per rerun."""
    try:
        return db.load_segmenter(_folder), None
    except ModelLoadError as exc:
        return None, str(exc)


@st.cache_resource(show_spinner=False, max_entries=64)
def prediction(model_key: str, digest: str, _segmenter, _image: db.InputImage):
    return db.run_inference(_segmenter, _image)


@st.cache_resource(show_spinner=False, max_entries=64)
def decode(data: bytes, name: str) -> db.InputImage:
    return db.decode_input(data, name)


@st.cache_resource(show_spinner=False)
def example(function: str, name: str) -> db.InputImage:
    return db.image_input(db.skimage_example(function), name)


@st.cache_resource(show_spinner=False)
def dataset(path: str, format: str):
    try:
        return load_dataset(path, format), None
    except DataError as exc:
        return None, str(exc)


def segmenter_for(entry: db.ModelEntry):
    with st.spinner(f"Loading {entry.title}…"):
        loaded, problem = model(entry.cache_key, entry.folder)
    if problem:
        st.error(f"{entry.title} is unavailable: {problem}")
    return loaded


def predict(entry: db.ModelEntry, image: db.InputImage):
    segmenter = segmenter_for(entry)
    if segmenter is None:
        return None
    with st.spinner(f"Segmenting {image.name} with {entry.title}…"):
        return prediction(entry.cache_key, image.digest, segmenter, image)


# ----------------------------------------------------------------------------- sidebar


def sidebar(entries: list[db.ModelEntry]) -> tuple[list[db.ModelEntry], list[Input]]:
    """The chosen models and the inputs, each as (name, InputImage or error message)."""
    sb = st.sidebar
    sb.title("SegDemo")
    sb.caption(f"Running on **{device()}**")
    sb.subheader("Models")
    first_ready = next((e.id for e in entries if e.ready), None)
    chosen = []
    for e in entries:
        label = e.title if e.problem != "not trained" else f"{e.title} · not trained"
        if sb.checkbox(label, value=e.id == first_ready, key=f"model_{e.id}",
                       disabled=not e.ready, help=e.description):
            chosen.append(e)
        if e.problem != "not trained":
            sb.caption(e.summary if e.ready else f"{e.problem[0].upper()}{e.problem[1:]}")
    sb.subheader("Image")
    source = sb.radio("Source", ["Upload", "Camera", "Examples"], horizontal=True, key="source")
    inputs: list[Input] = []
    if source == "Upload":
        files = sb.file_uploader("Photos", type=list(db.UPLOAD_TYPES), accept_multiple_files=True,
                                 key="uploads") or []
        inputs = [_decoded(f.getvalue(), f.name) for f in files]
    elif source == "Camera":
        shot = sb.camera_input("Take a photo", key="camera")
        if shot is not None:
            inputs = [_decoded(shot.getvalue(), "camera.jpg")]
    else:
        choices = {f"scikit-image: {k}": v for k, v in db.SKIMAGE_EXAMPLES.items()}
        samples = _dataset_samples()
        choices.update({f"dataset: {s.name}": s for s in samples[:30]})
        picked = sb.selectbox("Example", list(choices), key="example")
        if picked:
            inputs = [_example(picked, choices[picked])]
    sb.subheader("Display")
    sb.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key="opacity")
    sb.toggle("Show legend", value=True, key="legend")
    sb.toggle("Confidence map", value=False, key="confidence",
              help="Highest class probability per pixel: dark = unsure, yellow = sure.")
    sb.caption(f"Models from `{CONFIG.weights_dir}`"
               + (f" · dataset `{CONFIG.data_dir}`" if CONFIG.data_dir else ""))
    return chosen, inputs


def _decoded(data: bytes, name: str) -> Input:
    try:
        return name, decode(data, name)
    except ImageError as exc:
        return name, str(exc)


def _example(label: str, what) -> Input:
    if isinstance(what, str):
        try:
            return label, example(what, label.split(": ", 1)[1])
        except Exception as exc:  # a trimmed scikit-image install: say so, keep the app running
            return label, f"{label} is not available in this scikit-image install ({exc})."
    try:
        return _decoded(what.image.read_bytes(), what.image.name)
    except OSError as exc:
        return what.image.name, f"{what.image.name} could not be read ({exc})."


def _dataset_samples() -> list:
    if CONFIG.data_dir is None:
        return []
    data, problem = dataset(str(CONFIG.data_dir), CONFIG.data_format)
    if problem:
        st.sidebar.error(problem)
        return []
    return data.splits.get("test") or data.splits.get("val") or []


# ----------------------------------------------------------------------------- tabs


def segment_tab(chosen: list[db.ModelEntry], inputs: list[Input]) -> None:
    opacity = st.session_state.get("opacity", 0.5)
    with_confidence = st.session_state.get("confidence", False)
    for index, (name, item) in enumerate(inputs):
        st.subheader(name)
        if isinstance(item, str):
            st.error(item)
            continue
        width, height = item.image.size
        st.caption(f"{width}×{height} pixels")
        shown = db.shrink(item.image)
        for entry in chosen:
            result = predict(entry, item)
            if result is None:
                continue
            classes = entry.classes
            mask = db.shrink_array(result.mask)
            st.markdown(f"**{entry.title}** · {db.latency_text(result.seconds, entry.benchmark_p50_ms)}")
            cols = st.columns(4 if with_confidence else 3)
            cols[0].image(shown, caption="Input", width="stretch")
            cols[1].image(colorize(mask, classes), caption="Mask", width="stretch")
            if st.session_state.get("legend", True):
                cols[1].markdown(db.legend_html(classes), unsafe_allow_html=True)
            cols[2].image(overlay(shown, mask, classes, opacity),
                          caption=f"Overlay ({opacity:.0%} mask)", width="stretch")
            shares = class_shares(result.mask, len(classes))
            cols[2].caption("Covers: " + " · ".join(
                f"{c.name} {s:.1%}" for c, s in zip(classes, shares)))
            if with_confidence:
                cols[3].image(db.confidence_image(db.shrink_array(result.confidence)),
                              caption=f"Confidence (mean {result.confidence.mean():.0%})",
                              width="stretch")
            key = f"{index}_{entry.id}"
            cols[1].download_button(
                "Mask PNG (class indices)", partial(mask_png, result.mask, classes),
                file_name=f"{item.stem}_{entry.id}_mask.png", mime="image/png",
                key=f"mask_{key}", on_click="ignore")
            cols[2].download_button(
                "Overlay PNG", partial(_overlay_png, item, result.mask, classes, opacity),
                file_name=f"{item.stem}_{entry.id}_overlay.png", mime="image/png",
                key=f"overlay_{key}", on_click="ignore")


def _overlay_png(item: db.InputImage, mask, classes, opacity: float) -> bytes:
    """Full-resolution overlay, made only when the download is clicked."""
    return png_bytes(overlay(item.image, mask, classes, opacity))


def compare_tab(chosen: list[db.ModelEntry], inputs: list[Input]) -> None:
    valid = {name: item for name, item in inputs if not isinstance(item, str)}
    if not valid:
        st.info("Upload a photo or pick an example in the sidebar to compare the models on it.")
        return
    name = st.selectbox("Image", list(valid), key="compare_image")
    item = valid[name]
    shown = db.shrink(item.image)
    opacity = st.session_state.get("opacity", 0.5)
    results = {e.id: r for e in chosen if (r := predict(e, item)) is not None}
    ready = [e for e in chosen if e.id in results]
    for start in range(0, len(ready), 3):
        cols = st.columns(3)
        for col, entry in zip(cols, ready[start:start + 3]):
            result = results[entry.id]
            col.image(overlay(shown, db.shrink_array(result.mask), entry.classes, opacity),
                      caption=f"{entry.title} · {result.seconds * 1000:.0f} ms", width="stretch")
    if len(ready) >= 2:
        counts = db.disagreement([db.shrink_array(results[e.id].mask) for e in ready])
        st.plotly_chart(plots.disagreement_figure(counts, len(ready)), key="disagreement")
    st.dataframe(db.comparison_rows(chosen, {k: r.seconds for k, r in results.items()}),
                 hide_index=True)


def training_tab(chosen: list[db.ModelEntry]) -> None:
    histories = {e.title: e.history for e in chosen if e.history}
    if histories:
        st.plotly_chart(plots.history_figure(histories), key="history")
    for e in chosen:
        if not e.history:
            st.caption(f"{e.title}: no history.json.")
    st.dataframe(db.training_rows(chosen), hide_index=True)


def evaluation_tab(chosen: list[db.ModelEntry]) -> None:
    scored = [e for e in chosen if e.per_class_iou]
    if scored:
        st.plotly_chart(plots.iou_bars({e.title: e.per_class_iou for e in scored}), key="iou_bars")
        cols = st.columns(min(len(scored), 3))
        for i, e in enumerate(scored):
            result = e.metrics["original_resolution"]
            if result.get("confusion_matrix"):
                cols[i % len(cols)].plotly_chart(
                    plots.confusion_figure(result["confusion_matrix"], list(result["iou"]),
                                           e.title), key=f"confusion_{e.id}")
    else:
        st.info("None of the chosen models has a metrics.json "
                "(`python -m segdemo evaluate --model FOLDER --data PATH` writes one).")
    if CONFIG.data_dir is None:
        st.caption("Start the app with `-- --data PATH` (or SEGDEMO_DATA) to browse a dataset's "
                   "held-out images, worst first.")
        return
    browse_dataset(chosen)


def browse_dataset(chosen: list[db.ModelEntry]) -> None:
    data, problem = dataset(str(CONFIG.data_dir), CONFIG.data_format)
    if problem:
        st.error(problem)
        return
    st.subheader(f"Held-out images of {data.name}, worst first")
    titles = {e.title: e for e in chosen}
    entry = titles[st.selectbox("Model", list(titles), key="eval_model")]
    if len(entry.classes) != data.num_classes:
        st.warning(f"{entry.title} predicts {len(entry.classes)} classes; this dataset has "
                   f"{data.num_classes}.")
        return
    samples = {s.name: s for s in (data.splits.get("test") or data.splits.get("val") or [])}
    ranked = db.ranked_test_images(entry, list(samples))
    if ranked is None:
        st.caption(f"metrics.json does not cover this dataset: scoring the first "
                   f"{db.LIVE_EVAL_LIMIT} held-out images live.")
        ranked = live_ranking(entry.cache_key, str(CONFIG.data_dir), CONFIG.data_format, entry)
    if not ranked:
        st.info("No held-out images to show.")
        return
    start = st.number_input("First rank shown", 1, len(ranked), 1, BROWSE_PAGE, key="eval_start")
    for score in ranked[start - 1:start - 1 + BROWSE_PAGE]:
        sample = samples[score.name]
        result = _sample_prediction(entry, sample)
        if result is None:
            continue
        try:
            photo, truth = data.read_image(sample), data.read_mask(sample)
        except DataError as exc:
            st.error(str(exc))
            continue
        label = score.name if score.miou is None else f"{score.name} · mIoU {score.miou:.3f}"
        cols = st.columns(3)
        cols[0].image(db.shrink(photo, 512), caption=label, width="stretch")
        cols[1].image(db.shrink(db.colour_mask(truth, data.classes, data.ignore_index), 512),
                      caption="Ground truth", width="stretch")
        cols[2].image(db.shrink(db.colour_mask(result.mask, entry.classes), 512),
                      caption="Prediction", width="stretch")


@st.cache_resource(show_spinner="Scoring held-out images…", max_entries=8)
def live_ranking(model_key: str, path: str, format: str, _entry: db.ModelEntry) -> list:
    """Per-image scores of the first held-out images, worst first (once per model and dataset)."""
    data, _ = dataset(path, format)
    names = [c.name for c in data.classes]
    scores = []
    for sample in (data.splits.get("test") or data.splits.get("val") or [])[:db.LIVE_EVAL_LIMIT]:
        result = _sample_prediction(_entry, sample)
        try:
            truth = data.read_mask(sample)
        except DataError:
            continue  # reported when the image is shown
        if result is not None:
            scores.append(db.score_image(sample.name, result.mask, truth, names, data.ignore_index))
    return db.worst_first(scores)


def _sample_prediction(entry: db.ModelEntry, sample):
    try:
        _, item = _decoded(sample.image.read_bytes(), sample.image.name)
    except OSError as exc:
        item = f"{sample.image.name} could not be read ({exc})."
    if isinstance(item, str):
        st.error(item)
        return None
    return predict(entry, item)


# ----------------------------------------------------------------------------- page


def main() -> None:
    entries = db.discover_models(CONFIG.weights_dir)
    chosen, inputs = sidebar(entries)
    st.title("Semantic segmentation, side by side")
    if not any(e.ready for e in entries):
        st.warning(f"No trained model in `{CONFIG.weights_dir}` yet. Train one, e.g. "
                   "`python -m segdemo train --arch unet_mobilenetv2 --data PATH "
                   "--out weights/unet_mobilenetv2`, or set SEGDEMO_WEIGHTS.")
        return
    if not chosen:
        st.info("Choose one or more models in the sidebar.")
        return
    tabs = st.tabs(list(TABS), key="tab", on_change="rerun")
    segment, compare, training, evaluation = tabs
    if segment.open:
        with segment:
            if inputs:
                segment_tab(chosen, inputs)
            else:
                st.info("Upload photos, take one with the camera, or pick an example in the "
                        "sidebar.")
    if compare.open:
        with compare:
            compare_tab(chosen, inputs)
    if training.open:
        with training:
            training_tab(chosen)
    if evaluation.open:
        with evaluation:
            evaluation_tab(chosen)


main()
