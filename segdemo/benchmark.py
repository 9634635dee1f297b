"""`python -m segdemo benchmark`: how fast each model is, measured the way a user meets it.

Per model, in one process and one run:

- parameters, weights file size (MB), cold load (rebuild + weights + first prediction, which
  traces the graphs);
- single-image end-to-end latency, p50 and p95 over `runs` calls after `warmup` calls: a decoded
  PIL photo of 500x375 in, a label mask at 500x375 and its colourised RGB out (decoding is
  excluded; the downscale, network, resize back and colouring are included);
- the seed tutorials' path on the same photo, measured the same way: PIL downscale, preprocessing,
  `model.predict(x[None])`, argmax at the input size, nearest-neighbour resize to the original
  size, colouring; and the ratio seed p50 / our p50;
- the network's FLOPs (counted from the layers) and its FLOP limit at this machine's measured
  float32 matmul speed (`flops`), with each path's multiple of it;
- every runtime variant that can run here (TF, ONNX Runtime, LiteRT; float16 and int8 where
  offered), end to end and network alone on the same photo; with the fidelity that
  `benchmark --fidelity` stored in weights/<id>/runtime.json, the fastest faithful one is
  recorded there as the model's `auto` runtime (`runtime_choice`), and every figure below is
  for that runtime;
- throughput of `predict_batch` on 16 photos (images/s, end to end);
- training throughput (images/s): a freshly built model of the same architecture, compiled as
  `train` compiles it, `train_on_batch` on random batches of 8 at the input size;
- latency at 0.3, 3 and 12 megapixels, split into downscale, network, resize back and colouring,
  to show that only the resizes grow with the photo;
- memory: `peak_rss_mb` is the process's resident-memory high-water mark (ru_maxrss) read after
  the model's inference measurements, `peak_rss_train_mb` after its training steps. The process
  holds everything loaded before, so the figures are cumulative in benchmark order: the first
  model's figure is its own (plus TensorFlow's ~0.5-1 GB baseline, reported as `baseline_rss_mb`),
  and `python -m segdemo benchmark --models ID` gives any one model's own figure. Running each
  model in a subprocess would isolate them but pay TensorFlow's start-up per model; we chose the
  one process and a clear label.

For one model (`unet_mobilenetv2` when present) it also times the inference candidates the
fast path was chosen from: the network alone via `predict`, eager call, `tf.function`, and
`tf.function` with XLA, at batch 1 and 16; and the resize back via TF float32 (the default), PIL
float32 per channel, PIL on uint8-quantised probabilities and argmax-then-nearest, with the
share of mask pixels each variant changes relative to the default.

Benchmarks are not tests: nothing here asserts a time. Numbers taken while the machine does other
work are not worth reporting; the load average is recorded next to them for that reason.
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from segdemo.errors import SegDemoError
from segdemo.artifacts import BENCHMARK_FILE, WEIGHTS_FILE, check_model_dir, read_card, write_json
from segdemo.images import synthetic_photo

PHOTO_SIZE = (500, 375)  # (width, height), a typical Oxford-IIIT Pet photo
LARGE_SIZES = {"0.3": (640, 480), "3": (2000, 1500), "12": (4000, 3000)}  # megapixels -> (w, h)
BATCH = 16
TRAIN_BATCH = 8
CANDIDATE_MODEL = "unet_mobilenetv2"
TARGET_SPEEDUP = 5.0  # end to end vs the seed path at 0.2 MP (issue 13)
TARGET_FLOP_MULTIPLE = 2.5  # MobileNetV2 models: end to end within this multiple of the FLOP limit
TARGET_LARGE = ("12", 2.0, 100.0)  # 12 MP end to end <= 2x the 0.2 MP time + 100 ms
TARGET_AGREEMENT = 0.995  # the chosen runtime's masks vs the Keras model's


class BenchmarkError(SegDemoError, ValueError):
    """Nothing to benchmark, or a bad request; the message says what to do."""


def default_weights_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "weights"


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def _timings(fn: Callable[[], object], runs: int, warmup: int) -> list[float]:
    """Seconds per call of `fn`, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _summary(times: Sequence[float]) -> dict:
    ms = [t * 1000 for t in times]
    return {"p50_ms": round(_percentile(ms, 50), 3), "p95_ms": round(_percentile(ms, 95), 3),
            "mean_ms": round(float(np.mean(ms)), 3), "runs": len(ms)}


