"""Clips and camera streams through the segmentation models: decode, segment in batches, smooth over
time, overlay, encode.

Why these choices:

- PyAV (FFmpeg's libraries, bundled in its wheel with libx264 and libvpx) decodes every common
  container and codec and encodes what browsers play, with no system ffmpeg.
- Output is H.264 (yuv420p) in MP4 with the index at the front (`+faststart`), which every browser
  plays while it loads. 4:2:0 needs even sides, so a clip with an odd width or height becomes VP9 in
  WebM instead (browsers play that too) rather than being cropped or padded: the overlay keeps the
  clip's exact size. Frame rate: the clip's average rate; audio is dropped.
- Frames go through the network `batch_size` at a time (one `predict_batch` call each): in
  `weights/benchmark.json` U-Net-MobileNetV2's network ran 86 images/s at batch 16 on 2 cores,
  against 34/s one image per call.
- Temporal smoothing is an exponential moving average of the class probabilities at the model's
  input size (small: the average is cheap), resized back to the frame afterwards exactly as a still
  is. A frame's label noise (sensor noise, compression) then has to persist to flip a pixel, at the
  cost of masks trailing fast motion by about 1 / (1 - strength) frames.
- Flicker is measured as the share of pixels whose class changes between consecutive frames; on a
  static scene every change is an error (`measure_video` compares it with and without smoothing).
"""
from __future__ import annotations

import io
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from segdemo.errors import SegDemoError
from segdemo.inference import mask_png, overlay

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".avi", ".gif", ".mkv", ".m4v")
DEFAULT_BATCH = 8
VIDEO_FILE = "video_benchmark.json"  # beside the model folders, written by `measure_video`

VideoSource = str | os.PathLike | bytes  # a path, or the file's bytes (an upload)


class VideoError(SegDemoError, ValueError):
    """A clip that cannot be used: not decodable, no video stream, damaged, or over a limit."""


@dataclass(frozen=True)
class ClipLimits:
    """What a clip may be; None = no limit."""

    max_seconds: float | None = None
    max_frames: int | None = None
    max_pixels: int | None = None  # per frame

    def describe(self) -> str:
        parts = []
        if self.max_seconds is not None:
            parts.append(f"{self.max_seconds:g} s")
        if self.max_frames is not None:
            parts.append(f"{self.max_frames:,} frames")
        if self.max_pixels is not None:
            parts.append(f"{self.max_pixels / 1e6:.1f} megapixels a frame")
        return ", ".join(parts) if parts else "none"


@dataclass(frozen=True)
class ClipInfo:
    """What the container says about a clip's first video stream (frames: counted or estimated)."""

    width: int
    height: int
    fps: Fraction
    frames: int | None
    seconds: float | None
    codec: str

    def describe(self) -> str:
        length = f", {self.seconds:.1f} s" if self.seconds is not None else ""
        frames = f", {self.frames:,} frames" if self.frames else ""
        return f"{self.width}x{self.height}, {float(self.fps):.3g} frames/s{frames}{length} ({self.codec})"


@dataclass
class VideoResult:
    """One clip through one model."""

    path: Path
    mime: str
    frames: int
    width: int
    height: int
    fps: Fraction          # the clip's (and the overlay's) frame rate
    seconds: float         # wall time, decoding to the last encoded frame
    network_seconds: float  # inside the batched network calls
    batch_size: int
    smooth: float
    flicker: float         # mean share of pixels changing class between consecutive frames
    masks: list[Path] = field(default_factory=list)
    note: str | None = None

    @property
    def achieved_fps(self) -> float:
        """Frames per second the whole path managed (decode, network, overlay, encode)."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def network_fps(self) -> float:
        return self.frames / self.network_seconds if self.network_seconds > 0 else 0.0


def is_video(path: str | os.PathLike) -> bool:
    """A file the `predict` command treats as a clip: a video suffix, or a GIF with several frames
    (a single-frame GIF is a still)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix != ".gif":
        return suffix in VIDEO_SUFFIXES
    try:
        with Image.open(path) as image:
            return getattr(image, "n_frames", 1) > 1
    except (OSError, ValueError):
        return False  # the image path reports the bad file


