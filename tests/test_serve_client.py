"""The dashboard's HTTP client without a server: errors that name the endpoint, and full-size
masks rebuilt in NumPy as the in-process Segmenter rebuilds them."""
from __future__ import annotations

import io
import socket

import numpy as np
import pytest
from PIL import Image

from segdemo.artifacts import ModelLoadError
from segdemo.batching import PredictionFuture
from segdemo.inference import Segmenter
from segdemo.serve_client import RemoteModel, ServeClient, ServeRequestError, remote_predictor
from test_dashboard import photo_bytes, write_tiny_model


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_endpoint_is_named_with_what_to_do():
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(ServeRequestError, match="cannot be reached.*segdemo serve") as caught:
        ServeClient(url).models()
    assert caught.value.status is None
    with pytest.raises(ModelLoadError, match=url):
        remote_predictor(url, "unet")


def test_full_size_masks_match_the_segmenter(tmp_path):
    segmenter = Segmenter.load(write_tiny_model(tmp_path, "unet"))
    remote = RemoteModel("unet", segmenter.card)
    assert remote.input_size == segmenter.input_size
    assert [c.name for c in remote.classes] == [c.name for c in segmenter.classes]
    for seed, size in enumerate([(97, 61), (33, 120)]):
        image = Image.open(io.BytesIO(photo_bytes(*size, seed=seed)))
        prediction = segmenter.predict(image)
        mask, confidence = remote.full_mask(prediction.input_probabilities, size)
        assert mask.shape == prediction.mask.shape and mask.dtype == np.uint8
        # An untrained model's classes nearly tie in places; float rounding flips a few of those.
        assert (mask == prediction.mask).mean() > 0.998
        np.testing.assert_allclose(confidence, prediction.confidence, atol=1e-5)


class _Member:
    """A served model as `RemoteEnsemble` sees one (`model_id`, `segmenter`, `submit`), answered
    by the in-process queue: the endpoint's `shown_from_json` gives the same arrays."""

    def __init__(self, segmenter: Segmenter):
        from segdemo.batching import BatchingPredictor, shown_prediction

        self.model_id, self.segmenter = segmenter.arch_id, RemoteModel(segmenter.arch_id,
                                                                       segmenter.card)
        self._queue = BatchingPredictor(segmenter, finish=lambda p: shown_prediction(p, 3, 64))
        self.submit, self.close = self._queue.submit, self._queue.close


def test_the_remote_ensemble_averages_as_the_in_process_ensemble(tmp_path):
    import json

    from segdemo.ensemble import Ensemble
    from segdemo.serve_client import RemoteEnsemble

    small = Segmenter.load(write_tiny_model(tmp_path, "unet_mobilenetv2"))
    card_path = write_tiny_model(tmp_path, "unet") / "card.json"
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**card, "input_size": [48, 48]}))  # the larger member
    large = Segmenter.load(card_path.parent)
    local = Ensemble([small, large])
    members = [_Member(small), _Member(large)]
    remote = RemoteEnsemble(members, display_side=64)
    assert remote.segmenter.input_size == (48, 48)
    try:
        for seed, size in enumerate([(97, 61), (40, 120)]):
            image = Image.open(io.BytesIO(photo_bytes(*size, seed=seed)))
            expected = local.predict(image)
            result = remote.submit(image).result(timeout=60)
            shown = result.value
            np.testing.assert_allclose(shown.input_probabilities, expected.input_probabilities,
                                       atol=1e-5)
            assert shown.size == size and max(shown.mask.shape) <= 64
            mask, _ = remote.segmenter.full_mask(shown.input_probabilities, size)
            assert (mask == expected.mask).mean() > 0.998  # near-ties of an untrained model
            counts = np.bincount(expected.mask.reshape(-1), minlength=3) / expected.mask.size
            np.testing.assert_allclose(shown.shares, counts, atol=0.002)
            assert result.batch_size == 1 and result.network_seconds > 0
    finally:
        for member in members:
            member.close()


def test_a_failing_member_fails_the_ensemble_row(tmp_path):
    from segdemo.serve_client import RemoteEnsemble

    good = _Member(Segmenter.load(write_tiny_model(tmp_path, "unet")))
    broken = _Member(Segmenter.load(write_tiny_model(tmp_path, "unet_mobilenetv2")))
    failed = PredictionFuture()
    failed.set_exception(ServeRequestError("http://x answered 503: overloaded", 503))
    broken.submit = lambda image: failed
    remote = RemoteEnsemble([good, broken])
    try:
        future = remote.submit(Image.open(io.BytesIO(photo_bytes(40, 30))))
        with pytest.raises(ServeRequestError, match="503: overloaded"):
            future.result(timeout=60)
    finally:
        good.close()
        broken.close()
