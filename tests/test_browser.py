"""End to end in a real browser: the README's `streamlit run streamlit_app.py` as a subprocess
(so `.streamlit/config.toml` applies as it does for users), Debian's Chromium driven by Playwright
(never a downloaded browser), photos uploaded through the page's file input or picked from the
example gallery: the side-by-side row, the hover read-out (checked against the model's own
probabilities), the photo/mask slider without a server round trip, the cut-out and ZIP downloads
(contents checked against the model), at 1400 px and in phone-sized windows.

The same code path makes the README's screenshots (desktop, phone) against the shipped models:
    python tests/test_browser.py --weights weights --out docs/screenshot.png \
        --phone-out docs/screenshot_phone.png
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
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


ROW = "[class*='st-key-segrow_']"  # one (photo, model) row: input | mask | overlay | history


def readout_range(input_probabilities: np.ndarray, size: tuple[int, int], x: int,
                  y: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact range, in percent, of the model's bilinearly interpolated probabilities over photo
    pixel (x, y) of a photo of size=(width, height): the read-out names the pixel holding its grid
    cell's centre, which may lie anywhere inside it. Bilinear interpolation is linear between the
    input pixels' centres, so its extremes over a box lie at the box's corners or at input-pixel
    centres inside it; those are all evaluated. (The full-resolution pixels near (x, y) are not
    enough: with steep probabilities a peak between two pixel centres was 4 points above both.)"""
    h, w = input_probabilities.shape[:2]

    def positions(start: int, photo_side: int, side: int) -> np.ndarray:
        low, high = start * side / photo_side - 0.5, (start + 1) * side / photo_side - 0.5
        inside = np.arange(np.ceil(low), np.floor(high) + 1)
        return np.clip(np.concatenate([[low, high], inside]), 0, side - 1)

    def weights(position: np.ndarray, side: int) -> np.ndarray:
        """(len(position), side): each position's interpolation weights over the input pixels."""
        low = np.minimum(np.floor(position).astype(int), side - 1)
        high, t = np.minimum(low + 1, side - 1), position - low
        out = np.zeros((len(position), side))
        np.add.at(out, (np.arange(len(position)), low), 1 - t)
        np.add.at(out, (np.arange(len(position)), high), t)
        return out

    wy = weights(positions(y, size[1], h), h)
    wx = weights(positions(x, size[0], w), w)
    values = np.einsum("ah,bw,hwc->abc", wy, wx, input_probabilities).reshape(-1, 3) * 100
    return values.min(0), values.max(0)


DESKTOP = {"width": 1400, "height": 1000}
PHONE = {"width": 390, "height": 844}


def capture(url: str, photo: Path, screenshots: list[Path],
            training_shot: Path | None = None, viewport: dict = DESKTOP) -> dict:
    """With the pixel inspector on, upload `photo`, wait for the first row, hover its mask (so
    the read-out shows) and
    screenshot the Segment tab to every path in `screenshots` (the whole page on a desktop, the
    screen on a phone); then open the Training tab and wait for its plotly chart (screenshot
    optional). Returns what was seen: `loading` (a model-loading bar appeared while waiting) and
    `hover` (the read-out's text)."""
    from playwright.sync_api import expect, sync_playwright

    phone = viewport["width"] < 700
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=viewport, has_touch=phone)
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            page.goto(f"{url}/?inspector=1", wait_until="domcontentloaded")
            page.locator("[data-testid='stFileUploader'] input[type='file']").set_input_files(photo)
            loading = page.get_by_test_id("stProgress").filter(has_text="Loading")
            row = page.locator(ROW).first
            expect(loading.or_(row).first).to_be_visible(timeout=PAGE_TIMEOUT_MS)
            seen = {"loading": loading.count() > 0}
            wait_for_row(page)
            seen["hover"] = hover(page, 0.87, 0.42)["text"]  # near the right-hand outline
            for path in screenshots:
                path.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(path), full_page=not phone)
            page.get_by_role("tab", name="Training").click()
            chart = page.get_by_test_id("stPlotlyChart").locator(".main-svg").first
            expect(chart).to_be_visible(timeout=PAGE_TIMEOUT_MS)
            expect(page.locator(".js-plotly-plot .scatterlayer .trace").first).to_be_attached()
            if training_shot is not None:
                _settle(page)
                page.screenshot(path=str(training_shot), full_page=True)
            return seen
        finally:
            browser.close()


