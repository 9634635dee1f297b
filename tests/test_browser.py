"""End to end in a real browser: the README's `streamlit run streamlit_app.py` as a subprocess
(so `.streamlit/config.toml` applies as it does for users), Debian's Chromium driven by Playwright
(never a downloaded browser), photos uploaded through the page's file input.

The same code path makes the README's screenshot against the shipped models:
    python tests/test_browser.py --weights weights --out docs/screenshot.png
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START_TIMEOUT_S = 120  # TensorFlow's import alone takes a while on a busy machine
PAGE_TIMEOUT_MS = 120_000


class Server(NamedTuple):
    url: str
    pid: int


def readme_command() -> list[str]:
    """The README's `streamlit run streamlit_app.py`, with this environment's `streamlit`."""
    script = Path(sys.executable).parent / "streamlit"
    runner = [str(script)] if script.exists() else [sys.executable, "-m", "streamlit"]
    return [*runner, "run", "streamlit_app.py"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(weights: Path, log: Path, data: Path | None = None) -> Iterator[Server]:
    """The dashboard started by the README's command in the repository, on a free local port (set
    through Streamlit's environment variables, so the command line stays the README's); always
    terminated (killed if it will not stop)."""
    port = _free_port()
    env = {**os.environ, "SEGDEMO_WEIGHTS": str(weights), "CUDA_VISIBLE_DEVICES": "",
           "TF_CPP_MIN_LOG_LEVEL": "2", "STREAMLIT_SERVER_PORT": str(port),
           "STREAMLIT_SERVER_ADDRESS": "127.0.0.1", "STREAMLIT_SERVER_HEADLESS": "true"}
    env.pop("SEGDEMO_DATA", None)
    if data is not None:
        env["SEGDEMO_DATA"] = str(data)
    with log.open("wb") as out:
        server = subprocess.Popen(readme_command(), cwd=REPO, env=env, stdout=out,
                                  stderr=subprocess.STDOUT)
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
            yield Server(url, server.pid)
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


def check_names_and_types(url: str, folder: Path) -> None:
    """Upload a photo whose name is Markdown and an SVG: the name is shown as written (no link)
    and the SVG gets a message that names the accepted types."""
    from playwright.sync_api import expect, sync_playwright

    files = [{"name": LINK_NAME, "mimeType": "image/jpeg",
              "buffer": example_photo(folder).read_bytes()},
             {"name": "drawing.svg", "mimeType": "image/svg+xml",
              "buffer": b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>'}]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            page.goto(url, wait_until="domcontentloaded")
            page.locator("[data-testid='stFileUploader'] input[type='file']").set_input_files(files)
            overlay = page.get_by_test_id("stImage").filter(has_text="Overlay").first
            expect(overlay).to_be_visible(timeout=PAGE_TIMEOUT_MS)
            _settle(page)
            heading = page.get_by_role("heading").filter(has_text="example")
            assert heading.inner_text().replace("\u2060", "") == LINK_NAME
            assert page.locator("a[href*='example.com']").count() == 0
            expect(page.get_by_test_id("stAlert").filter(
                has_text="SVG files are not accepted")).to_contain_text("JPG")
            expect(page.get_by_test_id("stSidebar")).to_contain_text("up to 25 MB per file")
        finally:
            browser.close()


LINK_NAME = "a [x](http://example.com) www.example.com me@example.com :cat: $x$ **b**.jpg"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[Server, Path]]:
    """One dashboard for this module's tests, with a tiny U-Net, and its log."""
    from test_dashboard import write_tiny_model

    folder = tmp_path_factory.mktemp("browser")
    write_tiny_model(folder / "weights", "unet")
    with streamlit_server(folder / "weights", folder / "streamlit.log") as served:
        yield served, folder / "streamlit.log"
    log = (folder / "streamlit.log").read_text()
    assert "Traceback" not in log, log[-3000:]


def _inotify_watches(pid: int) -> int:
    """How many paths the process watches through inotify (Linux)."""
    count = 0
    for info in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            count += sum(line.startswith("inotify wd:") for line in info.read_text().splitlines())
        except OSError:
            continue  # a descriptor closed meanwhile
    return count


@pytest.mark.skipif(not Path("/proc/self/fdinfo").is_dir(), reason="needs Linux's /proc")
def test_the_readme_command_watches_no_files_and_idles(server):
    """A session makes Streamlit's default watcher watch the repository recursively (a `.venv`
    inside it: ~7,000 folders and a busy core, measured); `.streamlit/config.toml` turns it off."""
    websockets = pytest.importorskip("websockets")
    psutil = pytest.importorskip("psutil")
    served, log = server

    async def idle_session() -> tuple[int, float]:
        """(inotify watches, CPU seconds in 4 s) while a session is connected (its watchers close
        when it disconnects)."""
        url = served.url.replace("http://", "ws://") + "/_stcore/stream"
        async with websockets.connect(url, subprotocols=["streamlit"]):
            await asyncio.sleep(3)  # the session and its watchers are set up
            process = psutil.Process(served.pid)
            before = sum(process.cpu_times()[:2])
            await asyncio.sleep(4)
            return _inotify_watches(served.pid), sum(process.cpu_times()[:2]) - before

    watches, cpu_seconds = asyncio.run(idle_session())
    assert watches == 0
    assert cpu_seconds < 0.5, f"an idle session used {cpu_seconds:.2f} s of CPU in 4 s"
    assert "Inotify" not in log.read_text()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_upload_in_a_real_browser(server, tmp_path):
    pytest.importorskip("playwright")
    shots = [tmp_path / "segment.png"]
    if os.environ.get("SEGDEMO_SCREENSHOT"):
        shots.append(Path(os.environ["SEGDEMO_SCREENSHOT"]))
    capture(server[0].url, example_photo(tmp_path), shots, tmp_path / "training.png")
    for path in [*shots, tmp_path / "training.png"]:
        assert path.stat().st_size > 10_000


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_file_names_are_text_and_wrong_types_are_named(server, tmp_path):
    pytest.importorskip("playwright")
    check_names_and_types(server[0].url, tmp_path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Screenshot the dashboard in Chromium.")
    parser.add_argument("--weights", type=Path, default=REPO / "weights")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshot.png")
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        with streamlit_server(args.weights.resolve(), Path(tmp) / "streamlit.log") as served:
            capture(served.url, example_photo(Path(tmp)), [args.out.resolve()])
    print(f"wrote {args.out}")
