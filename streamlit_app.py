"""SegDemo dashboard: `streamlit run streamlit_app.py [-- --data PATH --format oxford]
[--serve-url URL]`.

Layout and widgets only; what is shown comes from `segdemo.dashboard`, `segdemo.plots`,
`segdemo.history_svg`, `segdemo.cutout` and `segdemo.batch_export`. Each photo gets one row per model: input | mask |
overlay | that model's training history (an inline SVG: no charting library in the page). With
*Pixel inspector* on, the mask becomes a Plotly figure whose hover read-out (every class's
probability under the pointer) and photo/mask slider run in the browser, on data sent with it;
it is off by default because loading Plotly costs every visitor's browser seconds of CPU.

Inference goes through `segdemo.batching`: one queue per model (and per TTA / ensemble setting) in
the process, shared by every session, which batches the photos waiting into one network call;
results are kept per (setting, photo content) in byte-bounded caches, so moving a slider,
switching tabs or toggling the legend or the cut-out re-runs no inference, and switching TTA or
the ensemble back finds the earlier results. Full-resolution masks, overlays and cut-outs are made
only when downloaded. TensorFlow is imported only by the model loader, in the background (the
default model starts loading at the first page view), so the first page does not wait for it.

With `--serve-url` (or SEGDEMO_SERVE_URL) the rows' inference goes to a `python -m segdemo serve`
endpoint instead, through `segdemo.serve_client.RemotePredictor`: the same `Predictor` interface
and the same cached `ShownPrediction`s, so the page is unchanged; no model and no TensorFlow are
loaded here (the Video tab still runs its models in this process). The ensemble row sends the
photo to each member's endpoint and averages their probabilities here (`RemoteEnsemble`).
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
from PIL import Image, ImageOps

import app_video
from segdemo import batch_export, batching, cutout
from segdemo import dashboard as db
from segdemo import plots
from segdemo.artifacts import ModelLoadError
from segdemo.ensemble import Ensemble
from segdemo.history_svg import history_svg
from segdemo.images import ImageError
from segdemo.inference import TTA_MODES, colorize, mask_png, overlay, png_bytes
from streamlit.runtime.uploaded_file_manager import DeletedFile

st.set_page_config(page_title="SegDemo", page_icon="🐾", layout="wide")
CONFIG = db.parse_config(sys.argv[1:], os.environ)
TABS = ("Segment", "Compare", "Training", "Evaluation", "Video")
Input = tuple[str, "db.InputImage | str"]  # (name, decoded image or the error shown for it)
Done = tuple["db.InputImage", "db.Variant", batching.Timed]  # one finished (photo, row)
BROWSE_PAGE = 4  # evaluation images shown at a time
# Serving (process-wide): networks run one at a time on a CPU (each uses every core); a queue
# takes up to MAX_BATCH waiting photos, waiting MAX_WAIT_S for more, into one call.
COMPUTE_SLOTS, MAX_BATCH, MAX_WAIT_S = 1, batching.DEFAULT_MAX_BATCH, batching.DEFAULT_MAX_WAIT_S
RESULT_BYTES = 192 * 2**20  # finished results: display-sized masks + input-size probabilities
PHOTO_BYTES = 320 * 2**20   # decoded photos (full resolution, for inference and downloads) + shrunk
FIGURE_BYTES = 64 * 2**20   # the rows' mask figures (~0.2 MB each: probabilities + small images)
WAIT_POLL_S = 0.25          # how often a waiting page checks its queue line
WAIT_STEP_S = 5             # the line counts the wait in steps this long (see _wait)
WARM_UP_DELAY_S = 3.0       # after the first page view, before the default model starts loading
# A model's load, in order, for its progress bar (the first load starts TensorFlow).
LOAD_STAGES = ("starting TensorFlow", "reading the weights", "preparing the network (first run)")
TTA_HELP = ("Averages each photo's class probabilities with those of its mirror image, at twice "
            "the network time. Measured on the test split: +0.009 mIoU for U-Net-MobileNetV2 "
            "(0.763 → 0.772) and +0.008 for an earlier DeepLabV3+-MobileNetV2 (0.766 → 0.774).")
INSPECTOR_HELP = ("Makes each mask interactive: hover (or tap) for every class's probability "
                  "there, and slide between the photo and the mask. Off by default: it loads a "
                  "charting library into the page, which costs each browser seconds of work. "
                  "A link ending in ?inspector=1 opens with it on.")
ENSEMBLE_HELP = ("Adds a row that averages the chosen models' class probabilities (every chosen "
                 "network runs). Measured on the test split: U-Net-MobileNetV2 + an earlier "
                 "DeepLabV3+-MobileNetV2 reach 0.784 mIoU, against 0.766 for the better alone.")
# The Segment tab's rows (input | mask | overlay | history) stack in that order on windows
# narrower than 700 px (Streamlit stacks columns only from 640 px down); the cut-out shows its
# transparency over a checkerboard.
CSS = """
@media (max-width: 699.98px) {
  [class*="st-key-segrow_"] [data-testid="stHorizontalBlock"],
  [class*="st-key-segextra_"] [data-testid="stHorizontalBlock"] {
    flex-direction: column; flex-wrap: nowrap; }
  [class*="st-key-segrow_"] [data-testid="stColumn"],
  [class*="st-key-segextra_"] [data-testid="stColumn"] {
    width: 100% !important; min-width: 100% !important; flex: 1 1 auto !important; }
}
[class*="st-key-cutout_"] img {
  background: repeating-conic-gradient(#d4d4d4 0 25%, #ffffff 0 50%) 0 0 / 16px 16px; }
"""
LOG = logging.getLogger("segdemo.app")


# ----------------------------------------------------------------------------- cached resources


def keep_keras_state() -> None:
    """Stop Streamlit's cleanup after every script run, which calls `keras.backend.clear_session()`
    (meant for scripts that build a model per run; ours are built once per process). Each call is
    a full garbage collection (~0.4 s with TensorFlow loaded, holding the interpreter, so every
    session and queue waits) and empties TensorFlow's kernel cache, so the next network call took
    0.55-0.84 s instead of 0.05 s. It ran after every rerun of every session: with 16 sessions
    uploading, most of the server's time. (The same cleanup closes pyplot figures; we use none.)"""
    from streamlit.runtime.scriptrunner import script_runner

    if getattr(script_runner, "_clean_problem_modules", None) is None:
        LOG.warning("Streamlit's post-run cleanup moved: Keras state may be cleared per run.")
        return
    script_runner._clean_problem_modules = lambda: None


def server() -> SimpleNamespace:
    """The process's serving state for where inference runs (see `serving_state`; cached by the
    URL, so a process that is started again with another endpoint gets its own)."""
    return serving_state(CONFIG.serve_url)


@st.cache_resource(show_spinner=False)
def serving_state(serve_url: str | None) -> SimpleNamespace:
    """The process's serving state, shared by every session: a queue per model and setting
    (`pool`; with `serve_url`, a client of that endpoint per model and setting, and `local_pool`
    for the Video tab, else the same pool), finished results (`results`) and decoded photos
    (`photos`), both bounded in bytes, the rows' mask figures (`figures`: building one costs ~70 ms, a rerun with many rows would
    pay it for each), what TensorFlow runs on once the first model has loaded (`info`), the stage
    each loading model has reached (`stages`), and whether `warm_up` has run."""
    state = SimpleNamespace(
        results=batching.ResultStore(RESULT_BYTES), photos=batching.ByteLRU(PHOTO_BYTES),
        figures=batching.ByteLRU(FIGURE_BYTES, size_of=plots.figure_bytes), info={}, stages={},
        warm_up_started=False)
    state.local_pool = batching.PredictorPool(partial(_load_predictor,
                                                      batching.ComputeSlots(COMPUTE_SLOTS), state))
    state.pool = (batching.PredictorPool(partial(_remote_predictor, serve_url, state))
                  if serve_url else state.local_pool)
    return state


def _remote_predictor(url: str, state: SimpleNamespace, source: Path | db.Variant):
    """Runs in a loader thread: a client of the endpoint for one model (with its TTA), or an
    ensemble row averaging its members' clients (the same ones their own rows use); the endpoint
    holds the networks and batches across every client."""
    from segdemo.serve_client import RemoteEnsemble, remote_predictor

    if isinstance(source, Path):
        return remote_predictor(url, source.name, "none", db.DISPLAY_SIDE)
    if source.ensemble:
        return RemoteEnsemble([state.pool.get(part.key, _source(part)).result()
                               for part in source.parts()], db.DISPLAY_SIDE)
    return remote_predictor(url, source.entry.id, source.tta, db.DISPLAY_SIDE)


def _load_predictor(slots: batching.ComputeSlots, state: SimpleNamespace,
                    source: Path | db.Variant) -> batching.BatchingPredictor:
    """Runs in a loader thread. `source` is a model folder (one model without TTA, keyed by its
    `cache_key`: the Video tab shares it) or a `db.Variant` (flip TTA, an ensemble), built on the
    plain models' loaded networks. The first load sizes TensorFlow's thread pools (before
    TensorFlow runs anything) and finds the device."""
    stage_key = source if isinstance(source, Path) else source.key

    def report(stage: str) -> None:
        state.stages[stage_key] = stage

    info = state.info
    if "threads" not in info:
        report(LOAD_STAGES[0])
        info["threads"] = batching.configure_threads(slots.slots)
        info["device"] = db.device_label()
        LOG.info("TensorFlow threads: %s; device: %s", info["threads"], info["device"])
    try:
        if isinstance(source, Path):
            segmenter, name = db.load_segmenter(source, report), source.name
        elif source.ensemble:
            report("loading its models")
            segmenter, name = Ensemble([_loaded(state, part) for part in source.parts()]), source.id
            segmenter.predict(Image.new("RGB", (8, 8)))  # its first call is slow, not a photo's
        else:
            base = _loaded(state, source.without_tta())
            report(f"preparing the {source.tta} pass")
            segmenter, name = db.with_tta(base, source.tta), source.id
    finally:
        state.stages.pop(stage_key, None)
    db.freeze_heap()  # the model is long-lived: keep Streamlit's collection after each run cheap
    finish = partial(batching.shown_prediction, num_classes=len(segmenter.classes),
                     side=db.DISPLAY_SIDE)
    return batching.BatchingPredictor(segmenter, max_batch=MAX_BATCH, max_wait_s=MAX_WAIT_S,
                                      slots=slots, finish=finish, name=name)


def _loaded(state: SimpleNamespace, row: db.Variant):
    """The segmenter of `row`, loading it (in its own loader thread) and waiting for it."""
    return state.pool.get(row.key, _source(row)).result().segmenter


def _source(row: db.Variant) -> Path | db.Variant:
    return row.entry.folder if row.plain else row


def device() -> str:
    """Where inference runs: the serve endpoint, or this process's device, known once TensorFlow
    has started (in the background: the first page does not wait)."""
    if CONFIG.serve_url:
        return f"Ray Serve at {CONFIG.serve_url}"
    return server().info.get("device", "… (TensorFlow is starting)")


@st.cache_data(ttl=30, show_spinner=False)
def served_models(url: str) -> tuple[list[str], str | None]:
    """(model ids the endpoint serves, why they could not be listed), asked at most every 30 s."""
    from segdemo.serve_client import ServeClient, ServeRequestError

    try:
        return sorted(ServeClient(url).models()), None
    except ServeRequestError as exc:
        return [], str(exc)


def mark_unserved(entries: list[db.ModelEntry], sb) -> None:
    """Models the endpoint does not serve cannot be chosen; an endpoint that cannot be reached is
    named in the sidebar (each row then says so too)."""
    served, problem = served_models(CONFIG.serve_url)
    if problem:
        sb.error(db.plain(problem))
        return
    for e in entries:
        if e.ready and e.id not in served:
            e.problem = f"unavailable: not served by {CONFIG.serve_url}."


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
def thumbnail(file: str) -> Image.Image | None:
    """A bundled example photo cropped to the gallery's 4:3 tile; None when it is missing."""
    path = db.example_path(file)
    if path is None:
        return None
    side = db.THUMBNAIL_SIDE
    return ImageOps.fit(db.decode_input(path.read_bytes(), file).image, (side, side * 3 // 4))


@st.cache_resource(show_spinner=False)
def dataset(path: str, format: str):
    from segdemo.data import DataError, load_dataset  # TensorFlow: only once a dataset is used

    try:
        return load_dataset(path, format), None
    except DataError as exc:
        return None, str(exc)


@st.cache_resource(show_spinner=False, max_entries=32)
def history_chart(model_key: str, _entry: db.ModelEntry) -> str:
    """A model's training-history chart (inline SVG), built once per weights file (it is the same
    in every row of that model)."""
    return history_svg(_entry.history, db.best_epoch(_entry))


def segmenter_for(row: db.Variant):
    """The loaded segmenter (for downloads at full size), or None while loading or after a failure."""
    predictor = server().pool.ready(row.key)
    return None if predictor is None else predictor.segmenter


def request(row: db.Variant, image: db.InputImage) -> Future:
    """The (row, photo) result as a future: finished, already running (another rerun or session
    asked first) or queued now, behind the model's loading if it has not loaded yet."""
    def start() -> Future:
        loading = server().pool.get(row.key, _source(row))
        return batching.chain(loading, lambda predictor: db.submit_inference(predictor, image))
    return server().results.request((row.key, image.digest), start)


def prefetch(rows: list[db.Variant], inputs: list[Input]) -> list[Future]:
    """Queue every (row, photo) of the page before waiting for any, so that the models' queues
    work side by side and a session's photos share batches; returns their futures."""
    return [request(row, item) for _, item in inputs if not isinstance(item, str) for row in rows]


class BatchProgress:
    """The bar over a batch (several photos or models) while its results come in; at the end it
    says how long the batch took. Shown only when the page had to wait for it."""

    def __init__(self, futures: list[Future], photos: int, models: int):
        self.futures, self.photos, self.models = futures, photos, models
        self.start, self.shown = time.monotonic(), -1
        self.bar = st.progress(0.0, text=db.batch_text(0, len(futures), photos, models))

    def update(self) -> None:
        done = sum(f.done() for f in self.futures)
        if done != self.shown:
            self.shown = done
            self.bar.progress(done / len(self.futures),
                              text=db.batch_text(done, len(self.futures), self.photos, self.models))

    def finish(self) -> None:
        total = len(self.futures)
        text = db.batch_text(total, total, self.photos, self.models)
        self.bar.progress(1.0, text=f"{text} in {time.monotonic() - self.start:.1f} s")


def predict(row: db.Variant, image: db.InputImage,
            progress: BatchProgress | None = None) -> batching.Timed | None:
    """`Timed(ShownPrediction)` for `image`, waiting with the queue position on the page; None
    (with the error shown) when the model cannot be loaded or the photo cannot be segmented."""
    future = request(row, image)
    if not future.done():
        _wait(future, row, image.name, progress)
    try:
        return future.result()
    except ModelLoadError as exc:
        st.error(f"{db.plain(row.title)} is unavailable: {db.plain(exc)}")
    except Exception as exc:  # noqa: BLE001 - one photo's failure must not take the page down
        LOG.exception("segmenting %s with %s failed", image.name, row.id)
        st.error(db.plain(f"{image.name} could not be segmented with {row.title}: {exc}"))
    return None


def _wait(future: Future, row: db.Variant, name: str, progress: BatchProgress | None) -> None:
    """Wait with the page alive: while the model loads, a bar names its stage; then a line says
    where the photo is (photos ahead, being segmented); both count the seconds waited, in steps of
    WAIT_STEP_S. They are re-sent only when their text changes: each update costs the waiting
    browser a re-render, and a per-second count made 16 waiting browsers redraw every second;
    each update also lets Streamlit stop the run when a widget changes (so within WAIT_STEP_S
    while a photo waits), while the request carries on into the cache."""
    line = st.empty()
    start, shown = time.monotonic(), ""
    stage_key = row.entry.folder if row.plain else row.key
    while True:
        try:
            future.result(timeout=WAIT_POLL_S)
            break
        except TimeoutError:
            pass
        except Exception:  # noqa: BLE001 - the caller reports it
            break
        if progress is not None:
            progress.update()
        ahead, elapsed = future.ahead(), int(time.monotonic() - start)
        waited = f"{elapsed - elapsed % WAIT_STEP_S} s"
        if ahead is None:
            stage = server().stages.get(stage_key, "waiting for its models")
            text = f"⏳ Loading {row.title}: {stage} · {waited}"
            if text != shown:
                step = LOAD_STAGES.index(stage) + 1 if stage in LOAD_STAGES else 2
                line.progress(step / (len(LOAD_STAGES) + 1), text=db.plain(shown := text))
            continue
        state = ("segmenting" if ahead == 0
                 else f"{ahead} photo{'s' if ahead > 1 else ''} ahead in the queue")
        text = f"⏳ {row.title} · {name}: {state} · {waited}"
        if text != shown:
            line.caption(db.plain(shown := text))
    line.empty()
    if progress is not None:
        progress.update()


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
        server().figures.discard(lambda key: key[1] in gone)
    st.session_state["_photo_digests"] = current


# ----------------------------------------------------------------------------- sidebar


def sidebar(entries: list[db.ModelEntry]) -> tuple[list[db.ModelEntry], list[db.Variant],
                                                   list[Input]]:
    """The chosen models, the rows they make (with the TTA / ensemble settings) and the inputs,
    each as (name, InputImage or error message). Kept short: what a model is sits behind its
    help icon."""
    sb = st.sidebar
    sb.title("SegDemo")
    sb.caption(f"Running on **{db.plain(device())}**")
    if CONFIG.serve_url:
        mark_unserved(entries, sb)
    sb.subheader("Models")
    first_ready = next((e.id for e in entries if e.ready), None)
    chosen = []
    for e in entries:
        label = e.title if e.problem != "not trained" else f"{e.title} · not trained"
        if sb.checkbox(label, value=e.id == first_ready, key=f"model_{e.id}",
                       disabled=not e.ready, help=_model_help(e)):
            chosen.append(e)
        if e.problem not in (None, "not trained"):
            sb.caption(db.plain(f"{e.problem[0].upper()}{e.problem[1:]}"))
    tta = "none"
    if "flip" in TTA_MODES and sb.toggle("Flip TTA (mirror average)", key="tta", help=TTA_HELP):
        tta = "flip"
    problem = db.ensemble_problem(chosen)
    ensemble = sb.toggle("Ensemble row", key="ensemble", disabled=problem is not None,
                         help=ENSEMBLE_HELP if problem is None else f"{problem} {ENSEMBLE_HELP}")
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
    sb.toggle("Pixel inspector", value=st.query_params.get("inspector") == "1", key="inspector",
              help=INSPECTOR_HELP)
    sb.toggle("Cut-out", value=False, key="cutout",
              help="The photo with the background made transparent (soft-edged along the "
                   "outline); its PNG download is under each overlay either way.")
    sb.toggle("Confidence map", value=False, key="confidence",
              help="Highest class probability per pixel: dark = unsure, yellow = sure.")
    sb.caption(f"Models from {db.plain(CONFIG.weights_dir)}"
               + (f" · dataset {db.plain(CONFIG.data_dir)}" if CONFIG.data_dir else ""))
    return chosen, db.variants(chosen, tta, ensemble and problem is None), inputs


def _model_help(entry: db.ModelEntry) -> str:
    """The model's description and its test score, for the help icon beside its checkbox."""
    miou = entry.test_miou
    return db.plain(entry.description) + (f"\n\nTest mIoU: {miou:.3f}." if miou is not None else "")


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
        path = db.example_path(what)
        if path is None:  # a trimmed scikit-image install: say so, keep the app running
            return label, f"{label} is not available in this scikit-image install."
        return label, _decoded(path.read_bytes(), what)[1]
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


def gallery() -> None:
    """The empty page: the bundled example photos, one click each."""
    st.markdown("**Try an example**, or upload photos (several at once) or take one with the "
                "camera in the sidebar.")
    tiles = [(label, file, thumb) for label, file in db.SKIMAGE_EXAMPLES.items()
             if (thumb := thumbnail(file)) is not None]
    for col, (label, file, thumb) in zip(st.columns(max(len(tiles), 1)), tiles):
        col.image(thumb, width="stretch")
        col.button(label, key=f"gallery_{file}", on_click=_pick_example, args=(label,),
                   width="stretch")


def _pick_example(label: str) -> None:
    """Before the rerun (a callback): switch the sidebar to this example."""
    st.session_state["source"] = "Examples"
    st.session_state["example"] = f"scikit-image: {label}"


def segment_tab(rows: list[db.Variant], inputs: list[Input]) -> None:
    opacity = st.session_state.get("opacity", 0.5)
    futures = prefetch(rows, inputs)
    photos = sum(not isinstance(item, str) for _, item in inputs)
    progress = (BatchProgress(futures, photos, len(rows))
                if len(futures) > 1 and not all(f.done() for f in futures) else None)
    everything = st.empty()  # the ZIP of every result, once they are all in
    done: list[Done] = []
    for index, (name, item) in enumerate(inputs):
        st.subheader(db.plain(name))
        if isinstance(item, str):
            st.error(db.plain(item))
            continue
        width, height = item.image.size
        st.caption(f"{width}×{height} pixels")
        for row in rows:
            timed = predict(row, item, progress)
            if timed is not None:
                done.append((item, row, timed))
                result_row(f"{index}_{row.id}", item, row, timed, opacity)
    if progress is not None:
        progress.finish()
    if done:
        photo_count = len({id(item) for item, _, _ in done})
        everything.download_button(
            f"All results as one ZIP ({photo_count} photo{'s' * (photo_count != 1)} × "
            f"{len(rows)} model{'s' * (len(rows) != 1)}: masks, overlays, cut-outs, CSV)",
            partial(_batch_zip, done, opacity), file_name="segdemo_results.zip",
            mime="application/zip", key="batch_zip", on_click="ignore")


def result_row(key: str, item: db.InputImage, row: db.Variant, timed: batching.Timed,
               opacity: float) -> None:
    """input | mask (hover read-out, photo/mask slider, legend) | overlay | training history,
    then the cut-out and confidence map when they are switched on."""
    result, classes = timed.value, row.classes
    shown = display_photo(item)
    st.markdown(f"**{db.plain(row.title)}** · {timing_text(row, timed)}")
    with st.container(key=f"segrow_{key}"):
        photo_col, mask_col, overlay_col, history_col = st.columns(4)
    photo_col.image(shown, caption="Input", width="stretch")
    with mask_col:
        if st.session_state.get("inspector", False):
            st.plotly_chart(inspect_chart(row, item, result), key=f"inspect_{key}",
                            config=plots.STILL_CONFIG)
            st.caption("Mask · hover or tap for each class's probability; slide to the photo.")
        else:
            st.image(mask_image(row, result), width="stretch")
            st.caption("Mask · switch on *Pixel inspector* in the sidebar to read each class's "
                       "probability under the pointer.")
        if st.session_state.get("legend", True):
            st.markdown(db.legend_html(classes), unsafe_allow_html=True)
            for note in db.class_notes(classes):
                st.caption(note)
        st.download_button("Mask PNG (class indices)", partial(_mask_png, row, result),
                           file_name=f"{item.stem}_{row.id}_mask.png", mime="image/png",
                           key=f"mask_{key}", on_click="ignore")
    with overlay_col:
        st.image(overlay(shown, result.mask, classes, opacity),
                 caption=f"Overlay ({opacity:.0%} mask)", width="stretch")
        st.caption("Covers: " + " · ".join(
            f"{db.plain(c.name)} {s:.1%}" for c, s in zip(classes, result.shares)))
        st.download_button("Overlay PNG", partial(_overlay_png, row, item, result, opacity),
                           file_name=f"{item.stem}_{row.id}_overlay.png", mime="image/png",
                           key=f"overlay_{key}", on_click="ignore")
        if cutout.background_index(classes) is not None:
            st.download_button("Cut-out PNG",
                               partial(_cutout_png, item, result, classes),
                               file_name=f"{item.stem}_{row.id}_cutout.png", mime="image/png",
                               key=f"cutout_png_{key}", on_click="ignore")
    with history_col:
        history_panel(row, key)
    extras(key, shown, result, classes)
    if note := db.out_of_domain_note(result.mask, result.confidence, classes):
        st.warning(note)


def mask_image(row: db.Variant, result: batching.ShownPrediction) -> Image.Image:
    """The coloured mask at the size the mask column shows it (plain, or in the inspector)."""
    return Image.fromarray(colorize(db.shrink_array(result.mask, db.INSPECT_SIDE), row.classes))


def inspect_chart(row: db.Variant, item: db.InputImage, result: batching.ShownPrediction):
    """The mask figure with the hover read-out, from the kept results (no inference), made once
    per (row, photo) while it stays in the figure cache."""
    key = (row.key, item.digest)
    if (figure := server().figures.get(key)) is None:
        small = db.shrink(display_photo(item), db.INSPECT_SIDE)
        grid = db.probability_grid(result.input_probabilities, result.size)
        figure = plots.inspect_figure(small, mask_image(row, result), grid, result.size,
                                      [c.name for c in row.classes])
        server().figures.put(key, figure)
    return figure


def history_panel(row: db.Variant, key: str) -> None:
    """The row's model's training: loss, val_loss and val mIoU with the kept epoch."""
    if row.ensemble:
        st.caption("Training history: an ensemble is not trained; it averages "
                   + "; ".join(f"{db.plain(m.title)} (kept epoch {db.best_epoch(m)})"
                               for m in row.members) + ".")
        return
    entry = row.entry
    if entry.history_problem:
        st.caption(f"Training history: {db.plain(entry.history_problem)}")
    elif not entry.history:
        st.caption("Training history: no history.json.")
    else:
        st.markdown(history_chart(entry.cache_key, entry), unsafe_allow_html=True)
        kept = db.best_epoch(entry)
        text = f"Training history · weights kept from epoch {kept}" if kept else "Training history"
        st.caption(text + (" · TTA changes only inference" if row.tta != "none" else ""))


def extras(key: str, shown: Image.Image, result: batching.ShownPrediction, classes) -> None:
    """The cut-out and the confidence map, under the row, when switched on."""
    show_cutout = st.session_state.get("cutout", False)
    show_confidence = st.session_state.get("confidence", False)
    if not (show_cutout or show_confidence):
        return
    with st.container(key=f"segextra_{key}"):
        cols = iter(st.columns(4))
    if show_cutout:
        with next(cols).container(key=f"cutout_{key}"):
            try:
                st.image(cutout.cutout(shown, result.input_probabilities, classes),
                         caption="Cut-out (transparent background)", width="stretch")
            except cutout.CutoutError as exc:
                st.caption(db.plain(exc))
    if show_confidence:
        next(cols).image(db.confidence_image(result.confidence),
                         caption=f"Confidence (mean {result.mean_confidence:.0%})",
                         width="stretch")


def timing_text(row: db.Variant, timed: batching.Timed) -> str:
    """The segmenter's time for this photo and the benchmark's (which measured the plain model),
    then how long the photo queued and with how many photos its network call ran."""
    p50 = row.entry.benchmark_p50_ms if row.plain else None
    return (f"{db.latency_text(timed.value.seconds, p50_ms=p50)} · queued "
            f"{timed.queue_seconds * 1000:.0f} ms, batch of {timed.batch_size}")


def full_mask(row: db.Variant, result: batching.ShownPrediction):
    """The full-resolution mask, rebuilt from the kept input-size probabilities (the same labels
    the network gave; nothing full-resolution is kept between reruns)."""
    resizer = db.full_resolution(segmenter_for(row))
    return resizer.full_mask(result.input_probabilities, result.size)[0]


def _mask_png(row: db.Variant, result: batching.ShownPrediction) -> bytes:
    """Full-resolution mask PNG, made only when the download is clicked."""
    return mask_png(full_mask(row, result), row.classes)


def _overlay_png(row: db.Variant, item: db.InputImage, result: batching.ShownPrediction,
                 opacity: float) -> bytes:
    """Full-resolution overlay, made only when the download is clicked."""
    return png_bytes(overlay(item.image, full_mask(row, result), row.classes, opacity))


def _cutout_png(item: db.InputImage, result: batching.ShownPrediction, classes) -> bytes:
    """Full-resolution cut-out, made only when the download is clicked."""
    return cutout.cutout_png(item.image, result.input_probabilities, classes)


def _batch_zip(done: list[Done], opacity: float) -> bytes:
    """Every result's files and the CSV as one ZIP (a folder per row), made when clicked, one
    full-resolution photo at a time."""
    def fill(export: batch_export.BatchExport) -> None:
        for item, row, timed in done:
            result = timed.value
            export.add(item.name, row.id, item.image, full_mask(row, result),
                       result.input_probabilities, row.classes,
                       batch_export.Timing(result.seconds, timed.queue_seconds, timed.batch_size),
                       folder=row.id, tta=row.tta)
    return batch_export.zip_bytes(fill, opacity)


def compare_tab(rows: list[db.Variant], inputs: list[Input]) -> None:
    valid = {name: item for name, item in inputs if not isinstance(item, str)}
    if not valid:
        st.info("Upload a photo or pick an example in the sidebar to compare the models on it.")
        return
    name = st.selectbox("Image", list(valid), key="compare_image")
    item = valid[name]
    shown = display_photo(item)
    opacity = st.session_state.get("opacity", 0.5)
    prefetch(rows, [(name, item)])
    results = {r.id: timed.value for r in rows if (timed := predict(r, item)) is not None}
    ready = [r for r in rows if r.id in results]
    for start in range(0, len(ready), 3):
        cols = st.columns(3)
        for col, row in zip(cols, ready[start:start + 3]):
            result = results[row.id]
            col.image(overlay(shown, result.mask, row.classes, opacity),
                      caption=f"{row.title} · segmenter {result.seconds * 1000:.0f} ms",
                      width="stretch")
    if len(ready) >= 2:
        counts = db.disagreement([results[r.id].mask for r in ready])
        st.plotly_chart(plots.disagreement_figure(counts, len(ready)), key="disagreement")
    st.dataframe(db.comparison_rows(rows, {k: r.seconds for k, r in results.items()}),
                 hide_index=True)
    if any(not r.plain for r in rows):
        st.caption("Test scores and the benchmark are the cards', for each model alone without "
                   "TTA; the README lists the measured TTA and ensemble scores.")


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
            scores.append(db.score_image(sample.name, full_mask(db.Variant((_entry,)), result),
                                         truth, names, data.ignore_index))
    return db.worst_first(scores)


def _sample_prediction(entry: db.ModelEntry, sample) -> batching.ShownPrediction | None:
    try:
        _, item = _decoded(sample.image.read_bytes(), sample.image.name)
    except OSError as exc:
        item = f"{sample.image.name} could not be read ({exc})."
    if isinstance(item, str):
        st.error(db.plain(item))
        return None
    timed = predict(db.Variant((entry,)), item)
    return None if timed is None else timed.value


# ----------------------------------------------------------------------------- page


def main() -> None:
    st.html(f"<style>{CSS}</style>")
    entries = db.discover_models(CONFIG.weights_dir)
    chosen, rows, inputs = sidebar(entries)
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
                segment_tab(rows, inputs)
            else:
                gallery()
    if compare.open:
        with compare:
            compare_tab(rows, inputs)
    if training.open:
        with training:
            training_tab(chosen)
    if evaluation.open:
        with evaluation:
            evaluation_tab(chosen)
    if video.open:
        with video:
            app_video.render(chosen, server().local_pool)


keep_keras_state()
main()
warm_up()
