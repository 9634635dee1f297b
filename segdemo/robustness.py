"""`python -m segdemo robustness`: the test split again, under the photo shifts users bring.

The shipped models learn from Oxford-IIIT Pet photos of mostly three breeds, and the test split
holds the same breeds, so its score overstates how a model copes with what people upload. Each
perturbation here is a deterministic change a real photo often has (small, dark, flat, grey,
blurred, noisy, heavily compressed, the pet small in the frame); the models are scored on the
changed photos at their original resolution, exactly as `evaluate` scores the plain ones.

Heavy imports (TensorFlow) happen inside the functions, so that `results --robustness` prints
its table at once.
"""
from __future__ import annotations

import datetime as _dt
import io
import time
import zlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from segdemo.errors import SegDemoError
from segdemo.artifacts import read_card, read_optional_json, read_report, write_json
from segdemo.benchmark import default_weights_dir, discover
from segdemo.classes import ClassInfo
from segdemo.images import resize_nearest

if TYPE_CHECKING:
    from segdemo.data import Dataset
    from segdemo.inference import Segmenter

REPORT_FILE = "robustness.json"
GREY = (128, 128, 128)


class RobustnessError(SegDemoError, ValueError):
    """A bad request (unknown perturbation or model, nothing to score); says what to do."""


@dataclass(frozen=True)
class Perturbation:
    """A named, deterministic change of a (photo, mask) pair; the mask stays valid labels."""

    name: str
    description: str
    apply: Callable[[Image.Image, np.ndarray, Sequence[ClassInfo]], tuple[Image.Image, np.ndarray]]


def _photo_only(change: Callable[[Image.Image], Image.Image]):
    """A perturbation of the photo alone: the pixels keep their labels."""
    return lambda image, mask, classes: (change(image), mask)


def _low_resolution(image: Image.Image, mask: np.ndarray,
                    classes) -> tuple[Image.Image, np.ndarray]:
    width, height = max(1, round(image.width / 3)), max(1, round(image.height / 3))
    return image.resize((width, height), Image.BILINEAR), resize_nearest(mask, (height, width))


def _blur(image: Image.Image) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(3 * image.width / 500))


def _jpeg(image: Image.Image, quality: int = 10) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(buffer).convert("RGB")


def _noise(image: Image.Image, sigma: float = 20.0) -> Image.Image:
    """Gaussian noise seeded by the photo's pixels: the same photo always gets the same noise."""
    rng = np.random.default_rng(zlib.crc32(image.tobytes()))
    pixels = np.asarray(image, dtype=np.float32)
    noisy = pixels + rng.normal(0.0, sigma, pixels.shape)
    return Image.fromarray(np.clip(noisy + 0.5, 0, 255).astype(np.uint8), "RGB")


def _zoom_out(image: Image.Image, mask: np.ndarray, classes) -> tuple[Image.Image, np.ndarray]:
    """The photo in the middle of a grey canvas twice as wide and high; the new pixels are
    labelled background, or ignored where the classes have no background."""
    from segdemo.data import IGNORE_INDEX

    names = [c.name for c in classes]
    fill = names.index("background") if "background" in names else IGNORE_INDEX
    left, top = image.width // 2, image.height // 2
    canvas = Image.new("RGB", (2 * image.width, 2 * image.height), GREY)
    canvas.paste(image, (left, top))
    padded = np.full((2 * image.height, 2 * image.width), fill, dtype=np.uint8)
    padded[top:top + image.height, left:left + image.width] = mask
    return canvas, padded


PERTURBATIONS: dict[str, Perturbation] = {p.name: p for p in (
    Perturbation("none", "the photos as they are", lambda image, mask, classes: (image, mask)),
    Perturbation("low_resolution", "photo and mask at 1/3 of the width and height",
                 _low_resolution),
    Perturbation("grayscale", "black and white",
                 _photo_only(lambda im: im.convert("L").convert("RGB"))),
    Perturbation("dark", "brightness x0.4",
                 _photo_only(lambda im: ImageEnhance.Brightness(im).enhance(0.4))),
    Perturbation("low_contrast", "contrast x0.4",
                 _photo_only(lambda im: ImageEnhance.Contrast(im).enhance(0.4))),
    Perturbation("jpeg_q10", "re-encoded as JPEG at quality 10", _photo_only(_jpeg)),
    Perturbation("blur", "Gaussian blur, radius 3 px per 500 px of width", _photo_only(_blur)),
    Perturbation("noise", "Gaussian noise, sigma 20 (seeded by the photo)", _photo_only(_noise)),
    Perturbation("zoom_out", "photo centred on a grey canvas twice as wide and high (the pet "
                             "smaller in the frame)", _zoom_out),
)}


def select(names: Sequence[str] | None) -> dict[str, Perturbation]:
    """The named perturbations in the given order (all by default)."""
    unknown = [n for n in names or () if n not in PERTURBATIONS]
    if unknown:
        raise RobustnessError(f"unknown perturbation {', '.join(map(repr, unknown))}; known: "
                              f"{', '.join(PERTURBATIONS)}.")
    return {n: PERTURBATIONS[n] for n in names or PERTURBATIONS}