HISTORY = "svg[aria-label='Training history']"


def wait_for_row(page, inspector: bool = True) -> None:
    """Until the first row's images are loaded, its history drawn and (with the pixel inspector
    on) its mask figure."""
    from playwright.sync_api import expect

    row = page.locator(ROW).first
    overlay = row.get_by_test_id("stImage").filter(has_text="Overlay").locator("img")
    expect(overlay).to_have_js_property("complete", True, timeout=PAGE_TIMEOUT_MS)
    expect(row.locator(HISTORY)).to_be_attached(timeout=PAGE_TIMEOUT_MS)
    if inspector:
        expect(row.locator(".js-plotly-plot .slider-container")).to_be_attached(
            timeout=PAGE_TIMEOUT_MS)
    _settle(page)


def hover(page, fx: float, fy: float) -> dict:
    """Point at (fx, fy) of the first row's mask plot; the read-out's text and its numbers."""
    plot = page.locator(ROW).first.locator(".js-plotly-plot").first
    plot.scroll_into_view_if_needed()
    box = plot.locator(".nsewdrag").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
    label = plot.locator(".hoverlayer .hovertext")
    label.wait_for(state="attached")
    first, *lines = label.locator("tspan.line").all_text_contents()
    x, y = (int(v) for v in re.fullmatch(r"x (\d+), y (\d+)", first).groups())
    return {"text": "\n".join([first, *lines]), "x": x, "y": y,
            "percent": {name: int(v) for name, v in (re.fullmatch(r"(.+): (\d+)%", line).groups()
                                                     for line in lines)}}


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
            page = browser.new_page(viewport=DESKTOP)
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


def spread_classifier(model_dir: Path, photo: Path) -> None:
    """Rescale the last layer so each class's logit has mean 0 and standard deviation 3 over the
    example photo: probabilities then range from near 0 to near 100 % across it, whatever the
    random initialisation (scaling the weights alone often saturated one class everywhere)."""
    import keras
    from PIL import Image

    from segdemo.artifacts import load_model
    from segdemo.preprocessing import get_preprocessor

    model, card = load_model(model_dir)
    classifier = [layer for layer in model.layers if layer.weights][-1]
    kernel, bias = classifier.get_weights()
    features = keras.Model(model.inputs, classifier.input)
    pixels = np.asarray(Image.open(photo).convert("RGB").resize(tuple(card["input_size"])), np.float32)
    seen = features(get_preprocessor(card["preprocessing"])(pixels[None])).numpy()
    logits = seen.reshape(-1, kernel.shape[-2]) @ kernel.reshape(-1, kernel.shape[-1]) + bias
    scale = 3.0 / logits.std(axis=0)
    classifier.set_weights([kernel * scale, (bias - logits.mean(axis=0)) * scale])
    model.save_weights(model_dir / "model.weights.h5")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[Server, Path, Path]]:
    """One dashboard for this module's tests, with a tiny U-Net whose classifier is spread out
    (an untrained one ties its classes at 33 % everywhere, which would make the read-out check
    blind), its log and the weights folder."""
    from test_dashboard import write_tiny_model

    folder = tmp_path_factory.mktemp("browser")
    spread_classifier(write_tiny_model(folder / "weights", "unet"), example_photo(folder))
    with streamlit_server(folder / "weights", folder / "streamlit.log") as served:
        yield served, folder / "streamlit.log", folder / "weights"
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
    served, log, _ = server

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
    """The first photo of a fresh server: the model's load shows a bar, then the row."""
    pytest.importorskip("playwright")
    shots = [tmp_path / "segment.png"]
    if os.environ.get("SEGDEMO_SCREENSHOT"):
        shots.append(Path(os.environ["SEGDEMO_SCREENSHOT"]))
    seen = capture(server[0].url, example_photo(tmp_path), shots, tmp_path / "training.png")
    assert seen["loading"], "no loading bar while the first model loaded"
    assert "pet: " in seen["hover"] and "border: " in seen["hover"]
    for path in [*shots, tmp_path / "training.png"]:
        assert path.stat().st_size > 10_000


