"""The trained-model folder: weights, card, history and metrics, and how to load them.

A folder holds `model.weights.h5` plus three JSON files. The model is rebuilt from the registry
with the card's architecture id, classes, input size and options, then the weights are loaded,
so a folder never depends on pickled code.
"""
from __future__ import annotations

import functools
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from segdemo.errors import SegDemoError

WEIGHTS_FILE = "model.weights.h5"
CARD_FILE = "card.json"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
BENCHMARK_FILE = "benchmark.json"  # beside the model folders, written by `segdemo benchmark`
REFERENCE_FILE = "reference_voc.json"  # beside the model folders, written by `evaluate --reference`
REFERENCE_PROBE_FILE = "reference_voc_probe.json"  # the same on the probe split
PROBE_FILE = "probe.json"  # in a model folder: `evaluate --split probe` (the minor breeds)
UNSEEN_FILE = "unseen.json"  # in a run folder: `evaluate --split unseen` (held-out breeds)
CANDIDATES_FILE = "candidates.json"  # beside the model folders: scripts/compare_candidates.py


class ModelLoadError(SegDemoError, RuntimeError):
    """A model folder that cannot be used; the message names the folder and the reason."""


def _clean(value: Any) -> Any:
    """JSON has no NaN: undefined scores become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write atomically, so an interrupted run never leaves half a file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        json.dump(_clean(data), fh, indent=2, allow_nan=False)
        fh.write("\n")
    os.replace(tmp, path)


def read_json(path: str | os.PathLike) -> Any:
    """The parsed file; `ModelLoadError` says whether it is missing, unreadable or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path.parent.name or path.parent}: {path.name} is missing.")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path.parent.name}: {path.name} is not valid JSON ({exc}).") from None
    except OSError as exc:
        raise ModelLoadError(f"{path.parent.name}: {path.name} could not be read "
                             f"({exc.strerror or exc}).") from None


def read_report(path: str | os.PathLike, kind: str, command: str, keys: tuple[str, ...],
                error: type[Exception]) -> dict:
    """A JSON report written by `command` (a full command line, or the arguments of a segdemo
    subcommand such as `benchmark`), checked to hold the `keys` objects; `error` with a one-line reason when
    it is missing or is not one."""
    path = Path(path)
    if not path.is_file():
        run = command if command.startswith("python ") else f"python -m segdemo {command}"
        raise error(f"no {kind} JSON at {path}: run `{run}` first, or pass --json PATH.")
    try:
        report = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path} is not valid JSON ({exc}).") from None
    if not isinstance(report, dict) or not all(isinstance(report.get(k), dict) for k in keys):
        names = " and ".join(f'"{k}"' for k in keys)
        raise error(f"{path} is not a {kind} JSON (it has no {names} "
                    f"object{'s' if len(keys) > 1 else ''}).")
    return report


def read_card(model_dir: str | os.PathLike) -> dict:
    """The model card, checked for the fields needed to rebuild the model."""
    card = read_json(Path(model_dir) / CARD_FILE)
    missing = [k for k in ("id", "classes", "input_size", "preprocessing") if k not in card]
    if missing:
        raise ModelLoadError(f"{Path(model_dir).name}: card.json lacks {', '.join(missing)}.")
    return card


def read_optional_json(path: str | os.PathLike) -> Any | None:
    """The parsed file, or None when it is absent or unreadable (history and metrics are extras)."""
    try:
        return read_json(path)
    except ModelLoadError:
        return None


def read_extra_json(path: str | os.PathLike, kind: type, holds: str) -> tuple[Any | None, str | None]:
    """An optional file that should parse to a `kind` (e.g. history.json, a list of epochs):
    (data, None); (None, None) when it is absent; (None, why it cannot be used) otherwise."""
    path = Path(path)
    if not path.exists():
        return None, None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, f"{path.name} is unreadable: it is not valid JSON ({exc})."
    except OSError as exc:
        return None, f"{path.name} is unreadable: {exc.strerror or exc}."
    if not isinstance(data, kind):
        return None, (f"{path.name} is unreadable: it should hold {holds}, "
                      f"but holds a JSON {_json_type(data)}.")
    return data, None


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "true/false", type(None): "null"}
    return names.get(type(value), "number")


def check_model_dir(model_dir: str | os.PathLike) -> str | None:
    """Why the folder cannot be loaded (cheap checks, no TensorFlow), or None when it looks usable."""
    model_dir = Path(model_dir)
    try:
        read_card(model_dir)
    except ModelLoadError as exc:
        return str(exc)
    weights = model_dir / WEIGHTS_FILE
    if not weights.is_file():
        return f"{model_dir.name}: not trained ({WEIGHTS_FILE} is missing)."
    try:
        stat = weights.stat()
    except OSError as exc:
        return f"{model_dir.name}: {WEIGHTS_FILE} could not be read ({exc.strerror or exc})."
    problem = _weights_problem(str(weights), stat.st_mtime_ns, stat.st_size)
    return f"{model_dir.name}: {WEIGHTS_FILE} {problem}" if problem else None


