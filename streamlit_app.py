"""SegDemo dashboard: `streamlit run streamlit_app.py [-- --data PATH --format oxford]`.

Layout and widgets only; what is shown comes from `segdemo.dashboard` and `segdemo.plots`.
Inference goes through `segdemo.batching`: one queue per model in the process, shared by every
session, which batches the photos waiting into one network call; results are kept per (model,
photo content) in byte-bounded caches, so moving a slider, switching tabs or toggling the legend
re-runs no inference. TensorFlow is imported only by the model loader, in the background (the
default model starts loading at the first page view), so the first page does not wait for it.
"""
from __future__ import annotations

import hashlib
import logging
import os
import sys
import threading
import time
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import streamlit as st
from PIL import Image

import app_video
from segdemo import batching
from segdemo import dashboard as db
from segdemo import plots
from segdemo.artifacts import ModelLoadError
from segdemo.images import ImageError
from segdemo.inference import colorize, mask_png, overlay, png_bytes
from streamlit.runtime.uploaded_file_manager import DeletedFile

st.set_page_config(page_title="SegDemo", page_icon="🐾", layout="wide")
CONFIG = db.parse_config(sys.argv[1:], os.environ)
TABS = ("Segment", "Compare", "Training", "Evaluation", "Video")
Input = tuple[str, "db.InputImage | str"]  # (name, decoded image or the error shown for it)
BROWSE_PAGE = 4  # evaluation images shown at a time
# Serving (process-wide): networks run one at a time on a CPU (each uses every core); a queue
# takes up to MAX_BATCH waiting photos, waiting MAX_WAIT_S for more, into one call.
COMPUTE_SLOTS, MAX_BATCH, MAX_WAIT_S = 1, 8, 0.005
RESULT_BYTES = 192 * 2**20  # finished results: display-sized masks + input-size probabilities
PHOTO_BYTES = 320 * 2**20   # decoded photos (full resolution, for inference and downloads) + shrunk
WAIT_POLL_S = 0.25          # how often a waiting page updates its queue line
WARM_UP_DELAY_S = 3.0       # after the first page view, before the default model starts loading
LOG = logging.getLogger("segdemo.app")


# ----------------------------------------------------------------------------- cached resources


@st.cache_resource(show_spinner=False)
def server() -> SimpleNamespace:
    """The process's serving state, shared by every session: a queue per model (`pool`), finished
    results (`results`) and decoded photos (`photos`), both bounded in bytes, what TensorFlow runs
    on once the first model has loaded (`info`), and whether `warm_up` has run."""
    info: dict = {}
    return SimpleNamespace(
        pool=batching.PredictorPool(partial(_load_predictor, batching.ComputeSlots(COMPUTE_SLOTS),
                                            info)),
        results=batching.ResultStore(RESULT_BYTES), photos=batching.ByteLRU(PHOTO_BYTES), info=info,
        warm_up_started=False)


def _load_predictor(slots: batching.ComputeSlots, info: dict,
                    folder: Path) -> batching.BatchingPredictor:
    """Runs in a loader thread. The first load sizes TensorFlow's thread pools (before TensorFlow
    runs anything) and finds the device; then the model loads and traces once."""
    if "threads" not in info:
        info["threads"] = batching.configure_threads(slots.slots)
        info["device"] = db.device_label()
        LOG.info("TensorFlow threads: %s; device: %s", info["threads"], info["device"])
    segmenter = db.load_segmenter(folder)
    finish = partial(batching.shown_prediction, num_classes=len(segmenter.classes),
                     side=db.DISPLAY_SIDE)
    return batching.BatchingPredictor(segmenter, max_batch=MAX_BATCH, max_wait_s=MAX_WAIT_S,
                                      slots=slots, finish=finish, name=folder.name)


def device() -> str:
    """Known once TensorFlow has started (in the background): the first page does not wait."""
    return server().info.get("device", "… (TensorFlow is starting)")


def decode(data: bytes, name: str) -> db.InputImage:
    """Decoded once per (content, name) while it stays in the byte-bounded photo cache."""
    key = (hashlib.sha256(data).hexdigest(), name)
    photos = server().photos
    if (hit := photos.get(key)) is None:
        item = db.decode_input(data, name)
        photos.put(key, hit := (item, db.shrink(item.image)))
    return hit[0]


