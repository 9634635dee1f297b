"""The inference queue and the byte-bounded caches (`segdemo.batching`), with a fake segmenter whose
calls can be held open, so that concurrent sessions' photos pile up deterministically; one test runs
a tiny real model through the queue."""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from segdemo import batching
from segdemo.batching import (BatchingPredictor, ByteLRU, PredictorPool, ResultStore, Timed,
                              chain, nbytes, shown_prediction)

TIMEOUT_S = 30


def photo(tag: int, size: tuple[int, int] = (6, 4)) -> Image.Image:
    """A photo whose pixels carry `tag`, so a result can be traced back to its photo."""
    return Image.new("RGB", size, (tag, 0, 0))


def tag_of(image: Image.Image) -> int:
    return image.getpixel((0, 0))[0]


POISON = 255  # a photo with this tag makes any batch containing it fail


class FakeSegmenter:
    """`predict_batch` returns each photo's tag; the first call can be held until `release()`,
    and a batch containing a POISON photo raises, as a real batch call would."""

    def __init__(self, hold_first: bool = False):
        self.calls: list[list[int]] = []
        self.entered = threading.Event()
        self._gate = threading.Event()
        if not hold_first:
            self._gate.set()

    def release(self) -> None:
        self._gate.set()

    def predict_batch(self, images):
        tags = [tag_of(image) for image in images]
        self.calls.append(tags)
        self.entered.set()
        assert self._gate.wait(TIMEOUT_S)
        if POISON in tags:
            raise ValueError("this photo breaks the network")
        return [f"mask-{t}" for t in tags]


def submit_from_threads(predictor, tags) -> dict[int, Future]:
    """Each photo from its own thread, as separate sessions would."""
    futures: dict[int, Future] = {}
    lock = threading.Lock()

    def session(tag):
        future = predictor.submit(photo(tag))
        with lock:
            futures[tag] = future

    threads = [threading.Thread(target=session, args=(t,)) for t in tags]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return futures


def wait_queued(predictor, count: int) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while predictor.waiting() < count:
        assert time.monotonic() < deadline
        time.sleep(0.001)


@pytest.fixture
def held():
    """A predictor whose first network call blocks until released, and its fake segmenter."""
    fake = FakeSegmenter(hold_first=True)
    predictor = BatchingPredictor(fake, max_batch=8, max_wait_s=0.001)
    yield predictor, fake
    fake.release()
    predictor.close()


def test_concurrent_sessions_share_one_network_call_and_get_their_own_results(held):
    predictor, fake = held
    first = predictor.submit(photo(1))
    assert fake.entered.wait(TIMEOUT_S)  # the worker is inside the first call
    futures = submit_from_threads(predictor, range(2, 8))
    wait_queued(predictor, 6)
    fake.release()
    assert first.result(TIMEOUT_S).value == "mask-1"
    for tag, future in futures.items():
        timed = future.result(TIMEOUT_S)
        assert timed.value == f"mask-{tag}"  # to the session that sent it
        assert timed.batch_size == 6
    assert fake.calls[0] == [1] and sorted(fake.calls[1]) == [2, 3, 4, 5, 6, 7]
    assert list(predictor.batches) == [1, 6]


def test_timings_separate_queue_wait_from_the_network(held):
    predictor, fake = held
    first = predictor.submit(photo(1))
    assert fake.entered.wait(TIMEOUT_S)
    second = predictor.submit(photo(2))
    time.sleep(0.05)  # the second photo waits behind the held call
    fake.release()
    one, two = first.result(TIMEOUT_S), second.result(TIMEOUT_S)
    assert one.network_seconds >= 0.04 and one.queue_seconds < one.network_seconds
    assert two.queue_seconds >= 0.04 and two.network_seconds < two.queue_seconds
    assert two.share_seconds == two.network_seconds  # alone in its batch


def test_queue_position_counts_the_photos_ahead(held):
    predictor, fake = held
    running = predictor.submit(photo(1))
    assert fake.entered.wait(TIMEOUT_S)
    queued = [predictor.submit(photo(t)) for t in (2, 3, 4)]
    assert running.ahead() == 0
    assert [f.ahead() for f in queued] == [0, 1, 2]
    fake.release()
    assert all(f.result(TIMEOUT_S) for f in queued)
    assert queued[-1].ahead() is None  # done: nothing to wait for


def test_a_failing_photo_does_not_break_the_others_in_its_batch(held):
    predictor, fake = held
    predictor.submit(photo(1))
    assert fake.entered.wait(TIMEOUT_S)
    futures = submit_from_threads(predictor, [2, POISON, 3])
    wait_queued(predictor, 3)
    fake.release()
    with pytest.raises(ValueError, match="breaks the network"):
        futures[POISON].result(TIMEOUT_S)
    assert futures[2].result(TIMEOUT_S).value == "mask-2"
    assert futures[3].result(TIMEOUT_S).value == "mask-3"
    assert sorted(fake.calls[1]) == [2, 3, POISON]  # tried together first, then one by one
    assert sorted(map(tuple, fake.calls[2:])) == [(2,), (3,), (POISON,)]
    assert predictor.submit(photo(4)).result(TIMEOUT_S).value == "mask-4"  # worker still alive