def _peak_rss_mb() -> float:
    """The process's resident-memory high-water mark (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def _rss_mb() -> float:
    try:
        import psutil
        return round(psutil.Process().memory_info().rss / 2**20, 1)
    except ImportError:  # pragma: no cover - psutil is in requirements.txt
        return float("nan")


BUSY_PERCENT = 20.0  # other CPU use above this before the run makes the timings suspect


def _cpu_busy_percent(seconds: float = 2.0) -> float | None:
    """System-wide CPU use over `seconds` while this process waits: other work on the machine.

    The load average cannot say this: it lags by minutes and the benchmark's own load enters it.
    """
    try:
        import psutil
        return round(psutil.cpu_percent(interval=seconds), 1)
    except ImportError:  # pragma: no cover - psutil is in requirements.txt
        return None


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


# --- which models -------------------------------------------------------------------------------

def discover(weights_dir: Path, model_ids: Sequence[str] | None) -> tuple[dict[str, Path], dict[str, str]]:
    """Usable model folders by id, and the reason for each requested id that is not usable."""
    from segdemo.models import ARCHITECTURES

    found: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    if model_ids:
        for model_id in model_ids:
            if model_id not in ARCHITECTURES:
                skipped[model_id] = (f"unknown architecture {model_id!r}; known: "
                                     f"{', '.join(ARCHITECTURES)}")
                continue
            folder = weights_dir / model_id
            problem = (check_model_dir(folder) if folder.is_dir()
                       else f"no folder {folder}")
            if problem:
                skipped[model_id] = problem
            else:
                found[model_id] = folder
        return found, skipped
    if weights_dir.is_dir():
        for folder in sorted(p for p in weights_dir.iterdir() if p.is_dir()):
            problem = check_model_dir(folder)
            if problem:
                skipped[folder.name] = problem
            else:
                found[folder.name] = folder
    return found, skipped


def untrained_folder(arch_id: str, root: Path) -> Path:
    """A model folder for a freshly built registry model (random weights, default options and
    input size, the three pet classes): timings are the same as for trained weights."""
    from segdemo.classes import PET_CLASSES
    from segdemo.models import get_architecture

    arch = get_architecture(arch_id)
    folder = root / arch_id
    folder.mkdir(parents=True, exist_ok=True)
    model = arch.build(len(PET_CLASSES))
    model.save_weights(folder / WEIGHTS_FILE)
    write_json(folder / "card.json", {
        "id": arch.id, "title": arch.title, "classes": [c.to_json() for c in PET_CLASSES],
        "input_size": list(arch.input_size), "preprocessing": arch.preprocessing,
        "options": dict(arch.options), "untrained": True,
    })
    return folder


# --- measurements -------------------------------------------------------------------------------

def seed_path(model, card: dict, classes) -> Callable[[Image.Image], np.ndarray]:
    """The tutorials' way: preprocess, `model.predict(x[None])`, argmax, resize the mask back."""
    from segdemo.inference import colorize
    from segdemo.preprocessing import get_preprocessor

    preprocess = get_preprocessor(card["preprocessing"])
    height, width = card["input_size"]

    def run(image: Image.Image) -> np.ndarray:
        x = preprocess(np.asarray(image.resize((width, height), Image.BILINEAR), np.float32))
        logits = model.predict(x[None], verbose=0)[0]
        small = np.argmax(logits, axis=-1).astype(np.uint8)
        mask = np.asarray(Image.fromarray(small).resize(image.size, Image.NEAREST))
        return colorize(mask, classes)
    return run