def display_photo(item: db.InputImage) -> Image.Image:
    """The photo shrunk for display, made once (with the decode) rather than on every rerun."""
    hit = server().photos.get((item.digest, item.name))
    return hit[1] if hit is not None else db.shrink(item.image)


@st.cache_resource(show_spinner=False)
def example(function: str, name: str) -> db.InputImage:
    return db.image_input(db.skimage_example(function), name)


@st.cache_resource(show_spinner=False)
def dataset(path: str, format: str):
    from segdemo.data import DataError, load_dataset  # TensorFlow: only once a dataset is used

    try:
        return load_dataset(path, format), None
    except DataError as exc:
        return None, str(exc)


def segmenter_for(entry: db.ModelEntry):
    """The loaded segmenter (for downloads at full size), or None while loading or after a failure."""
    predictor = server().pool.ready(entry.cache_key)
    return None if predictor is None else predictor.segmenter


def request(entry: db.ModelEntry, image: db.InputImage) -> Future:
    """The (model, photo) result as a future: finished, already running (another rerun or session
    asked first) or queued now, behind the model's loading if it has not loaded yet."""
    def start() -> Future:
        loading = server().pool.get(entry.cache_key, entry.folder)
        return batching.chain(loading, lambda predictor: db.submit_inference(predictor, image))
    return server().results.request((entry.cache_key, image.digest), start)


def prefetch(chosen: list[db.ModelEntry], inputs: list[Input]) -> None:
    """Queue every (model, photo) of the page before waiting for any, so that the models' queues
    work side by side and a session's photos share batches."""
    for _, item in inputs:
        if not isinstance(item, str):
            for entry in chosen:
                request(entry, item)


def predict(entry: db.ModelEntry, image: db.InputImage) -> batching.Timed | None:
    """`Timed(ShownPrediction)` for `image`, waiting with the queue position on the page; None
    (with the error shown) when the model cannot be loaded or the photo cannot be segmented."""
    future = request(entry, image)
    if not future.done():
        _wait(future, f"{entry.title} · {image.name}")
    try:
        return future.result()
    except ModelLoadError as exc:
        st.error(f"{entry.title} is unavailable: {db.plain(exc)}")
    except Exception as exc:  # noqa: BLE001 - one photo's failure must not take the page down
        LOG.exception("segmenting %s with %s failed", image.name, entry.id)
        st.error(db.plain(f"{image.name} could not be segmented with {entry.title}: {exc}"))
    return None


def _wait(future: Future, what: str) -> None:
    """Wait with the page alive: a line says where the photo is (loading the model, photos ahead,
    being segmented) and for how many seconds it has waited. The line is re-sent only when its
    text changes (each update costs every waiting browser a re-render); each update also lets
    Streamlit stop the run when a widget changes, while the request carries on into the cache."""
    line = st.empty()
    start, shown = time.monotonic(), ""
    while True:
        try:
            future.result(timeout=WAIT_POLL_S)
            break
        except TimeoutError:
            pass
        except Exception:  # noqa: BLE001 - the caller reports it
            break
        ahead = future.ahead()
        state = ("loading the model" if ahead is None else "segmenting" if ahead == 0
                 else f"{ahead} photo{'s' if ahead > 1 else ''} ahead in the queue")
        text = f"⏳ {what}: {state} · {time.monotonic() - start:.0f} s"
        if text != shown:
            line.caption(shown := text)
    line.empty()


def warm_up() -> None:
    """Start loading the default model (the first usable one, checked in the sidebar) in the
    background WARM_UP_DELAY_S after the first page view, so that the first photo finds it ready.
    Not at once: TensorFlow's import holds the interpreter for seconds, and the server could not
    send the page meanwhile (the first page took 5.5 s instead of 2.9 s). A photo uploaded sooner
    starts the load itself."""
    state = server()
    if state.warm_up_started:
        return
    state.warm_up_started = True
    default = next((e for e in db.discover_models(CONFIG.weights_dir) if e.ready), None)
    if default is not None:
        timer = threading.Timer(WARM_UP_DELAY_S, state.pool.get, (default.cache_key, default.folder))
        timer.daemon = True
        timer.start()


