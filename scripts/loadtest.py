"""Load test of the dashboard in a real browser: `streamlit run` on a free 127.0.0.1 port, Debian's
Chromium driven by Playwright (as tests/test_browser.py does; no browser download), real photos.

    python scripts/loadtest.py concurrent --sessions 16      # N sessions upload at once
    python scripts/loadtest.py soak --cycles 200             # one session, M upload cycles

Both start a fresh server and first measure the start: seconds until the server listens, until the
first page shows its uploader, and from the first upload to its first overlay. `concurrent` then
opens N sessions (browser contexts), each choosing the models, and uploads one photo per session
at once: seconds from upload to every overlay (p50/p95/max), sessions served, failures, the batch
sizes the page reported and the server's RSS. `soak` uploads a photo, waits for its overlays and
removes it, M times in one session (`--keep` keeps every photo instead, so the page grows),
reporting per-cycle time and server RSS every 10 cycles, and the CPU seconds a cycle costs the
server and the browser. Each session's photo differs (scikit-image photos, cropped and mirrored
per index, optionally enlarged with `--megapixels`), so no result is shared by accident.

The figures go into a JSON report (default `weights/loadtest.json`: `soak`, and under `concurrent`
one run per session count, the others kept) for the README tables (`python -m segdemo results
--load`). Everything is bounded: `--deadline` caps the whole run, every
wait has a timeout, and the server is always terminated.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-renderer-backgrounding", "--disable-background-timer-throttling"]
DEFAULT_MODELS = ("unet_mobilenetv2", "deeplabv3plus_mobilenetv2")
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "immunohistochemistry", "hubble_deep_field")
LISTEN_TIMEOUT_S = 120
UPLOADER = "[data-testid='stFileUploader'] input[type='file']"
# Page checks run every POLL_MS, not on every animation frame (Playwright's default): 16 pages
# each polling at 60 Hz would spend the shared cores on the harness, not on the app under test.
POLL_MS = 100
BATCH = re.compile(r"batch of (\d+)")
QUEUED = re.compile(r"queued (\d+) ms")
SEGMENTER = re.compile(r"(?:inference|segmenter) (\d+) ms")


# ----------------------------------------------------------------------------- photos


def photo_bytes(index: int, megapixels: float | None = None) -> bytes:
    """A JPEG unique to `index`: a scikit-image photo, cropped by a few pixels and mirrored
    depending on the index, optionally enlarged to about `megapixels`."""
    from PIL import Image, ImageOps
    from skimage import data

    image = Image.fromarray(getattr(data, PHOTOS[index % len(PHOTOS)])()).convert("RGB")
    shift = index // len(PHOTOS)
    image = image.crop((shift % 40, shift // 40 % 40, image.width, image.height))
    if shift % 2:
        image = ImageOps.mirror(image)
    if megapixels:
        scale = (megapixels * 1e6 / (image.width * image.height)) ** 0.5
        image = image.resize((round(image.width * scale), round(image.height * scale)),
                             Image.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def write_photos(folder: Path, count: int, megapixels: float | None) -> list[Path]:
    paths = []
    for i in range(count):
        path = folder / f"photo_{i:03d}.jpg"
        path.write_bytes(photo_bytes(i, megapixels))
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(server_pid: int) -> dict:
    """CPU seconds used so far by the server, by this run's browser (its page renderers apart
    from the rest: browser, GPU and network processes, Playwright's driver) and by the whole
    machine (every core, whatever runs on it): on 2 cores they compete, so a report says who used
    what, and how much went to processes outside this run."""
    import psutil

    def used(process) -> float:
        try:
            times = process.cpu_times()
            return times.user + times.system
        except psutil.Error:
            return 0.0

    def renderer(process) -> bool:
        try:
            return "--type=renderer" in process.cmdline()
        except psutil.Error:
            return False

    others = [p for p in psutil.Process().children(recursive=True) if p.pid != server_pid]
    renderers = [p for p in others if renderer(p)]
    machine = psutil.cpu_times()
    return {"server": used(psutil.Process(server_pid)), "browser": sum(map(used, others)),
            "browser_renderers": sum(map(used, renderers)),
            "machine": sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)}


def cpu_used(before: dict, after: dict) -> dict:
    """Seconds each group used between two `cpu_seconds`; `other` is the rest of the machine."""
    used = {k: round(after[k] - before[k], 1) for k in after}
    used["other"] = round(used["machine"] - used["server"] - used["browser"], 1)
    return used


class RssSampler:
    """The server's resident memory, sampled in a thread (peak) and on demand."""

    def __init__(self, pid: int, every_s: float = 0.5):
        import psutil

        self.pid = pid
        self._process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._every_s = every_s
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def now_mb(self) -> float:
        rss = self._process.memory_info().rss
        self.peak = max(self.peak, rss)
        return round(rss / 2**20, 1)

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            try:
                self.now_mb()
            except Exception:  # noqa: BLE001 - the server has gone; stop sampling
                return

    def stop(self) -> float:
        self._stop.set()
        return round(self.peak / 2**20, 1)