def _end_to_end(segmenter, image: Image.Image) -> np.ndarray:
    from segdemo.inference import colorize

    return colorize(segmenter.predict(image).mask, segmenter.classes)


def _stages(segmenter, image: Image.Image, runs: int) -> dict:
    """Median milliseconds of each stage of `predict` on `image`, and of the whole call."""
    from segdemo.inference import colorize

    parts: dict[str, list[float]] = {k: [] for k in ("total", "downscale", "network", "resize_back",
                                                      "colorize")}
    for _ in range(runs):
        t0 = time.perf_counter()
        x, (width, height) = segmenter.prepare(image)
        t1 = time.perf_counter()
        probs = segmenter.input_probabilities(x[None])[0]
        t2 = time.perf_counter()
        mask = segmenter.full_labels(probs, (width, height))
        t3 = time.perf_counter()
        colorize(mask, segmenter.classes)
        t4 = time.perf_counter()
        for key, value in (("downscale", t1 - t0), ("network", t2 - t1), ("resize_back", t3 - t2),
                           ("colorize", t4 - t3), ("total", t4 - t0)):
            parts[key].append(value * 1000)
        del mask, probs
    return {f"{k}_ms": round(_percentile(v, 50), 2) for k, v in parts.items()}


def train_throughput(card: dict, steps: int, warmup: int = 2) -> float:
    """Images/s of `train_on_batch` on random batches of 8, compiled as `train._compile` does."""
    import keras
    from segdemo.losses import get_loss
    from segdemo.metrics import PixelAccuracy, mean_iou_metric
    from segdemo.models import get_architecture

    num_classes = len(card["classes"])
    height, width = card["input_size"]
    model = get_architecture(card["id"]).build(num_classes, (height, width), encoder_weights=None,
                                               **card.get("options", {}))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=get_loss("ce", 255, None),
                  metrics=[PixelAccuracy(255), mean_iou_metric(num_classes, 255)])
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (TRAIN_BATCH, height, width, 3)).astype(np.float32)
    y = rng.integers(0, num_classes, (TRAIN_BATCH, height, width)).astype(np.int32)
    times = _timings(lambda: model.train_on_batch(x, y), max(steps, 1), warmup)
    del model
    return TRAIN_BATCH * len(times) / sum(times)


def runtime_rows(model, card: dict, photo: Image.Image, runs: int, warmup: int,
                 names: Sequence[str], log: Callable[[str], None] = print) -> tuple[dict, dict]:
    """Per runtime variant that can run here: end-to-end and network-only p50 on `photo`; and
    the runners, to reuse the chosen one. Conversions come from the cache (built if missing)."""
    from segdemo.export import model_digest
    from segdemo.inference import Segmenter
    from segdemo.runtime_choice import candidates, variant_runner

    digest = model_digest(model, card)
    usable, skipped = candidates(card, tuple(names))
    for name, reason in skipped.items():
        log(f"  {card['id']}: {name} skipped ({reason})")
    rows, runners = {}, {}
    for name in usable:
        runner = runners[name] = variant_runner(name, model, card, digest)
        segmenter = Segmenter(model, card, runtime=runner)
        x, _ = segmenter.prepare(photo)
        network = _summary(_timings(lambda: segmenter.input_probabilities(x[None]), runs, warmup))
        whole = _summary(_timings(lambda: _end_to_end(segmenter, photo), runs, warmup))
        rows[name] = {"p50_ms": whole["p50_ms"], "p95_ms": whole["p95_ms"],
                      "network_p50_ms": network["p50_ms"]}
    log(f"  {card['id']} runtimes (end to end / network p50 ms): " + ", ".join(
        f"{k} {v['p50_ms']:.1f} / {v['network_p50_ms']:.1f}" for k, v in rows.items()))
    return rows, runners