def forget_removed(inputs: list[Input]) -> None:
    """Release what this session's photos held once they are gone from its inputs (an upload
    removed, another example picked): their decoded pixels and their results."""
    current = {item.digest for _, item in inputs if not isinstance(item, str)}
    gone = st.session_state.get("_photo_digests", set()) - current
    if gone:
        server().photos.discard(lambda key: key[0] in gone)
        server().results.discard(lambda key: key[1] in gone)
    st.session_state["_photo_digests"] = current


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
            sb.caption(e.summary if e.ready else db.plain(f"{e.problem[0].upper()}{e.problem[1:]}"))
    sb.subheader("Image")
    source = sb.radio("Source", ["Upload", "Camera", "Examples"], horizontal=True, key="source")
    inputs: list[Input] = []
    if source == "Upload":
        inputs = _uploads(sb)
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
    sb.caption(f"Models from {db.plain(CONFIG.weights_dir)}"
               + (f" · dataset {db.plain(CONFIG.data_dir)}" if CONFIG.data_dir else ""))
    return chosen, inputs


def _uploads(sb) -> list[Input]:
    """The uploader (a fixed key: no rerun can swap it for a new, empty one) and its files. Any
    type is taken, so that a wrong one is named on the page instead of only marked red in the
    uploader; files the server no longer holds are reported, not silently dropped."""
    files = sb.file_uploader("Photos", accept_multiple_files=True, key="uploads") or []
    sb.caption(db.upload_rules(st.get_option("server.maxUploadSize")))
    inputs = [(f.name, problem) if (problem := db.upload_problem(f.name))
              else _decoded(f.getvalue(), f.name) for f in files]
    lost = sum(isinstance(f, DeletedFile) for f in st.session_state.get("uploads") or [])
    if lost:
        inputs.append(("Uploads lost", db.LOST_UPLOADS.format(count=lost)))
    return inputs


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
        st.sidebar.error(db.plain(problem))
        return []
    return db.held_out(data)[1]


# ----------------------------------------------------------------------------- tabs


def segment_tab(chosen: list[db.ModelEntry], inputs: list[Input]) -> None:
    opacity = st.session_state.get("opacity", 0.5)
    with_confidence = st.session_state.get("confidence", False)
    prefetch(chosen, inputs)
    for index, (name, item) in enumerate(inputs):
        st.subheader(db.plain(name))
        if isinstance(item, str):
            st.error(db.plain(item))
            continue
        width, height = item.image.size
        st.caption(f"{width}×{height} pixels")
        shown = display_photo(item)
        for entry in chosen:
            timed = predict(entry, item)
            if timed is None:
                continue
            result, classes = timed.value, entry.classes
            mask = result.mask  # already display-sized
            st.markdown(f"**{entry.title}** · {timing_text(entry, timed)}")
            cols = st.columns(4 if with_confidence else 3)
            cols[0].image(shown, caption="Input", width="stretch")
            cols[1].image(colorize(mask, classes), caption="Mask", width="stretch")
            if st.session_state.get("legend", True):
                cols[1].markdown(db.legend_html(classes), unsafe_allow_html=True)
                for note in db.class_notes(classes):
                    cols[1].caption(note)
            cols[2].image(overlay(shown, mask, classes, opacity),
                          caption=f"Overlay ({opacity:.0%} mask)", width="stretch")
            cols[2].caption("Covers: " + " · ".join(
                f"{db.plain(c.name)} {s:.1%}" for c, s in zip(classes, result.shares)))
            if with_confidence:
                cols[3].image(db.confidence_image(result.confidence),
                              caption=f"Confidence (mean {result.mean_confidence:.0%})",
                              width="stretch")
            key = f"{index}_{entry.id}"
            cols[1].download_button(
                "Mask PNG (class indices)", partial(_mask_png, entry, result),
                file_name=f"{item.stem}_{entry.id}_mask.png", mime="image/png",
                key=f"mask_{key}", on_click="ignore")
            cols[2].download_button(
                "Overlay PNG", partial(_overlay_png, entry, item, result, opacity),
                file_name=f"{item.stem}_{entry.id}_overlay.png", mime="image/png",
                key=f"overlay_{key}", on_click="ignore")
            if note := db.out_of_domain_note(result.mask, result.confidence, classes):
                st.warning(note)


