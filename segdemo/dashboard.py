"""The dashboard's logic, kept free of Streamlit so it can be tested (and reused) without a server.

`streamlit_app.py` only lays out widgets; everything it shows comes from here: which model folders
are usable and why not, what each row of the page runs (`Variant`: a model or an ensemble, with or
without TTA), decoded inputs with content hashes (the prediction cache key), the one function that
runs inference (and counts its calls, so tests can prove that moving a slider ran no new
inference), the per-pixel probabilities the hover read-out shows, tables, legends and the
per-image evaluation browser.
"""
from __future__ import annotations

import argparse
import gc
import hashlib
import importlib.util
import math
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segdemo.artifacts import (BENCHMARK_FILE, CARD_FILE, HISTORY_FILE, METRICS_FILE, WEIGHTS_FILE,
                               check_model_dir, read_card, read_extra_json, read_optional_json,
                               training_recipe)
from segdemo.classes import ClassInfo
from segdemo.images import bilinear, open_image, resize_nearest
from segdemo.models.registry import ARCHITECTURES

REPO_ROOT = Path(__file__).resolve().parent.parent
UPLOAD_TYPES = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif")
# Photos that ship inside scikit-image's wheel (no pooch download): name -> file in skimage/data,
# read directly (importing scikit-image would add ~1 s to the first page, which shows them).
SKIMAGE_EXAMPLES = {"Chelsea the cat": "chelsea.png", "Coffee cup": "coffee.png",
                    "Astronaut": "astronaut.png", "Rocket": "rocket.jpg"}
# Shown images are shrunk to this longest side: the browser gets less data and reruns stay fast.
# Downloads and all metrics use the full resolution.
DISPLAY_SIDE = 1024
# The hover read-out's grid of class probabilities (longest side; sent to the browser as uint8
# percentages: 90 KB for a 4:3 photo and three classes) and the photo under it.
HOVER_SIDE = 200
INSPECT_SIDE = 640
THUMBNAIL_SIDE = 240
# Held-out images scored live when metrics.json does not cover the dataset (bounds the wait): a
# seeded random sample across the whole split, so no single breed or folder fills it.
LIVE_EVAL_LIMIT = 24
LIVE_EVAL_SEED = 0
# A photo is said to look unlike the training photos when the model is unsure (highest class
# probability under UNSURE_PROBABILITY) over at least UNSURE_SHARE of the area it marks as pet.
# Measured on the shipped models: it speaks for 2 and 1 of 60 seeded test photos of pets with the
# two MobileNetV2 models (6 to 16 with the weaker ones, which are unsure more often); for the
# coffee cup with 4 of 5 models, for the astronaut with 3 (not deeplabv3plus_mobilenetv2, which is
# sure of its 30 % "pet" there: confidence cannot catch every such photo).
UNSURE_PROBABILITY = 0.7
UNSURE_SHARE = 0.3
MIN_FOREGROUND_SHARE = 0.01  # below this nothing is marked as pet, so there is nothing to doubt
NOT_FOREGROUND = ("background", "border")
# One line next to the legend for classes whose name does not explain itself.
CLASS_NOTES = {"border": "border: the thin band around the pet's outline where the annotators did "
                         "not decide between pet and background."}

# Incremented by `run_inference` and `submit_inference`, the only places the dashboard asks for
# inference.
inference_calls = 0


# ----------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class AppConfig:
    """Where the models and the optional dataset live, and where inference runs (`serve_url`: a
    `python -m segdemo serve` endpoint; None = in this process)."""

    weights_dir: Path
    data_dir: Path | None = None
    data_format: str = "oxford"
    serve_url: str | None = None