class Clip:
    """An open clip: `info` from its container, then `frames()` once. A context manager."""

    def __init__(self, source: VideoSource, name: str = "the clip",
                 limits: ClipLimits | None = None):
        import av

        self.name = name
        self.limits = limits or ClipLimits()
        if isinstance(source, (bytes, bytearray)):
            source = io.BytesIO(source)
        try:
            self._container = av.open(source if isinstance(source, io.BytesIO) else str(source))
        except av.FFmpegError as exc:
            raise VideoError(f"{name} could not be opened as a video ({_reason(exc)}).") from None
        if not self._container.streams.video:
            kinds = ", ".join(sorted({s.type for s in self._container.streams}))
            self._container.close()
            raise VideoError(f"{name} has no video stream (it holds "
                             f"{kinds + ' only' if kinds else 'no stream that can be read'}).")
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"  # frame-threaded decoding
        self._decoded = self._container.decode(stream)
        self._count = 0
        try:
            # The first frame carries the display rotation (phones store portrait clips sideways
            # and say so in the display matrix), which decides the upright size.
            self._first = self._next_frame()
            rotation = (self._first.rotation or 0) if self._first is not None else 0
            self._turns = round(rotation / 90) % 4
            self.info = _info(self._container, sideways=self._turns % 2 == 1)
            _check(self.info, name, self.limits)
        except VideoError:
            self._container.close()
            raise

    def _next_frame(self):
        """The next decoded frame, None at the end; `VideoError` if decoding fails."""
        try:
            frame = next(self._decoded)
        except StopIteration:
            return None
        except Exception as exc:  # noqa: BLE001 - FFmpegError subclasses, and others on odd data
            where = f"after {self._count} good frames" if self._count else "at its first frame"
            raise VideoError(f"{self.name} is damaged: decoding failed {where} "
                             f"({_reason(exc)}).") from None
        self._count += 1
        return frame

    def frames(self, max_frames: int | None = None) -> Iterator[np.ndarray]:
        """The frames as upright RGB uint8 arrays, in order (once); `VideoError` if the clip is
        damaged part way or turns out longer than the limits (a container need not state its
        length)."""
        if self._first is None:
            raise VideoError(f"{self.name} holds no frame that could be decoded.")
        frame, given, limit = self._first, 0, self.limits.max_frames
        while frame is not None and (max_frames is None or given < max_frames):
            if limit is not None and self._count > limit:
                raise VideoError(f"{self.name} has more than {limit:,} frames; the limit is "
                                 f"{self.limits.describe()}.")
            rgb = frame.to_ndarray(format="rgb24")
            yield np.ascontiguousarray(np.rot90(rgb, self._turns)) if self._turns else rgb
            given += 1
            frame = self._next_frame()

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> "Clip":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.rstrip(".")


def _info(container, sideways: bool = False) -> ClipInfo:
    """The clip as shown: `sideways` (a display rotation of +-90 degrees) swaps width and height."""
    stream = container.streams.video[0]
    fps = stream.average_rate or stream.guessed_rate or Fraction(25)
    seconds = None
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        seconds = container.duration / 1_000_000
    frames = stream.frames or (round(seconds * float(fps)) if seconds else None)
    context = stream.codec_context
    width, height = (context.height, context.width) if sideways else (context.width, context.height)
    return ClipInfo(width, height, Fraction(fps), frames, seconds, context.name)


def probe(source: VideoSource, name: str = "the clip", limits: ClipLimits | None = None) -> ClipInfo:
    """The clip's size, rate and length, checked against `limits` (`VideoError` says which)."""
    with Clip(source, name, limits) as clip:
        return clip.info


def _check(info: ClipInfo, name: str, limits: ClipLimits) -> None:
    if limits.max_seconds is not None and info.seconds and info.seconds > limits.max_seconds:
        raise VideoError(f"{name} is {info.seconds:.1f} s long; the limit is {limits.describe()}. "
                         "Trim it and try again.")
    if limits.max_frames is not None and info.frames and info.frames > limits.max_frames:
        raise VideoError(f"{name} has {info.frames:,} frames; the limit is {limits.describe()}.")
    if limits.max_pixels is not None and info.width * info.height > limits.max_pixels:
        raise VideoError(f"{name} is {info.width}x{info.height}; the limit is "
                         f"{limits.describe()}. Scale it down first.")


# ----------------------------------------------------------------------------- encoding


def output_format(width: int, height: int) -> tuple[str, str, str]:
    """(suffix, codec, mime) the overlay of a width x height clip is written in."""
    if width % 2 == 0 and height % 2 == 0:
        return ".mp4", "libx264", "video/mp4"
    return ".webm", "libvpx-vp9", "video/webm"