def timing_text(entry: db.ModelEntry, timed: batching.Timed) -> str:
    """The segmenter's time for this photo and the benchmark's, then how long the photo queued and
    with how many photos its network call ran."""
    return (f"{db.latency_text(timed.value.seconds, p50_ms=entry.benchmark_p50_ms)} · queued "
            f"{timed.queue_seconds * 1000:.0f} ms, batch of {timed.batch_size}")


def full_mask(entry: db.ModelEntry, result: batching.ShownPrediction):
    """The full-resolution mask, rebuilt from the kept input-size probabilities (the same labels
    the network gave; nothing full-resolution is kept between reruns)."""
    return segmenter_for(entry).full_mask(result.input_probabilities, result.size)[0]


def _mask_png(entry: db.ModelEntry, result: batching.ShownPrediction) -> bytes:
    """Full-resolution mask PNG, made only when the download is clicked."""
    return mask_png(full_mask(entry, result), entry.classes)


def _overlay_png(entry: db.ModelEntry, item: db.InputImage, result: batching.ShownPrediction,
                 opacity: float) -> bytes:
    """Full-resolution overlay, made only when the download is clicked."""
    return png_bytes(overlay(item.image, full_mask(entry, result), entry.classes, opacity))


def compare_tab(chosen: list[db.ModelEntry], inputs: list[Input]) -> None:
    valid = {name: item for name, item in inputs if not isinstance(item, str)}
    if not valid:
        st.info("Upload a photo or pick an example in the sidebar to compare the models on it.")
        return
    name = st.selectbox("Image", list(valid), key="compare_image")
    item = valid[name]
    shown = display_photo(item)
    opacity = st.session_state.get("opacity", 0.5)
    prefetch(chosen, [(name, item)])
    results = {e.id: timed.value for e in chosen if (timed := predict(e, item)) is not None}
    ready = [e for e in chosen if e.id in results]
    for start in range(0, len(ready), 3):
        cols = st.columns(3)
        for col, entry in zip(cols, ready[start:start + 3]):
            result = results[entry.id]
            col.image(overlay(shown, result.mask, entry.classes, opacity),
                      caption=f"{entry.title} · segmenter {result.seconds * 1000:.0f} ms",
                      width="stretch")
    if len(ready) >= 2:
        counts = db.disagreement([results[e.id].mask for e in ready])
        st.plotly_chart(plots.disagreement_figure(counts, len(ready)), key="disagreement")
    st.dataframe(db.comparison_rows(chosen, {k: r.seconds for k, r in results.items()}),
                 hide_index=True)


def training_tab(chosen: list[db.ModelEntry]) -> None:
    histories = {e.title: e.history for e in chosen if e.history}
    if histories:
        st.plotly_chart(plots.history_figure(histories), key="history")
    for e in chosen:
        if e.history_problem:
            st.warning(f"{e.title}: {db.plain(e.history_problem)}")
        elif not e.history:
            st.caption(f"{e.title}: no history.json.")
    st.dataframe(db.training_rows(chosen), hide_index=True)


def evaluation_tab(chosen: list[db.ModelEntry]) -> None:
    for e in chosen:
        if e.metrics_problem:
            st.warning(f"{e.title}: {db.plain(e.metrics_problem)}")
    scored = [e for e in chosen if e.per_class_iou]
    if scored:
        st.subheader("Scores from each model's metrics.json")
        st.dataframe(db.score_rows(scored), hide_index=True)
        bars = plots.iou_bars({e.title: e.per_class_iou for e in scored})
        bars.update_layout(title=f"Per-class IoU · {db.common_source(scored)}")
        st.plotly_chart(bars, key="iou_bars")
        cols = st.columns(min(len(scored), 3))
        for i, e in enumerate(scored):
            result = e.metrics["original_resolution"]
            if result.get("confusion_matrix"):
                cols[i % len(cols)].plotly_chart(
                    plots.confusion_figure(result["confusion_matrix"], list(result["iou"]),
                                           f"{e.title} · {db.metrics_source(e)}"),
                    key=f"confusion_{e.id}")
    else:
        st.info("None of the chosen models has a metrics.json "
                "(`python -m segdemo evaluate --model FOLDER --data PATH` writes one).")
    if CONFIG.data_dir is None:
        st.caption("Start the app with `-- --data PATH` (or SEGDEMO_DATA) to browse a dataset's "
                   "held-out images, worst first.")
        return
    browse_dataset(chosen)