def expected_probabilities(weights: Path, photo: Path):
    """The model's class probabilities at the photo's full resolution, computed here."""
    from segdemo.images import open_image
    from segdemo.inference import Segmenter

    segmenter = Segmenter.load(weights / "unet")
    return segmenter.predict(open_image(photo)), segmenter.classes


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_row_hover_slider_and_cutout_in_a_real_browser(server, tmp_path):
    """Input, mask, overlay and history side by side; hovering the mask shows the model's own
    probabilities there; the slider reaches the photo and neither sends the server anything;
    the cut-out downloads at the photo's size with the model's soft alpha."""
    pytest.importorskip("playwright")
    from playwright.sync_api import expect, sync_playwright
    from PIL import Image

    from segdemo.cutout import cutout

    served, _, weights = server
    photo = example_photo(tmp_path)
    prediction, classes = expected_probabilities(weights, photo)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=DESKTOP, accept_downloads=True)
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            sent: list = []
            page.on("websocket", lambda ws: ws.on("framesent", lambda frame: sent.append(frame)))
            page.goto(f"{served.url}/?inspector=1", wait_until="domcontentloaded")
            page.locator("[data-testid='stFileUploader'] input[type='file']").set_input_files(photo)
            wait_for_row(page)
            row = page.locator(ROW).first
            columns = row.get_by_test_id("stColumn")
            boxes = [columns.nth(i).bounding_box() for i in range(columns.count())]
            assert len(boxes) == 4 and len({round(b["y"]) for b in boxes}) == 1  # one row
            assert [b["x"] for b in boxes] == sorted(b["x"] for b in boxes)
            expect(columns.nth(0).get_by_test_id("stImage")).to_contain_text("Input")
            expect(columns.nth(1).locator(".slider-container")).to_contain_text("photo")
            expect(columns.nth(2).get_by_test_id("stImage")).to_contain_text("Overlay")
            expect(columns.nth(3).locator(HISTORY)).to_contain_text("Validation mIoU")

            before = len(sent)
            readings = [hover(page, fx, fy) for fx, fy in ((0.2, 0.3), (0.5, 0.5), (0.8, 0.7))]
            for reading in readings:  # the model's own probabilities, to the whole percent
                shown = np.array([reading["percent"][c.name] for c in classes])
                low, high = readout_range(prediction.input_probabilities, prediction.size,
                                          reading["x"], reading["y"])
                assert (low - 0.51 <= shown).all() and (shown <= high + 0.51).all(), (
                    reading, low, high)
            assert len({tuple(r["percent"].values()) for r in readings}) > 1  # not one constant
            rail = row.locator(".slider-rail-rect").first.bounding_box()
            grip = row.locator(".slider-grip-rect").first.bounding_box()
            page.mouse.move(grip["x"] + grip["width"] / 2, grip["y"] + grip["height"] / 2)
            page.mouse.down()
            page.mouse.move(rail["x"] + 2, rail["y"] + rail["height"] / 2, steps=8)
            page.mouse.up()
            opacity = row.locator(".js-plotly-plot").first.evaluate("gd => gd.data[1].opacity")
            assert opacity == 0, "the slider did not reach the photo"
            page.wait_for_timeout(500)
            assert len(sent) == before, "hovering or sliding sent the server a message"

            with page.expect_download() as download:
                row.get_by_role("button", name="Cut-out PNG").click()
            cut = Image.open(download.value.path())
            assert download.value.suggested_filename == "chelsea_unet_cutout.png"
            assert cut.mode == "RGBA" and cut.size == (451, 300)
            expected = cutout(Image.open(photo).convert("RGB"), prediction.input_probabilities,
                              classes)
            difference = np.abs(np.asarray(cut, np.int16) - np.asarray(expected, np.int16))
            assert difference.max() <= 1 and np.ptp(np.asarray(cut)[..., 3]) > 50

            with page.expect_download() as download:
                page.get_by_role("button", name="All results as one ZIP").click()
            assert download.value.suggested_filename == "segdemo_results.zip"
            archive = zipfile.ZipFile(download.value.path())
            assert sorted(archive.namelist()) == [
                "summary.csv", "unet/chelsea_cutout.png", "unet/chelsea_mask.png",
                "unet/chelsea_overlay.png"]
            mask = Image.open(io.BytesIO(archive.read("unet/chelsea_mask.png")))
            assert mask.mode == "P" and mask.size == (451, 300)
            np.testing.assert_array_equal(np.asarray(mask), prediction.mask)
            (summary,) = csv.DictReader(io.StringIO(archive.read("summary.csv").decode()))
            assert summary["photo"] == "chelsea.jpg" and summary["model"] == "unet"
            shares = np.bincount(prediction.mask.ravel(), minlength=3) / prediction.mask.size
            for c, share in zip(classes, shares):
                assert float(summary[f"share_{c.name}"]) == pytest.approx(share, abs=1e-4)
        finally:
            browser.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
