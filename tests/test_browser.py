"""End to end in a real browser: `streamlit run` as a subprocess, Debian's Chromium driven by
Playwright (never a downloaded browser), a photo uploaded through the page's file input.

The same code path makes the README's screenshot against the shipped models:
    python tests/test_browser.py --weights weights --out docs/screenshot.png
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START_TIMEOUT_S = 120  # TensorFlow's import alone takes a while on a busy machine
PAGE_TIMEOUT_MS = 120_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(weights: Path, log: Path, data: Path | None = None) -> Iterator[str]:
    """A dashboard on a free local port; always terminated (killed if it will not stop)."""
    port = _free_port()
    env = {**os.environ, "SEGDEMO_WEIGHTS": str(weights), "CUDA_VISIBLE_DEVICES": "",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("SEGDEMO_DATA", None)
    if data is not None:
        env["SEGDEMO_DATA"] = str(data)
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(REPO / "streamlit_app.py"),
             "--server.port", str(port), "--server.address", "127.0.0.1",
             "--server.headless", "true", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                if server.poll() is not None:
                    raise RuntimeError(f"streamlit exited early:\n{log.read_text()[-3000:]}")
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                        if reply.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"streamlit not healthy in {START_TIMEOUT_S}s:\n"
                                       f"{log.read_text()[-3000:]}")
                time.sleep(0.5)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def example_photo(folder: Path) -> Path:
    """Chelsea the cat from scikit-image's bundled photos, as a JPEG to upload."""
    from PIL import Image
    from skimage import data

    path = folder / "chelsea.jpg"
    Image.fromarray(data.chelsea()).save(path, quality=92)
    return path


def capture(url: str, photo: Path, screenshots: list[Path], training_shot: Path | None = None) -> None:
    """Upload `photo`, wait for the overlay and screenshot the Segment tab to every path in
    `screenshots`; then open the Training tab and wait for its plotly chart (screenshot optional)."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            page.goto(url, wait_until="domcontentloaded")
            page.locator("[data-testid='stFileUploader'] input[type='file']").set_input_files(photo)
            overlay = page.get_by_test_id("stImage").filter(has_text="Overlay")
            expect(overlay.first).to_be_visible(timeout=PAGE_TIMEOUT_MS)
            expect(overlay.first.locator("img")).to_have_js_property("complete", True)
            _settle(page)
            for path in screenshots:
                path.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(path), full_page=True)
            page.get_by_role("tab", name="Training").click()
            chart = page.get_by_test_id("stPlotlyChart").locator(".main-svg").first
            expect(chart).to_be_visible(timeout=PAGE_TIMEOUT_MS)
            expect(page.locator(".js-plotly-plot .scatterlayer .trace").first).to_be_attached()
            if training_shot is not None:
                _settle(page)
                page.screenshot(path=str(training_shot), full_page=True)
        finally:
            browser.close()


def _settle(page) -> None:
    """Wait until Streamlit has finished the rerun (no 'running' indicator) and fonts are in."""
    page.wait_for_function("document.fonts.status === 'loaded'")
    page.get_by_test_id("stStatusWidget").wait_for(state="hidden")
    page.wait_for_timeout(500)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_upload_in_a_real_browser(tmp_path):
    pytest.importorskip("playwright")
    from test_dashboard import write_tiny_model

    weights = tmp_path / "weights"
    write_tiny_model(weights, "unet")
    shots = [tmp_path / "segment.png"]
    if os.environ.get("SEGDEMO_SCREENSHOT"):
        shots.append(Path(os.environ["SEGDEMO_SCREENSHOT"]))
    with streamlit_server(weights, tmp_path / "streamlit.log") as url:
        capture(url, example_photo(tmp_path), shots, tmp_path / "training.png")
    log = (tmp_path / "streamlit.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    for path in [*shots, tmp_path / "training.png"]:
        assert path.stat().st_size > 10_000


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Screenshot the dashboard in Chromium.")
    parser.add_argument("--weights", type=Path, default=REPO / "weights")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshot.png")
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        with streamlit_server(args.weights.resolve(), Path(tmp) / "streamlit.log") as url:
            capture(url, example_photo(Path(tmp)), [args.out.resolve()])
    print(f"wrote {args.out}")