_AGAIN = "Copy the model folder again or retrain the model."


@functools.lru_cache(maxsize=64)
def _weights_problem(path: str, mtime_ns: int, size: int) -> str | None:
    """What is wrong with a weights file (HDF5 header, stored length, any weights in it), checked
    once per file version: the sidebar lists the models on every rerun."""
    import h5py

    try:
        with open(path, "rb") as fh:
            if fh.read(8) != b"\x89HDF\r\n\x1a\n":
                return f"is corrupt (not a Keras weights file). {_AGAIN}"
        with h5py.File(path, "r") as h5:
            found = h5.visititems(lambda _, item: True if isinstance(item, h5py.Dataset) else None)
    except OSError as exc:
        stored = re.search(r"stored_eof = (\d+)", str(exc))
        if "truncated" in str(exc) and stored:
            return (f"is incomplete: {_mb(size)} of {_mb(int(stored.group(1)))} "
                    f"(an interrupted copy or download?). {_AGAIN}")
        return f"is damaged and cannot be opened. {_AGAIN}"
    return None if found else f"holds no weights. {_AGAIN}"


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def load_model(model_dir: str | os.PathLike):
    """Rebuild the model from the registry and load its weights; returns (model, card)."""
    from segdemo.models import get_architecture

    model_dir = Path(model_dir)
    problem = check_model_dir(model_dir)
    if problem:
        raise ModelLoadError(problem)
    card = read_card(model_dir)
    try:
        arch = get_architecture(card["id"])
    except KeyError as exc:
        raise ModelLoadError(f"{model_dir.name}: card.json names an architecture this version of "
                             f"SegDemo does not have. {exc}") from None
    try:
        model = arch.build(len(card["classes"]), tuple(card["input_size"]), encoder_weights=None,
                           **card.get("options", {}))
    except Exception as exc:  # unknown options or impossible sizes: the card does not fit the code
        raise ModelLoadError(
            f"{model_dir.name}: the model described by card.json (input size "
            f"{card['input_size']}, options {card.get('options', {})}) cannot be built by this "
            f"version of SegDemo. {_AGAIN}") from exc
    try:
        model.load_weights(model_dir / WEIGHTS_FILE)
    except OSError as exc:  # h5py: the file changed or broke after the check above
        raise ModelLoadError(f"{model_dir.name}: {WEIGHTS_FILE} is damaged and cannot be read. "
                             f"{_AGAIN}") from exc
    except Exception as exc:  # Keras: missing layers or mismatched shapes
        raise ModelLoadError(
            f"{model_dir.name}: {WEIGHTS_FILE} could not be loaded into {card['id']}: it holds "
            f"the weights of a different network than card.json describes (other layers or "
            f"sizes; were the two files written by different training runs?). {_AGAIN}") from exc
    return model, card


def training_recipe(card: dict) -> str | None:
    """How a model was trained, in one line, from the configuration its card records (older
    cards lack the newer options: those read as off)."""
    config = card.get("config")
    if not config:
        return None
    size = config.get("img_size") or (card.get("input_size") or ["?"])[0]
    parts = [f"{config.get('epochs', '?')} epochs at {size} px",
             {"ce": "cross-entropy", "dice": "Dice", "dice_ce": "Dice + cross-entropy"}.get(
                 config.get("loss", "ce"), str(config.get("loss")))]
    encoder = card.get("encoder_weights") or ""
    if encoder.startswith("none"):
        parts.append("from scratch")
    elif encoder:
        parts.append(f"encoder: {encoder.split(' from ')[0]}"
                     + (", its BatchNorm statistics kept" if config.get("freeze_encoder_bn") else ""))
    if card.get("head_weights"):
        frozen = config.get("freeze_encoder_epochs") if config.get("freeze_head") else 0
        parts.append("head: PASCAL VOC DeepLabV3"
                     + (f", frozen with the encoder for {frozen} epochs" if frozen else ""))
    if config.get("zoom_out"):
        parts.append(f"zoom-out {config['zoom_out']:g}")
    if config.get("copy_paste"):
        parts.append(f"copy-paste {config['copy_paste']:g}")
    distilled = card.get("distillation")
    if distilled:
        parts.append(f"distilled from {distilled['teacher']} (weight {distilled['alpha']:g})")
    if config.get("holdout_minor_breeds"):
        parts.append("minor breeds held out")
    if config.get("holdout_breeds"):
        parts.append(f"{', '.join(config['holdout_breeds'])} held out")
    if card.get("class_bias"):
        parts.append(", ".join(f"{name} log-probability {offset:+g}"
                               for name, offset in card["class_bias"].items())
                     + " (calibrated on the validation split)")
    if card.get("voc_guide"):
        parts.append(f"then guided by the zero-shot VOC DeepLab (weight "
                     f"{card['options']['voc_guide']:g})")
    return "; ".join(parts)