def benchmark_model(folder: Path, *, runs: int = 30, warmup: int = 5, large_runs: int = 5,
                    batch_runs: int = 5, train_steps: int = 10, seed_runs: int | None = None,
                    large_sizes: dict[str, tuple[int, int]] | None = None,
                    machine_gflops: float | None = None, runtimes: Sequence[str] | None = None,
                    log: Callable[[str], None] = print) -> dict:
    """All per-model figures for the model folder `folder` (see the module docstring)."""
    from segdemo.flops import network_flops, matmul_gflops
    from segdemo.inference import Segmenter, colorize
    from segdemo.runtime_choice import VARIANTS, record_choice

    card = read_card(folder)
    model_id = card["id"]
    start = time.perf_counter()
    segmenter = Segmenter.load(folder)
    load_s = time.perf_counter() - start
    photo = synthetic_photo(*PHOTO_SIZE)
    start = time.perf_counter()
    _end_to_end(segmenter, photo)
    first_s = time.perf_counter() - start
    result: dict = {
        "title": card.get("title", model_id),
        "untrained": bool(card.get("untrained", False)),
        "input_size": list(card["input_size"]),
        "classes": len(card["classes"]),
        "parameters": int(segmenter.model.count_params()),
        "weights_mb": round((folder / WEIGHTS_FILE).stat().st_size / 2**20, 2),
        "load_s": round(load_s, 3),
        "first_prediction_s": round(first_s, 3),
        "cold_load_s": round(load_s + first_s, 3),
    }
    result["load_runtime"] = segmenter.runtime
    log(f"  {model_id}: loaded in {load_s:.2f} s on {segmenter.runtime}, first mask after "
        f"{first_s:.2f} s more")

    gflop = network_flops(segmenter.model) / 1e9
    result["gflop"] = round(gflop, 3)
    result["flop_limit_ms"] = round(gflop / (machine_gflops or matmul_gflops()) * 1000, 2)
    rows, runners = runtime_rows(segmenter.model, card, photo, runs, warmup,
                                 runtimes or VARIANTS, log)
    record = record_choice(folder, segmenter.model, card, rows)
    scores = record.get("fidelity", {}).get("runtimes", {})
    for name, row in rows.items():
        row["flop_multiple"] = round(row["p50_ms"] / result["flop_limit_ms"], 2)
        reference = {"agreement": 1.0, "delta_miou": 0.0, "faithful": True} if name == "tf" else {}
        row.update({k: scores.get(name, reference).get(k) for k in ("agreement", "delta_miou",
                                                                     "faithful")})
    result["runtimes"] = rows
    chosen = record["chosen"]["variant"]
    result["runtime"] = chosen
    log(f"  {model_id}: runs on {chosen} ({record['chosen']['why']})")
    segmenter = Segmenter(segmenter.model, card, runtime=runners[chosen])
    del runners

    ours = _summary(_timings(lambda: _end_to_end(segmenter, photo), runs, warmup))
    result.update(ours)
    seed = seed_path(segmenter.model, card, segmenter.classes)
    seed_summary = _summary(_timings(lambda: seed(photo), seed_runs or runs, warmup))
    result["seed"] = seed_summary
    result["speedup_vs_seed"] = round(seed_summary["p50_ms"] / ours["p50_ms"], 2)
    result["flop_multiple"] = round(ours["p50_ms"] / result["flop_limit_ms"], 2)
    result["seed"]["flop_multiple"] = round(seed_summary["p50_ms"] / result["flop_limit_ms"], 2)
    log(f"  {model_id}: p50 {ours['p50_ms']:.1f} ms, p95 {ours['p95_ms']:.1f} ms; seed path "
        f"p50 {seed_summary['p50_ms']:.1f} ms ({result['speedup_vs_seed']:.1f}x)")

    photos = [synthetic_photo(*PHOTO_SIZE, seed=i) for i in range(BATCH)]

    def batch() -> None:
        for prediction in segmenter.predict_batch(photos):
            colorize(prediction.mask, segmenter.classes)
    batch_times = _timings(batch, max(batch_runs, 1), 1)
    result["batch_size"] = BATCH
    result["batch_images_per_s"] = round(BATCH / _percentile(batch_times, 50), 2)

    result["large"] = {}
    for megapixels, size in (large_sizes or LARGE_SIZES).items():
        image = synthetic_photo(*size, seed=1)
        _end_to_end(segmenter, image)  # warm caches at this size
        stages = _stages(segmenter, image, max(large_runs, 1))
        result["large"][megapixels] = {"size": list(size), **stages}
        del image
    log("  " + model_id + ": " + ", ".join(
        f"{mp} MP {v['total_ms']:.0f} ms (network {v['network_ms']:.0f})"
        for mp, v in result["large"].items()))
    result["peak_rss_mb"] = _peak_rss_mb()
    result["rss_mb"] = _rss_mb()
    del segmenter, seed

    result["train_batch_size"] = TRAIN_BATCH
    result["train_images_per_s"] = None  # train_steps=0 skips the training measurement
    result["peak_rss_train_mb"] = None
    training = "not measured"
    if train_steps > 0:
        result["train_images_per_s"] = round(train_throughput(card, train_steps), 2)
        result["peak_rss_train_mb"] = _peak_rss_mb()
        training = (f"{result['train_images_per_s']:.1f} images/s "
                    f"(peak RSS {result['peak_rss_train_mb']:.0f} MB after training)")
    log(f"  {model_id}: batch of {BATCH} {result['batch_images_per_s']:.1f} images/s, peak RSS "
        f"{result['peak_rss_mb']:.0f} MB; training {training}")
    return result