def browse_dataset(chosen: list[db.ModelEntry]) -> None:
    from segdemo.data import DataError

    data, problem = dataset(str(CONFIG.data_dir), CONFIG.data_format)
    if problem:
        st.error(db.plain(problem))
        return
    st.subheader(f"Held-out images of {db.plain(data.name)}, worst first")
    titles = {e.title: e for e in chosen}
    entry = titles[st.selectbox("Model", list(titles), key="eval_model")]
    if len(entry.classes) != data.num_classes:
        st.warning(f"{entry.title} predicts {len(entry.classes)} classes; this dataset has "
                   f"{data.num_classes}.")
        return
    split, held_out = db.held_out(data)
    samples = {s.name: s for s in held_out}
    ranked = db.ranked_test_images(entry, list(samples))
    if ranked is None:
        st.caption(db.live_sample_text(db.plain(data.name), split, len(held_out)))
        ranked = live_ranking(entry.cache_key, str(CONFIG.data_dir), CONFIG.data_format, entry)
    else:
        st.caption(f"Per-image scores from {entry.title}'s metrics.json "
                   f"({db.plain(db.metrics_source(entry))}).")
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
            st.error(db.plain(exc))
            continue
        name = db.plain(score.name)
        label = name if score.miou is None else f"{name} · mIoU {score.miou:.3f}"
        cols = st.columns(3)
        cols[0].image(db.shrink(photo, 512), caption=label, width="stretch")
        cols[1].image(db.shrink(db.colour_mask(truth, data.classes, data.ignore_index), 512),
                      caption="Ground truth", width="stretch")
        cols[2].image(db.shrink(db.colour_mask(result.mask, entry.classes), 512),
                      caption="Prediction", width="stretch")


@st.cache_resource(show_spinner="Scoring held-out images…", max_entries=8)
def live_ranking(model_key: str, path: str, format: str, _entry: db.ModelEntry) -> list:
    """Per-image scores of a seeded sample of the held-out images, worst first (once per model and
    dataset)."""
    from segdemo.data import DataError

    data, _ = dataset(path, format)
    names = [c.name for c in data.classes]
    scores = []
    for sample in db.live_sample(db.held_out(data)[1]):
        result = _sample_prediction(_entry, sample)
        try:
            truth = data.read_mask(sample)
        except DataError:
            continue  # reported when the image is shown
        if result is not None:
            scores.append(db.score_image(sample.name, full_mask(_entry, result), truth, names,
                                         data.ignore_index))
    return db.worst_first(scores)


def _sample_prediction(entry: db.ModelEntry, sample) -> batching.ShownPrediction | None:
    try:
        _, item = _decoded(sample.image.read_bytes(), sample.image.name)
    except OSError as exc:
        item = f"{sample.image.name} could not be read ({exc})."
    if isinstance(item, str):
        st.error(db.plain(item))
        return None
    timed = predict(entry, item)
    return None if timed is None else timed.value


# ----------------------------------------------------------------------------- page


def main() -> None:
    entries = db.discover_models(CONFIG.weights_dir)
    chosen, inputs = sidebar(entries)
    forget_removed(inputs)
    st.title("Semantic segmentation, side by side")
    if not any(e.ready for e in entries):
        st.warning(f"No trained model in {db.plain(CONFIG.weights_dir)} yet. Train one, e.g. "
                   "`python -m segdemo train --arch unet_mobilenetv2 --data PATH "
                   "--out weights/unet_mobilenetv2`, or set SEGDEMO_WEIGHTS.")
        return
    if not chosen:
        st.info("Choose one or more models in the sidebar.")
        return
    tabs = st.tabs(list(TABS), key="tab", on_change="rerun")
    segment, compare, training, evaluation, video = tabs
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
    if video.open:
        with video:
            app_video.render(chosen, server().pool)


main()
warm_up()