def parse_config(argv: Sequence[str], environ: Mapping[str, str]) -> AppConfig:
    """`streamlit run streamlit_app.py -- --data PATH [--format F] [--serve-url URL]`, with
    env-var fallbacks.

    Unknown arguments are ignored (under AppTest, sys.argv is pytest's) and abbreviations are off so
    that none of them is mistaken for ours.
    """
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--data", default=environ.get("SEGDEMO_DATA") or None)
    parser.add_argument("--format", default=environ.get("SEGDEMO_FORMAT") or "oxford")
    parser.add_argument("--weights", default=environ.get("SEGDEMO_WEIGHTS") or None)
    parser.add_argument("--serve-url", default=environ.get("SEGDEMO_SERVE_URL") or None)
    args, _ = parser.parse_known_args(list(argv))
    weights = Path(args.weights).expanduser() if args.weights else REPO_ROOT / "weights"
    data = Path(args.data).expanduser() if args.data else None
    return AppConfig(weights, data, args.format, args.serve_url.rstrip("/") if args.serve_url
                     else None)


def device_label() -> str:
    """"GPU: <name>" when TensorFlow sees a GPU (models then run there), else "CPU"."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    try:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name")
    except (RuntimeError, ValueError):
        name = None
    return f"GPU: {name or gpus[0].name}" + (f" (+{len(gpus) - 1} more)" if len(gpus) > 1 else "")


# ----------------------------------------------------------------------------- model folders


@dataclass
class ModelEntry:
    """One registry architecture and the state of its folder under the weights directory."""

    id: str
    title: str
    description: str
    folder: Path
    problem: str | None  # None = usable; "not trained" (no folder) or "unavailable: <reason>"
    card: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    metrics: dict | None = None
    benchmark_p50_ms: float | None = None
    history_problem: str | None = None  # why history.json cannot be used (None: fine or absent)
    metrics_problem: str | None = None

    @property
    def ready(self) -> bool:
        return self.problem is None

    @property
    def cache_key(self) -> str:
        """Folder plus weights stamp: retrained weights get a fresh cache entry."""
        try:
            stat = (self.folder / WEIGHTS_FILE).stat()
        except OSError:
            return str(self.folder)
        return f"{self.folder.resolve()}@{stat.st_mtime_ns}:{stat.st_size}"

    @property
    def classes(self) -> list[ClassInfo]:
        return [ClassInfo.from_json(c) for c in self.card.get("classes", [])]

    @property
    def test_miou(self) -> float | None:
        """The card's `test_miou`, else metrics.json's mIoU at the original resolution."""
        return _number(self.card.get("test_miou")) or _number(
            _get(self.metrics, "original_resolution", "miou"))

    @property
    def pixel_accuracy(self) -> float | None:
        return _number(self.card.get("test_pixel_accuracy")) or _number(
            _get(self.metrics, "original_resolution", "pixel_accuracy"))

    @property
    def per_class_iou(self) -> dict | None:
        iou = _get(self.metrics, "original_resolution", "iou")
        return iou if isinstance(iou, dict) and iou else None

    @property
    def summary(self) -> str:
        """One line for the sidebar: the first sentence of the description plus the score."""
        line = first_sentence(self.description)
        miou = self.test_miou
        return f"{line} Test mIoU: {miou:.3f}." if miou is not None else line


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def first_sentence(text: str) -> str:
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def read_benchmark(weights_dir: Path) -> dict[str, float]:
    """p50 latency (ms) per model id from `<weights>/benchmark.json`; {} when absent or malformed."""
    models = _get(read_optional_json(weights_dir / BENCHMARK_FILE), "models")
    if not isinstance(models, dict):
        return {}
    return {k: float(v["p50_ms"]) for k, v in models.items()
            if isinstance(v, dict) and _number(v.get("p50_ms")) is not None}


def discover_models(weights_dir: Path) -> list[ModelEntry]:
    """Every registry architecture, in registry order, with its folder's state (cheap checks
    only: no model is built, so the sidebar appears before any model loads)."""
    benchmark = read_benchmark(weights_dir)
    entries = []
    for arch in ARCHITECTURES.values():
        folder = weights_dir / arch.id
        entry = ModelEntry(arch.id, arch.title, arch.description, folder, None,
                           benchmark_p50_ms=benchmark.get(arch.id))
        if not folder.is_dir() or not any(folder.iterdir()):
            entry.problem = "not trained"
        elif (reason := check_model_dir(folder)) is not None:
            entry.problem = f"unavailable: {reason}"
        else:
            entry.card = read_card(folder)
            if entry.card["id"] != arch.id:
                entry.problem = (f"unavailable: {arch.id}/card.json describes "
                                 f"{entry.card['id']!r}, not {arch.id!r}.")
        if (folder / CARD_FILE).is_file():
            history, entry.history_problem = read_extra_json(folder / HISTORY_FILE, list,
                                                             "a list of epochs")
            entry.history = [r for r in history or [] if isinstance(r, dict)]
            entry.metrics, entry.metrics_problem = read_extra_json(folder / METRICS_FILE, dict,
                                                                   "an object of scores")
        entries.append(entry)
    return entries


def freeze_heap() -> None:
    """Put every object alive now (TensorFlow, Keras, the loaded networks: ~400,000 of them) out of
    the garbage collector's reach, after collecting what is already garbage. Streamlit runs a full
    collection after every script run; over that heap each took ~0.35 s holding the interpreter,
    half of the server's CPU per upload in a profiled soak (py-spy), and every queue stalled
    meanwhile. Frozen, it takes under a millisecond, and garbage made later is still collected."""
    gc.collect()
    gc.freeze()


def load_segmenter(folder: Path, report: Callable[[str], None] = lambda stage: None):
    """Load a model folder and trace it once on a tiny image, so the first real photo's timing
    is the network's and not TensorFlow's tracing (raises `ModelLoadError` with the reason).
    `report` hears each stage, for the page's loading bar."""
    from segdemo.inference import Segmenter

    report("reading the weights")
    segmenter = Segmenter.load(folder)
    report("preparing the network (first run)")
    segmenter.predict(Image.new("RGB", (8, 8)))
    return segmenter


