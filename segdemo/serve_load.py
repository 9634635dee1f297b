"""`python -m segdemo loadtest`: how much the Ray Serve app serves on this machine.

For each deployment setting (replicas x largest batch) the app is deployed afresh on a local Ray
cluster, warmed up, and then N concurrent HTTP clients (each a thread sending its next photo as soon
as the last one is answered) send `requests` real photos in all; recorded per level: photos per
second, latency p50/p95/max (request sent to answer read, as a client sees it) and the part of it
spent inside the model replica (the rest is the HTTP proxy, the router and the clients), errors,
and the batch sizes the server reports. Comparing largest batch 1 with 8 gives the batching gain. The
clients run on the same cores as the server (a real client would not), so the figures are a
floor. `--url` measures an endpoint that is already running instead (as it is deployed).

The report (default `weights/serve_loadtest.json`) feeds the README table
(`python -m segdemo results --serve`, `scripts/update_readme.py`).
"""
from __future__ import annotations

import io
import json
import os
import platform
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from segdemo.batching import (DEFAULT_MAX_BATCH, DEFAULT_MAX_WAIT_S, BatchingPredictor,
                              configure_threads, shown_prediction)
from segdemo.errors import SegDemoError
from segdemo.images import is_image_file, open_image
from segdemo.serve_client import ServeClient, ServeRequestError

SERVE_LOAD_FILE = "serve_loadtest.json"
WARM_UP_REQUESTS = 8
# How the table names where the photos went.
ENGINES = {"in-process": "in process (one dashboard process's queue)", "ray-serve": "Ray Serve"}