@contextmanager
def server(weights: Path, log: Path, app: Path = REPO / "streamlit_app.py"):
    """A dashboard (`app`) on a free local port; yields (url, seconds until it listened,
    RssSampler)."""
    port = free_port()
    env = {**os.environ, "SEGDEMO_WEIGHTS": str(weights), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("SEGDEMO_DATA", None)
    with log.open("wb") as out:
        start = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(app),
             "--server.port", str(port), "--server.address", "127.0.0.1",
             "--server.headless", "true", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        sampler = None
        try:
            url = f"http://127.0.0.1:{port}"
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"streamlit exited early:\n{log.read_text()[-3000:]}")
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                        if reply.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() - start > LISTEN_TIMEOUT_S:
                    raise TimeoutError(f"streamlit not listening after {LISTEN_TIMEOUT_S} s")
                time.sleep(0.1)
            sampler = RssSampler(process.pid)
            yield url, time.monotonic() - start, sampler
        finally:
            if sampler is not None:
                sampler.stop()
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# ----------------------------------------------------------------------------- one session


class Session:
    """One browser context = one Streamlit session."""

    def __init__(self, browser, url: str, timeout_s: float):
        self.browser, self.url, self.timeout_ms = browser, url, timeout_s * 1000
        self.websocket_closes = self.uploads_sent = 0

    async def open(self, models: list[str]) -> float:
        """Open the page and choose `models`; returns seconds until the uploader was shown."""
        self.context = await self.browser.new_context(viewport={"width": 1400, "height": 900})
        self.page = await self.context.new_page()
        self.page.set_default_timeout(self.timeout_ms)
        self.page.on("websocket", self._watch_websocket)
        self.page.on("requestfinished", self._count_upload)
        start = time.monotonic()
        await self.page.goto(self.url, wait_until="domcontentloaded")
        await self.page.locator(UPLOADER).wait_for(state="attached")
        shown = time.monotonic() - start
        for model in models:
            box = self.page.locator(f".st-key-model_{model} input[type='checkbox']")
            if not await box.is_checked():
                await self.page.locator(f".st-key-model_{model} label").click()
                await self.page.wait_for_function(
                    "sel => document.querySelector(sel)?.checked === true",
                    arg=f".st-key-model_{model} input[type='checkbox']", polling=POLL_MS)
        await self.settle()
        return shown

    def _watch_websocket(self, socket) -> None:
        """A closed connection loses the session's state (its uploads among it) once Streamlit's
        reconnection fails: counted, as it explains an upload that never shows."""
        if "_stcore/stream" in socket.url:
            socket.on("close", lambda _: setattr(self, "websocket_closes",
                                                 self.websocket_closes + 1))

    def _count_upload(self, request) -> None:
        if "_stcore/upload_file" in request.url and request.method == "PUT":
            self.uploads_sent += 1

    async def settle(self) -> None:
        """Wait until the page's script run is over: the app root's script state (which the page
        sets to 'rerunRequested' as soon as a widget changes) back at 'notRunning'. The 'Running…'
        indicator is no sign: it shows only after a delay. Waiting on it, 2 of 8 sessions on a
        busy machine set their file during the previous run and never sent it."""
        await self.page.wait_for_timeout(100)
        await self.page.wait_for_function(
            "() => document.querySelector(\"[data-testid='stApp']\")"
            "?.getAttribute('data-test-script-state') === 'notRunning'", polling=POLL_MS)

    def overlays(self):
        return self.page.get_by_test_id("stImage").filter(has_text="Overlay").locator("img")

    async def upload(self, photo: Path, expected: int) -> dict:
        """Upload `photo` and wait until `expected` overlays are loaded; seconds to each."""
        start = time.monotonic()
        sent = self.uploads_sent
        await self.page.locator(UPLOADER).set_input_files(str(photo))
        while self.uploads_sent == sent:  # fail fast (and say why) when the file never leaves
            if time.monotonic() - start > min(60.0, self.timeout_ms / 1000):
                raise TimeoutError("the page never sent the file to the server")
            await self.page.wait_for_timeout(50)
        times = []
        for count in range(1, expected + 1):
            await self.page.wait_for_function(
                "n => [...document.querySelectorAll(\"[data-testid='stImage']\")]"
                ".filter(e => e.textContent.includes('Overlay'))"
                ".map(e => e.querySelector('img')).filter(i => i && i.complete && i.naturalWidth)"
                ".length >= n", arg=count, timeout=self.timeout_ms, polling=POLL_MS)
            times.append(round(time.monotonic() - start, 3))
        texts = await self.page.get_by_test_id("stMarkdown").all_inner_texts()
        lines = [t for t in texts if BATCH.search(t)]
        errors = await self.page.get_by_test_id("stAlertContentError").all_inner_texts()
        return {"overlay_s": times, "errors": errors,
                "batches": [int(BATCH.search(t).group(1)) for t in lines],
                "queued_ms": [int(m.group(1)) for t in lines if (m := QUEUED.search(t))],
                "segmenter_ms": [int(m.group(1)) for t in lines if (m := SEGMENTER.search(t))]}

    async def remove_uploads(self) -> float:
        """Delete every uploaded file through the uploader; seconds until no overlay is left."""
        start = time.monotonic()
        buttons = self.page.get_by_test_id("stFileChipDeleteBtn")
        while await buttons.count():
            await buttons.first.locator("button").or_(buttons.first).first.click()
            await self.page.wait_for_timeout(50)
        await self.page.wait_for_function(
            "() => ![...document.querySelectorAll(\"[data-testid='stImage']\")]"
            ".some(e => e.textContent.includes('Overlay'))", polling=POLL_MS)
        await self.settle()
        return round(time.monotonic() - start, 3)

    async def close(self) -> None:
        await self.context.close()


