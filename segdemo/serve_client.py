"""The HTTP client of `python -m segdemo serve` (`segdemo.serving`): plain `urllib`, so the
dashboard can send its inference to a Ray Serve endpoint without Ray, TensorFlow or the models in
its own process.

`RemotePredictor` is a `segdemo.batching.Predictor`, the one interface the dashboard uses for the
in-process queue as well: `submit(photo)` returns a future of `Timed(ShownPrediction)` with the
same arrays the in-process path keeps (`segdemo.wire.shown_from_json`). The server batches photos
across clients; this side only keeps `workers` requests in flight per model.
"""
from __future__ import annotations

import io
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np
from PIL import Image

from segdemo.artifacts import ModelLoadError
from segdemo.batching import PredictionFuture, Timed, shown_prediction
from segdemo.classes import ClassInfo
from segdemo.errors import SegDemoError
from segdemo.images import bilinear
from segdemo.wire import shown_from_json

TIMEOUT_S = 120.0  # one request, including its wait in the server's queue
LIST_TIMEOUT_S = 5.0


class ServeRequestError(SegDemoError):
    """The server answered with an error (`status`: the HTTP code; the message is its reason) or
    could not be reached (`status` None)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ServeClient:
    """Requests to one SegDemo serve endpoint (`url`: `http://host:port`)."""

    def __init__(self, url: str, timeout_s: float = TIMEOUT_S):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def models(self, timeout_s: float = LIST_TIMEOUT_S) -> dict[str, dict]:
        """Model id -> card, as the endpoint serves them."""
        body, _ = self._request("GET", "/v1/models", timeout_s=timeout_s)
        try:
            return {m["id"]: m["card"] for m in json.loads(body)["models"]}
        except (ValueError, KeyError, TypeError) as exc:
            raise ServeRequestError(f"{self.url}/v1/models did not list models ({exc}).") from None

    def segment(self, model: str, image: bytes, accept: str = "application/json",
                **query: Any) -> tuple[bytes, dict]:
        """The raw answer (JSON or PNG bytes) and its headers for one image file."""
        query = {k: v for k, v in query.items() if v is not None}
        path = f"/v1/models/{urllib.parse.quote(model)}:segment"
        if query:
            path += "?" + urllib.parse.urlencode(query)
        return self._request("POST", path, image, {"Accept": accept,
                                                   "Content-Type": "application/octet-stream"})

    def segment_json(self, model: str, image: bytes, **query: Any) -> dict:
        return json.loads(self.segment(model, image, **query)[0])

    def _request(self, method: str, path: str, data: bytes | None = None,
                 headers: dict | None = None, timeout_s: float | None = None) -> tuple[bytes, dict]:
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s or self.timeout_s) as answer:
                return answer.read(), dict(answer.headers)
        except urllib.error.HTTPError as exc:
            raise ServeRequestError(f"{self.url} answered {exc.code}: {_reason(exc)}",
                                    exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServeRequestError(f"the serve endpoint {self.url} cannot be reached ({reason}); "
                                    "is `python -m segdemo serve` running there?") from None


def _reason(error: urllib.error.HTTPError) -> str:
    body = error.read()
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace") or str(error.reason)


class RemoteModel:
    """What the dashboard needs of a `Segmenter` besides inference, for a model served elsewhere:
    its card and the full-resolution mask rebuilt from kept input-size probabilities (a download),
    in NumPy with the interpolation `tf.image.resize` uses (`images.bilinear`)."""

    def __init__(self, model_id: str, card: dict):
        self.arch_id = model_id
        self.card = card
        self.classes = [ClassInfo.from_json(c) for c in card["classes"]]
        self.input_size: tuple[int, int] = tuple(card["input_size"])

    def full_mask(self, input_probabilities: np.ndarray,
                  size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        width, height = size
        resized = bilinear(input_probabilities, (height, width))
        return resized.argmax(axis=-1).astype(np.uint8), resized.max(axis=-1)


class RemotePredictor:
    """A `Predictor` whose network runs on the serve endpoint: each photo is sent losslessly (PNG)
    and comes back as the dashboard's `ShownPrediction`. `Timed.network_seconds` and `batch_size`
    are the server's; `queue_seconds` is everything else the photo waited (encoding, transfer,
    the server's queue)."""

    def __init__(self, client: ServeClient, model_id: str, card: dict, *, tta: str = "none",
                 display_side: int = 1024, workers: int = 8):
        self.client, self.model_id, self.tta, self.display_side = client, model_id, tta, display_side
        self.segmenter = RemoteModel(model_id, card)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=f"segdemo-remote-{model_id}")

    def submit(self, image: Image.Image) -> PredictionFuture:
        future = PredictionFuture(lambda: 0)  # sent at once; the server's queue is not visible
        future.set_running_or_notify_cancel()
        self._pool.submit(self._run, image, future)
        return future

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _run(self, image: Image.Image, future: PredictionFuture) -> None:
        start = time.perf_counter()
        try:
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", compress_level=1)
            result = self.client.segment_json(self.model_id, buffer.getvalue(),
                                              probabilities="float32",
                                              display_side=self.display_side, tta=self.tta)
            shown = shown_from_json(result)
            network = result["timings"]["network_ms"] / 1000
            timed = Timed(shown, max(0.0, time.perf_counter() - start - network), network,
                          int(result["timings"]["batch_size"]))
        except Exception as exc:  # noqa: BLE001 - the caller sees it on the future
            future.set_exception(exc)
        else:
            future.set_result(timed)


