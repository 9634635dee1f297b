"""Video: generated clips (a moving square on a background, written with PyAV here) through
`segdemo.video`, the `predict` command and the dashboard's Video tab (AppTest); bad clips get their
messages; smoothing lowers flicker on a static scene. The live camera runs in real Chromium with
its fake camera (`test_live_camera_in_chromium`, see there for how it stays on this machine)."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from segdemo import video
from segdemo.artifacts import write_json
from segdemo.classes import PET_CLASSES
from segdemo.cli import main as cli

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "streamlit_app.py")
TIMEOUT_S = 180


# ----------------------------------------------------------------------------- fixtures


def make_clip(path: Path, frames: int = 20, size: tuple[int, int] = (96, 64), fps: int = 12,
              codec: str = "libx264", pix_fmt: str = "yuv420p", audio: bool = False,
              faststart: bool = False, rotation: int = 0) -> Path:
    """A yellow square moving left to right over a blue background, written with PyAV;
    `rotation`: a display rotation (counter-clockwise degrees) as phones record portrait clips."""
    width, height = size
    with av.open(str(path), "w", options={"movflags": "+faststart"} if faststart else {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if rotation:
            stream.set_display_rotation(rotation)
        sound = container.add_stream("aac", rate=8000) if audio else None
        side = max(4, height // 3)
        for i in range(frames):
            rgb = np.full((height, width, 3), (30, 90, 160), np.uint8)
            left = (i * 3) % max(1, width - side)
            rgb[height // 3:height // 3 + side, left:left + side] = (240, 200, 40)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if sound is not None:
            samples = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                                 layout="mono")
            samples.sample_rate, samples.pts = 8000, 0
            container.mux(sound.encode(samples))
            container.mux(sound.encode())
    return path


def make_audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        sound = container.add_stream("aac", rate=8000)
        for i in range(4):
            samples = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                                 layout="mono")
            samples.sample_rate, samples.pts = 8000, i * 1024
            container.mux(sound.encode(samples))
        container.mux(sound.encode())
    return path


def read_clip(path_or_bytes) -> tuple[int, tuple[int, int], Fraction, str, bool]:
    """(frames decoded, (width, height), average rate, codec, has audio)."""
    source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    with av.open(source) as container:
        stream = container.streams.video[0]
        count = sum(1 for _ in container.decode(stream))
        return (count, (stream.codec_context.width, stream.codec_context.height),
                stream.average_rate, stream.codec_context.name, bool(container.streams.audio))


def write_tiny(folder: Path, arch: str = "unet") -> Path:
    """An untrained tiny U-Net folder with sharpened logits (an untrained net's classes tie)."""
    from fixtures import write_tiny_unet

    return write_tiny_unet(folder, arch, test_miou=0.5)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return write_tiny(tmp_path_factory.mktemp("weights") / "unet")


@pytest.fixture(scope="module")
def segmenter(model_dir):
    from segdemo.inference import Segmenter

    return Segmenter.load(model_dir)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clips")
    good = make_clip(root / "square.mp4", audio=True)
    data = good.read_bytes()
    (root / "zeroed.mp4").write_bytes(b"\0" * 64 + data[64:])
    indexed = make_clip(root / "indexed.mp4", faststart=True).read_bytes()  # index first, then frames
    (root / "cut.mp4").write_bytes(indexed[: len(indexed) // 2])
    (root / "notes.mp4").write_text("not a video at all\n" * 50)
    return {"good": good, "zeroed": root / "zeroed.mp4", "cut": root / "cut.mp4",
            "text": root / "notes.mp4", "audio": make_audio_only(root / "sound.m4a"),
            "odd": make_clip(root / "odd.webm", 9, (75, 49), 10, "libvpx-vp9"),
            "gif": make_clip(root / "anim.gif", 8, (64, 48), 10, "gif", "rgb8"),
            "long": make_clip(root / "long.mp4", 31, (32, 32), 1)}


# ----------------------------------------------------------------------------- the core


def test_overlay_keeps_frames_size_and_rate_and_drops_audio(segmenter, clips, tmp_path):
    calls = []

    def spy(images):
        calls.append(len(images))
        return segmenter.predict_batch(images)

    result = video.segment_video(segmenter, clips["good"], tmp_path / "out", batch_size=8,
                                 predict_batch=spy)
    assert result.path.suffix == ".mp4" and result.mime == "video/mp4"
    assert read_clip(result.path) == (20, (96, 64), Fraction(12), "h264", False)
    assert calls == [8, 8, 4]  # frames go through the network in batches
    assert result.frames == 20 and result.achieved_fps > 0 and 0 <= result.flicker <= 1
    assert result.note is None


def test_a_phone_clip_stored_sideways_is_segmented_upright(segmenter, tmp_path):
    stored = make_clip(tmp_path / "stored.mp4", frames=6)
    sideways = make_clip(tmp_path / "portrait.mp4", frames=6, rotation=-90)  # shown turned right
    with video.Clip(stored) as plain, video.Clip(sideways) as turned:
        assert (turned.info.width, turned.info.height) == (64, 96)
        for a, b in zip(plain.frames(), turned.frames()):
            assert b.shape == (96, 64, 3)
            np.testing.assert_array_equal(b, np.rot90(a, -1))  # clockwise, as a player shows it
    result = video.segment_video(segmenter, sideways, tmp_path / "out")
    assert read_clip(result.path)[:2] == (6, (64, 96))


def test_odd_sizes_become_vp9_webm_and_a_gif_plays_as_a_clip(segmenter, clips, tmp_path):
    odd = video.segment_video(segmenter, clips["odd"], tmp_path / "odd")
    assert odd.path.suffix == ".webm" and read_clip(odd.path)[:4] == (9, (75, 49), 10, "vp9")
    assert video.is_video(clips["gif"])
    gif = video.segment_video(segmenter, clips["gif"], tmp_path / "gif", max_frames=5)
    assert read_clip(gif.path)[:3] == (5, (64, 48), 10)


def test_overlay_frames_match_the_still_image_path(segmenter, clips, tmp_path):
    """Unsmoothed, each frame's mask is exactly what `predict` gives for that frame as a photo."""
    result = video.segment_video(segmenter, clips["good"], tmp_path / "o", max_frames=3,
                                 masks_dir=tmp_path / "masks")
    with video.Clip(clips["good"]) as clip:
        first = list(clip.frames(3))
    for rgb, png in zip(first, result.masks):
        expected = segmenter.predict(Image.fromarray(rgb)).mask
        np.testing.assert_array_equal(np.asarray(Image.open(png)), expected)


@pytest.mark.parametrize("kind, message", [
    ("zeroed", "could not be opened as a video"),
    ("text", "could not be opened as a video"),
    ("cut", "is damaged: decoding failed"),
    ("audio", "has no video stream (it holds audio only)"),
])
def test_bad_clips_say_what_is_wrong(segmenter, clips, tmp_path, kind, message):
    with pytest.raises(video.VideoError, match=message.replace("(", r"\(").replace(")", r"\)")):
        video.segment_video(segmenter, clips[kind], tmp_path / kind)


def test_limits(clips):
    info = video.probe(clips["long"])
    assert info.frames == 31 and info.fps == 1
    with pytest.raises(video.VideoError, match=r"long\.mp4 is 31\.0 s long; the limit is 30 s"):
        video.probe(clips["long"], "long.mp4", video.ClipLimits(max_seconds=30))
    with pytest.raises(video.VideoError, match="has 20 frames"):
        video.probe(clips["good"], "x", video.ClipLimits(max_frames=10))
    with pytest.raises(video.VideoError, match="is 96x64"):
        video.probe(clips["good"], "x", video.ClipLimits(max_pixels=5000))


def test_smoother_meters_and_label():
    smoother = video.TemporalSmoother(0.5)
    first = np.array([[[1.0, 0.0]]], np.float32)
    np.testing.assert_allclose(smoother(first), first)
    np.testing.assert_allclose(smoother(np.array([[[0.0, 1.0]]], np.float32)), [[[0.5, 0.5]]])
    with pytest.raises(ValueError):
        video.TemporalSmoother(1.0)
    masks = [np.zeros((2, 5), np.uint8), np.zeros((2, 5), np.uint8), np.ones((2, 5), np.uint8)]
    assert video.flicker(masks) == pytest.approx(0.5)
    meter = video.RateMeter(window_s=10)
    for t in (0.0, 0.1, 0.2, 0.3):
        meter.tick(t)
    assert meter.rate == pytest.approx(10.0)
    labelled = video.draw_label(np.full((48, 160, 3), 255, np.uint8), "9.9 fps")
    assert labelled.shape == (48, 160, 3) and labelled[1, 1].tolist() == [0, 0, 0]


def test_smoothing_lowers_flicker_on_a_static_scene(segmenter, tmp_path):
    rng = np.random.default_rng(1)
    scene = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    clip = video.static_scene_clip(tmp_path / "static", scene, frames=16, noise=12.0)
    plain = video.segment_video(segmenter, clip, tmp_path / "plain")
    smooth = video.segment_video(segmenter, clip, tmp_path / "smooth", smooth=0.7)
    assert plain.flicker > 0.001
    assert smooth.flicker < plain.flicker / 2


def test_live_segmenter_draws_the_rate_on_each_overlay(segmenter):
    live = video.LiveSegmenter(segmenter, smooth=0.5, label="unet")
    rgb = np.full((96, 128, 3), 200, np.uint8)
    outputs = [live.process(rgb) for _ in range(3)]
    assert all(o.shape == rgb.shape for o in outputs) and live.frames == 3
    assert outputs[-1][2, 2].tolist() == [0, 0, 0]  # the label's box
    assert live.meter.rate > 0


def test_measure_video_report_and_table(model_dir, tmp_path):
    report = video.measure_video({"unet": model_dir}, frames=6, size=(64, 42), smooth=0.6,
                                 workdir=tmp_path, log=lambda line: None)
    row = report["models"]["unet"]
    assert set(row) == {"input_size", "plain", "smoothed"}
    assert row["plain"]["fps"] > 0 and row["smoothed"]["flicker"] <= 1
    json.dumps(report)  # JSON-ready
    table = video.video_table(report)
    assert "| `unet` | 32x32 |" in table and "load average" in table


# ----------------------------------------------------------------------------- the command


def test_cli_writes_the_overlay_video_and_masks(model_dir, clips, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli(["predict", "--model", str(model_dir), str(clips["good"]), "--out", str(out),
                "--fps", "--masks", "--smooth", "0.5"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert read_clip(out / "square_overlay.mp4") == (20, (96, 64), Fraction(12), "h264", False)
    assert len(list((out / "square_masks").glob("frame_*.png"))) == 20
    assert "20 frames, 96x64 at 12 frames/s" in printed.out
    assert "frames/s achieved" in printed.out and "frame 20 of 20" in printed.err

    code = cli(["predict", "--model", str(model_dir), str(clips["odd"]), "--out", str(out),
                "--frames", "4"])
    assert code == 0 and read_clip(out / "odd_overlay.webm")[:3] == (4, (75, 49), 10)


def test_cli_reports_bad_clips_and_goes_on(model_dir, clips, tmp_path, capsys):
    code = cli(["predict", "--model", str(model_dir), str(clips["zeroed"]), str(clips["text"]),
                str(clips["good"]), "--out", str(tmp_path), "--frames", "2"])
    printed = capsys.readouterr()
    assert code == 1
    assert printed.err.count("could not be opened as a video") == 2
    assert (tmp_path / "square_overlay.mp4").is_file()
    assert cli(["predict", "--model", str(model_dir), str(clips["good"]), "--out",
                str(tmp_path), "--smooth", "1"]) == 2
    assert "--smooth must lie in [0, 1)" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the dashboard


@pytest.fixture(scope="module")
def app_weights(model_dir) -> Path:
    return model_dir.parent


def start(monkeypatch, weights: Path) -> AppTest:
    monkeypatch.setenv("SEGDEMO_WEIGHTS", str(weights))
    monkeypatch.delenv("SEGDEMO_DATA", raising=False)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    at.session_state["tab"] = "Video"
    at.run()
    assert not at.exception
    return at


def upload_clip(at: AppTest, name: str, data: bytes) -> AppTest:
    at.file_uploader(key="video_upload").set_value((name, data, "application/octet-stream"))
    return at.run()


def test_video_tab_segments_an_uploaded_clip(monkeypatch, app_weights, clips):
    at = start(monkeypatch, app_weights)
    assert any("30 s, 900 frames" in c.value for c in at.caption)  # the limits, stated
    upload_clip(at, "square.mp4", clips["good"].read_bytes())
    assert not at.error and any("96x64, 12 frames/s, 20 frames" in c.value.replace("\\", "")
                                for c in at.caption)
    at.button(key="video_run").click().run()
    assert not at.exception and not at.error
    assert len(at.get("video")) == 1
    (shown,) = at.session_state["video_results"].values()
    assert read_clip(shown["data"]) == (20, (96, 64), Fraction(12), "h264", False)
    assert any("frames/s achieved" in c.value for c in at.caption)
    assert [b.label for b in at.download_button] == ["Overlay video (MP4)"]

    at.toggle(key="video_smooth").set_value(True).run()  # new options: ready to run again
    assert at.button(key="video_run") and len(at.get("video")) == 0


@pytest.mark.parametrize("name, make, message", [
    ("broken.mp4", lambda c: c["zeroed"].read_bytes(), "broken.mp4 could not be opened as a video"),
    ("notes.txt", lambda c: b"hello", "notes.txt is not a video clip"),
    ("photo.mp4", lambda c: c["text"].read_bytes(), "could not be opened as a video"),
    ("sound.m4a", lambda c: c["audio"].read_bytes(), "not a video clip"),
    ("sound.mp4", lambda c: c["audio"].read_bytes(), "has no video stream"),
    ("long.mp4", lambda c: c["long"].read_bytes(), "long.mp4 is 31.0 s long; the limit is 30 s"),
])
def test_video_tab_names_bad_clips(monkeypatch, app_weights, clips, name, make, message):
    at = start(monkeypatch, app_weights)
    upload_clip(at, name, make(clips))
    assert not at.exception
    assert any(message in e.value.replace("\\", "") for e in at.error), [e.value for e in at.error]


def test_live_mode_falls_back_to_the_snapshot_camera(monkeypatch, app_weights):
    import app_video
    from test_dashboard import photo_bytes

    monkeypatch.setattr(app_video, "webrtc_module", lambda: None)
    at = start(monkeypatch, app_weights)
    at.radio(key="video_mode").set_value("Live camera").run()
    assert any("streamlit-webrtc" in i.value for i in at.info)
    at.camera_input(key="video_snapshot").set_value(("s.jpg", photo_bytes(40, 30, "JPEG"),
                                                     "image/jpeg"))
    at.run()
    assert not at.exception and len(at.image) == 1 and "ms in the network" in at.image[0].captions[0]




# ----------------------------------------------------------------------------- live, in Chromium
#
# WebRTC media flows between the browser and the server over UDP between host ICE candidates, and
# neither Chromium nor aiortc offers loopback addresses. So the server and the browser run inside a
# network namespace made for the test (`unshare -n`, root only) whose one extra interface is a veth
# with a private test address: the media never leaves that namespace, and no STUN server is asked
# (the app sets no ICE servers). Chromium's fake camera supplies the frames.

FAKE_CAMERA_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
NAMESPACE_SETUP = ("ip link set lo up && ip link add segv0 type veth peer name segv1 && "
                   "ip addr add 10.233.0.1/24 dev segv0 && ip link set segv0 up && "
                   "ip link set segv1 up")
LIVE_WAIT_S = 150
OUTPUT_STATS_JS = """() => [...document.querySelectorAll('video')].map(v => {
  let corner = null, bright = 0;
  if (v.videoWidth) {
    const c = document.createElement('canvas');
    c.width = v.videoWidth; c.height = v.videoHeight;
    const g = c.getContext('2d'); g.drawImage(v, 0, 0);
    const box = g.getImageData(0, 0, Math.min(60, c.width), Math.max(8, Math.floor(c.height / 24)));
    corner = Array.from(g.getImageData(1, 1, 1, 1).data.slice(0, 3));
    for (let i = 0; i < box.data.length; i += 4) if (box.data[i] > 200 && box.data[i + 1] > 200) bright++;
  }
  const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : {totalVideoFrames: null};
  return {width: v.videoWidth, height: v.videoHeight, frames: q.totalVideoFrames,
          time: v.currentTime, corner, bright};
})"""


def live_check(weights: Path, log: Path, screenshot: Path | None = None) -> dict:
    """In Chromium: segment a clip in the Video tab and report how its overlay video plays; then
    open the Live camera mode (the fake camera), press START and report the page's video elements
    when the first overlay shows and 5 s later (size, frames shown, the rate label's corner)."""
    import time

    from playwright.sync_api import sync_playwright
    from test_browser import CHROMIUM, CHROMIUM_ARGS, PAGE_TIMEOUT_MS, streamlit_server

    with streamlit_server(weights, log) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                    args=CHROMIUM_ARGS + FAKE_CAMERA_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            page.goto(server.url, wait_until="domcontentloaded")
            page.get_by_role("tab", name="Video").click()
            clip = make_clip(log.parent / "browser_clip.mp4", frames=24, size=(160, 96))
            page.locator(".st-key-video_upload input[type='file']").set_input_files(clip)
            page.get_by_role("button", name="Segment the clip").click()
            player = page.get_by_test_id("stVideo").first
            player.wait_for(state="visible")
            page.wait_for_function("() => document.querySelector('[data-testid=stVideo]')"
                                   ".readyState >= 1")
            played = player.evaluate("v => ({width: v.videoWidth, height: v.videoHeight, "
                                     "duration: v.duration})")
            page.get_by_text("Live camera").click()
            frame = page.frame_locator("iframe[title*='webrtc']").first
            frame.get_by_role("button", name="START").click(timeout=PAGE_TIMEOUT_MS)
            webrtc = None  # the component's frame, once its video element exists
            started = time.monotonic()
            first: list[dict] = []
            while time.monotonic() < started + LIVE_WAIT_S:
                webrtc = webrtc or next((f for f in page.frames if f != page.main_frame
                                         and f.query_selector("video")), None)
                first = webrtc.evaluate(OUTPUT_STATS_JS) if webrtc else []
                if any(_overlaid(v) for v in first):  # the camera's own frames come back first
                    break
                time.sleep(0.5)
            overlay_after_s = time.monotonic() - started
            time.sleep(5)
            second = webrtc.evaluate(OUTPUT_STATS_JS) if webrtc else []
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
            return {"clip": played, "first": first, "second": second,
                    "overlay_after_s": overlay_after_s}
        finally:
            browser.close()


def _overlaid(stats: dict) -> bool:
    """A video element showing the server's overlay: the rate label's dark box, white text."""
    return bool(stats["width"]) and max(stats["corner"]) < 40 and stats["bright"] > 0


def _namespace_ready() -> str | None:
    """Why the live test cannot run here, or None."""
    if not Path("/usr/bin/chromium").exists():
        return "Debian's chromium is not installed"
    if not (shutil.which("unshare") and shutil.which("ip")):
        return "unshare and ip (util-linux, iproute2) are needed for the test's network namespace"
    probe_ns = subprocess.run(["unshare", "-n", "sh", "-c", NAMESPACE_SETUP], capture_output=True)
    if probe_ns.returncode != 0:
        return ("no network namespace with a veth pair can be made here (needs root): "
                + probe_ns.stderr.decode(errors="replace").strip()[-200:])
    return None


def test_live_camera_in_chromium(model_dir, tmp_path):
    import app_video

    if app_video.webrtc_module() is None:
        pytest.skip("streamlit-webrtc is not installed")
    if (why := _namespace_ready()) is not None:
        pytest.skip(why)
    out = tmp_path / "live.json"
    command = (f"{NAMESPACE_SETUP} && PYTHONPATH={REPO} exec {sys.executable} "
               f"{Path(__file__).resolve()} live "
               f"--weights {model_dir.parent} --out {out} --log {tmp_path / 'server.log'}")
    run = subprocess.run(["unshare", "-n", "sh", "-c", command], capture_output=True, text=True,
                         timeout=LIVE_WAIT_S + 240, env={**os.environ, "SEGDEMO_ICE_SERVERS": ""})
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["clip"]["width"] == 160 and report["clip"]["height"] == 96  # plays in the page
    assert report["clip"]["duration"] == pytest.approx(2.0, abs=0.1)
    overlays = [(a, b) for a, b in zip(report["first"], report["second"]) if _overlaid(a)]
    assert overlays, report  # an overlay frame arrived...
    earlier, later = overlays[0]
    assert _overlaid(later) and later["frames"] >= earlier["frames"] + 10, report  # ...and more


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="the live-camera check, run by "
                                                 "test_live_camera_in_chromium in its namespace")
    parser.add_argument("mode", choices=["live"])
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--screenshot", type=Path)
    options = parser.parse_args()
    options.out.write_text(json.dumps(live_check(options.weights, options.log, options.screenshot)))
