"""The dashboard's logic, kept free of Streamlit so it can be tested (and reused) without a server.

`streamlit_app.py` only lays out widgets; everything it shows comes from here: which model folders
are usable and why not, decoded inputs with content hashes (the prediction cache key), the one
function that runs inference (and counts its calls, so tests can prove that moving a slider ran
no new inference), tables, legends and the per-image evaluation browser.
"""
from __future__ import annotations

import argparse
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segdemo.artifacts import (BENCHMARK_FILE, CARD_FILE, HISTORY_FILE, METRICS_FILE, WEIGHTS_FILE,
                               check_model_dir, read_card, read_optional_json)
from segdemo.classes import ClassInfo
from segdemo.images import open_image, resize_nearest
from segdemo.models.registry import ARCHITECTURES

REPO_ROOT = Path(__file__).resolve().parent.parent
UPLOAD_TYPES = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif")
# Photos that ship inside scikit-image's wheel (no pooch download): name -> skimage.data function.
SKIMAGE_EXAMPLES = {"Chelsea the cat": "chelsea", "Coffee cup": "coffee",
                    "Astronaut": "astronaut", "Rocket": "rocket"}
# Shown images are shrunk to this longest side: the browser gets less data and reruns stay fast.
# Downloads and all metrics use the full resolution.
DISPLAY_SIDE = 1024
# Held-out images scored live when metrics.json does not cover the dataset (bounds the wait).
LIVE_EVAL_LIMIT = 24

# Incremented by `run_inference` and `submit_inference`, the only places the dashboard asks for
# inference.
inference_calls = 0


# ----------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class AppConfig:
    """Where the models and the optional dataset live."""

    weights_dir: Path
    data_dir: Path | None = None
    data_format: str = "oxford"


def parse_config(argv: Sequence[str], environ: Mapping[str, str]) -> AppConfig:
    """`streamlit run streamlit_app.py -- --data PATH [--format F]`, with env-var fallbacks.

    Unknown arguments are ignored (under AppTest, sys.argv is pytest's) and abbreviations are off so
    that none of them is mistaken for ours.
    """
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--data", default=environ.get("SEGDEMO_DATA") or None)
    parser.add_argument("--format", default=environ.get("SEGDEMO_FORMAT") or "oxford")
    parser.add_argument("--weights", default=environ.get("SEGDEMO_WEIGHTS") or None)
    args, _ = parser.parse_known_args(list(argv))
    weights = Path(args.weights).expanduser() if args.weights else REPO_ROOT / "weights"
    data = Path(args.data).expanduser() if args.data else None
    return AppConfig(weights, data, args.format)


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
            history = read_optional_json(folder / HISTORY_FILE)
            entry.history = [r for r in history if isinstance(r, dict)] if isinstance(
                history, list) else []
            metrics = read_optional_json(folder / METRICS_FILE)
            entry.metrics = metrics if isinstance(metrics, dict) else None
        entries.append(entry)
    return entries


def load_segmenter(folder: Path):
    """Load a model folder and trace it once on a tiny image, so the first real photo's timing
    is the network's and not TensorFlow's tracing (raises `ModelLoadError` with the reason)."""
    from segdemo.inference import Segmenter

    segmenter = Segmenter.load(folder)
    segmenter.predict(Image.new("RGB", (8, 8)))
    return segmenter


# ----------------------------------------------------------------------------- inputs and inference


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


def image_input(image: Image.Image, name: str) -> InputImage:
    """An in-memory picture (an example photo), hashed by its pixels."""
    image = open_image(image, name=name)
    digest = hashlib.sha256(image.tobytes() + repr(image.size).encode()).hexdigest()
    return InputImage(name, digest, image)


def skimage_example(function: str) -> Image.Image:
    from skimage import data

    return Image.fromarray(getattr(data, function)())


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


def latency_text(seconds: float | None, p50_ms: float | None) -> str:
    parts = []
    if seconds is not None:
        parts.append(f"inference {seconds * 1000:.0f} ms (measured here)")
    if p50_ms is not None:
        parts.append(f"benchmark p50 {p50_ms:.0f} ms")
    return " · ".join(parts) or "no timing yet"


def comparison_rows(entries: Sequence[ModelEntry],
                    seconds: Mapping[str, float] | None = None) -> list[dict]:
    """The Compare table: scores and sizes from the cards, latency measured here and benchmarked."""
    seconds = seconds or {}
    rows = []
    for e in entries:
        params = e.card.get("parameters")
        size_mb = e.card.get("file_mb")
        if size_mb is None and (e.folder / WEIGHTS_FILE).is_file():
            size_mb = round((e.folder / WEIGHTS_FILE).stat().st_size / 2**20, 2)
        measured = seconds.get(e.id)
        rows.append({
            "model": e.title,
            "test mIoU": e.test_miou,
            "pixel accuracy": e.pixel_accuracy,
            "parameters": int(params) if isinstance(params, (int, float)) else None,
            "MB": size_mb,
            "latency here (ms)": round(measured * 1000, 1) if measured is not None else None,
            "benchmark p50 (ms)": e.benchmark_p50_ms,
        })
    return rows


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
                     "hardware": e.card.get("hardware")})
    filled = {k for row in rows for k, v in row.items() if v is not None}
    return [{k: v for k, v in row.items() if k in filled} for row in rows]


# ----------------------------------------------------------------------------- evaluation browsing


@dataclass(frozen=True)
class ImageScore:
    name: str
    miou: float | None
    pixel_accuracy: float | None


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