class RemoteEnsemble:
    """The ensemble row on the endpoint: each member's copy of the photo goes to its served model
    (batched there with everyone's photos), and their input-size probabilities are averaged here
    at the largest member's input size, as `segdemo.ensemble.Ensemble` does in process, so the
    Streamlit process still needs no TensorFlow. A member's failure fails the row; the members
    are borrowed (the dashboard passes the clients its single-model rows use)."""

    def __init__(self, members: Sequence[RemotePredictor], display_side: int = 1024):
        if len(members) < 2:
            raise ValueError("An ensemble needs at least two models.")
        self.members, self.display_side = list(members), display_side
        largest = max(members, key=lambda m: m.segmenter.input_size[0] * m.segmenter.input_size[1])
        ids = "+".join(m.model_id for m in members)
        self.segmenter = RemoteModel(f"ensemble({ids})", largest.segmenter.card)

    def submit(self, image: Image.Image) -> PredictionFuture:
        parts = [member.submit(image) for member in self.members]
        future = PredictionFuture(lambda: max((p.ahead() or 0) for p in parts))
        future.set_running_or_notify_cancel()
        remaining, lock = [len(parts)], threading.Lock()

        def one_done(_: Future) -> None:
            with lock:  # the parts finish in different threads
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                self._combine(parts, future)

        for part in parts:
            part.add_done_callback(one_done)
        return future

    def close(self) -> None:
        """Nothing of its own to stop: the members are their own rows' clients."""

    def _combine(self, parts: list[Future], future: PredictionFuture) -> None:
        try:
            timed = [part.result() for part in parts]
            height, width = self.segmenter.input_size
            total = None
            for t in timed:
                probabilities = t.value.input_probabilities
                if probabilities.shape[:2] != (height, width):
                    probabilities = bilinear(probabilities, (height, width))
                total = probabilities if total is None else total + probabilities
            average = (total / len(timed)).astype(np.float32)
            mask, confidence = self.segmenter.full_mask(average, timed[0].value.size)
            prediction = SimpleNamespace(mask=mask, confidence=confidence, seconds=sum(
                t.value.seconds for t in timed), input_probabilities=average)
            shown = shown_prediction(prediction, len(self.segmenter.classes), self.display_side)
            result = Timed(shown, max(t.queue_seconds for t in timed),
                           sum(t.network_seconds for t in timed), min(t.batch_size for t in timed))
        except Exception as exc:  # noqa: BLE001 - the caller sees it on the future
            future.set_exception(exc)
        else:
            future.set_result(result)


def remote_predictor(url: str, model_id: str, tta: str = "none",
                     display_side: int = 1024) -> RemotePredictor:
    """A predictor for `model_id` on the endpoint at `url`; `ModelLoadError` (the dashboard shows
    it as the model being unavailable) when the endpoint is down or does not serve that model."""
    client = ServeClient(url)
    try:
        cards = client.models()
    except ServeRequestError as exc:
        raise ModelLoadError(str(exc)) from None
    if model_id not in cards:
        raise ModelLoadError(f"{url} does not serve {model_id} (it serves "
                             f"{', '.join(cards) or 'nothing'}); start it with "
                             f"`python -m segdemo serve --models {model_id} ...`.")
    return RemotePredictor(client, model_id, cards[model_id], tta=tta, display_side=display_side)
