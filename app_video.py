"""The dashboard's Video tab: a clip through each chosen model, and the live camera.

`streamlit_app.py` calls `render(chosen, pool)` with its process-wide predictor pool, so the frames
of a clip or a camera go through the same per-model queues as the photos of every other session:
they are batched into one network call (up to the queue's batch size) and never run a second
network beside another session's. Decoding, smoothing and encoding live in `segdemo.video`.

The live camera uses streamlit-webrtc (the browser sends its camera over WebRTC, the server answers
with the overlay stream). No STUN/TURN server is contacted unless SEGDEMO_ICE_SERVERS names some
(a JSON list of RTCIceServer objects): the page then works on this machine and its LAN, and a
deployment reached across NAT sets it. Where WebRTC cannot run (the package missing, or a browser
that cannot reach the server's media), the snapshot camera (`st.camera_input`) stands in.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import numpy as np
import streamlit as st

from segdemo import dashboard as db
from segdemo import video
from segdemo.errors import SegDemoError
from segdemo.images import ImageError
from segdemo.inference import overlay

LIMITS = video.ClipLimits(max_seconds=30, max_frames=900, max_pixels=1920 * 1080)
LOAD_TIMEOUT_S = 300    # a model's first load on a busy CPU
FRAME_TIMEOUT_S = 120   # one frame's wait in the model's queue behind other sessions
LIVE_FRAME_TIMEOUT_S = 10
VIDEO_SIDE = 720  # longest side an overlay video is shown at (the download is full size)
MODES = ("Clip", "Live camera")
NO_WEBRTC = ("Live video needs the streamlit-webrtc package (`pip install streamlit-webrtc`), "
             "which this server does not have; the snapshot camera below segments one picture "
             "at a time.")
LIVE_NOTE = ("The camera's frames go to the server over WebRTC and come back with the mask; the "
             "frame rate it keeps up with is drawn on the video (frames that arrive while the "
             "model is busy are dropped). Browsers allow the camera only on https:// pages or on "
             "localhost. No picture after START? Use the snapshot camera below.")


def render(chosen: list[db.ModelEntry], pool) -> None:
    """The tab: a clip or the live camera, through the models chosen in the sidebar. `pool` is
    the app's `segdemo.batching.PredictorPool` (one queue per model, shared by all sessions)."""
    mode = st.radio("Source", MODES, horizontal=True, key="video_mode")
    smooth = 0.0
    if st.toggle("Temporal smoothing", key="video_smooth",
                 help="Averages each frame's class probabilities with the previous frames' "
                      "(an exponential moving average), so masks do not flicker; they then trail "
                      "fast motion by a few frames."):
        smooth = st.slider("Smoothing strength (weight of the past)", 0.1, 0.9, 0.6, 0.1,
                           key="video_smooth_strength")
    opacity = st.session_state.get("opacity", 0.5)
    if mode == "Clip":
        clip_section(chosen, pool, smooth, opacity)
    else:
        live_section(chosen, pool, smooth, opacity)


def _predictor(entry: db.ModelEntry, pool):
    """The model's queue, loading it if needed; None (with the reason on the page) if it fails."""
    future = pool.get(entry.cache_key, entry.folder)
    try:
        if not future.done():
            with st.spinner(f"Loading {entry.title} …"):
                return future.result(timeout=LOAD_TIMEOUT_S)
        return future.result()
    except SegDemoError as exc:
        st.error(db.plain(f"{entry.title}: {exc}"))
    except FutureTimeout:
        st.error(db.plain(f"{entry.title} did not load within {LOAD_TIMEOUT_S} s; try again."))
    return None


def _queued(predictor, timeout_s: float) -> tuple[Callable, list[int]]:
    """A `predict_batch` for `segment_video` that sends frames through the model's queue, and the
    list it fills with the size of the network batch each frame ran in."""
    sizes: list[int] = []

    def predict_batch(images):
        futures = [predictor.submit(image) for image in images]
        timed = [future.result(timeout=timeout_s) for future in futures]
        sizes.extend(t.batch_size for t in timed)
        return [t.value for t in timed]
    return predict_batch, sizes


# ----------------------------------------------------------------------------- clip