def robustness(segmenter: Segmenter, dataset: Dataset, split: str = "test",
               names: Sequence[str] | None = None, limit: int | None = None,
               progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Original-resolution pixel accuracy, mIoU and per-class IoU of `segmenter` on `split` under
    each perturbation, by name; `progress(name, done, total)` after each image."""
    from segdemo.evaluate import evaluate

    results = {}
    for name, perturbation in select(names).items():
        metrics = evaluate(segmenter, dataset, split, limit=limit,
                           transform=partial(perturbation.apply, classes=dataset.classes),
                           progress=progress and partial(progress, name))
        s = metrics["original_resolution"]
        results[name] = {"miou": s["miou"], "pixel_accuracy": s["pixel_accuracy"], "iou": s["iou"]}
    return results


def _datasets(folders: dict[str, Path], data: str | None, format: str | None,
              split: str) -> dict[str, Dataset]:
    """Each model's dataset, read with the classes and split settings it was trained with; they
    must agree on the images of `split`, or the models would not be compared on the same photos."""
    from segdemo.evaluate import dataset_for_card

    datasets = {}
    for model_id, folder in folders.items():
        card = read_card(folder)
        dataset = datasets[model_id] = dataset_for_card(card, data, format)
        if not dataset.splits.get(split):
            raise RobustnessError(f"the dataset at {dataset.root} has no images in its {split!r} "
                                  "split.")
        if dataset.num_classes != len(card["classes"]):
            raise RobustnessError(f"{model_id} predicts {len(card['classes'])} classes but the "
                                  f"dataset at {dataset.root} has {dataset.num_classes}.")
    names = {tuple(s.name for s in d.splits[split]) for d in datasets.values()}
    if len(names) > 1:
        raise RobustnessError(f"the models split {data} differently (seed or fractions), so their "
                              f"{split!r} images differ: compare them in separate runs (--models).")
    return datasets


def run_robustness(data: str | None, format: str | None = None,
                   weights_dir: str | Path | None = None, model_ids: Sequence[str] | None = None,
                   split: str = "test", names: Sequence[str] | None = None,
                   limit: int | None = None, json_path: str | Path | None = None,
                   log: Callable[[str], None] = print) -> dict:
    """Score every usable model folder under `weights_dir` (or `model_ids`) under each
    perturbation, write the JSON (default: <weights>/robustness.json) and return it."""
    from segdemo.inference import Segmenter

    perturbations = select(names)
    if limit is not None and limit < 1:
        raise RobustnessError("--limit must be at least 1.")
    weights_dir = Path(weights_dir) if weights_dir else default_weights_dir()
    folders, skipped = discover(weights_dir, model_ids)
    if model_ids and skipped:
        raise RobustnessError("; ".join(f"cannot score {k}: {v}" for k, v in skipped.items()))
    for model_id, reason in skipped.items():
        log(f"skipped {model_id}: {reason}")
    if not folders:
        raise RobustnessError(f"no trained model folder in {weights_dir}: pass --weights DIR.")
    datasets = _datasets(folders, data, format, split)
    first = next(iter(datasets.values()))
    report = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "data": str(Path(first.root).resolve()), "format": first.format, "split": split,
        "images": len(first.splits[split][:limit]),
        "perturbations": {n: p.description for n, p in perturbations.items()},
        "models": {},
    }
    for model_id, folder in folders.items():
        log(f"{model_id} ({report['images']} images per perturbation):")
        segmenter = Segmenter.load(folder)
        results = report["models"][model_id] = {}
        for name in perturbations:
            start = time.perf_counter()
            results.update(robustness(segmenter, datasets[model_id], split, [name], limit))
            log(f"  {name:16}mIoU {_fmt(results[name]['miou'])}  pixel acc "
                f"{_fmt(results[name]['pixel_accuracy'])}  ({time.perf_counter() - start:.0f} s)")
    json_path = Path(json_path) if json_path else weights_dir / REPORT_FILE
    if model_ids:
        report["models"] = {**_comparable_models(json_path, report), **report["models"]}
    write_json(json_path, report)
    log(f"written to {json_path}")
    return report


def _comparable_models(json_path: Path, report: dict) -> dict:
    """The other models' scores already in `json_path` when they were taken on the same photos
    and shifts, so that re-scoring one model (`--models ID`) keeps the rest of the table."""
    previous = read_optional_json(json_path)
    same = isinstance(previous, dict) and isinstance(previous.get("models"), dict) and all(
        previous.get(k) == report[k] for k in ("data", "format", "split", "images", "perturbations"))
    return previous["models"] if same else {}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def load_report(path: str | Path) -> dict:
    """The JSON written by `python -m segdemo robustness` (`RobustnessError` when it is not one)."""
    return read_report(path, "robustness", "robustness --data PATH", ("models", "perturbations"),
                       RobustnessError)