def candidates(folder: Path, *, runs: int = 30, warmup: int = 5, batch_runs: int = 5,
               resize_runs: int = 5, large_size: tuple[int, int] = LARGE_SIZES["12"],
               log: Callable[[str], None] = print) -> dict:
    """The alternatives the fast path was chosen from, on one model (see the module docstring)."""
    from segdemo.inference import Segmenter
    from segdemo.upsample import bilinear_labels, exact_labels
    from segdemo.preprocessing import get_preprocessor

    plain = Segmenter.load(folder, runtime="tf")
    xla = Segmenter(plain.model, plain.card, jit_compile=True)
    model, card = plain.model, plain.card
    preprocess = get_preprocessor(card["preprocessing"])
    photo = synthetic_photo(*PHOTO_SIZE)
    x8, _ = plain.prepare(photo)
    x = preprocess(x8.astype(np.float32))
    batch8 = np.stack([plain.prepare(synthetic_photo(*PHOTO_SIZE, seed=i))[0] for i in range(BATCH)])

    network = {
        "predict": lambda: model.predict(x[None], verbose=0),
        "eager_call": lambda: model(x[None], training=False).numpy(),
        "tf_function": lambda: plain.input_probabilities(x8[None]),
        "tf_function_xla": lambda: xla.input_probabilities(x8[None]),
    }
    out: dict = {"model": card["id"], "network_batch1": {}, "network_batch16": {}, "resize_back": {}}
    for name, fn in network.items():
        out["network_batch1"][name] = _summary(_timings(fn, runs, warmup))
    for name, seg in (("tf_function", plain), ("tf_function_xla", xla)):
        times = _timings(lambda: seg.input_probabilities(batch8), max(batch_runs, 1), 2)
        out["network_batch16"][name] = {"images_per_s": round(BATCH / _percentile(times, 50), 2)}
    same = np.abs(plain.input_probabilities(x8[None]) - xla.input_probabilities(x8[None])).max()
    out["xla_max_abs_difference"] = float(same)
    log("  network, batch 1 (p50 ms): " + ", ".join(
        f"{k} {v['p50_ms']:.1f}" for k, v in out["network_batch1"].items()))
    log("  network, batch 16 (images/s): " + ", ".join(
        f"{k} {v['images_per_s']:.1f}" for k, v in out["network_batch16"].items()))

    def tf_float(probs, size):
        return exact_labels(probs, size), None

    def edge_band(probs, size):
        return bilinear_labels(probs, size), None

    def pil_channels(probs, size, quantise):
        height, width = size
        source = np.round(probs * 255).astype(np.uint8) if quantise else probs
        channels = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(source[..., c]))
                                        .resize((width, height), Image.BILINEAR))
                             for c in range(probs.shape[-1])], axis=-1)
        return channels.argmax(-1).astype(np.uint8), channels.max(-1)

    def nearest(probs, size):
        height, width = size
        small = Image.fromarray(probs.argmax(-1).astype(np.uint8))
        return np.asarray(small.resize((width, height), Image.NEAREST)), None

    variants = {"tf_float32": tf_float, "edge_band": edge_band,
                "pil_float32": lambda p, s: pil_channels(p, s, False),
                "pil_uint8": lambda p, s: pil_channels(p, s, True),
                "argmax_then_nearest": nearest}
    sizes = {f"{PHOTO_SIZE[0] * PHOTO_SIZE[1] / 1e6:.2g}": PHOTO_SIZE,
             f"{large_size[0] * large_size[1] / 1e6:.2g}": large_size}
    for megapixels, (width, height) in sizes.items():
        image = synthetic_photo(width, height, seed=2)
        probs = plain.input_probabilities(plain.prepare(image)[0][None])[0]
        del image
        reference = tf_float(probs, (height, width))[0]
        row = {}
        for name, fn in variants.items():
            times = _timings(lambda: fn(probs, (height, width)), max(resize_runs, 1), 1)
            changed = float(np.mean(fn(probs, (height, width))[0] != reference))
            row[name] = {"p50_ms": round(_percentile(times, 50) * 1000, 2),
                         "changed_pixels": changed}
        out["resize_back"][megapixels] = row
        log(f"  resize back at {megapixels} MP (p50 ms, changed pixels): " + ", ".join(
            f"{k} {v['p50_ms']:.1f} ({v['changed_pixels']:.2%})" for k, v in row.items()))
        del reference
    out["note"] = ("changed_pixels compares each variant's mask with today's exact path (TF "
                   "bilinear float32, then argmax); edge_band is the default; with untrained weights the probabilities are noisy, so judge quality "
                   "on trained weights.")
    return out