# ----------------------------------------------------------------------------- modes


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "max": None, "n": 0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return {"p50": round(statistics.median(ordered), 3), "p95": round(p95, 3),
            "max": round(ordered[-1], 3), "n": len(ordered)}


async def start_phase(browser, url: str, photo: Path, models: list[str], timeout_s: float) -> dict:
    """The fresh server's first page and first mask."""
    session = Session(browser, url, timeout_s)
    first_page = await session.open(models)
    upload = await session.upload(photo, len(models))
    await session.close()
    return {"first_page_s": round(first_page, 3), "first_mask_s": upload["overlay_s"][0],
            "first_all_masks_s": upload["overlay_s"][-1]}


async def concurrent(browser, url: str, photos: list[Path], models: list[str], timeout_s: float,
                     rss: RssSampler, log) -> dict:
    sessions = [Session(browser, url, timeout_s) for _ in photos]
    opened = await asyncio.gather(*(s.open(models) for s in sessions), return_exceptions=True)
    ready = [s for s, o in zip(sessions, opened) if not isinstance(o, BaseException)]
    log(f"{len(ready)}/{len(sessions)} sessions open; uploading at once")
    rss_before, cpu_before, wall = rss.now_mb(), cpu_seconds(rss.pid), time.monotonic()
    outcomes = await asyncio.gather(
        *(s.upload(p, len(models)) for s, p in zip(ready, photos)), return_exceptions=True)
    cpu_after, wall = cpu_seconds(rss.pid), time.monotonic() - wall
    per_session, times, failures = [], [], []
    for index, (session, outcome) in enumerate(zip(ready, outcomes)):
        if isinstance(outcome, BaseException):
            failures.append(f"session {index}: {type(outcome).__name__}: {str(outcome)[:200]} "
                            f"(files sent: {session.uploads_sent}, connection closed "
                            f"{session.websocket_closes} times)")
            continue
        per_session.append(outcome)
        times.extend(outcome["overlay_s"])
        failures.extend(f"session {index}: {e}" for e in outcome["errors"])
    failures.extend(f"open: {o!r}"[:200] for o in opened if isinstance(o, BaseException))
    served = sum(1 for o in per_session if len(o["overlay_s"]) == len(models) and not o["errors"])
    for s in ready:
        await s.close()
    return {"sessions": len(sessions), "models": models, "served": served,
            "overlay_s": percentiles(times), "failures": failures,
            "batch_sizes": sorted(b for o in per_session for b in o["batches"]),
            "queued_ms": percentiles([q for o in per_session for q in o["queued_ms"]]),
            "segmenter_ms": percentiles([q for o in per_session for q in o["segmenter_ms"]]),
            "rss_mb": {"before_uploads": rss_before, "after": rss.now_mb()},
            "open_s": percentiles([o for o in opened if not isinstance(o, BaseException)]),
            "websocket_closes": sum(s.websocket_closes for s in ready),
            "uploads_wall_s": round(wall, 1),
            "uploads_cpu_s": cpu_used(cpu_before, cpu_after),
            "cores_s": round(wall * cores(), 1),
            "per_session_overlay_s": [o["overlay_s"] for o in per_session]}