def with_tta(segmenter, tta: str):
    """The same loaded network with test-time augmentation `tta`: a second traced graph over the
    same weights (no second copy in memory), traced here so the first photo does not wait."""
    from segdemo.inference import Segmenter

    variant = Segmenter(segmenter.model, segmenter.card, jit_compile=segmenter.jit_compile, tta=tta)
    variant.predict(Image.new("RGB", (8, 8)))
    return variant


def full_resolution(segmenter):
    """What rebuilds full-size masks from kept input-size probabilities: the segmenter itself, or
    for an `Ensemble` the member at whose input size its average is taken (the same graph its
    `predict_batch` resizes with, so the same labels)."""
    members = getattr(segmenter, "members", None)
    if members is None:
        return segmenter
    return next(m for m in members if tuple(m.input_size) == tuple(segmenter.input_size))


# ----------------------------------------------------------------------------- what a row runs


@dataclass(frozen=True, eq=False)
class Variant:
    """What one row of the page runs: one model, or an ensemble of several (their probabilities
    averaged), with or without flip TTA. `key` names the inference, so every setting has cached
    results of its own and switching back finds them again."""

    members: tuple[ModelEntry, ...]
    tta: str = "none"

    @property
    def ensemble(self) -> bool:
        return len(self.members) > 1

    @property
    def entry(self) -> ModelEntry:
        """The model (the first member of an ensemble)."""
        return self.members[0]

    @property
    def id(self) -> str:
        """For widget keys and file names: `unet`, `unet-flip`, `ensemble-unet+unet_mobilenetv2`."""
        base = "ensemble-" + "+".join(m.id for m in self.members) if self.ensemble else self.entry.id
        return base if self.tta == "none" else f"{base}-{self.tta}"

    @property
    def title(self) -> str:
        base = ("Ensemble of " + " + ".join(m.title for m in self.members) if self.ensemble
                else self.entry.title)
        return base + (" · flip TTA" if self.tta == "flip" else "")

    @property
    def key(self) -> str | tuple:
        """A plain model's is its folder's `cache_key`, as for every other user of the app's
        predictor pool; the others add the members and the TTA."""
        if self.plain:
            return self.entry.cache_key
        return tuple(m.cache_key for m in self.members), self.tta

    @property
    def classes(self) -> list[ClassInfo]:
        return self.entry.classes

    @property
    def plain(self) -> bool:
        """One model without TTA: the case its card's scores and benchmark describe."""
        return not self.ensemble and self.tta == "none"

    def without_tta(self) -> "Variant":
        return Variant(self.members)

    def parts(self) -> list["Variant"]:
        """An ensemble's members as rows of their own, with the same TTA."""
        return [Variant((m,), self.tta) for m in self.members]


