"""The README's results, speed and load tables, generated from the shipped model folders, the
benchmark JSON and the load test JSON (never typed by hand)."""
from __future__ import annotations

from pathlib import Path

from segdemo.artifacts import (CARD_FILE, METRICS_FILE, PROBE_FILE, REFERENCE_FILE,
                               REFERENCE_PROBE_FILE, read_optional_json, read_report,
                               training_recipe)
from segdemo.errors import SegDemoError
from segdemo.reference import REFERENCE_TITLE


def _num(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def _duration(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def _size(values) -> str:
    return "x".join(str(v) for v in values)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _model_cards(weights_dir: str | Path):
    """(folder, card) for every folder under `weights_dir` that has a card, in name order."""
    for folder in sorted(p for p in Path(weights_dir).iterdir() if p.is_dir()):
        card = read_optional_json(folder / CARD_FILE)
        if card:
            yield folder, card


def results_table(weights_dir: str | Path) -> str:
    """Markdown table of every model folder under `weights_dir` that has a card and metrics."""
    rows = []
    class_names: list[str] = []
    for folder, card in _model_cards(weights_dir):
        metrics = read_optional_json(folder / METRICS_FILE)
        if not metrics:
            continue
        scores = metrics["original_resolution"]
        class_names = class_names or list(scores["iou"])
        rows.append(
            [_folder_name(folder, card), _size(card["input_size"]), f"{card['parameters'] / 1e6:.2f} M",
             f"{card['file_mb']:.1f}", _num(scores["pixel_accuracy"]), _num(scores["miou"]),
             *(_num(scores["iou"].get(n)) for n in class_names),
             _num(scores.get("foreground_iou")), _num(scores.get("boundary_f")),
             _duration(card["training_seconds"]), card.get("hardware", "")]
        )
    reference = read_optional_json(Path(weights_dir) / REFERENCE_FILE)
    if reference and class_names:  # no border class: only the cut-out scores compare
        scores = reference["original_resolution"]
        rows.append([f"{REFERENCE_TITLE}", _size(reference["input_resolution"]["size"]), "",
                     _num(reference.get("card", {}).get("file_mb"), ".1f"),
                     *["n/a"] * (2 + len(class_names)), _num(scores.get("foreground_iou")),
                     _num(scores.get("boundary_f")), "none", "PASCAL VOC (Google)"])
    header = ["model", "input", "parameters", "MB", "pixel acc.", "mIoU",
              *(f"IoU {n}" for n in class_names), "pet-vs-background IoU", "boundary F",
              "training time", "trained on"]
    return _table(header, rows)


def probe_table(weights_dir: str | Path) -> str:
    """Markdown table: each model on the test split beside the probe split (the minor breeds,
    `evaluate --split probe --json <model>/probe.json`), and whether training saw the probe."""
    rows = []
    for folder, card in _model_cards(weights_dir):
        test, probe = (read_optional_json(folder / name) for name in (METRICS_FILE, PROBE_FILE))
        if not test or not probe:
            continue
        held_out = card.get("config", {}).get("holdout_minor_breeds", False)
        rows.append([_folder_name(folder, card), *_cut_out_scores(test), *_cut_out_scores(probe),
                     str(probe.get("images", "")), "no (held out)" if held_out else "yes"])
    for name in (REFERENCE_FILE, REFERENCE_PROBE_FILE):
        if not (Path(weights_dir) / name).is_file():
            break
    else:
        test, probe = (read_optional_json(Path(weights_dir) / n)
                       for n in (REFERENCE_FILE, REFERENCE_PROBE_FILE))
        rows.append([REFERENCE_TITLE, "n/a", *_cut_out_scores(test)[1:], "n/a",
                     *_cut_out_scores(probe)[1:], str(probe.get("images", "")), "no"])
    header = ["model", "test mIoU", "test pet-vs-bg IoU", "test boundary F", "probe mIoU",
              "probe pet-vs-bg IoU", "probe boundary F", "probe images", "trained on the probe"]
    return _table(header, rows)


class CandidatesError(SegDemoError, ValueError):
    """No usable candidates JSON."""


def load_candidates(path: str | Path) -> dict:
    """The JSON written by scripts/compare_candidates.py."""
    return read_report(path, "candidates", "python scripts/compare_candidates.py", ("runs",),
                       CandidatesError)


def candidates_table(report: dict) -> str:
    """Markdown table of the candidate runs beside the shipped models (weights/candidates.json,
    written by scripts/compare_candidates.py)."""
    rows = []
    for name, e in report["runs"].items():
        if e.get("held_out_breeds"):  # another test split: in `unseen_table`
            continue
        label = f"`{e['model']}` (shipped)" if e["shipped"] else f"`{name}`"
        rows.append([label, e.get("recipe") or "", _num(e.get("best_val_miou")),
                     *(_num(e["test"].get(k)) for k in ("miou", "foreground_iou", "boundary_f")),
                     *(_num(e["probe"].get(k)) for k in ("miou", "foreground_iou")),
                     "yes" if e["probe_seen"] else "no",
                     _num(e.get("shift_mean_miou")), _num(e.get("zoom_out_miou"))])
    header = ["model", "how it was trained", "best val mIoU", "test mIoU", "test pet-vs-bg IoU",
              "test boundary F", "probe mIoU", "probe pet-vs-bg IoU", "trained on the probe",
              "mean mIoU over 8 shifts", "zoom-out mIoU"]
    return _table(header, rows)


def unseen_table(report: dict) -> str:
    """Markdown table of the leave-a-breed-out runs (`train --holdout-breed`) on the breed they
    never saw (their `unseen` split), beside their test split (without that breed) and the probe:
    for comparing training recipes, not for shipping."""
    rows = []
    for name, e in report["runs"].items():
        if not e.get("held_out_breeds"):
            continue
        unseen = e.get("unseen") or {}
        rows.append([f"`{name}`", e.get("recipe") or "", _num(e.get("best_val_miou")),
                     ", ".join(e["held_out_breeds"]), str(unseen.get("images", "n/a")),
                     *(_num(unseen.get(k)) for k in ("miou", "foreground_iou", "boundary_f")),
                     *(_num(e["test"].get(k)) for k in ("miou", "foreground_iou")),
                     *(_num(e["probe"].get(k)) for k in ("miou", "foreground_iou"))])
    if not rows:
        raise CandidatesError("The candidates JSON holds no run trained with --holdout-breed: "
                              "train one (scripts/train_candidates.sh), score it "
                              "(scripts/evaluate_candidates.sh), then run "
                              "scripts/compare_candidates.py.")
    header = ["run", "how it was trained", "best val mIoU", "breed never seen", "its photos",
              "unseen mIoU", "unseen pet-vs-bg IoU", "unseen boundary F", "test mIoU (without it)",
              "test pet-vs-bg IoU", "probe mIoU", "probe pet-vs-bg IoU"]
    return _table(header, rows)


def recipes_table(weights_dir: str | Path) -> str:
    """Markdown table: how each model was trained (its card's configuration, in words), its
    best validation mIoU, the epoch kept and the training time."""
    rows = []
    for folder, card in _model_cards(weights_dir):
        recipe = training_recipe(card)
        if not recipe:
            continue
        rows.append([_folder_name(folder, card), recipe,
                     _num(card.get("best_val_miou")), f"{card.get('best_epoch', '')}",
                     _duration(card.get("training_seconds", 0))])
    return _table(["model", "how it was trained", "best val mIoU", "kept epoch", "training time"],
                  rows)


def _folder_name(folder: Path, card: dict) -> str:
    """The architecture id; a folder named otherwise (a candidate run) shows both."""
    if folder.name == card["id"]:
        return f"`{card['id']}`"
    return f"`{folder.name}` ({card['id']})"


def _cut_out_scores(metrics: dict) -> list[str]:
    scores = metrics["original_resolution"]
    return [_num(scores.get("miou")), _num(scores.get("foreground_iou")),
            _num(scores.get("boundary_f"))]


# --- speed --------------------------------------------------------------------------------------

def load_benchmark(path: str | Path) -> dict:
    """The JSON written by `python -m segdemo benchmark` (`BenchmarkError` when it is not one)."""
    from segdemo.benchmark import BenchmarkError

    return read_report(path, "benchmark", "benchmark", ("models",), BenchmarkError)


def _model_name(model_id: str, m: dict) -> str:
    return f"`{model_id}`" + (" (untrained)" if m.get("untrained") else "")


def _main_table(report: dict) -> str:
    models = report["models"]
    batch = next((m["batch_size"] for m in models.values() if "batch_size" in m), 16)
    train_batch = next((m["train_batch_size"] for m in models.values()
                        if "train_batch_size" in m), 8)
    header = ["model", "input", "parameters", "weights MB", "cold load s", "p50 ms", "p95 ms",
              "seed path p50 ms", "speed-up", f"batch of {batch} images/s",
              f"training images/s (batch {train_batch})", "peak RSS MB"]
    rows = []
    for model_id, m in models.items():
        params = m.get("parameters")
        speedup = m.get("speedup_vs_seed")
        rows.append([
            _model_name(model_id, m), _size(m["input_size"]) if m.get("input_size") else "n/a",
            "n/a" if params is None else f"{params / 1e6:.2f} M", _num(m.get("weights_mb"), ".1f"),
            _num(m.get("cold_load_s"), ".2f"), _num(m.get("p50_ms"), ".1f"),
            _num(m.get("p95_ms"), ".1f"), _num(m.get("seed", {}).get("p50_ms"), ".1f"),
            "n/a" if speedup is None else f"{speedup:.1f}x",
            _num(m.get("batch_images_per_s"), ".1f"), _num(m.get("train_images_per_s"), ".1f"),
            _num(m.get("peak_rss_mb"), ".0f")])
    return _table(header, rows)


def _large_table(report: dict) -> str | None:
    """Total and network milliseconds per model and photo size, or None without large figures."""
    sizes: dict[str, str] = {}
    for m in report["models"].values():
        for megapixels, stages in m.get("large", {}).items():
            sizes.setdefault(megapixels, _size(stages["size"]) if "size" in stages else "")
    if not sizes:
        return None
    header = ["model", *(f"{mp} MP{f' ({px})' if px else ''}: total / network ms"
                         for mp, px in sizes.items())]
    rows = []
    for model_id, m in report["models"].items():
        large = m.get("large", {})
        rows.append([_model_name(model_id, m), *(
            f"{_num(large[mp].get('total_ms'), '.0f')} / {_num(large[mp].get('network_ms'), '.0f')}"
            if mp in large else "n/a" for mp in sizes)])
    return _table(header, rows)


def _runtime_table(report: dict) -> str | None:
    """Per model and runtime variant: end-to-end p50 (multiple of the FLOP limit) and the masks'
    agreement with the Keras model; the chosen runtime in bold. None without runtime figures."""
    models = {k: m for k, m in report["models"].items() if m.get("runtimes")}
    if not models:
        return None
    names = list(dict.fromkeys(n for m in models.values() for n in m["runtimes"]))
    rows = []
    for model_id, m in models.items():
        cells = []
        for name in names:
            row = m["runtimes"].get(name)
            if row is None:
                cells.append("n/a")
                continue
            agreement = row.get("agreement")
            cell = (f"{_num(row.get('p50_ms'), '.1f')} ({_num(row.get('flop_multiple'), '.1f')}x)"
                    + ("" if agreement is None else f", {agreement:.2%}"))
            delta = row.get("delta_miou")
            if name != "tf" and delta is not None:
                cell += f", ΔmIoU {delta:+.3f}"
            cells.append(f"**{cell}**" if name == m.get("runtime") else cell)
        rows.append([_model_name(model_id, m), _num(m.get("gflop"), ".2f"),
                     _num(m.get("flop_limit_ms"), ".1f"), *cells])
    gflops = report.get("matmul_gflops")
    return ("Runtimes, end to end on the same photo: p50 ms (multiple of the FLOP limit), share of "
            "mask pixels agreeing with the Keras model on the test split, mIoU change; **bold** "
            "is the runtime `auto` picks (fastest with >= 99.5 % agreement and |ΔmIoU| < 0.005). "
            "FLOP limit = GFLOP at this machine's float32 matmul speed"
            + (f" ({gflops:.0f} GFLOP/s)" if gflops else "") + ":\n\n"
            + _table(["model", "GFLOP", "FLOP limit ms", *(f"`{n}`" for n in names)], rows))


def _candidate_tables(c: dict) -> list[str]:
    """The alternatives the fast path was chosen from: network call and resize back."""
    parts = []
    batch1, batch16 = c.get("network_batch1", {}), c.get("network_batch16", {})
    if batch1 or batch16:
        names = list(dict.fromkeys([*batch1, *batch16]))
        rows = [[f"`{n}`", _num(batch1.get(n, {}).get("p50_ms"), ".1f"),
                 _num(batch1.get(n, {}).get("p95_ms"), ".1f"),
                 _num(batch16.get(n, {}).get("images_per_s"), ".1f")] for n in names]
        xla = c.get("xla_max_abs_difference")
        parts.append(f"Fast-path candidates on `{c.get('model', '?')}`, the network alone"
                     + ("" if xla is None else f" (XLA changes probabilities by at most {xla:.1e})")
                     + ":\n\n" + _table(["call", "batch 1 p50 ms", "batch 1 p95 ms",
                                         "batch 16 images/s"], rows))
    resize = c.get("resize_back", {})
    if resize:
        names = list(dict.fromkeys(n for row in resize.values() for n in row))
        rows = [[f"`{n}`", *(
            f"{_num(row[n].get('p50_ms'), '.1f')} ({_num(row[n].get('changed_pixels'), '.2%')})"
            if n in row else "n/a" for row in resize.values())] for n in names]
        header = ["resize back", *(f"{mp} MP: p50 ms (changed pixels)" for mp in resize)]
        parts.append("Resizing the probabilities back to the photo; changed pixels are relative "
                     "to the default `tf_float32`:\n\n" + _table(header, rows))
    return parts


def _conditions(report: dict) -> str:
    """One line: device, date, load averages and which figures come from untrained weights."""
    line = f"Measured on {report.get('device', 'an unrecorded device')}"
    if report.get("date"):
        line += f" ({report['date']})"
    before, after = report.get("load_average_before"), report.get("load_average_after")
    if before and after:
        line += f"; 1-minute load average {before[0]:.2f} before, {after[0]:.2f} after"
    if report.get("other_cpu_percent_before") is not None:
        line += f"; other CPU use just before the run {report['other_cpu_percent_before']:.0f} %"
    untrained = [f"`{k}`" for k, m in report["models"].items() if m.get("untrained")]
    line += ("; untrained (random weights): " + ", ".join(untrained)
             + " - timings only, no quality implied." if untrained else "; all models trained.")
    if len(report["models"]) > 1:
        line += " Peak RSS is cumulative in benchmark order (the first model's is its own)."
    return line


def speed_tables(report: dict) -> str:
    """Markdown for the README's Speed section from a benchmark JSON (`load_benchmark`): the
    headline table, the large-photo table, the fast-path candidates, the targets and one line on
    the conditions. Parts absent from the JSON are left out."""
    photo = report.get("settings", {}).get("photo_size")
    parts = [(f"One {_size(photo)} photo" if photo else "One photo") + " end to end (decoded image "
             "in, mask and colourised mask out); the seed path is the tutorials' "
             "`model.predict` + argmax + nearest resize:\n\n" + _main_table(report)]
    runtimes = _runtime_table(report)
    if runtimes:
        parts.append(runtimes)
    large = _large_table(report)
    if large:
        parts.append("Larger photos, the whole call and the network alone (its input size is "
                     "fixed):\n\n" + large)
    if report.get("candidates"):
        parts += _candidate_tables(report["candidates"])
    if report.get("targets"):
        parts.append("Targets:\n\n" + "\n".join(
            f"- `{model_id}`: " + ", ".join(f"{name} {'met' if ok else 'NOT met'}"
                                            for name, ok in row.items())
            for model_id, row in report["targets"].items()))
    parts.append(_conditions(report))
    return "\n\n".join(parts)


# --- robustness ---------------------------------------------------------------------------------

def robustness_table(report: dict) -> str:
    """Markdown for the README from a robustness JSON (`robustness.load_report`): mIoU per model
    and perturbation at the original resolution, the largest drop from `none`, and what each
    perturbation does."""
    names = list(report["perturbations"])
    rows = []
    for model_id, results in report["models"].items():
        base = results.get("none", {}).get("miou")
        drops = {n: base - r["miou"] for n, r in results.items()
                 if n != "none" and base is not None and r.get("miou") is not None}
        worst = max(drops, key=drops.get) if drops else None
        rows.append([f"`{model_id}`", *(_num(results.get(n, {}).get("miou")) for n in names),
                     f"{drops[worst]:.3f} (`{worst}`)" if worst else "n/a"])
    intro = (f"mIoU at the original resolution on the {report.get('split', 'test')} split "
             f"({report.get('images', '?')} images) of `{Path(report.get('data', '?')).name}`, "
             "each photo changed as listed below:")
    legend = "\n".join(f"- `{n}`: {d}" for n, d in report["perturbations"].items())
    header = ["model", *(f"`{n}`" for n in names), "worst drop vs `none`"]
    return f"{intro}\n\n{_table(header, rows)}\n\n{legend}"


# --- load ---------------------------------------------------------------------------------------

LOAD_FILE = "loadtest.json"
# The targets of the load test (issue 15), on the machine it ran on.
LOAD_TARGETS = {"sessions": 16, "p95_s": 10.0, "cycle_ratio": 1.5, "rss_growth_mb": 150.0,
                "first_page_s": 5.0}


class LoadTestError(SegDemoError, ValueError):
    """The load test's JSON is missing or is not one."""


def load_loadtest(path: str | Path) -> dict:
    """The JSON written by `scripts/loadtest.py` (`LoadTestError` with the reason when it is
    missing or holds neither a `concurrent` nor a `soak` section)."""
    path = Path(path)
    if not path.is_file():
        raise LoadTestError(f"no load test JSON at {path}: run `python scripts/loadtest.py "
                            f"concurrent` or `... soak` first, or pass --json PATH.")
    report = read_report(path, "load test", "results --load", (), LoadTestError)
    if not any(isinstance(report.get(k), dict) for k in ("concurrent", "soak")):
        raise LoadTestError(f"{path} is not a load test JSON (it has no \"concurrent\" or "
                            f"\"soak\" object).")
    return report


def _runs(report: dict) -> list[tuple[str, dict]]:
    """Every measured run as (name, section): the concurrent runs by session count, then the soak."""
    concurrent = sorted(report.get("concurrent", {}).items(),
                        key=lambda kv: (kv[1]["concurrent"]["sessions"], kv[0]))
    return [(f"{run['concurrent']['sessions']} sessions"
             + (f", browsers at nice {run['settings']['browser_nice']}"
                if run.get("settings", {}).get("browser_nice") else ""), run)
            for _, run in concurrent] + ([("soak", report["soak"])] if "soak" in report else [])


def _start_table(runs: list[tuple[str, dict]]) -> str:
    rows = [[name, _num(s.get("listen_s"), ".1f"), _num(s.get("first_page_s"), ".1f"),
             _num(s.get("first_mask_s"), ".1f"), _num(s.get("first_all_masks_s"), ".1f"),
             _num(s.get("rss_mb"), ".0f"), _num(run.get("machine", {}).get("load_avg_1m"), ".1f")]
            for name, run in runs if (s := run.get("start"))]
    return _table(["run", "server listening s", "first page s", "first mask s", "both masks s",
                   "server RSS MB", "load average before"], rows)


def _batches(sizes: list[int]) -> str:
    """'size: photos' for each batch size the page reported (one entry per photo and model)."""
    return ", ".join(f"{size}: {sizes.count(size)}" for size in sorted(set(sizes))) or "n/a"


def _concurrent_table(runs: list[tuple[str, dict]]) -> str:
    rows = []
    for name, run in runs:
        c = run.get("concurrent")
        if not c:
            continue
        times, cpu, rss = c["overlay_s"], c.get("uploads_cpu_s", {}), c.get("rss_mb", {})
        rows.append([
            name, f"{c['served']}/{c['sessions']}", _num(times["p50"], ".1f"),
            _num(times["p95"], ".1f"), _num(times["max"], ".1f"), str(len(c["failures"])),
            f"{_num(rss.get('before_uploads'), '.0f')} → {_num(rss.get('after'), '.0f')}",
            f"{_num(cpu.get('server'), '.1f')} / {_num(cpu.get('browser'), '.1f')} / "
            f"{_num(cpu.get('other'), '.1f')} of {_num(c.get('cores_s'), '.1f')}",
            _batches(c.get("batch_sizes", [])), _num(c.get("queued_ms", {}).get("p95"), ".0f")])
    return _table(["run", "served", "overlay p50 s", "p95 s", "max s", "failures",
                   "server RSS MB", "CPU s server / browsers / other, of cores × wall",
                   "photos per batch size", "queue wait p95 ms"], rows)


def _soak_lines(soak: dict) -> str:
    every = soak.get("every_10", [])
    shown = [e for e in every if e["cycle"] in (10, 20) or e["cycle"] % 50 == 0 or e is every[-1]]
    table = _table(["cycle", *(str(e["cycle"]) for e in shown)],
                   [["s per cycle (mean of the last 10)",
                     *(_num(e["mean_cycle_s"], ".2f") for e in shown)],
                    ["server RSS MB", *(_num(e["rss_mb"], ".0f") for e in shown)]])
    return (f"One session, {soak['cycles']} of {soak['planned']} upload cycles "
            f"({'photos kept' if soak.get('keep') else 'upload, wait for both overlays, remove'}"
            f"; {len(soak['failures'])} failures): the last 10 cycles took "
            f"{_num(soak.get('last_over_first'), '.2f')}× the time of the first 10; server RSS grew "
            f"{_num(soak.get('rss_growth_after_20_mb'), '.0f')} MB after cycle 20.\n\n{table}")


def _load_targets(report: dict, runs: list[tuple[str, dict]]) -> list[str]:
    t, lines = LOAD_TARGETS, []
    plain = [r for _, r in runs if r.get("concurrent", {}).get("sessions") == t["sessions"]
             and not r.get("settings", {}).get("browser_nice")]
    if plain:
        c = plain[0]["concurrent"]
        ok = c["served"] == c["sessions"] and c["overlay_s"]["p95"] is not None \
            and c["overlay_s"]["p95"] <= t["p95_s"]
        lines.append(f"{t['sessions']} sessions, 2 models each: {c['served']}/{c['sessions']} "
                     f"served, overlay p95 {_num(c['overlay_s']['p95'], '.1f')} s (target all "
                     f"served, <= {t['p95_s']:.0f} s): {'met' if ok else 'NOT met'}")
    soak = report.get("soak", {}).get("soak")
    if soak:
        ratio, growth = soak.get("last_over_first"), soak.get("rss_growth_after_20_mb")
        ok = soak["cycles"] >= 200 and ratio is not None and ratio <= t["cycle_ratio"] \
            and growth is not None and growth <= t["rss_growth_mb"]
        lines.append(f"{soak['cycles']} upload cycles: last 10 / first 10 {_num(ratio, '.2f')}×, "
                     f"RSS growth after cycle 20 {_num(growth, '.0f')} MB (target 200 cycles, "
                     f"<= {t['cycle_ratio']}×, <= {t['rss_growth_mb']:.0f} MB): "
                     f"{'met' if ok else 'NOT met'}")
    pages = [r["start"]["first_page_s"] for _, r in runs if r.get("start", {}).get("first_page_s")]
    if pages:
        lines.append(f"first page after the server listens: at most {max(pages):.1f} s over "
                     f"{len(pages)} fresh servers (target <= {t['first_page_s']:.0f} s): "
                     f"{'met' if max(pages) <= t['first_page_s'] else 'NOT met'}")
    return lines


def load_tables(report: dict) -> str:
    """Markdown for the README's Reliability section from a load test JSON (`load_loadtest`):
    start costs per fresh server, the concurrent runs, the soak, the targets and the conditions.
    Parts absent from the JSON are left out."""
    runs = _runs(report)
    parts = ["Start of a fresh server (first mask: the first upload, both models chosen, the "
             "default one warming up in the background):\n\n" + _start_table(runs)]
    if report.get("concurrent"):
        parts.append("Sessions uploading one photo each at once, 2 models each; seconds from the "
                     "upload to every overlay shown; CPU seconds used while they ran:\n\n"
                     + _concurrent_table(runs))
    if report.get("soak", {}).get("soak"):
        parts.append(_soak_lines(report["soak"]["soak"]))
    parts.append("Targets:\n\n" + "\n".join(f"- {line}" for line in _load_targets(report, runs)))
    dates = sorted(r["date"][:10] for _, r in runs if r.get("date"))
    cores = next((r["machine"].get("cores") for _, r in runs if r.get("machine")), None)
    parts.append(f"Measured with `scripts/loadtest.py` on {cores or '?'} CPU cores"
                 + (f" ({dates[0]}{' to ' + dates[-1] if dates[-1] != dates[0] else ''})"
                    if dates else "") + "; server, Chromium and its pages share those cores.")
    return "\n\n".join(parts)