def device_description() -> str:
    from segdemo.train import hardware_description

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return hardware_description() + (f", {cpu}" if cpu else "")


def run_benchmark(model_ids: Sequence[str] | None = None, weights_dir: str | Path | None = None,
                  untrained: bool = False, json_path: str | Path | None = None, *,
                  runs: int = 30, warmup: int = 5, large_runs: int = 5, batch_runs: int = 5,
                  train_steps: int = 10, with_candidates: bool = True,
                  large_sizes: dict[str, tuple[int, int]] | None = None,
                  runtimes: Sequence[str] | None = None,
                  log: Callable[[str], None] = print) -> dict:
    """Benchmark the selected models, write the JSON (unless `json_path` is None and there is no
    default) and return it. Raises `BenchmarkError` when there is nothing to benchmark."""
    if runs < 1 or warmup < 0:
        raise BenchmarkError("--runs must be at least 1 and --warmup at least 0.")
    import keras
    import tensorflow as tf

    from segdemo.flops import matmul_gflops
    from segdemo.models import ARCHITECTURES

    weights_dir = Path(weights_dir) if weights_dir else default_weights_dir()
    with tempfile.TemporaryDirectory(prefix="segdemo-bench-") as tmp:
        if untrained:
            ids = list(model_ids or ARCHITECTURES)
            folders, skipped = {}, {}
            for model_id in ids:
                if model_id in ARCHITECTURES:
                    folders[model_id] = untrained_folder(model_id, Path(tmp))
                else:
                    skipped[model_id] = (f"unknown architecture {model_id!r}; known: "
                                         f"{', '.join(ARCHITECTURES)}")
        else:
            folders, skipped = discover(weights_dir, model_ids)
        for model_id, reason in skipped.items():
            log(f"skipped {model_id}: {reason}")
        if not folders:
            hint = ("" if untrained else
                    f" No trained model folder in {weights_dir}: pass --weights DIR, or "
                    f"--untrained to time freshly built models (the latency is the same).")
            raise BenchmarkError("Nothing to benchmark." + hint)

        report: dict = {
            "device": device_description(),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "versions": {"python": platform.python_version(), "tensorflow": tf.__version__,
                         "keras": keras.__version__, "numpy": np.__version__,
                         "pillow": Image.__version__},
            "source": "untrained (random weights)" if untrained else str(weights_dir),
            "settings": {"photo_size": list(PHOTO_SIZE), "runs": runs, "warmup": warmup,
                         "large_sizes": {k: list(v) for k, v in (large_sizes or LARGE_SIZES).items()},
                         "batch_size": BATCH, "train_batch_size": TRAIN_BATCH,
                         "train_steps": train_steps, "large_runs": large_runs},
            "load_average_before": _load_average(),
            "other_cpu_percent_before": _cpu_busy_percent(),
            "baseline_rss_mb": _rss_mb(),
            "matmul_gflops": round(matmul_gflops(), 1),
            "flop_note": ("gflop: FLOPs of one forward pass counted from the layers; "
                          "flop_limit_ms: gflop at the measured float32 matmul speed "
                          "(matmul_gflops); flop_multiple: end-to-end p50 / flop_limit_ms."),
            "memory_note": ("peak_rss_mb is the process's resident-memory high-water mark after "
                            "the model's inference measurements (peak_rss_train_mb after its "
                            "training steps); cumulative in benchmark order, the first model's "
                            "is its own. Run --models ID alone for one model's own figure."),
            "models": {},
            "skipped": skipped,
        }
        for model_id, folder in folders.items():
            log(f"{model_id}:")
            report["models"][model_id] = benchmark_model(
                folder, runs=runs, warmup=warmup, large_runs=large_runs, batch_runs=batch_runs,
                train_steps=train_steps, large_sizes=large_sizes,
                machine_gflops=report["matmul_gflops"], runtimes=runtimes, log=log)
        if with_candidates:
            chosen = CANDIDATE_MODEL if CANDIDATE_MODEL in folders else next(iter(folders))
            log(f"candidates for the fast path, on {chosen}:")
            report["candidates"] = candidates(folders[chosen], runs=runs, warmup=warmup,
                                              batch_runs=batch_runs, resize_runs=large_runs,
                                              large_size=list((large_sizes or LARGE_SIZES)
                                                              .values())[-1], log=log)
    report["load_average_after"] = _load_average()
    report["targets"] = check_targets(report)
    if json_path is None and not untrained:
        json_path = weights_dir / BENCHMARK_FILE
    if json_path is not None:
        write_json(json_path, report)
        report["json_path"] = str(json_path)
    return report