def test_batches_never_exceed_max_batch():
    fake = FakeSegmenter(hold_first=True)
    predictor = BatchingPredictor(fake, max_batch=4, max_wait_s=0.001)
    try:
        first = predictor.submit(photo(0))
        assert fake.entered.wait(TIMEOUT_S)
        rest = [predictor.submit(photo(t)) for t in range(1, 11)]
        fake.release()
        assert [f.result(TIMEOUT_S).value for f in [first, *rest]] == [f"mask-{t}" for t in range(11)]
        assert list(predictor.batches) == [1, 4, 4, 2]  # in submission order
    finally:
        predictor.close()


def test_the_worker_waits_a_little_for_company():
    fake = FakeSegmenter()
    predictor = BatchingPredictor(fake, max_batch=8, max_wait_s=0.5)
    try:
        futures = submit_from_threads(predictor, [1, 2, 3])
        assert all(f.result(TIMEOUT_S).batch_size == 3 for f in futures.values())
        assert len(fake.calls) == 1
    finally:
        predictor.close()


def test_finish_runs_per_photo_and_its_failure_stays_with_that_photo():
    def finish(mask: str) -> str:
        if mask == "mask-2":
            raise RuntimeError("cannot shrink")
        return mask.upper()

    predictor = BatchingPredictor(FakeSegmenter(), max_wait_s=0.2, finish=finish)
    try:
        futures = submit_from_threads(predictor, [1, 2])
        assert futures[1].result(TIMEOUT_S).value == "MASK-1"
        with pytest.raises(RuntimeError, match="cannot shrink"):
            futures[2].result(TIMEOUT_S)
    finally:
        predictor.close()


def test_compute_slots_serialise_network_calls_across_models():
    slots = batching.ComputeSlots(1)
    running, overlap = [0], [0]
    lock = threading.Lock()

    class Slow:
        def predict_batch(self, images):
            with lock:
                running[0] += 1
                overlap[0] = max(overlap[0], running[0])
            time.sleep(0.02)
            with lock:
                running[0] -= 1
            return [None] * len(images)

    models = [BatchingPredictor(Slow(), slots=slots, name=str(i)) for i in range(3)]
    try:
        futures = [m.submit(photo(i)) for i in range(4) for m in models]
        for f in futures:
            f.result(TIMEOUT_S)
        assert overlap[0] == 1
    finally:
        for m in models:
            m.close()


def test_closed_predictor_refuses_new_photos():
    predictor = BatchingPredictor(FakeSegmenter())
    predictor.close()
    with pytest.raises(RuntimeError, match="closed"):
        predictor.submit(photo(1))


# ----------------------------------------------------------------------------- loading and chaining


def test_chain_queues_once_loaded_and_passes_a_load_error_on():
    loading: Future = Future()
    predictor = BatchingPredictor(FakeSegmenter())
    try:
        outer = chain(loading, lambda p: p.submit(photo(5)))
        assert outer.ahead() is None and not outer.done()  # still loading
        loading.set_result(predictor)
        assert outer.result(TIMEOUT_S).value == "mask-5"
    finally:
        predictor.close()
    failed: Future = Future()
    failed.set_exception(OSError("weights missing"))
    with pytest.raises(OSError, match="weights missing"):
        chain(failed, lambda p: p.submit(photo(1))).result(TIMEOUT_S)


def test_pool_loads_each_model_once_and_remembers_failures():
    loads = []

    def load(source):
        loads.append(source)
        time.sleep(0.02)
        if source == "broken":
            raise ValueError("corrupt weights")
        return f"predictor for {source}"

    pool = PredictorPool(load)
    futures = [pool.get("a", "folder-a") for _ in range(5)]
    assert {f.result(TIMEOUT_S) for f in futures} == {"predictor for folder-a"}
    assert pool.ready("a") == "predictor for folder-a" and pool.ready("b") is None
    for _ in range(3):
        with pytest.raises(ValueError, match="corrupt"):
            pool.get("b", "broken").result(TIMEOUT_S)
    assert loads == ["folder-a", "broken"] and pool.ready("b") is None


def test_result_store_joins_running_requests_and_keeps_only_successes():
    store = ResultStore(max_bytes=10_000)
    started = []

    def start(value=None, error=None):
        future: Future = Future()
        started.append(future)
        return future

    first = store.request(("m", "photo"), start)
    again = store.request(("m", "photo"), start)  # a rerun, or a second session
    assert again is first and len(started) == 1
    first.set_result(Timed(np.zeros(100, np.uint8), 0.0, 0.01, 1))
    hit = store.request(("m", "photo"), start)
    assert hit.done() and hit.result() is first.result() and len(started) == 1

    failing = store.request(("m", "bad"), start)
    failing.set_exception(ValueError("no"))
    assert store.cached(("m", "bad")) is None
    store.request(("m", "bad"), start)
    assert len(started) == 3  # retried
    assert store.discard(lambda key: key[1] == "photo") == 1 and store.cached(("m", "photo")) is None


