"""The one converter module: a trained model folder -> SavedModel, TFLite (LiteRT) or ONNX, each
checked against the Keras model, plus the on-disk cache of converted files the runtimes open.

Every format is converted from `preprocessing.probabilities_function`: a uint8 RGB batch at the
model's input size in, softmax class probabilities out, normalisation inside. So a server, a
phone or ONNX Runtime feeds the network exactly as `Segmenter` does, and a client only resizes.

- **SavedModel** (`saved_model/`): signature `serving_default`, input `images` uint8
  [N, H, W, 3] (N free), output `probabilities` float32 [N, H, W, C]; TensorFlow Serving and
  Triton's TensorFlow backend load it as it is (README "Export").
- **TFLite** (`model.tflite`) for LiteRT on phones, edge boards and here: converted from a
  SavedModel with batch 1 (`TFLiteConverter.from_concrete_functions` on a Keras 3 model wrote the
  variable handles without the weights; a free batch makes transposed convolutions dynamic, which
  XNNPACK refuses). `float16` halves the file; `int8` is static, calibrated on training photos
  when a dataset is given (otherwise dynamic range, weights only; the card says which).
- **ONNX** (`model.onnx`, tf2onnx, opset 17) for ONNX Runtime and other engines; `int8` is
  ONNX Runtime's static QDQ quantisation with `reduce_range` (without it activations saturate on
  CPUs without VNNI) on training photos; dynamic int8 ruins the depthwise convolutions.

`export_model` checks each export by the share of mask pixels (at the photos' original size) that
agree with the Keras model's: float32 within `TOLERANCE`, float16 and int8 reported against the
stricter bar a runtime must pass to be picked (`FAITHFUL_AGREEMENT`, `FAITHFUL_MIOU`).

Converted files for `Segmenter(runtime=...)` are built from the shipped `.weights.h5` on first
use and cached outside the repository (`cache_root()`: $SEGDEMO_CACHE, else
$XDG_CACHE_HOME/segdemo or ~/.cache/segdemo), keyed by a digest of the weights, the card and the
converter versions: nothing is committed twice, and a conversion (4-11 s per file for the
MobileNetV2 models on 2 cores, measured quiet) happens once per machine and weights.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image

from segdemo.artifacts import load_model, write_json
from segdemo.errors import SegDemoError
from segdemo.images import model_input, synthetic_photo
from segdemo.runtimes import FILE_FORMAT, Runner, RuntimeUnavailable, TFRunner, open_file
from segdemo.upsample import bilinear_labels

FORMATS = ("saved_model", "tflite", "onnx")
QUANTIZATIONS = {"saved_model": (None,), "tflite": (None, "float16", "int8"), "onnx": (None, "int8")}
FILE_NAMES = {"saved_model": "saved_model", "tflite": "model.tflite", "onnx": "model.onnx"}
TOLERANCE = 0.999  # share of agreeing mask pixels a float32 export must reach
FAITHFUL_AGREEMENT = 0.995  # a quantised (or any) runtime is picked only above this ...
FAITHFUL_MIOU = 0.005  # ... and when the test-split mIoU moves by less than this
CALIBRATION_PHOTOS = 32
ONNX_OPSET = 17
EXPORTS_DIR = Path(__file__).resolve().parents[1] / "exports"  # gitignored default --out


class ExportError(SegDemoError, RuntimeError):
    """An export that cannot be made or does not match the Keras model; the message says why."""


def _serving_fn(model, card: dict, batch: int | None):
    import tensorflow as tf

    from segdemo.preprocessing import probabilities_function

    height, width = card["input_size"]
    spec = tf.TensorSpec([batch, height, width, 3], tf.uint8, name="images")
    return probabilities_function(model, card), spec


def write_saved_model(model, card: dict, path: str | Path, batch: int | None = None) -> Path:
    """A SavedModel whose `serving_default` maps `images` (uint8) to `probabilities`."""
    import keras

    probabilities, spec = _serving_fn(model, card, batch)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", lambda images: {"probabilities": probabilities(images)},
                         input_signature=[spec])
    archive.write_out(str(path), verbose=False)
    return Path(path)


def write_tflite(model, card: dict, path: str | Path, quantize: str | None = None,
                 calibration: np.ndarray | None = None) -> Path:
    """A batch-1 TFLite file, float32, float16 or int8 (static with `calibration` photos, uint8
    (N, H, W, 3) at the input size; dynamic range without)."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="segdemo-tflite-") as tmp:
        write_saved_model(model, card, tmp, batch=1)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8" and calibration is not None:
            converter.representative_dataset = lambda: ([photo[None]] for photo in calibration)
        Path(path).write_bytes(converter.convert())
    return Path(path)


