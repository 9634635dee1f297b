"""The trained-model folder: weights, card, history and metrics, and how to load them.

A folder holds `model.weights.h5` plus three JSON files. The model is rebuilt from the registry
with the card's architecture id, classes, input size and options, then the weights are loaded,
so a folder never depends on pickled code.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

WEIGHTS_FILE = "model.weights.h5"
CARD_FILE = "card.json"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
BENCHMARK_FILE = "benchmark.json"  # beside the model folders, written by `segdemo benchmark`


class ModelLoadError(RuntimeError):
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
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path.parent.name or path.parent}: {path.name} is missing.")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path.parent.name}: {path.name} is not valid JSON ({exc}).") from None


def read_report(path: str | os.PathLike, kind: str, command: str, keys: tuple[str, ...],
                error: type[Exception]) -> dict:
    """A JSON report written by `python -m segdemo <command>` (benchmark, robustness), checked to
    hold the `keys` objects; `error` with a one-line reason when it is missing or is not one."""
    path = Path(path)
    if not path.is_file():
        raise error(f"no {kind} JSON at {path}: run `python -m segdemo {command}` first, or pass "
                    f"--json PATH.")
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
    with weights.open("rb") as fh:
        if fh.read(8) != b"\x89HDF\r\n\x1a\n":
            return f"{model_dir.name}: {WEIGHTS_FILE} is corrupt (not an HDF5 file)."
    return None


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
        raise ModelLoadError(f"{model_dir.name}: {exc}") from None
    model = arch.build(len(card["classes"]), tuple(card["input_size"]), encoder_weights=None,
                       **card.get("options", {}))
    try:
        model.load_weights(model_dir / WEIGHTS_FILE)
    except Exception as exc:  # h5py, Keras and shape errors all mean the same thing to a user
        raise ModelLoadError(
            f"{model_dir.name}: {WEIGHTS_FILE} could not be loaded into {card['id']} ({exc})."
        ) from None
    return model, card