def run_fidelity(model_ids: Sequence[str] | None = None, weights_dir: str | Path | None = None,
                 data: str | Path | None = None, limit: int | None = None,
                 log: Callable[[str], None] = print) -> dict:
    """`benchmark --fidelity`: each model's runtime variants against its Keras model on the test
    split, into weights/<id>/runtime.json (not a timing: no quiet machine needed)."""
    from segdemo.runtime_choice import measure_fidelity

    folders, skipped = discover(Path(weights_dir) if weights_dir else default_weights_dir(),
                                model_ids)
    for model_id, reason in skipped.items():
        log(f"skipped {model_id}: {reason}")
    if not folders:
        raise BenchmarkError("Nothing to check: no usable model folder.")
    return {model_id: measure_fidelity(folder, data, limit, log=log)
            for model_id, folder in folders.items()}


def check_targets(report: dict) -> dict:
    """The issue's targets, evaluated on this run: True/False per model (never an exception)."""
    targets = {}
    large_size, factor, extra_ms = TARGET_LARGE
    for model_id, m in report["models"].items():
        row = {f"speedup_at_least_{TARGET_SPEEDUP:g}x": m["speedup_vs_seed"] >= TARGET_SPEEDUP}
        if "mobilenetv2" in model_id and m.get("flop_multiple") is not None:
            row[f"within_{TARGET_FLOP_MULTIPLE:g}x_of_flop_limit"] = (
                m["flop_multiple"] <= TARGET_FLOP_MULTIPLE)
        if large_size in m.get("large", {}):
            row[f"{large_size}_mp_within_{factor:g}x_plus_{extra_ms:g}_ms"] = (
                m["large"][large_size]["total_ms"] <= factor * m["p50_ms"] + extra_ms)
        chosen = m.get("runtimes", {}).get(m.get("runtime"), {})
        if chosen:
            row[f"chosen_runtime_agrees_{TARGET_AGREEMENT:.1%}"] = (
                (chosen.get("agreement") or 0.0) >= TARGET_AGREEMENT)
        targets[model_id] = row
    return targets