def ensemble_problem(chosen: Sequence[ModelEntry]) -> str | None:
    """Why the chosen models cannot be averaged, or None."""
    if len(chosen) < 2:
        return "Choose two or more models to add their ensemble."
    if len({tuple(c.name for c in e.classes) for e in chosen}) > 1:
        return "The chosen models predict different classes, so they cannot be averaged."
    return None


def variants(chosen: Sequence[ModelEntry], tta: str = "none",
             ensemble: bool = False) -> list[Variant]:
    """The page's rows: each chosen model, then their ensemble when asked for and possible."""
    rows = [Variant((e,), tta) for e in chosen]
    if ensemble and ensemble_problem(chosen) is None:
        rows.append(Variant(tuple(chosen), tta))
    return rows


def best_epoch(entry: ModelEntry) -> int | None:
    """The epoch whose weights were kept: the card's `best_epoch`, else the best val mIoU."""
    kept = entry.card.get("best_epoch")
    if isinstance(kept, int):
        return kept
    scored = [(v, r.get("epoch", i + 1)) for i, r in enumerate(entry.history)
              if (v := _number(r.get("val_miou"))) is not None]
    return max(scored)[1] if scored else None


# ----------------------------------------------------------------------------- inputs and inference


# Characters that start Markdown (or Streamlit's :directives: and $math$) anywhere in a line, and
# those that do so only at its start.
_MARKDOWN_ANYWHERE = re.compile(r"([\\`*_\[\]<>#|~$:&.])")
_MARKDOWN_AT_START = re.compile(r"^([-+=])")
# Where GFM turns plain text into a link (http://…, www.…, name@host), found after the Markdown is
# parsed, so escapes cannot stop it: an invisible word joiner there does.
_AUTOLINK = re.compile(r"(?<=:)(?=//)|(?<=www)(?=\.)|(?<=@)", re.IGNORECASE)
WORD_JOINER = "\u2060"


def plain(text: object) -> str:
    """`text` for Streamlit's Markdown elements, shown as written: a file name like
    `a [x](http://example.com).jpg` stays text instead of becoming a link (Markdown characters are
    escaped; an invisible word joiner keeps URLs and e-mail addresses from being linked)."""
    line = _AUTOLINK.sub(WORD_JOINER, " ".join(str(text).splitlines()))
    return _MARKDOWN_AT_START.sub(r"\\\1", _MARKDOWN_ANYWHERE.sub(r"\\\1", line))


def upload_rules(max_mb: int) -> str:
    """What the uploader takes, for the line under it."""
    return (f"Accepted: {_type_list()}, up to {max_mb} MB per file. A larger file is refused by "
            f"the uploader (marked in red there) and is not segmented.")


LOST_UPLOADS = ("{count} uploaded file(s) are no longer on the server: the connection was lost "
                "and the server started this page's session again (or restarted). Remove them in "
                "the uploader and upload them again.")


def upload_problem(name: str) -> str | None:
    """Why an uploaded file's type is not accepted, or None when it is."""
    suffix = Path(name).suffix.lower().lstrip(".")
    if suffix in UPLOAD_TYPES:
        return None
    kind = f"{suffix.upper()} files are" if suffix else "Files without an extension are"
    return f"{name}: {kind} not accepted. Upload a photo as {_type_list()}."


def _type_list() -> str:
    names = [t.upper() for t in UPLOAD_TYPES]
    return ", ".join(names[:-1]) + " or " + names[-1]


@dataclass(frozen=True)
class InputImage:
    """A decoded, upright RGB input and the sha256 of its bytes (the prediction cache key)."""

    name: str
    digest: str
    image: Image.Image

    @property
    def stem(self) -> str:
        return Path(self.name).stem or "image"


def decode_input(data: bytes, name: str) -> InputImage:
    """Decode uploaded bytes; `ImageError` carries the message shown for a bad file."""
    return InputImage(name, hashlib.sha256(data).hexdigest(), open_image(data, name=name))