async def soak(browser, url: str, photos: list[Path], models: list[str], timeout_s: float,
               keep: bool, rss: RssSampler, log, stop_at: float = float("inf")) -> dict:
    """Upload cycles until `photos` are done or the monotonic clock passes `stop_at` (the cycles
    done so far are reported, and the stop is named among the failures)."""
    session = Session(browser, url, timeout_s)
    await session.open(models)
    cycles, every10, failures = [], [], []
    cpu_before = cpu_seconds(rss.pid)
    for index, photo in enumerate(photos):
        if time.monotonic() > stop_at:
            failures.append(f"stopped after {index} cycles: --deadline near")
            break
        try:
            outcome = await session.upload(photo, (index + 1) * len(models) if keep else len(models))
            failures.extend(f"cycle {index}: {e}" for e in outcome["errors"])
            removal = 0.0 if keep else await session.remove_uploads()
            cycles.append({"upload_to_overlays_s": outcome["overlay_s"][-1], "remove_s": removal})
        except Exception as exc:  # noqa: BLE001 - a stuck cycle ends the soak, reported
            failures.append(f"cycle {index}: {type(exc).__name__}: {str(exc)[:200]}")
            break
        if (index + 1) % 10 == 0:
            last = [c["upload_to_overlays_s"] for c in cycles[-10:]]
            every10.append({"cycle": index + 1, "rss_mb": rss.now_mb(),
                            "mean_cycle_s": round(statistics.mean(last), 3)})
            log(f"cycle {index + 1}: {every10[-1]['mean_cycle_s']} s per cycle, "
                f"RSS {every10[-1]['rss_mb']} MB")
    cpu = cpu_used(cpu_before, cpu_seconds(rss.pid))
    await session.close()
    first, last = every10[0] if every10 else None, every10[-1] if every10 else None
    at20 = next((e["rss_mb"] for e in every10 if e["cycle"] == 20), None)
    return {"cycles": len(cycles), "planned": len(photos), "keep": keep, "models": models,
            "every_10": every10, "failures": failures,
            "first10_cycle_s": first and first["mean_cycle_s"],
            "last10_cycle_s": last and last["mean_cycle_s"],
            "last_over_first": round(last["mean_cycle_s"] / first["mean_cycle_s"], 2)
            if first and last and first["mean_cycle_s"] else None,
            "rss_growth_after_20_mb": round(last["rss_mb"] - at20, 1)
            if at20 is not None and last else None,
            # what one cycle costs each side: the figure to shrink for many sessions on few cores
            "cpu_s_per_cycle": {k: round(v / len(cycles), 3) for k, v in cpu.items()
                                if k in ("server", "browser", "browser_renderers")}
            if cycles else None,
            "cycle_s": [c["upload_to_overlays_s"] for c in cycles]}


# ----------------------------------------------------------------------------- driver


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def machine() -> dict:
    import psutil

    busy = psutil.cpu_percent(interval=1.0)
    return {"cores": cores(), "cpu": platform.machine(), "load_avg_1m": os.getloadavg()[0],
            "cpu_busy_percent_before": busy}