@pytest.mark.parametrize("viewport", [(390, 844), (680, 900)], ids=["phone", "narrow"])
def test_narrow_windows_stack_the_row_in_order(server, viewport):
    """Below 700 px the row's four parts stack in order, at the page's width; nothing scrolls
    sideways. The empty page's gallery is one tap from a result."""
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    width, height = viewport
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height}, has_touch=True)
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            page.goto(f"{server[0].url}/?inspector=1", wait_until="domcontentloaded")
            page.get_by_role("button", name="Chelsea the cat").click()
            wait_for_row(page)
            columns = page.locator(ROW).first.get_by_test_id("stColumn")
            boxes = [columns.nth(i).bounding_box() for i in range(columns.count())]
            assert len(boxes) == 4
            assert len({round(b["x"]) for b in boxes}) == 1  # one above the other
            assert [b["y"] for b in boxes] == sorted(b["y"] for b in boxes)
            assert all(b["width"] >= min(width, 700) * 0.8 for b in boxes)
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            plot = columns.nth(1).locator(".nsewdrag").first.bounding_box()
            assert plot["width"] >= 250  # the mask stays readable
            reading = hover(page, 0.5, 0.5)
            assert sum(reading["percent"].values()) in range(97, 104)
        finally:
            browser.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_the_default_row_loads_no_charting_library(server):
    """By default the mask is an image and the history an inline SVG whose points name their
    epoch on hover: the page never loads Plotly (seconds of CPU in every visitor's browser)."""
    pytest.importorskip("playwright")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=DESKTOP)
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            page.goto(server[0].url, wait_until="domcontentloaded")
            page.get_by_role("button", name="Chelsea the cat").click()
            wait_for_row(page, inspector=False)
            columns = page.locator(ROW).first.get_by_test_id("stColumn")
            expect(columns.nth(1).get_by_test_id("stImage").locator("img")).to_have_js_property(
                "complete", True)
            points = columns.nth(3).locator(f"{HISTORY} circle title")
            assert points.count() > 2 and points.first.text_content().startswith("epoch 1: loss ")
            assert page.locator(".js-plotly-plot").count() == 0
        finally:
            browser.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_file_names_are_text_and_wrong_types_are_named(server, tmp_path):
    pytest.importorskip("playwright")
    check_names_and_types(server[0].url, tmp_path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Screenshot the dashboard in Chromium.")
    parser.add_argument("--weights", type=Path, default=REPO / "weights")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshot.png")
    parser.add_argument("--phone-out", type=Path, default=REPO / "docs" / "screenshot_phone.png")
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        with streamlit_server(args.weights.resolve(), Path(tmp) / "streamlit.log") as served:
            capture(served.url, example_photo(Path(tmp)), [args.out.resolve()])
            capture(served.url, example_photo(Path(tmp)), [args.phone_out.resolve()], viewport=PHONE)
    print(f"wrote {args.out} and {args.phone_out}")
