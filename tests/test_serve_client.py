"""The dashboard's HTTP client without a server: errors that name the endpoint, and full-size
masks rebuilt in NumPy as the in-process Segmenter rebuilds them."""
from __future__ import annotations

import io
import socket

import numpy as np
import pytest
from PIL import Image

from segdemo.artifacts import ModelLoadError
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