def chromium_command(folder: Path, nice: int) -> Path:
    """Chromium itself, or a wrapper that starts it at a lower CPU priority: in real use the
    browsers run on the visitors' machines, and on these 2 cores 16 headless pages otherwise
    take most of the CPU from the server under test (their processes inherit the niceness).
    Playwright starts the browser in a session of its own, and with the kernel's autogroup
    scheduling a plain nice then only ranks Chromium's own processes, so the wrapper also lowers
    its session's autogroup where the kernel lets it."""
    if nice <= 0:
        return CHROMIUM
    wrapper = folder / "chromium-nice"
    wrapper.write_text(f"#!/bin/sh\n(echo {int(nice)} > /proc/self/autogroup) 2>/dev/null\n"
                       f'exec nice -n {int(nice)} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


async def run(args, photos: list[Path], start_photo: Path, log) -> dict:
    from playwright.async_api import async_playwright

    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), "weights": str(args.weights)}
    with tempfile.TemporaryDirectory() as tmp, server(args.weights, Path(tmp) / "streamlit.log",
                                                     args.app) as (url, listen_s, rss):
        report["start"] = {"listen_s": round(listen_s, 3)}
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=str(chromium_command(Path(tmp), args.browser_nice)),
                args=CHROMIUM_ARGS)
            try:
                report["start"] |= await start_phase(browser, url, start_photo, args.models,
                                                     args.timeout)
                report["start"]["rss_mb"] = rss.now_mb()
                log(f"start: {report['start']}")
                if args.mode == "concurrent":
                    report["concurrent"] = await concurrent(browser, url, photos, args.models,
                                                            args.timeout, rss, log)
                else:
                    report["soak"] = await soak(browser, url, photos, args.models, args.timeout,
                                                args.keep, rss, log, stop_at=args.stop_at)
            finally:
                await browser.close()
        report["rss_peak_mb"] = rss.stop()
        server_log = (Path(tmp) / "streamlit.log").read_text(errors="replace")
        report["server_tracebacks"] = server_log.count("Traceback")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("concurrent", "soak"))
    parser.add_argument("--sessions", type=int, default=16, help="concurrent: browser sessions")
    parser.add_argument("--cycles", type=int, default=200, help="soak: upload cycles")
    parser.add_argument("--keep", action="store_true",
                        help="soak: keep every photo uploaded (the page grows) instead of "
                             "removing each after its cycle")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), metavar="ID")
    parser.add_argument("--weights", type=Path, default=REPO / "weights")
    parser.add_argument("--app", type=Path, default=REPO / "streamlit_app.py",
                        help="the Streamlit script under test (scripts/floor_app.py: the least "
                             "page the harness can drive, for the floor of what it costs here)")
    parser.add_argument("--megapixels", type=float, help="enlarge every photo to about this size")
    parser.add_argument("--timeout", type=float, default=300,
                        help="seconds any one wait (page, overlays) may take")
    parser.add_argument("--browser-nice", type=int, default=0, metavar="N",
                        help="run Chromium at niceness N (e.g. 10), so that the browsers, which "
                             "share the server's cores here, do not starve it")
    parser.add_argument("--deadline", type=float, default=3600, help="seconds the whole run may take")
    parser.add_argument("--json", type=Path, default=REPO / "weights" / "loadtest.json",
                        help="report file (other modes and session counts are kept); '-' for none")
    args = parser.parse_args(argv)
    if args.app.resolve() != parser.get_default("app") and args.json == parser.get_default("json"):
        parser.error("--app: another page's figures do not belong in the dashboard's report; "
                     "pass --json PATH (or '-').")
    if not CHROMIUM.exists():
        print(f"error: {CHROMIUM} not found (apt-get install chromium).", file=sys.stderr)
        return 2
    args.weights = args.weights.resolve()
    # a soak stops cycling this long before the deadline, to close the browser and report
    args.stop_at = time.monotonic() + args.deadline - min(60.0, args.deadline / 10)

    def log(line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        count = args.sessions if args.mode == "concurrent" else args.cycles
        photos = write_photos(Path(tmp), count + 1, args.megapixels)
        start_photo, photos = photos[-1], photos[:-1]
        try:
            report = asyncio.run(asyncio.wait_for(run(args, photos, start_photo, log),
                                                  args.deadline))
        except asyncio.TimeoutError:
            print(f"error: the run took longer than --deadline {args.deadline:.0f} s.",
                  file=sys.stderr)
            return 1
    report["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                          if k != "stop_at"}
    print(json.dumps({k: v for k, v in report.items() if k != "soak"} | (
        {"soak": {k: v for k, v in report["soak"].items() if k != "cycle_s"}}
        if "soak" in report else {}), indent=2))
    if str(args.json) != "-":
        existing = json.loads(args.json.read_text()) if args.json.is_file() else {}
        section = {"date": report["date"], "machine": report["machine"], "start": report["start"],
                   "rss_peak_mb": report["rss_peak_mb"], "settings": report["settings"],
                   "server_tracebacks": report["server_tracebacks"], **{
                       k: report[k] for k in ("concurrent", "soak") if k in report}}
        if args.mode == "concurrent":  # one run per session count (and browser niceness)
            runs = existing.get("concurrent", {})
            runs = runs if all(isinstance(v, dict) and "date" in v for v in runs.values()) else {}
            name = f"{args.sessions}" + (f"_nice{args.browser_nice}" if args.browser_nice else "")
            existing["concurrent"] = {**runs, name: section}
        else:
            existing[args.mode] = section
        args.json.write_text(json.dumps(existing, indent=2) + "\n")
        print(f"wrote {args.json} [{args.mode}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
