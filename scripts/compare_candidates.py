"""Candidate runs against the shipped model of the same architecture, on what neither trained on.

Most shipped models trained on the minor breeds, so the probe split flatters them against a
candidate that held them out (the table says which); the comparison that is fair to those is the
test split (neither saw it) under the robustness shifts (zoom-out above all); a run trained with a
breed held out is compared on that breed (`results --unseen`) instead. For each finished run under
runs/ (or those named) this scores the test split under every shift once
(runs/<name>/robustness.json), adds each run and the shipped model beside it to
weights/candidates.json (runs/ is not committed; this file is, and the README table
`results --candidates` is made from it) and prints the table.

    python scripts/compare_candidates.py [NAME ...] [--limit N]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from segdemo.artifacts import (CANDIDATES_FILE, CARD_FILE, METRICS_FILE, PROBE_FILE,  # noqa: E402
                               UNSEEN_FILE, read_optional_json, training_recipe, write_json)
from segdemo.report import candidates_table, unseen_table  # noqa: E402

ROBUSTNESS_FILE = "robustness.json"  # in a run folder: {shift: mIoU} on the test split


def shift_scores(folder: Path, data: str, limit: int | None, compute: bool = True) -> dict | None:
    """{shift: test mIoU} for the model in `folder`, computed once and kept beside it (None
    when not kept and `compute` is off)."""
    kept = read_optional_json(folder / ROBUSTNESS_FILE)
    if kept or not compute:
        return kept
    from segdemo.data import load_dataset
    from segdemo.inference import Segmenter
    from segdemo.robustness import robustness

    card = read_optional_json(folder / CARD_FILE)
    dataset = load_dataset(data, card["dataset"]["format"],
                           holdout_minor_breeds=card.get("config", {}).get("holdout_minor_breeds",
                                                                           False))
    scores = {name: r["miou"] for name, r in
              robustness(Segmenter.load(folder), dataset, "test", limit=limit).items()}
    write_json(folder / ROBUSTNESS_FILE, scores)
    return scores


def shipped_shift_scores(weights: Path, model_id: str) -> dict | None:
    report = read_optional_json(weights / "robustness.json")
    models = (report or {}).get("models", {})
    return {k: v["miou"] for k, v in models[model_id].items()} if model_id in models else None


def entry(folder: Path, shifts: dict | None, shipped: bool) -> dict:
    """What the candidates table shows of one model folder."""
    card = read_optional_json(folder / CARD_FILE) or {}

    def cut_out(name: str) -> dict:
        """mIoU, pet-vs-background IoU and boundary F from one of the folder's metrics files."""
        scores = (read_optional_json(folder / name) or {}).get("original_resolution", {})
        return {k: scores.get(k) for k in ("miou", "foreground_iou", "boundary_f")}

    moved = [v for k, v in (shifts or {}).items() if k != "none" and v is not None]
    unseen = read_optional_json(folder / UNSEEN_FILE)
    return {
        "model": card.get("id"), "shipped": shipped, "recipe": training_recipe(card),
        "best_val_miou": card.get("best_val_miou"),
        "test": cut_out(METRICS_FILE),
        "probe": cut_out(PROBE_FILE),
        "probe_seen": not card.get("config", {}).get("holdout_minor_breeds", False),
        "shift_mean_miou": sum(moved) / len(moved) if moved else None,
        "zoom_out_miou": (shifts or {}).get("zoom_out"),
        "held_out_breeds": card.get("config", {}).get("holdout_breeds") or [],
        "unseen": {"images": unseen["images"], **cut_out(UNSEEN_FILE)} if unseen else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="run folders under runs/ (default: all finished)")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs")
    parser.add_argument("--weights", type=Path, default=ROOT / "weights")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "oxford-pets"))
    parser.add_argument("--limit", type=int, help="score only the test split's first N photos")
    parser.add_argument("--out", type=Path, default=ROOT / "weights" / CANDIDATES_FILE,
                        help="the JSON the README's candidates table is made from (runs are "
                             "added to what it holds)")
    parser.add_argument("--no-shifts", action="store_true",
                        help="leave the shifts out for runs not yet scored under them")
    args = parser.parse_args()
    folders = [args.runs / n for n in args.names] if args.names else sorted(
        p for p in args.runs.iterdir() if (p / CARD_FILE).is_file())
    report = read_optional_json(args.out) or {"runs": {}}
    for folder in folders:
        card = read_optional_json(folder / CARD_FILE)
        if not card:
            print(f"{folder.name}: not finished (no card.json)", file=sys.stderr)
            continue
        model_id = card["id"]
        if (args.weights / model_id / CARD_FILE).is_file():
            report["runs"][f"{model_id} (shipped)"] = entry(
                args.weights / model_id, shipped_shift_scores(args.weights, model_id), True)
        # a leave-a-breed-out run compares recipes on its unseen breed: no shifts for it
        held_out = bool(card.get("config", {}).get("holdout_breeds"))
        shifts = None if held_out else shift_scores(folder, args.data, args.limit,
                                                    not args.no_shifts)
        report["runs"][folder.name] = entry(folder, shifts, False)
    report["note"] = ("test split: neither the shipped nor the candidate models trained on it; "
                      "probe: the minor breeds, which the candidates held out and the shipped "
                      "models trained on unless 'trained on the probe' says no; shifts: the "
                      "robustness perturbations of the test split")
    write_json(args.out, report)
    print(candidates_table(report))
    if any(e.get("held_out_breeds") for e in report["runs"].values()):
        print(unseen_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
