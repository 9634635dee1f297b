"""Serving many sessions from one process: one queue per model that batches what is waiting.

Why: Streamlit runs every browser session's script in its own thread. When each of them called the
network itself, 8 sessions on 2 cores ran 16 networks at once and TensorFlow's thread pools fought
over the cores: a ~40 ms DeepLabV3+ call took 13-18 s. Here a session only `submit`s its photo; one
worker per model takes what is waiting (up to `max_batch` photos, waiting at most `max_wait_s` for
more) and runs it as one `predict_batch` call, and process-wide `ComputeSlots` let only as many
networks run at once as the cores can serve, each with its share of TensorFlow's threads.

`Predictor` is the one interface the dashboard uses (`submit(image) -> PredictionFuture`), so a
client of a remote server (Ray Serve, later) can stand in for the local `BatchingPredictor`.
Results carry their queue wait and network time separately (`Timed`), since the page shows both.

Memory stays flat over long sessions because nothing full-resolution outlives the worker:
`shown_prediction` keeps a display-sized mask and confidence map plus the input-size probabilities
(from which a download rebuilds the full-resolution mask exactly), and `ByteLRU` bounds the caches
by the bytes they hold, not their entry count: one 12-megapixel photo weighs as much as a hundred
small ones (its full-resolution mask and confidence map alone are 60 MB).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
from PIL import Image

from segdemo.images import resize_nearest

T = TypeVar("T")
P = TypeVar("P")
LOG = logging.getLogger(__name__)
# A queue's batching in the dashboard process: up to 8 photos, gathered for at most 5 ms (what a
# lone visitor pays at most for the chance of sharing a call).
DEFAULT_MAX_BATCH, DEFAULT_MAX_WAIT_S = 8, 0.005


@dataclass(frozen=True)
class Timed(Generic[T]):
    """A result and where its time went: waiting in the queue (including for a compute slot) and
    the network call of its batch (shared by the `batch_size` photos in it)."""

    value: T
    queue_seconds: float
    network_seconds: float
    batch_size: int

    @property
    def share_seconds(self) -> float:
        """This photo's share of its batch's network call."""
        return self.network_seconds / max(self.batch_size, 1)


class PredictionFuture(Future):
    """A `Future[Timed]` that can also say how many photos are queued ahead of it."""

    def __init__(self, ahead: Callable[[], int | None] = lambda: None):
        super().__init__()
        self._ahead = ahead

    def ahead(self) -> int | None:
        """Photos waiting before this one (0 once its batch runs); None when unknown (still
        loading the model, or a predictor that cannot tell)."""
        return None if self.done() else self._ahead()


class Predictor(Protocol):
    """What the dashboard needs from a model server: queue a photo, get its result later."""

    def submit(self, image: Image.Image) -> PredictionFuture: ...

    def close(self) -> None: ...


class BatchSegmenter(Protocol):
    """The part of `segdemo.inference.Segmenter` the queue uses."""

    def predict_batch(self, images: Sequence[Image.Image]) -> list: ...


# ----------------------------------------------------------------------------- threads


class ComputeSlots:
    """How many network calls may run at once in this process (shared by all queues).

    On a CPU one call already uses every core through TensorFlow's intra-op threads, so two at once
    only slow each other down; `slots` > 1 suits accelerators that overlap work.
    """

    def __init__(self, slots: int = 1):
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}.")
        self.slots = slots
        self._semaphore = threading.BoundedSemaphore(slots)

    def __enter__(self) -> "ComputeSlots":
        self._semaphore.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self._semaphore.release()


def cpu_count() -> int:
    """Cores this process may use (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def configure_threads(slots: int = 1, cores: int | None = None) -> dict:
    """Size TensorFlow's thread pools for `slots` concurrent network calls on `cores` cores:
    intra-op (threads inside one op) = cores / slots, inter-op (ops run side by side) = slots.

    Must run before TensorFlow executes its first op; afterwards TensorFlow refuses, and the sizes
    already in effect are returned with `applied: False`.
    """
    import tensorflow as tf

    cores = cores or cpu_count()
    intra, inter = max(1, cores // slots), max(1, slots)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
        applied = True
    except RuntimeError:  # the runtime is already initialised (e.g. under pytest)
        applied = False
        intra = tf.config.threading.get_intra_op_parallelism_threads()
        inter = tf.config.threading.get_inter_op_parallelism_threads()
    return {"cores": cores, "slots": slots, "intra_op": intra, "inter_op": inter,
            "applied": applied}


# ----------------------------------------------------------------------------- the queue


@dataclass
class _Request:
    image: Image.Image
    future: PredictionFuture
    seq: int
    submitted: float


class BatchingPredictor:
    """A local `Predictor`: a worker thread that batches waiting photos into one network call.

    A photo that makes the batch call fail is isolated by retrying the batch one photo at a time,
    so only its own future gets the exception. `finish` (run in the worker, per photo, outside the
    compute slot) turns each prediction into what callers keep, so that full-resolution arrays
    never outlive the worker.
    """

    def __init__(self, segmenter: BatchSegmenter, *, max_batch: int = DEFAULT_MAX_BATCH,
                 max_wait_s: float = DEFAULT_MAX_WAIT_S,
                 slots: ComputeSlots | None = None, finish: Callable[[Any], Any] | None = None,
                 name: str = "model"):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}.")
        self.segmenter = segmenter
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.batches: deque[int] = deque(maxlen=256)  # recent batch sizes, for tests and stats
        self._slots = slots or ComputeSlots(1)
        self._finish = finish
        self._queue: deque[_Request] = deque()
        self._wake = threading.Condition()
        self._submitted = 0  # sequence number of the latest submission
        self._taken = 0      # sequence number of the latest request taken into a batch
        self._closed = False
        self._worker = threading.Thread(target=self._run, name=f"segdemo-queue-{name}",
                                        daemon=True)
        self._worker.start()

    def submit(self, image: Image.Image) -> PredictionFuture:
        """Queue one photo; the future resolves to `Timed(finish(prediction), ...)`."""
        with self._wake:
            if self._closed:
                raise RuntimeError("this predictor is closed.")
            self._submitted += 1
            seq = self._submitted
            future = PredictionFuture(lambda: max(0, seq - self._taken - 1))
            self._queue.append(_Request(image, future, seq, time.perf_counter()))
            self._wake.notify()
        return future

    def waiting(self) -> int:
        """Photos queued and not yet taken into a batch."""
        with self._wake:
            return len(self._queue)

    def close(self) -> None:
        """Stop the worker after the photos already queued."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._worker.join()

    def _next_batch(self) -> list[_Request] | None:
        with self._wake:
            while not self._queue:
                if self._closed:
                    return None
                self._wake.wait()
            # Wait briefly for company, counted from the oldest photo's arrival: one that already
            # waited through the previous batch leaves at once.
            deadline = self._queue[0].submitted + self.max_wait_s
            while len(self._queue) < self.max_batch and not self._closed:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._wake.wait(remaining)
            batch = []
            while self._queue and len(batch) < self.max_batch:
                request = self._queue.popleft()
                self._taken = request.seq
                if request.future.set_running_or_notify_cancel():  # skip abandoned requests
                    batch.append(request)
            return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            if batch:
                self._serve(batch)

    def _serve(self, batch: list[_Request]) -> None:
        with self._slots:
            start = time.perf_counter()
            outcomes = predict_isolated(self.segmenter, [r.image for r in batch])
        self.batches.append(len(batch))
        for request, (output, error, seconds, size) in zip(batch, outcomes):
            if error is None and self._finish is not None:
                try:
                    output = self._finish(output)
                except Exception as exc:  # noqa: BLE001 - goes to the one caller it concerns
                    error = exc
            if error is not None:
                request.future.set_exception(error)
            else:
                request.future.set_result(Timed(output, start - request.submitted, seconds, size))


Outcome = tuple[Any, Exception | None, float, int]  # (output, error, network seconds, batch size)


def predict_isolated(segmenter: BatchSegmenter, images: Sequence[Image.Image]) -> list[Outcome]:
    """One `predict_batch` call for `images`; if it fails, the photos one at a time, so that only
    the photo that made it fail gets an error. Shared by the in-process queue and Ray Serve."""
    start = time.perf_counter()
    try:
        outputs = segmenter.predict_batch(images)
    except Exception as exc:  # noqa: BLE001 - find the photo that failed, serve the others
        if len(images) == 1:
            return [(None, exc, time.perf_counter() - start, 1)]
        LOG.info("a batch of %d failed; retrying one photo at a time", len(images))
        return [_single(segmenter, image) for image in images]
    seconds = time.perf_counter() - start
    return [(output, None, seconds, len(images)) for output in outputs]


def _single(segmenter: BatchSegmenter, image: Image.Image) -> Outcome:
    start = time.perf_counter()
    try:
        return segmenter.predict_batch([image])[0], None, time.perf_counter() - start, 1
    except Exception as exc:  # noqa: BLE001 - handed to this photo's caller
        return None, exc, time.perf_counter() - start, 1


def chain(loading: Future, send: Callable[[Any], PredictionFuture]) -> PredictionFuture:
    """A future for a photo whose predictor is still loading: once `loading` gives the predictor,
    `send(predictor)` queues the photo; a failed load fails this future with the load's error."""
    inner: list[PredictionFuture] = []
    outer = PredictionFuture(lambda: inner[0].ahead() if inner else None)

    def copy(source: Future) -> None:
        if source.cancelled():
            outer.cancel()
        elif source.exception() is not None:
            outer.set_exception(source.exception())
        else:
            outer.set_result(source.result())

    def loaded(done: Future) -> None:
        if done.exception() is not None:
            outer.set_exception(done.exception())
            return
        try:
            queued = send(done.result())
        except Exception as exc:  # noqa: BLE001 - the caller sees it on the future
            outer.set_exception(exc)
            return
        inner.append(queued)
        queued.add_done_callback(copy)

    loading.add_done_callback(loaded)
    return outer


class PredictorPool:
    """One predictor per model in the process, loaded once in a background thread on first use
    (the app asks for the default model at start-up, so the first photo finds it ready) and kept;
    a failed load is remembered with its error."""

    def __init__(self, load: Callable[[Any], Any]):
        self._load = load
        self._lock = threading.Lock()
        self._loading: dict[Hashable, Future] = {}

    def get(self, key: Hashable, source: Any) -> Future:
        """Future of the predictor for `key`, loaded from `source` (e.g. a model folder)."""
        with self._lock:
            future = self._loading.get(key)
            if future is None:
                future = self._loading[key] = Future()
                threading.Thread(target=self._run, args=(future, source), daemon=True,
                                 name=f"segdemo-load-{key}").start()
        return future

    def ready(self, key: Hashable) -> Any | None:
        """The loaded predictor for `key`, or None (not asked for, loading, or failed)."""
        future = self._loading.get(key)
        if future is None or not future.done() or future.exception() is not None:
            return None
        return future.result()

    def _run(self, future: Future, source: Any) -> None:
        try:
            future.set_result(self._load(source))
        except Exception as exc:  # noqa: BLE001 - every caller of this model sees it
            future.set_exception(exc)


# ----------------------------------------------------------------------------- what is kept


@dataclass(frozen=True)
class ShownPrediction:
    """What the page keeps of a prediction: at most a few MB, whatever the photo's size."""

    mask: np.ndarray                 # (h, w) uint8 labels, longest side <= the display side
    confidence: np.ndarray           # (h, w) float16, highest class probability, same size
    shares: np.ndarray               # (C,) fraction of the full-resolution mask per class
    mean_confidence: float           # over the full-resolution confidence map
    input_probabilities: np.ndarray  # (h, w, C) float32 at the model's input size
    size: tuple[int, int]            # the photo's original (width, height)
    seconds: float                   # time inside the segmenter for this photo (its batch share)


def display_shape(size: tuple[int, int], side: int) -> tuple[int, int]:
    """(height, width) of a (width, height) picture shrunk to `side` at most (never enlarged)."""
    width, height = size
    scale = min(1.0, side / max(width, height))
    return max(1, round(height * scale)), max(1, round(width * scale))


def shown_prediction(prediction: Any, num_classes: int, side: int) -> ShownPrediction:
    """Shrink a `segdemo.inference.Prediction` to what the page shows, measuring class shares and
    mean confidence on the full-resolution mask first (nearest neighbour: labels stay labels)."""
    mask, confidence = prediction.mask, prediction.confidence
    shape = display_shape((mask.shape[1], mask.shape[0]), side)
    counts = np.bincount(mask.reshape(-1), minlength=num_classes)[:num_classes]
    return ShownPrediction(
        mask=resize_nearest(mask, shape),
        confidence=resize_nearest(confidence, shape).astype(np.float16),
        shares=counts / max(mask.size, 1),
        mean_confidence=float(confidence.mean()) if confidence.size else 1.0,
        input_probabilities=np.array(prediction.input_probabilities, np.float32),  # not a view of the batch
        size=(mask.shape[1], mask.shape[0]),
        seconds=float(prediction.seconds))


# ----------------------------------------------------------------------------- caches


def nbytes(value: Any) -> int:
    """Approximate bytes held by a value: NumPy arrays, PIL images, bytes, and containers or
    dataclasses of them (small scalars count 0; what matters are the pixel buffers)."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, Image.Image):
        return value.width * value.height * len(value.getbands())
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return sum(nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    if isinstance(value, Timed):
        return nbytes(value.value)
    if is_dataclass(value) and not isinstance(value, type):
        return sum(nbytes(getattr(value, f.name)) for f in fields(value))
    return 0


class ByteLRU(Generic[T]):
    """A thread-safe LRU cache bounded by the bytes of its values (`nbytes`), not their count.

    A value larger than the whole budget is not stored (the caller still has it).
    """

    def __init__(self, max_bytes: int, size_of: Callable[[Any], int] = nbytes):
        self.max_bytes = int(max_bytes)
        self._size_of = size_of
        self._items: OrderedDict[Hashable, tuple[T, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def get(self, key: Hashable) -> T | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: Hashable, value: T) -> None:
        size = self._size_of(value)
        with self._lock:
            self._drop(key)
            if size > self.max_bytes:
                return
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._items)))

    def discard(self, match: Callable[[Hashable], bool]) -> int:
        """Drop every entry whose key satisfies `match`; returns how many."""
        with self._lock:
            keys = [k for k in self._items if match(k)]
            for key in keys:
                self._drop(key)
        return len(keys)

    def _drop(self, key: Hashable) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self._bytes -= item[1]


class ResultStore:
    """Finished results by key in a `ByteLRU`, plus the requests still running: a rerun, or a second
    session asking for the same (model, photo), joins the running request instead of queuing the
    photo again. Failures are not kept, so a later rerun retries."""

    def __init__(self, max_bytes: int):
        self.cache: ByteLRU[Timed] = ByteLRU(max_bytes)
        self._running: dict[Hashable, Future] = {}
        self._lock = threading.Lock()

    def cached(self, key: Hashable) -> Timed | None:
        return self.cache.get(key)

    def request(self, key: Hashable, start: Callable[[], Future]) -> Future:
        """The finished result as a done future, the running request, or `start()`'s new one."""
        with self._lock:
            hit = self.cache.get(key)
            if hit is not None:
                done: Future = Future()
                done.set_result(hit)
                return done
            running = self._running.get(key)
            if running is not None:
                return running
            future = self._running[key] = start()
        future.add_done_callback(lambda f: self._finished(key, f))
        return future

    def discard(self, match: Callable[[Hashable], bool]) -> int:
        """Forget finished results whose key satisfies `match` (a removed upload's)."""
        return self.cache.discard(match)

    def _finished(self, key: Hashable, future: Future) -> None:
        with self._lock:
            if self._running.get(key) is future:
                del self._running[key]
            if not future.cancelled() and future.exception() is None:
                self.cache.put(key, future.result())