def example_path(file: str) -> Path | None:
    """Where scikit-image keeps a bundled example photo, found without importing scikit-image;
    None when it is not installed or was installed without its data."""
    spec = importlib.util.find_spec("skimage")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (path := Path(folder) / "data" / file).is_file():
            return path
    return None


def run_inference(segmenter, image: InputImage):
    """The dashboard's only inference call; `inference_calls` lets tests see cache misses."""
    global inference_calls
    inference_calls += 1
    return segmenter.predict(image.image)


def submit_inference(predictor, image: InputImage):
    """Queue `image` on a `segdemo.batching.Predictor` (the app's path: the result comes back on
    the returned future); counted in `inference_calls` like `run_inference`."""
    global inference_calls
    inference_calls += 1
    return predictor.submit(image.image)


def display_size(size: tuple[int, int], side: int = DISPLAY_SIDE) -> tuple[int, int]:
    width, height = size
    scale = min(1.0, side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def shrink(image: Image.Image, side: int = DISPLAY_SIDE) -> Image.Image:
    size = display_size(image.size, side)
    return image if size == image.size else image.resize(size, Image.BILINEAR)


def probability_grid(probabilities: np.ndarray, size: tuple[int, int],
                     side: int = HOVER_SIDE) -> np.ndarray:
    """Class probabilities as whole percentages (uint8, (h, w, C)) on a grid over a photo of
    size=(width, height), at most `side` cells a side: what the hover read-out sends to the
    browser. From the kept input-size probabilities, interpolated as the full mask is."""
    shape = display_size(size, side)[::-1]
    return (bilinear(probabilities, shape) * 100 + 0.5).clip(0, 100).astype(np.uint8)


def shrink_array(array: np.ndarray, side: int = DISPLAY_SIDE) -> np.ndarray:
    """A uint8 mask or float32 map, shrunk by nearest neighbour (labels must stay labels)."""
    width, height = display_size((array.shape[1], array.shape[0]), side)
    return resize_nearest(array, (height, width))


# Perceptually ordered ramp (viridis anchors) for the confidence map.
_RAMP = np.array([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)],
                 np.float32)


def confidence_image(confidence: np.ndarray) -> Image.Image:
    """Highest class probability per pixel as colours: dark purple = unsure, yellow = sure."""
    position = np.clip(np.nan_to_num(confidence), 0, 1) * (len(_RAMP) - 1)
    low = np.floor(position).astype(int).clip(0, len(_RAMP) - 2)
    t = (position - low)[..., None]
    rgb = _RAMP[low] * (1 - t) + _RAMP[low + 1] * t
    return Image.fromarray((rgb + 0.5).astype(np.uint8), "RGB")


def class_notes(classes: Sequence[ClassInfo]) -> list[str]:
    """The explanations (`CLASS_NOTES`) of the classes that need one."""
    return [CLASS_NOTES[c.name] for c in classes if c.name in CLASS_NOTES]


def out_of_domain_note(mask: np.ndarray, confidence: np.ndarray,
                       classes: Sequence[ClassInfo]) -> str | None:
    """A plain sentence when the model is unsure over much of what it marks as foreground (pet),
    as it tends to be on photos unlike its training photos; None otherwise."""
    foreground = [i for i, c in enumerate(classes) if c.name not in NOT_FOREGROUND]
    marked = np.isin(mask, foreground)
    if marked.mean() < MIN_FOREGROUND_SHARE:
        return None
    unsure = float((confidence[marked] < UNSURE_PROBABILITY).mean())
    if unsure < UNSURE_SHARE:
        return None
    names = " or ".join(classes[i].name for i in foreground)
    return (f"This photo may be unlike the photos the model was trained on: it is unsure about "
            f"{unsure:.0%} of what it marks as {names}, so that area may well be wrong.")