def write_onnx(model, card: dict, path: str | Path, quantize: str | None = None,
               calibration: np.ndarray | None = None) -> Path:
    """An ONNX file with a free batch dimension; int8 is static QDQ on `calibration` photos."""
    import tensorflow as tf
    try:
        import tf2onnx
    except ImportError:
        raise ExportError("ONNX export needs tf2onnx and onnx (pip install tf2onnx onnx).") from None

    probabilities, spec = _serving_fn(model, card, None)
    function = tf.function(lambda images: {"probabilities": probabilities(images)},
                           input_signature=[spec])
    if quantize != "int8":
        tf2onnx.convert.from_function(function, input_signature=[spec], opset=ONNX_OPSET,
                                      output_path=str(path))
        return Path(path)
    if calibration is None:
        raise ExportError("ONNX int8 needs calibration photos: pass --data with a dataset "
                          "(dynamic int8 ruins the depthwise convolutions, so it is not offered).")
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    class Photos(CalibrationDataReader):
        def __init__(self):
            self._photos = iter(calibration)

        def get_next(self):
            photo = next(self._photos, None)
            return None if photo is None else {"images": photo[None]}

    with tempfile.TemporaryDirectory(prefix="segdemo-onnx-") as tmp:
        float_path = write_onnx(model, card, Path(tmp) / "float.onnx")
        quantize_static(str(float_path), str(path), Photos(), quant_format=QuantFormat.QDQ,
                        per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
    return Path(path)


WRITERS: dict[str, Callable[..., Path]] = {"saved_model": write_saved_model,
                                           "tflite": write_tflite, "onnx": write_onnx}


def check_combination(fmt: str, quantize: str | None) -> None:
    """`ExportError` for an unknown format or a quantisation the format does not offer."""
    if fmt not in FORMATS:
        raise ExportError(f"Unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    if quantize not in QUANTIZATIONS[fmt]:
        offered = ", ".join(q for q in QUANTIZATIONS[fmt] if q) or "none"
        raise ExportError(f"{fmt} cannot be quantised to {quantize} (offered: {offered}).")


def convert(model, card: dict, fmt: str, path: str | Path, quantize: str | None = None,
            calibration: np.ndarray | None = None) -> Path:
    """Write `model` as `fmt` at `path` (checked combination of format and quantisation)."""
    check_combination(fmt, quantize)
    if fmt == "saved_model":
        return write_saved_model(model, card, path)
    return WRITERS[fmt](model, card, path, quantize=quantize, calibration=calibration)


# --- the cache of converted files ---------------------------------------------------------------

def cache_root() -> Path:
    """Where converted files live: $SEGDEMO_CACHE, else the user's cache folder (never git)."""
    if os.environ.get("SEGDEMO_CACHE"):
        return Path(os.environ["SEGDEMO_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "segdemo"


def model_digest(model, card: dict) -> str:
    """SHA-256 of the weights, the card fields the graph depends on and the converter versions:
    a retrained model, another card or another TensorFlow gets new files."""
    import tensorflow as tf

    digest = hashlib.sha256()
    described = {k: card.get(k) for k in ("id", "input_size", "preprocessing", "options", "classes")}
    digest.update(json.dumps([described, tf.__version__], sort_keys=True).encode())
    for weight in model.weights:
        digest.update(np.ascontiguousarray(np.asarray(weight)).tobytes())
    return digest.hexdigest()


def converted_file(model, card: dict, fmt: str, quantize: str | None = None,
                   calibration: np.ndarray | None = None, digest: str | None = None) -> Path:
    """The cached conversion of `model` to `fmt` (built on first use; atomic, so an interrupted
    build never leaves a half file). int8 files are keyed by their calibration photos too."""
    digest = digest or model_digest(model, card)
    name = fmt + (f"-{quantize}" if quantize else "")
    if quantize == "int8" and calibration is not None:
        name += "-" + hashlib.sha256(np.ascontiguousarray(calibration).tobytes()).hexdigest()[:8]
    folder = cache_root() / "converted" / f"{card['id']}-{digest[:16]}"
    path = folder / (name + Path(FILE_NAMES[fmt]).suffix)
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{path.name}.{os.getpid()}"
    try:
        convert(model, card, fmt, partial, quantize, calibration)
        os.replace(partial, path)
    finally:
        if partial.is_dir():
            shutil.rmtree(partial)
        elif partial.exists():
            partial.unlink()
    return path


def file_runner(name: str, quantize: str | None, model, card: dict, digest: str | None) -> Runner:
    """A runner for runtime `name` (onnx, litert) on the cached converted file, built now if it
    is not cached yet; int8 calibrates on the training photos of the card's dataset."""
    calibration = None
    if quantize == "int8":
        dataset, note = find_dataset(card, None)
        if dataset is None:
            raise RuntimeUnavailable(f"int8 needs its calibration photos: {note}")
        calibration = calibration_photos(dataset, card["input_size"])
    fmt = FILE_FORMAT[name]
    runner = open_file(fmt, converted_file(model, card, fmt, quantize, calibration, digest))
    if quantize:
        runner.name = f"{name}-{quantize}"
    return runner


# --- how faithful an export is ------------------------------------------------------------------

def calibration_photos(dataset, input_size: Sequence[int], count: int = CALIBRATION_PHOTOS) -> np.ndarray:
    """uint8 (N, H, W, 3): the first `count` training photos at the input size."""
    samples = dataset.splits["train"][:count]
    return np.stack([model_input(dataset.read_image(s), tuple(input_size)) for s in samples])


def runner_mask(runner: Runner, input_size: Sequence[int], image: Image.Image) -> np.ndarray:
    """The runner's label mask for one photo at its original size (Segmenter's fast path)."""
    probs = runner(model_input(image, tuple(input_size))[None])[0]
    return bilinear_labels(probs, (image.size[1], image.size[0]))


def fidelity(reference: Runner, candidates: dict[str, Runner], card: dict,
             samples: Iterable[tuple[Image.Image, np.ndarray | None]],
             ignore_index: int = 255) -> dict[str, dict]:
    """Per candidate: the share of mask pixels where it agrees with `reference`, over all photos'
    original pixels; with labels also both mIoUs and the difference (candidate - reference)."""
    from segdemo.metrics import confusion_matrix, scores

    n = len(card["classes"])
    same = dict.fromkeys(candidates, 0)
    matrices = {name: np.zeros((n, n), np.int64) for name in (None, *candidates)}
    total = images = 0
    labelled = True
    for image, labels in samples:
        ours = runner_mask(reference, card["input_size"], image)
        theirs = {name: runner_mask(c, card["input_size"], image) for name, c in candidates.items()}
        total += ours.size
        images += 1
        for name, mask in theirs.items():
            same[name] += int(np.count_nonzero(ours == mask))
        labelled = labelled and labels is not None
        if labelled:
            matrices[None] += confusion_matrix(labels, ours, n, ignore_index)
            for name, mask in theirs.items():
                matrices[name] += confusion_matrix(labels, mask, n, ignore_index)
    results = {}
    for name in candidates:
        result = results[name] = {"images": images, "agreement": same[name] / max(total, 1)}
        if labelled and images:
            result["miou_reference"] = scores(matrices[None])["miou"]
            result["miou"] = scores(matrices[name])["miou"]
            result["delta_miou"] = result["miou"] - result["miou_reference"]
    return results


def faithful(scores: dict) -> bool:
    """Whether a runtime passes the bar to be picked: agreement and, where known, mIoU."""
    delta = scores.get("delta_miou")
    return scores["agreement"] >= FAITHFUL_AGREEMENT and (delta is None or abs(delta) < FAITHFUL_MIOU)


def find_dataset(card: dict, data: str | Path | None):
    """(dataset or None, what it is): --data, else the card's dataset folder when it exists here
    (relative paths from the repository root, as training wrote them)."""
    from segdemo.data import dataset_for_card

    if data is None:
        root = card.get("dataset", {}).get("root")
        candidate = Path(root) if root else None
        if candidate is not None and not candidate.is_absolute():
            candidate = Path(__file__).resolve().parents[1] / candidate
        if candidate is None or not candidate.is_dir():
            return None, "no dataset (no --data, and the card's dataset folder is not here)"
        data = candidate
    dataset = dataset_for_card(card, str(data))
    return dataset, f"{dataset.name} at {dataset.root}"


def check_samples(dataset, limit: int | None = None, synthetic: int = 8):
    """(photo, labels) pairs to check an export on: the test split, else synthetic photos."""
    if dataset is None or not dataset.splits.get("test"):
        return [(synthetic_photo(500, 375, seed=i), None) for i in range(synthetic)], \
            f"{synthetic} synthetic 500x375 photos (no test split)"
    samples = dataset.splits["test"][:limit]
    pairs = ((dataset.read_image(s), dataset.read_mask(s)) for s in samples)
    return pairs, f"{len(samples)} photos of the {dataset.name} test split"


def export_model(model_dir: str | Path, fmt: str, quantize: str | None = None,
                 out: str | Path | None = None, data: str | Path | None = None,
                 limit: int | None = None, log: Callable[[str], None] = print) -> dict:
    """Export a model folder, check it against the Keras model and write its card beside it.

    Returns the card's `export` entry (file, format, quantisation, calibration, agreement, ...);
    raises `ExportError` when a float32 export disagrees beyond `TOLERANCE`."""
    check_combination(fmt, quantize)
    model, card = load_model(model_dir)
    dataset, data_note = find_dataset(card, data)
    calibration, calibration_note = None, None
    if quantize == "int8":
        if dataset is not None:
            calibration = calibration_photos(dataset, card["input_size"])
            calibration_note = (f"static: {len(calibration)} training photos of {data_note}")
        else:
            calibration_note = "dynamic range (weights only): no training photos to calibrate on"
    out = Path(out) if out else EXPORTS_DIR / card["id"] / (fmt + (f"-{quantize}" if quantize else ""))
    out.mkdir(parents=True, exist_ok=True)
    target = out / FILE_NAMES[fmt]
    if target.is_dir():
        shutil.rmtree(target)
    log(f"converting {card['id']} to {fmt}{' ' + quantize if quantize else ''} ...")
    convert(model, card, fmt, target, quantize, calibration)
    samples, checked_on = check_samples(dataset, limit)
    log(f"checking against the Keras model on {checked_on} ...")
    scores = fidelity(TFRunner(model, card), {fmt: open_file(fmt, target)}, card, samples,
                      dataset.ignore_index if dataset is not None else 255)[fmt]
    size = (sum(f.stat().st_size for f in target.rglob("*") if f.is_file()) if target.is_dir()
            else target.stat().st_size)
    entry = {"file": target.name, "format": fmt, "quantize": quantize or "float32",
             "calibration": calibration_note, "megabytes": round(size / 2**20, 2),
             "checked_on": checked_on, **scores,
             "tolerance": TOLERANCE if not quantize else FAITHFUL_AGREEMENT,
             "faithful": faithful(scores)}
    write_json(out / "card.json", {**card, "export": entry})
    line = (f"{target}: {entry['megabytes']} MB; masks agree with Keras on "
            f"{scores['agreement']:.4%} of pixels")
    if "delta_miou" in scores:
        line += f", mIoU {scores['miou']:.4f} vs {scores['miou_reference']:.4f}"
    log(line)
    if not quantize and scores["agreement"] < TOLERANCE:
        raise ExportError(f"{target} disagrees with the Keras model on "
                          f"{1 - scores['agreement']:.3%} of mask pixels (tolerance "
                          f"{1 - TOLERANCE:.1%}): the conversion is broken.")
    if quantize and not entry["faithful"]:
        log(f"warning: {quantize} is below the faithfulness bar ({FAITHFUL_AGREEMENT:.1%} of "
            f"pixels, |ΔmIoU| < {FAITHFUL_MIOU}); `auto` will not pick it.")
    return entry
