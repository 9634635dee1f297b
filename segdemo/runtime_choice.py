"""Which runtime each model runs on: how faithful every candidate is on the test split, and the
pick (the fastest faithful one), recorded in `weights/<id>/runtime.json` for `runtime="auto"`.

Two steps, because only the second is a timing: `python -m segdemo benchmark --fidelity` scores
each candidate against the Keras model on the whole test split (pixel agreement of the masks at
the photos' size, and the mIoU change; minutes, no quiet machine needed) into the record's
`fidelity`; `python -m segdemo benchmark` then times the candidates and picks the fastest whose
fidelity passes `export.faithful` (>= 99.5 % of pixels, |ΔmIoU| < 0.005). TensorFlow, the
reference, always qualifies; a candidate without a fidelity on these weights never does.
"""
from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Callable

from segdemo.artifacts import load_model
from segdemo.export import (check_samples, faithful, fidelity, file_runner, find_dataset,
                            model_digest)
from segdemo.runtimes import Runner, TFRunner, missing_package, read_record, write_record

VARIANTS = ("tf", "onnx", "litert", "litert-float16", "onnx-int8", "litert-int8")


def split_variant(name: str) -> tuple[str, str | None]:
    """"litert-int8" -> ("litert", "int8"); "onnx" -> ("onnx", None)."""
    runtime, _, quantize = name.partition("-")
    return runtime, quantize or None


def candidates(card: dict, names: tuple[str, ...] = VARIANTS) -> tuple[list[str], dict[str, str]]:
    """The variants that can run here, and why each other one cannot (package, calibration)."""
    usable, skipped = [], {}
    has_photos = find_dataset(card, None)[0] is not None
    for name in names:
        runtime, quantize = split_variant(name)
        problem = missing_package(runtime)
        if problem is None and quantize == "int8" and not has_photos:
            problem = "int8 needs the card's dataset for calibration photos"
        if problem:
            skipped[name] = problem
        else:
            usable.append(name)
    return usable, skipped


def variant_runner(name: str, model, card: dict, digest: str) -> Runner:
    runtime, quantize = split_variant(name)
    if runtime == "tf":
        return TFRunner(model, card)
    return file_runner(runtime, quantize, model, card, digest)


def _fresh_record(folder: Path, digest: str, model_id: str) -> dict:
    """The folder's record when it was made for these weights, else a new one."""
    record = read_record(folder) or {}
    return record if record.get("digest") == digest else {"model": model_id, "digest": digest}


def measure_fidelity(folder: str | Path, data: str | Path | None = None, limit: int | None = None,
                     names: tuple[str, ...] = VARIANTS,
                     log: Callable[[str], None] = print) -> dict:
    """Score every candidate against the Keras model on the test split (synthetic photos without
    a dataset: agreement only) and store it in the folder's runtime.json; returns the record."""
    folder = Path(folder)
    model, card = load_model(folder)
    digest = model_digest(model, card)
    usable, skipped = candidates(card, names)
    runners = {name: variant_runner(name, model, card, digest) for name in usable if name != "tf"}
    dataset, _ = find_dataset(card, data)
    samples, checked_on = check_samples(dataset, limit)
    log(f"  {card['id']}: {', '.join(runners)} against Keras on {checked_on}")
    scores = fidelity(TFRunner(model, card), runners, card, samples,
                      dataset.ignore_index if dataset is not None else 255)
    for name, row in scores.items():
        row["faithful"] = faithful(row)
        log(f"    {name}: masks agree on {row['agreement']:.4%}"
            + (f", ΔmIoU {row['delta_miou']:+.4f}" if "delta_miou" in row else "")
            + ("" if row["faithful"] else "  (not faithful)"))
    record = _fresh_record(folder, digest, card["id"])
    record["fidelity"] = {"checked_on": checked_on, "skipped": skipped, "runtimes": scores,
                          "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    write_record(folder, record)
    return record


def choose(record: dict, timings: dict[str, dict]) -> dict:
    """The fastest faithful variant by end-to-end p50 (`timings[name]["p50_ms"]`), with why."""
    scores = (record.get("fidelity") or {}).get("runtimes", {})
    eligible = {name: t["p50_ms"] for name, t in timings.items()
                if name == "tf" or scores.get(name, {}).get("faithful")}
    best = min(eligible, key=eligible.get)
    runtime, quantize = split_variant(best)
    agreement = "the reference" if best == "tf" else f"masks agree on {scores[best]['agreement']:.3%}"
    why = (f"fastest faithful runtime at benchmark time: {eligible[best]:.1f} ms end to end vs "
           f"{timings['tf']['p50_ms']:.1f} ms on TensorFlow; {agreement}")
    return {"runtime": runtime, "quantize": quantize, "variant": best, "why": why}


def record_choice(folder: str | Path, model, card: dict, timings: dict[str, dict]) -> dict:
    """Pick from `timings` with the folder's fidelity and write the choice into runtime.json."""
    digest = model_digest(model, card)
    record = _fresh_record(Path(folder), digest, card["id"])
    record["timings"] = timings
    record["chosen"] = choose(record, timings)
    write_record(folder, record)
    return record