def legend_html(classes: Sequence[ClassInfo]) -> str:
    """Colour swatches with class names (Streamlit has no legend element for images)."""
    items = []
    for c in classes:
        colour = "#{:02x}{:02x}{:02x}".format(*c.color)
        items.append(
            f'<span style="display:inline-block;margin-right:0.9em;white-space:nowrap">'
            f'<span style="display:inline-block;width:0.9em;height:0.9em;background:{colour};'
            f'border:1px solid #8888;vertical-align:middle;margin-right:0.3em"></span>'
            f"{_escape(c.name)}</span>")
    return "".join(items)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def disagreement(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Per pixel, how many models do not vote for the majority class (0 = all agree)."""
    stack = np.stack(masks)
    votes = np.stack([(stack == label).sum(axis=0) for label in np.unique(stack)])
    return (len(masks) - votes.max(axis=0)).astype(np.uint8)


def latency_text(segmenter_s: float | None, p50_ms: float | None = None) -> str:
    """Each time named for what it measured: the wall-clock time inside `Segmenter` for this photo
    (resize, network, resize back; longer while other requests share the CPU) and the benchmark's
    median on an idle machine."""
    parts = []
    if segmenter_s is not None:
        parts.append(f"segmenter {segmenter_s * 1000:.0f} ms for this photo "
                     f"(resize, network, resize back)")
    if p50_ms is not None:
        parts.append(f"benchmark p50 {p50_ms:.0f} ms on an idle machine")
    return " · ".join(parts) or "no timing yet"


def comparison_rows(rows: Sequence[Variant],
                    seconds: Mapping[str, float] | None = None) -> list[dict]:
    """The Compare table: scores and sizes from the cards, the time inside the segmenter for this
    photo (`seconds`, per variant id) and the benchmark's. Cards score one model without TTA, so
    a TTA or ensemble row leaves the scores and the benchmark empty; sizes add up."""
    seconds = seconds or {}
    table = []
    for row in rows:
        params = [e.card.get("parameters") for e in row.members]
        sizes = [_file_mb(e) for e in row.members]
        measured = seconds.get(row.id)
        table.append({
            "model": row.title,
            "test mIoU": row.entry.test_miou if row.plain else None,
            "pixel accuracy": row.entry.pixel_accuracy if row.plain else None,
            "parameters": int(sum(params)) if all(isinstance(p, (int, float)) for p in params)
            else None,
            "MB": round(sum(sizes), 2) if None not in sizes else None,
            "segmenter ms (this photo)": round(measured * 1000, 1) if measured is not None
            else None,
            "benchmark p50 (ms)": row.entry.benchmark_p50_ms if row.plain else None,
        })
    return table


def _file_mb(entry: ModelEntry) -> float | None:
    size_mb = _number(entry.card.get("file_mb"))
    if size_mb is None and (entry.folder / WEIGHTS_FILE).is_file():
        size_mb = round((entry.folder / WEIGHTS_FILE).stat().st_size / 2**20, 2)
    return size_mb


def batch_text(done: int, total: int, photos: int, models: int) -> str:
    """The progress bar's line while a batch runs."""
    return (f"Segmenting {photos} photo{'s' * (photos != 1)} with {models} "
            f"model{'s' * (models != 1)}: {done} of {total} results ready")


def training_rows(entries: Sequence[ModelEntry]) -> list[dict]:
    """How each model was trained, from its card; columns no card fills are left out."""
    rows = []
    for e in entries:
        seconds = _number(e.card.get("training_seconds"))
        rows.append({"model": e.title, "epochs": e.card.get("epochs"),
                     "best epoch": e.card.get("best_epoch"),
                     "best val mIoU": _number(e.card.get("best_val_miou")),
                     "training (min)": round(seconds / 60, 1) if seconds is not None else None,
                     "encoder weights": e.card.get("encoder_weights"),
                     "recipe": training_recipe(e.card),
                     "hardware": e.card.get("hardware")})
    filled = {k for row in rows for k, v in row.items() if v is not None}
    return [{k: v for k, v in row.items() if k in filled} for row in rows]


# ----------------------------------------------------------------------------- evaluation browsing


@dataclass(frozen=True)
class ImageScore:
    name: str
    miou: float | None
    pixel_accuracy: float | None


def metrics_source(entry: ModelEntry) -> str:
    """Which data a model's metrics.json was scored on, e.g. "test split of oxford-iiit-pet, 294
    images"."""
    dataset = _get(entry.metrics, "dataset")
    name = _get(dataset, "name") or "an unnamed dataset"
    split = _get(dataset, "split")
    images = _get(entry.metrics, "images")
    where = f"{split} split of {name}" if split else str(name)
    return where + (f", {images} images" if isinstance(images, int) else "")


def score_rows(entries: Sequence[ModelEntry]) -> list[dict]:
    """Per model: mIoU, pet-vs-background IoU and boundary F-score at the original resolution, and
    the data they come from; the last two only where some metrics.json has them."""
    rows = []
    for e in entries:
        original = _get(e.metrics, "original_resolution") or {}
        tolerance = _number(_get(e.metrics, "boundary_tolerance_px"))
        rows.append({"model": e.title, "scored on": metrics_source(e),
                     "mIoU": _number(original.get("miou")),
                     "foreground IoU": _number(original.get("foreground_iou")),
                     "boundary F": _number(original.get("boundary_f")),
                     "boundary tolerance (px)": tolerance})
    optional = ("foreground IoU", "boundary F", "boundary tolerance (px)")
    shown = {k for row in rows for k in optional if row[k] is not None}
    return [{k: v for k, v in row.items() if k not in optional or k in shown} for row in rows]


def common_source(entries: Sequence[ModelEntry]) -> str:
    """The data every model's metrics.json was scored on, when it is the same for all of them."""
    sources = {metrics_source(e) for e in entries}
    return sources.pop() if len(sources) == 1 else "each model's own test data (see the table)"


def held_out(dataset) -> tuple[str, list]:
    """The split the evaluation browser shows, test (else val), and its samples."""
    split = "test" if dataset.splits.get("test") else "val"
    return split, list(dataset.splits.get(split) or [])


def live_sample_text(dataset_name: str, split: str, total: int,
                     limit: int = LIVE_EVAL_LIMIT) -> str:
    """What the live ranking scores, for the line above it."""
    if total <= limit:
        which = f"all {total} {split}-split images"
    else:
        which = f"{limit} of the {total} {split}-split images (a seeded random sample across the split)"
    return f"metrics.json does not cover {dataset_name}: scoring {which} live here."


def live_sample(samples: Sequence, limit: int = LIVE_EVAL_LIMIT, seed: int = LIVE_EVAL_SEED) -> list:
    """A seeded random `limit` of `samples` spread over the whole list (all of them when fewer),
    in their original order."""
    if len(samples) <= limit:
        return list(samples)
    picked = sorted(random.Random(seed).sample(range(len(samples)), limit))
    return [samples[i] for i in picked]


def ranked_test_images(entry: ModelEntry, sample_names: Sequence[str]) -> list[ImageScore] | None:
    """metrics.json's per-image scores (worst first) when they describe this dataset's held-out
    images, else None (then the caller scores a bounded number live)."""
    per_image = _get(entry.metrics, "per_image")
    if not isinstance(per_image, list) or not per_image:
        return None
    known = set(sample_names)
    rows = [r for r in per_image if isinstance(r, dict) and r.get("name") in known]
    if len(rows) < len(per_image):
        return None  # metrics from another dataset or split
    return worst_first([ImageScore(r["name"], _number(r.get("miou")),
                                   _number(r.get("pixel_accuracy"))) for r in rows])


def score_image(name: str, prediction_mask: np.ndarray, truth: np.ndarray,
                class_names: Sequence[str], ignore_index: int) -> ImageScore:
    from segdemo.metrics import confusion_matrix, scores  # TensorFlow: not for the first page

    cm = confusion_matrix(truth, prediction_mask, len(class_names), ignore_index)
    result = scores(cm, list(class_names))
    return ImageScore(name, result["miou"], result["pixel_accuracy"])


def worst_first(items: Sequence[ImageScore]) -> list[ImageScore]:
    """Lowest mIoU first; images without a defined score last."""
    return sorted(items, key=lambda s: (s.miou is None, s.miou if s.miou is not None else 0.0))


def colour_mask(mask: np.ndarray, classes: Sequence[ClassInfo],
                ignore_index: int = 255) -> Image.Image:
    """A mask in the class colours; ignored pixels (ground truth only) white."""
    from segdemo.inference import colorize

    rgb = colorize(mask, classes)
    rgb[mask == ignore_index] = 255
    return Image.fromarray(rgb, "RGB")
