"""The result JSON between Ray Serve and its clients: exact arrays, the dashboard's kept result."""
from __future__ import annotations

import json

import numpy as np
import pytest

from segdemo.batching import shown_prediction
from segdemo.classes import PET_CLASSES
from segdemo.inference import Prediction
from segdemo.wire import WireError, decode_array, encode_array, result_json, shown_from_json


def prediction(width: int = 90, height: int = 60, seed: int = 0) -> Prediction:
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet(np.ones(3), (16, 16)).astype(np.float32)
    mask = rng.integers(0, 3, (height, width), dtype=np.uint8)
    return Prediction(mask, rng.random((height, width), dtype=np.float32), probabilities, 0.0123)


@pytest.mark.parametrize("dtype", ["uint8", "float16", "float32"])
def test_arrays_travel_exactly(dtype):
    array = (np.random.default_rng(1).random((7, 5, 3)) * 200).astype(dtype)
    back = decode_array(json.loads(json.dumps(encode_array(array))))
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_malformed_arrays_and_results_are_named():
    good = encode_array(np.zeros((2, 2), np.uint8))
    for bad in ({**good, "data": "!!"}, {**good, "shape": [3, 3]}, {**good, "dtype": "object"},
                {"shape": [1]}):
        with pytest.raises(WireError, match="malformed"):
            decode_array(bad)
    with pytest.raises(ValueError, match="float64"):
        encode_array(np.zeros(2))
    plain = result_json("unet", prediction(), PET_CLASSES, {})
    with pytest.raises(WireError, match="display_side"):
        shown_from_json(plain)


def test_the_dashboard_gets_what_it_would_keep_in_process():
    result = prediction()
    sent = json.loads(json.dumps(result_json("unet", result, PET_CLASSES, {"batch_size": 3},
                                             probabilities="float32", display_side=40)))
    assert sent["classes"] == [c.name for c in PET_CLASSES]
    assert (sent["width"], sent["height"], sent["timings"]) == (90, 60, {"batch_size": 3})
    assert sum(sent["shares"].values()) == pytest.approx(1.0)
    here, there = shown_prediction(result, 3, 40), shown_from_json(sent)
    for field in ("mask", "confidence", "shares", "input_probabilities"):
        np.testing.assert_array_equal(getattr(there, field), getattr(here, field))
        assert getattr(there, field).dtype == getattr(here, field).dtype
    assert (there.size, there.mean_confidence, there.seconds) == \
        (here.size, here.mean_confidence, here.seconds)
    assert there.mask.shape == (27, 40)


def test_probabilities_are_optional_and_can_be_half_precision():
    result = prediction()
    assert "probabilities" not in result_json("unet", result, PET_CLASSES, {})
    half = result_json("unet", result, PET_CLASSES, {}, probabilities="float16")
    np.testing.assert_allclose(decode_array(half["probabilities"]), result.input_probabilities,
                               atol=1e-3)
    with pytest.raises(ValueError, match="float16 or float32"):
        result_json("unet", result, PET_CLASSES, {}, probabilities="float64")