def read_photos(folder: Path, count: int) -> list[bytes]:
    """The first `count` image files of `folder` (sorted), as sent: the files' own bytes."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))[:count]
    if not files:
        raise SegDemoError(f"{folder} holds no image files to send.")
    return [p.read_bytes() for p in files]


def _ms(values: Sequence[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    ms = np.asarray(values, np.float64) * 1000
    return {"p50": round(float(np.percentile(ms, 50)), 1),
            "p95": round(float(np.percentile(ms, 95)), 1), "max": round(float(ms.max()), 1)}


def run_level(client: ServeClient, model: str, photos: Sequence[bytes], clients: int,
              requests: int) -> dict:
    """`requests` photos sent by `clients` concurrent HTTP clients; what they saw."""
    return drive(_http_send(client, model), photos, clients, requests)


def _http_send(client: ServeClient, model: str) -> Callable[[bytes], tuple[float, int]]:
    def send(photo: bytes) -> tuple[float, int]:
        timings = client.segment_json(model, photo)["timings"]
        return timings["server_ms"] / 1000, int(timings["batch_size"])
    return send


def drive(send: Callable[[bytes], tuple[float, int]], photos: Sequence[bytes], clients: int,
          requests: int) -> dict:
    """`requests` photos handed to `send` by `clients` concurrent threads, each sending its next
    photo as soon as the last is answered. `send` returns (seconds spent by the server: decode,
    queue, network, answer; the size of the batch the photo went in)."""
    lock, sent = threading.Lock(), [0]
    latencies: list[float] = []
    inside: list[float] = []
    batches: list[int] = []
    errors: list[str] = []

    def work() -> None:
        while True:
            with lock:
                if sent[0] >= requests:
                    return
                index = sent[0]
                sent[0] += 1
            start = time.perf_counter()
            try:
                server_s, batch = send(photos[index % len(photos)])
            except (SegDemoError, ValueError) as exc:
                with lock:
                    errors.append(str(exc)[:200])
                continue
            with lock:
                latencies.append(time.perf_counter() - start)
                inside.append(server_s)
                batches.append(batch)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(work) for _ in range(clients)]:
            future.result()
    seconds = time.perf_counter() - start
    return {"clients": clients, "requests": requests, "ok": len(latencies),
            "errors": len(errors), "error_examples": sorted(set(errors))[:3],
            "seconds": round(seconds, 2), "photos_per_s": round(len(latencies) / seconds, 2),
            "latency_ms": _ms(latencies), "in_replica_ms": _ms(inside),
            "mean_batch": round(float(np.mean(batches)), 2) if batches else None,
            "largest_batch_seen": max(batches, default=None)}


def run_in_process(folder: Path, photos: Sequence[bytes], *, levels: Sequence[int],
                   requests: int, max_batch: int = DEFAULT_MAX_BATCH,
                   batch_wait_s: float = DEFAULT_MAX_WAIT_S,
                   log: Callable[[str], None] = print) -> dict:
    """The baseline: what one dashboard process serves. The same path its sessions take (each
    client thread decodes its upload and waits on the model's in-process queue, which batches
    what is waiting and shrinks each result for display), without the web layer."""
    from segdemo.dashboard import DISPLAY_SIDE, load_segmenter

    configure_threads()
    started = time.perf_counter()
    segmenter = load_segmenter(folder)
    load_s = round(time.perf_counter() - started, 1)
    finish = partial(shown_prediction, num_classes=len(segmenter.classes), side=DISPLAY_SIDE)
    predictor = BatchingPredictor(segmenter, max_batch=max_batch, max_wait_s=batch_wait_s,
                                  finish=finish, name=folder.name)

    def send(photo: bytes) -> tuple[float, int]:
        start = time.perf_counter()
        timed = predictor.submit(open_image(photo)).result()
        return time.perf_counter() - start, timed.batch_size

    log(f"{folder.name}: in process, batches of up to {max_batch}")
    try:
        results = _measure_levels(send, photos, levels, requests, log)
    finally:
        predictor.close()
    return {"engine": "in-process", "replicas": 1, "max_batch": max_batch, **stamp(),
            "batch_wait_ms": batch_wait_s * 1000, "runtime": segmenter.runtime, "deploy_s": load_s,
            "levels": results}


def measure(client: ServeClient, model: str, photos: Sequence[bytes], levels: Sequence[int],
            requests: int, log: Callable[[str], None]) -> list[dict]:
    return _measure_levels(_http_send(client, model), photos, levels, requests, log)


def _measure_levels(send: Callable[[bytes], tuple[float, int]], photos: Sequence[bytes],
                    levels: Sequence[int], requests: int,
                    log: Callable[[str], None]) -> list[dict]:
    """A warm-up at the lowest level, then each level of concurrent clients in turn."""
    drive(send, photos, min(levels), WARM_UP_REQUESTS)
    results = []
    for clients in levels:
        results.append(level := drive(send, photos, clients, requests))
        log(f"  {clients} clients: {level['photos_per_s']} photos/s, p50 "
            f"{level['latency_ms']['p50']} ms, p95 {level['latency_ms']['p95']} ms, "
            f"{level['errors']} errors, mean batch {level['mean_batch']}")
    return results


def run_loadtest(folder: Path, model: str, photos: Sequence[bytes], *, levels: Sequence[int],
                 replicas: Sequence[int], max_batches: Sequence[int], batch_wait_s: float,
                 requests: int, port: int, log: Callable[[str], None] = print) -> list[dict]:
    """Every (replicas, largest batch) setting deployed in turn on a local cluster."""
    from segdemo import serving

    settings = []
    for count in replicas:
        for max_batch in max_batches:
            log(f"{model}: {count} replica(s), batches of up to {max_batch}")
            started = time.perf_counter()
            options = serving.ServeOptions({model: folder}, replicas=count, max_batch=max_batch,
                                           batch_wait_s=batch_wait_s)
            url = serving.start(options, port=port)
            deploy_s = round(time.perf_counter() - started, 1)
            try:
                levels_seen = measure(ServeClient(url), model, photos, levels, requests, log)
            finally:
                serving.serve.delete(serving.APP_NAME)
            settings.append({"replicas": count, "max_batch": max_batch, **stamp(),
                             "batch_wait_ms": batch_wait_s * 1000,
                             "replica_cpus": round(options.cpus(), 2), "deploy_s": deploy_s,
                             "levels": levels_seen})
    return settings


def stamp() -> dict:
    """When a setting was measured and how busy the machine was (other work shares it)."""
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "load_average": [round(v, 2) for v in os.getloadavg()]}


def report(model: str, photos: Sequence[bytes], source: str, requests: int,
           settings: list[dict]) -> dict:
    sizes = [Image.open(io.BytesIO(p)).size for p in photos]
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "load_average_at_start": [round(v, 2) for v in os.getloadavg()]},
            "model": model,
            "photos": {"source": source, "count": len(photos),
                       "mean_width": round(float(np.mean([s[0] for s in sizes]))),
                       "mean_height": round(float(np.mean([s[1] for s in sizes]))),
                       "mean_kb": round(float(np.mean([len(p) for p in photos])) / 1024, 1)},
            "requests_per_level": requests, "settings": settings}


def write_report(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def load_report(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SegDemoError(f"{path} cannot be read as a serve load report ({exc}); "
                           "`python -m segdemo loadtest` writes one.") from None


def serve_table(data: dict) -> str:
    """The README table: one row per (engine, replicas, largest batch, clients), then the
    batching gain."""
    photos = data["photos"]
    lines = [f"`{data['model']}`, {data['machine']['cpus']} cores, "
             f"{data['requests_per_level']} photos per level ({photos['source']}, mean "
             f"{photos['mean_width']}x{photos['mean_height']}, {photos['mean_kb']} KB), clients "
             "on the same cores:", "",
             "| engine | replicas | largest batch | batch wait ms | clients | photos/s | p50 ms | "
             "p95 ms | in server p50 ms | errors | mean batch |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    best: dict[tuple, float] = {}
    for setting in data["settings"]:
        engine = ENGINES[setting.get("engine", "ray-serve")]
        for level in setting["levels"]:
            latency = level["latency_ms"]
            wait = setting.get("batch_wait_ms") if setting["max_batch"] != 1 else "-"
            lines.append(f"| {engine} | {setting['replicas']} | {setting['max_batch']} | {wait} | "
                         f"{level['clients']} "
                         f"| {level['photos_per_s']} | {latency['p50']} | {latency['p95']} | "
                         f"{level.get('in_replica_ms', {}).get('p50')} | {level['errors']} | "
                         f"{level['mean_batch']} |")
            key = (engine, setting["replicas"], setting["max_batch"], wait)
            best[key] = max(best.get(key, 0.0), level["photos_per_s"])
    single = {(e, r): v for (e, r, b, _), v in best.items() if b == 1}
    gains = [f"{e}, {r} replica{'s' if r > 1 else ''}, batches of {b} waiting {w} ms: "
             f"{v / single[e, r]:.2f}x ({v} vs {single[e, r]} photos/s)"
             for (e, r, b, w), v in sorted(best.items(), key=str)
             if b > 1 and single.get((e, r))]
    if gains:
        lines += ["", "Batching gain (best level of each setting over the same engine and replicas "
                  "at batch 1): " + "; ".join(gains) + "."]
    return "\n".join(lines)