class VideoWriter:
    """Writes RGB frames at a constant rate: H.264/MP4, or VP9/WebM for odd sizes (see the module)."""

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: Fraction):
        import av

        suffix, codec, self.mime = output_format(width, height)
        self.path = Path(path).with_suffix(suffix)
        self.width, self.height = width, height
        options = {"movflags": "+faststart"} if suffix == ".mp4" else {}
        self._container = av.open(str(self.path), "w", options=options)
        codec_options = ({"crf": "23", "preset": "veryfast"} if codec == "libx264" else
                         {"deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "0",
                          "row-mt": "1"})
        self._stream = self._container.add_stream(codec, rate=fps, options=codec_options)
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
        self._count = 0

    def write(self, rgb: np.ndarray) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self._count
        self._count += 1
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
        finally:
            self._container.close()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


# ----------------------------------------------------------------------------- over time


class TemporalSmoother:
    """Exponential moving average of class probabilities across frames:
    `p_t = (1 - strength) * new_t + strength * p_(t-1)`; strength 0 passes frames through."""

    def __init__(self, strength: float):
        if not 0.0 <= strength < 1.0:
            raise ValueError(f"smoothing strength must lie in [0, 1), got {strength}.")
        self.strength = float(strength)
        self._state: np.ndarray | None = None

    def __call__(self, probabilities: np.ndarray) -> np.ndarray:
        probabilities = np.asarray(probabilities, np.float32)
        if self._state is None or self._state.shape != probabilities.shape or not self.strength:
            self._state = probabilities
        else:
            self._state = (1.0 - self.strength) * probabilities + self.strength * self._state
        return self._state


class FlickerMeter:
    """Share of pixels whose class changes from one frame to the next, over a whole clip."""

    def __init__(self):
        self._previous: np.ndarray | None = None
        self._changed = 0
        self._compared = 0

    def add(self, mask: np.ndarray) -> None:
        if self._previous is not None and self._previous.shape == mask.shape:
            self._changed += int(np.count_nonzero(self._previous != mask))
            self._compared += mask.size
        self._previous = mask

    @property
    def share(self) -> float:
        return self._changed / self._compared if self._compared else 0.0


def flicker(masks: Sequence[np.ndarray]) -> float:
    """`FlickerMeter` over a list of masks."""
    meter = FlickerMeter()
    for mask in masks:
        meter.add(mask)
    return meter.share


class RateMeter:
    """Frames per second over the last `window_s` seconds (what the live view shows)."""

    def __init__(self, window_s: float = 2.0):
        self.window_s = window_s
        self._times: deque[float] = deque()

    def tick(self, now: float | None = None) -> float:
        now = time.perf_counter() if now is None else now
        self._times.append(now)
        while len(self._times) > 2 and now - self._times[0] > self.window_s:
            self._times.popleft()
        return self.rate

    @property
    def rate(self) -> float:
        if len(self._times) < 2 or self._times[-1] <= self._times[0]:
            return 0.0
        return (len(self._times) - 1) / (self._times[-1] - self._times[0])


# ----------------------------------------------------------------------------- one clip


def _mask_for(segmenter, prediction: Any, smoother: TemporalSmoother | None,
              size: tuple[int, int]) -> np.ndarray:
    """The frame's mask at its own size: the prediction's when unsmoothed and full-sized (a queue
    may hand back display-sized masks), else rebuilt from (smoothed) input-size probabilities."""
    width, height = size
    if smoother is None and prediction.mask.shape == (height, width):
        return prediction.mask
    probabilities = prediction.input_probabilities
    if smoother is not None:
        probabilities = smoother(probabilities)
    return segmenter.full_mask(probabilities, size)[0]