def clip_section(chosen: list[db.ModelEntry], pool, smooth: float, opacity: float) -> None:
    upload = st.file_uploader("Video clip", key="video_upload")
    st.caption(clip_rules(st.get_option("server.maxUploadSize")))
    if upload is None:
        st.info("Upload a short clip; each chosen model makes its overlay video.")
        return
    name, data = upload.name, upload.getvalue()
    if Path(name).suffix.lower() not in video.VIDEO_SUFFIXES:
        st.error(db.plain(f"{name} is not a video clip: {clip_types()} are accepted."))
        return
    try:
        info = video.probe(data, name, LIMITS)
    except video.VideoError as exc:
        st.error(db.plain(str(exc)))
        return
    st.caption(db.plain(f"{name}: {info.describe()}"))
    digest = hashlib.sha256(data).hexdigest()
    results = st.session_state.setdefault("video_results", {})
    for key in [k for k in results if k[0] != digest]:  # keep only this clip's videos
        del results[key]
    keys = {entry.id: (digest, entry.cache_key, smooth, opacity) for entry in chosen}
    missing = [entry for entry in chosen if keys[entry.id] not in results]
    slot = st.empty()  # the button, gone once this run has made the videos
    if missing and slot.button("Segment the clip", key="video_run", type="primary"):
        slot.empty()
        for entry in missing:
            outcome = _segment_clip(entry, pool, data, name, smooth, opacity)
            if outcome is not None:
                results[keys[entry.id]] = outcome
    for entry in chosen:
        if (shown := results.get(keys[entry.id])) is not None:
            _show_clip(entry, shown, Path(name).stem)


def clip_types() -> str:
    names = [s.lstrip(".").upper() for s in video.VIDEO_SUFFIXES]
    return ", ".join(names[:-1]) + " and " + names[-1]


def clip_rules(max_mb: int) -> str:
    return (f"{clip_types()} clips up to {max_mb} MB and {LIMITS.describe()}. The overlay keeps "
            "the clip's size and frame rate; audio is dropped.")


def _segment_clip(entry: db.ModelEntry, pool, data: bytes, name: str, smooth: float,
                  opacity: float) -> dict | None:
    """One model over the clip, with a progress bar; what is shown and downloaded, or None."""
    predictor = _predictor(entry, pool)
    if predictor is None:
        return None
    bar = st.progress(0.0, text=f"{entry.title}: starting …")
    started = time.perf_counter()

    def progress(done: int, total: int | None) -> None:
        share = min(done / total, 1.0) if total else 0.0
        rate = done / max(time.perf_counter() - started, 1e-9)
        bar.progress(share, text=f"{entry.title}: frame {done}" + (f" of {total}" if total else "")
                     + f" · {rate:.1f} frames/s")

    predict_batch, sizes = _queued(predictor, FRAME_TIMEOUT_S)
    try:
        with tempfile.TemporaryDirectory(prefix="segdemo-video-") as folder:
            result = video.segment_video(
                predictor.segmenter, data, Path(folder) / "overlay", name=name, opacity=opacity,
                smooth=smooth, limits=LIMITS, predict_batch=predict_batch, progress=progress)
            encoded = result.path.read_bytes()
    except video.VideoError as exc:
        bar.empty()
        st.error(db.plain(str(exc)))
        return None
    except FutureTimeout:
        bar.empty()
        st.error(db.plain(f"{entry.title}: the model's queue did not answer within "
                          f"{FRAME_TIMEOUT_S} s (the server is busy); try again."))
        return None
    bar.empty()
    return {"data": encoded, "mime": result.mime, "suffix": result.path.suffix,
            "frames": result.frames, "size": (result.width, result.height),
            "fps": float(result.fps), "achieved_fps": result.achieved_fps,
            "mean_batch": float(np.mean(sizes)) if sizes else 0.0, "smooth": result.smooth,
            "flicker": result.flicker, "note": result.note}


def _show_clip(entry: db.ModelEntry, shown: dict, stem: str) -> None:
    st.markdown(f"**{db.plain(entry.title)}**")
    width, height = shown["size"]
    st.video(shown["data"], format=shown["mime"],
             width=db.display_size((width, height), VIDEO_SIDE)[0])  # never enlarged
    smoothing = f"smoothing {shown['smooth']:g}" if shown["smooth"] else "no smoothing"
    st.caption(f"{shown['frames']} frames, {width}×{height} at {shown['fps']:.3g} frames/s · "
               f"**{shown['achieved_fps']:.1f} frames/s achieved** (decode, network in batches of "
               f"{shown['mean_batch']:.3g} on average, overlay, encode) · {smoothing}, "
               f"{shown['flicker']:.2%} of pixels change class per frame")
    if shown["note"]:
        st.warning(db.plain(shown["note"]))
    kind = shown["suffix"].lstrip(".").upper()
    st.download_button(f"Overlay video ({kind})", shown["data"],
                       file_name=f"{stem}_{entry.id}_overlay{shown['suffix']}",
                       mime=shown["mime"], key=f"video_download_{entry.id}", on_click="ignore")