# ----------------------------------------------------------------------------- caches


def test_byte_lru_stays_within_its_bound_and_evicts_least_recently_used():
    cache = ByteLRU(max_bytes=1000)
    for i in range(5):
        cache.put(i, np.zeros(300, np.uint8))
        assert cache.bytes <= 1000
    assert list(cache._items) == [2, 3, 4] and cache.bytes == 900
    assert cache.get(2) is not None  # now most recent
    cache.put(5, np.zeros(300, np.uint8))
    assert 3 not in cache and 2 in cache and cache.bytes == 900
    cache.put(6, np.zeros(5000, np.uint8))  # bigger than the whole budget: not kept
    assert 6 not in cache and cache.bytes == 900
    cache.put(2, np.zeros(50, np.uint8))  # replacing an entry re-counts it
    assert cache.bytes == 650
    assert cache.discard(lambda key: key in (2, 4)) == 2 and cache.bytes == 300 and len(cache) == 1


def test_nbytes_counts_pixels_in_arrays_images_and_containers():
    @dataclass
    class Holder:
        array: np.ndarray
        image: Image.Image
        label: str

    holder = Holder(np.zeros((10, 10), np.float32), Image.new("RGB", (20, 10)), "x")
    assert nbytes(holder) == 400 + 600
    assert nbytes((b"abc", [holder], {"k": np.zeros(7, np.uint8)})) == 3 + 1000 + 7
    assert nbytes(Timed(holder, 0, 0, 1)) == 1000


@dataclass
class _FullPrediction:
    mask: np.ndarray
    confidence: np.ndarray
    input_probabilities: np.ndarray
    seconds: float = 0.05


def test_shown_prediction_of_a_12_megapixel_photo_is_small_and_keeps_full_size_facts():
    height, width = 3000, 4000
    mask = np.zeros((height, width), np.uint8)
    mask[:, : width // 4] = 1  # a quarter is class 1
    confidence = np.full((height, width), 0.75, np.float32)
    probabilities = np.random.default_rng(0).random((8, 224, 224, 3), dtype=np.float32)[3]
    full = _FullPrediction(mask, confidence, probabilities)
    assert nbytes(full) > 57 * 2**20  # 60 MB

    shown = shown_prediction(full, num_classes=3, side=1024)
    assert shown.mask.shape == (768, 1024) and shown.confidence.shape == (768, 1024)
    assert shown.size == (width, height)
    np.testing.assert_allclose(shown.shares, [0.75, 0.25, 0.0])
    assert shown.mean_confidence == pytest.approx(0.75)
    assert shown.input_probabilities.base is None  # a copy: the batch it came from can go
    assert nbytes(shown) < 4 * 2**20
    cache = ByteLRU(max_bytes=16 * 2**20)
    for i in range(10):
        cache.put(i, Timed(shown, 0, 0, 1))
    assert cache.bytes <= 16 * 2**20 and len(cache) == min(10, 16 * 2**20 // nbytes(shown))


def test_small_photos_are_not_enlarged_for_display():
    assert batching.display_shape((300, 200), 1024) == (200, 300)
    assert batching.display_shape((2048, 100), 1024) == (50, 1024)


# ----------------------------------------------------------------------------- a real model


def test_a_tiny_real_model_through_the_queue_matches_direct_prediction(tmp_path):
    keras = pytest.importorskip("keras")
    from segdemo.artifacts import write_json
    from segdemo.classes import PET_CLASSES
    from segdemo.inference import Segmenter
    from segdemo.models import build_model

    keras.utils.set_random_seed(1)
    options = {"base_filters": 4, "depth": 2}
    build_model("unet", 3, (32, 32), **options).save_weights(tmp_path / "model.weights.h5")
    write_json(tmp_path / "card.json", {
        "id": "unet", "title": "U-Net", "classes": [c.to_json() for c in PET_CLASSES],
        "input_size": [32, 32], "preprocessing": "unit", "options": options})
    segmenter = Segmenter.load(tmp_path)
    rng = np.random.default_rng(0)
    photos = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
              for w, h in ((40, 30), (64, 64), (17, 50), (90, 20))]
    predictor = BatchingPredictor(segmenter, max_wait_s=0.5,
                                  finish=lambda p: (p, shown_prediction(p, 3, side=32)))
    try:
        futures = [predictor.submit(p) for p in photos]
        results = [f.result(TIMEOUT_S) for f in futures]
    finally:
        predictor.close()
    assert [r.batch_size for r in results] == [4] * 4
    for image, timed in zip(photos, results):
        full, shown = timed.value
        assert shown.size == image.size == full.size
        # The batch gives each photo what a call of its own gives (up to float noise) ...
        direct = segmenter.predict(image)
        np.testing.assert_allclose(shown.input_probabilities, direct.input_probabilities, atol=1e-5)
        # ... and the kept input-size probabilities rebuild the full-resolution mask exactly.
        rebuilt, _ = segmenter.full_mask(shown.input_probabilities, shown.size)
        np.testing.assert_array_equal(rebuilt, full.mask)