def format_report(report: dict) -> str:
    """A table of the headline figures, then the targets and the machine load."""
    header = (f"{'model':28}{'params':>11}{'MB':>7}{'load s':>8}{'p50 ms':>8}{'p95 ms':>8}"
              f"{'seed p50':>9}{'speedup':>8}{'b16 img/s':>10}{'train img/s':>12}{'peak MB':>9}")
    lines = [f"device: {report['device']}", header]
    for model_id, m in report["models"].items():
        lines.append(f"{model_id:28}{m['parameters']:>11,}{m['weights_mb']:>7.1f}"
                     f"{m['cold_load_s']:>8.2f}{m['p50_ms']:>8.1f}{m['p95_ms']:>8.1f}"
                     f"{m['seed']['p50_ms']:>9.1f}{m['speedup_vs_seed']:>7.1f}x"
                     f"{m['batch_images_per_s']:>10.1f}"
                     f"{m['train_images_per_s'] or float('nan'):>12.1f}"
                     f"{m['peak_rss_mb']:>9.0f}")
    lines.append("")
    names = list(dict.fromkeys(n for m in report["models"].values() for n in m.get("runtimes", {})))
    if names:
        lines.append(f"{'end to end p50 ms (x FLOP limit)':34}" + "".join(f"{n:>20}" for n in names))
        for model_id, m in report["models"].items():
            rows = m.get("runtimes", {})
            lines.append(f"{model_id:28}{m['flop_limit_ms']:>6.1f}" + "".join(
                f"{rows[n]['p50_ms']:>12.1f} ({rows[n]['flop_multiple']:>4.1f}x)" if n in rows
                else f"{'n/a':>20}" for n in names) + f"  -> {m['runtime']}")
        lines.append("")
    sizes = list(next(iter(report["models"].values()))["large"])
    lines.append(f"{'model':28}" + "".join(f"{mp + ' MP total/net ms':>22}" for mp in sizes))
    for model_id, m in report["models"].items():
        lines.append(f"{model_id:28}" + "".join(
            f"{m['large'][mp]['total_ms']:>13.0f} / {m['large'][mp]['network_ms']:<6.0f}"
            for mp in sizes))
    lines.append("")
    for model_id, row in report["targets"].items():
        lines.append(f"target {model_id}: " + ", ".join(
            f"{name} {'met' if ok else 'NOT met'}" for name, ok in row.items()))
    for model_id, reason in report["skipped"].items():
        lines.append(f"skipped {model_id}: {reason}")
    other = report.get("other_cpu_percent_before")
    if other is not None:
        lines.append(f"other CPU use just before the run: {other:.0f} %"
                     + (" - the machine was busy; these timings are not representative."
                        if other > BUSY_PERCENT else ""))
    if report.get("json_path"):
        lines.append(f"written to {report['json_path']}")
    return "\n".join(lines)


def finite_numbers(value) -> bool:
    """Whether every number in a JSON-like structure is finite (helper for the tests)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    if isinstance(value, (int, float)):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite_numbers(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(finite_numbers(v) for v in value)
    return True