# ----------------------------------------------------------------------------- live camera


@functools.cache
def webrtc_module():
    """streamlit_webrtc, or None where it is not installed.

    Its SRTP library (pylibsrtp, OpenSSL linked in) is loaded with RTLD_DEEPBIND: TensorFlow,
    loaded first, exports its own BoringSSL symbols process-wide, and without DEEPBIND libsrtp's
    start-up calls bind to those and crash the server (a segmentation fault in `srtp_init`)."""
    flags = sys.getdlopenflags()
    try:
        sys.setdlopenflags(os.RTLD_NOW | os.RTLD_DEEPBIND)
        import pylibsrtp  # noqa: F401 - loaded here, under these flags
    except ImportError:
        return None
    finally:
        sys.setdlopenflags(flags)
    try:
        import streamlit_webrtc
    except ImportError:
        return None
    return streamlit_webrtc


def ice_servers() -> list[dict]:
    """SEGDEMO_ICE_SERVERS as a list of RTCIceServer dicts; none by default (no outside server)."""
    text = os.environ.get("SEGDEMO_ICE_SERVERS", "").strip()
    if not text:
        return []
    try:
        servers = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SegDemoError(f"SEGDEMO_ICE_SERVERS is not JSON ({exc}).") from None
    if not isinstance(servers, list) or not all(isinstance(s, dict) and "urls" in s for s in servers):
        raise SegDemoError('SEGDEMO_ICE_SERVERS must be a JSON list like '
                           '[{"urls": "stun:stun.example.org:3478"}].')
    return servers


def live_section(chosen: list[db.ModelEntry], pool, smooth: float, opacity: float) -> None:
    entry = chosen[0]
    if len(chosen) > 1:
        entry = st.selectbox("Model", chosen, format_func=lambda e: e.title, key="live_model")
    webrtc = webrtc_module()
    if webrtc is None:
        st.info(NO_WEBRTC)
        snapshot(entry, pool, opacity)
        return
    predictor = _predictor(entry, pool)
    if predictor is None:
        return
    try:
        servers = ice_servers()
    except SegDemoError as exc:
        st.error(db.plain(str(exc)))
        return
    settings = (entry.cache_key, smooth, opacity)
    live = st.session_state.get("_live")
    if live is None or live[0] != settings:  # new model or options: fresh smoothing and rate
        predict = lambda image: predictor.submit(image).result(LIVE_FRAME_TIMEOUT_S).value  # noqa: E731
        live = st.session_state["_live"] = (settings, video.LiveSegmenter(
            predictor.segmenter, predict=predict, opacity=opacity, smooth=smooth,
            label=entry.id))
    segmenter = live[1]

    def callback(frame):
        import av

        shown = segmenter.process(frame.to_ndarray(format="rgb24"))
        return av.VideoFrame.from_ndarray(shown, format="rgb24")

    webrtc.webrtc_streamer(
        key="live", mode=webrtc.WebRtcMode.SENDRECV, video_frame_callback=callback,
        rtc_configuration={"iceServers": servers},
        media_stream_constraints={"video": True, "audio": False}, async_processing=True)
    st.caption(LIVE_NOTE)
    with st.expander("Snapshot camera"):
        snapshot(entry, pool, opacity)


def snapshot(entry: db.ModelEntry, pool, opacity: float) -> None:
    """One picture from the browser's camera, segmented (works wherever `st.camera_input` does)."""
    shot = st.camera_input("Take a snapshot", key="video_snapshot")
    if shot is None:
        return
    try:
        item = db.decode_input(shot.getvalue(), "snapshot.jpg")
    except ImageError as exc:
        st.error(db.plain(str(exc)))
        return
    predictor = _predictor(entry, pool)
    if predictor is None:
        return
    try:
        timed = predictor.submit(item.image).result(timeout=FRAME_TIMEOUT_S)
    except FutureTimeout:
        st.error(f"The model's queue did not answer within {FRAME_TIMEOUT_S} s; try again.")
        return
    shown = db.shrink(item.image)
    mask = predictor.segmenter.full_mask(timed.value.input_probabilities, shown.size)[0]
    st.image(overlay(shown, mask, entry.classes, opacity),
             caption=f"{entry.title} · {timed.share_seconds * 1000:.0f} ms in the network",
             width="stretch")