def segment_video(segmenter, source: VideoSource, out: str | os.PathLike, *,
                  name: str = "the clip", opacity: float = 0.5, smooth: float = 0.0,
                  batch_size: int = DEFAULT_BATCH, max_frames: int | None = None,
                  limits: ClipLimits | None = None, masks_dir: str | os.PathLike | None = None,
                  predict_batch: Callable[[list[Image.Image]], Sequence[Any]] | None = None,
                  progress: Callable[[int, int | None], None] | None = None) -> VideoResult:
    """Write the clip's overlay video (same size and rate, no audio) to `out` (its suffix is set
    by `output_format`) and, with `masks_dir`, one mask PNG per frame.

    `predict_batch` (default: the segmenter's) maps PIL frames to predictions with `mask` and
    `input_probabilities`; the dashboard passes its shared per-model queue. `segmenter` supplies
    `classes` and `full_mask`. `progress(done, total)` is called after every batch (total may be
    None when the container does not say).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    start = time.perf_counter()
    predict_batch = predict_batch or segmenter.predict_batch
    smoother = TemporalSmoother(smooth) if smooth else None
    meter = FlickerMeter()
    masks_folder = Path(masks_dir) if masks_dir is not None else None
    if masks_folder is not None:
        masks_folder.mkdir(parents=True, exist_ok=True)
    masks: list[Path] = []
    network_seconds, done = 0.0, 0

    with Clip(source, name, limits) as clip:
        info = clip.info
        size = (info.width, info.height)
        expected = min(info.frames, max_frames) if info.frames and max_frames else info.frames
        with VideoWriter(out, info.width, info.height, info.fps) as writer:
            def flush(batch: list[Image.Image]) -> None:
                nonlocal network_seconds, done
                began = time.perf_counter()
                predictions = predict_batch(batch)
                network_seconds += time.perf_counter() - began
                for image, prediction in zip(batch, predictions):
                    mask = _mask_for(segmenter, prediction, smoother, size)
                    meter.add(mask)
                    if masks_folder is not None:
                        masks.append(masks_folder / f"frame_{done:05d}.png")
                        masks[-1].write_bytes(mask_png(mask, segmenter.classes))
                    writer.write(np.asarray(overlay(image, mask, segmenter.classes, opacity)))
                    done += 1
                if progress is not None:
                    progress(done, expected or max_frames)

            batch: list[Image.Image] = []
            for rgb in clip.frames(max_frames):
                if rgb.shape[:2] != (info.height, info.width):
                    raise VideoError(f"{name} changes frame size part way ({rgb.shape[1]}x"
                                     f"{rgb.shape[0]} after {info.width}x{info.height}); "
                                     "re-encode it at one size.")
                batch.append(Image.fromarray(rgb))
                if len(batch) == batch_size:
                    flush(batch)
                    batch = []
            if batch:
                flush(batch)
    note = None
    if expected and done < expected * 0.98:
        note = (f"{name} ended after {done} of the {expected} frames its header announces "
                "(truncated?).")
    return VideoResult(writer.path, writer.mime, done, info.width, info.height, info.fps,
                       time.perf_counter() - start, network_seconds, batch_size, smooth,
                       meter.share, masks, note)


# ----------------------------------------------------------------------------- live camera


_FONT_CACHE: dict[int, Any] = {}


def draw_label(rgb: np.ndarray, text: str) -> np.ndarray:
    """`text` in white on a dark box in the top-left corner (the live view's frame rate)."""
    image = Image.fromarray(rgb)
    size = max(12, rgb.shape[0] // 24)
    font = _FONT_CACHE.get(size)
    if font is None:
        font = _FONT_CACHE[size] = ImageFont.load_default(size=size)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((6, 4), text, font=font)
    draw.rectangle((0, 0, right + 6, bottom + 4), fill=(0, 0, 0))
    draw.text((6, 4), text, fill=(255, 255, 255), font=font)
    return np.asarray(image)


class LiveSegmenter:
    """One camera stream: frame in, overlay with the achieved frame rate drawn on it out. Keeps the
    smoothing state and the rate between frames, so one instance serves one stream."""

    def __init__(self, segmenter, *, predict: Callable[[Image.Image], Any] | None = None,
                 opacity: float = 0.5, smooth: float = 0.0, label: str = ""):
        self.segmenter = segmenter
        self._predict = predict or segmenter.predict
        self.opacity = opacity
        self.label = label
        self._smoother = TemporalSmoother(smooth) if smooth else None
        self.meter = RateMeter()
        self.flicker = FlickerMeter()
        self.frames = 0

    def process(self, rgb: np.ndarray) -> np.ndarray:
        image = Image.fromarray(rgb)
        mask = _mask_for(self.segmenter, self._predict(image), self._smoother, image.size)
        self.flicker.add(mask)
        self.frames += 1
        rate = self.meter.tick()
        shown = np.asarray(overlay(image, mask, self.segmenter.classes, self.opacity))
        text = f"{rate:.1f} fps" + (f" · {self.label}" if self.label else "")
        return draw_label(shown, text)


# ----------------------------------------------------------------------------- measurement


def static_scene_clip(path: str | os.PathLike, image: Image.Image, frames: int = 48,
                      fps: int = 24, noise: float = 4.0, seed: int = 0) -> Path:
    """A clip of a still scene as a camera films it: the same photo in every frame plus fresh
    sensor noise (Gaussian, `noise` grey levels), H.264-encoded (so compression varies too)."""
    rng = np.random.default_rng(seed)
    base = np.asarray(image.convert("RGB"), np.float32)
    height, width = base.shape[0] // 2 * 2, base.shape[1] // 2 * 2
    base = base[:height, :width]
    with VideoWriter(path, width, height, Fraction(fps)) as writer:
        for _ in range(frames):
            noisy = base + rng.normal(0.0, noise, base.shape)
            writer.write(np.clip(noisy + 0.5, 0, 255).astype(np.uint8))
    return writer.path


def measure_video(folders: dict[str, Path], *, frames: int = 48, smooth: float = 0.6,
                  batch_size: int = DEFAULT_BATCH, size: tuple[int, int] = (640, 426),
                  workdir: str | os.PathLike, log: Callable[[str], None] = print) -> dict:
    """The video path per model on a static scene (scikit-image's Chelsea at `size`, sensor noise,
    H.264): frames per second end to end and in the network, and flicker without and with
    smoothing. A JSON-ready report; timings depend on what else the machine runs (recorded)."""
    from skimage import data as examples

    from segdemo.batching import cpu_count
    from segdemo.benchmark import device_description
    from segdemo.inference import Segmenter

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    photo = Image.fromarray(examples.chelsea()).resize(size, Image.BILINEAR)
    clip = static_scene_clip(workdir / "static_scene", photo, frames=frames)
    report: dict[str, Any] = {
        "device": device_description(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "clip": {"scene": "scikit-image chelsea, static, sensor noise sigma 4, H.264",
                 "width": size[0], "height": size[1], "frames": frames, "fps": 24},
        "batch_size": batch_size, "smooth": smooth, "cores": cpu_count(),
        "load_average_before": list(os.getloadavg()),
        "models": {},
    }
    for model_id, folder in folders.items():
        segmenter = Segmenter.load(folder)
        segmenter.warm_up()
        row: dict[str, Any] = {"input_size": list(segmenter.input_size)}
        for key, strength in (("plain", 0.0), ("smoothed", smooth)):
            result = segment_video(segmenter, clip, workdir / f"{model_id}_{key}", smooth=strength,
                                   batch_size=batch_size)
            row[key] = {"fps": result.achieved_fps, "network_fps": result.network_fps,
                        "flicker": result.flicker}
            log(f"{model_id} {key}: {result.achieved_fps:.1f} frames/s end to end, "
                f"{result.network_fps:.1f} in the network, flicker {result.flicker:.2%}")
        report["models"][model_id] = row
    report["load_average_after"] = list(os.getloadavg())
    return report


def video_table(report: dict) -> str:
    """Markdown for the README's speed section from a `measure_video` report."""
    clip = report["clip"]
    lines = [f"The video path (`predict --model DIR clip.mp4`, the dashboard's Video tab) on a "
             f"{clip['width']}x{clip['height']} clip of {clip['frames']} frames ({clip['scene']}), "
             f"batches of {report['batch_size']}; flicker = share of pixels changing class "
             "between consecutive frames (all of it error, the scene is still):",
             "",
             "| model | input | frames/s end to end | frames/s network | flicker | "
             f"flicker, smoothed ({report['smooth']:g}) | frames/s smoothed |",
             "|---|---|---|---|---|---|---|"]
    for model_id, row in report["models"].items():
        plain, smoothed = row["plain"], row["smoothed"]
        lines.append(f"| `{model_id}` | {row['input_size'][0]}x{row['input_size'][1]} | "
                     f"{plain['fps']:.1f} | {plain['network_fps']:.1f} | {plain['flicker']:.2%} | "
                     f"{smoothed['flicker']:.2%} | {smoothed['fps']:.1f} |")
    before, after = report.get("load_average_before"), report.get("load_average_after")
    conditions = f"Measured on {report.get('device', 'an unrecorded device')} ({report.get('date')})"
    if before and after:
        conditions += f"; 1-minute load average {before[0]:.2f} before, {after[0]:.2f} after"
        if max(before[0], after[0]) >= 0.5 * report.get("cores", 2):
            conditions += " (other work shared the cores: these rates are not final)"
    return "\n".join(lines) + "\n\n" + conditions + "."


def load_video_report(path: str | os.PathLike) -> dict:
    """A `measure_video` JSON (`VideoError` with the reason when missing or not one)."""
    from segdemo.artifacts import read_report

    return read_report(path, "video benchmark", "benchmark --video", ("clip", "models"), VideoError)
