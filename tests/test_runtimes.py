"""Segmenter on ONNX Runtime and LiteRT: masks agree with the Keras model's; `auto` follows
runtime.json and falls back to TensorFlow when the record is absent, stale or names a runtime
whose package is missing; large photos on the fast resize match the exact path."""
import shutil

import numpy as np
import pytest

from segdemo import runtimes
from segdemo.artifacts import write_json
from segdemo.export import model_digest
from segdemo.images import synthetic_photo
from segdemo.inference import Segmenter
from segdemo.runtimes import RuntimeUnavailable, choose
from segdemo.upsample import exact_labels

AGREEMENT = 0.995  # the bar a runtime must pass to be picked (issue 13)


@pytest.fixture(scope="module")
def keras_segmenter(tiny_model_dir):
    return Segmenter.load(tiny_model_dir, runtime="tf")


@pytest.fixture()
def model_copy(tiny_model_dir, tmp_path):
    folder = tmp_path / "unet"
    shutil.copytree(tiny_model_dir, folder)
    return folder


def _photos():
    return [synthetic_photo(w, h, seed=i) for i, (w, h) in enumerate([(120, 90), (64, 64), (33, 71)])]


@pytest.mark.parametrize("runtime", ["onnx", "litert"])
def test_runtime_masks_agree_with_the_keras_model(runtime, tiny_model_dir, keras_segmenter):
    segmenter = Segmenter.load(tiny_model_dir, runtime=runtime)
    assert segmenter.runtime == runtime
    photos = _photos()
    ours = segmenter.predict_batch(photos)  # a batch of 3 through the runtime
    for photo, prediction in zip(photos, ours):
        reference = keras_segmenter.predict(photo)
        assert prediction.mask.shape == reference.mask.shape
        assert np.mean(prediction.mask == reference.mask) >= AGREEMENT
        np.testing.assert_allclose(prediction.input_probabilities, reference.input_probabilities,
                                   atol=1e-4)
    flipped = Segmenter.load(tiny_model_dir, runtime=runtime, tta="flip")
    reference = Segmenter.load(tiny_model_dir, runtime="tf", tta="flip")
    np.testing.assert_allclose(flipped.predict(photos[0]).input_probabilities,
                               reference.predict(photos[0]).input_probabilities, atol=1e-4)


def _record(folder, model, card, runtime="onnx"):
    write_json(folder / runtimes.RECORD_FILE, {
        "digest": model_digest(model, card),
        "chosen": {"runtime": runtime, "quantize": None, "why": "fastest faithful (test)"}})


def test_auto_follows_the_record_and_falls_back(model_copy, keras_segmenter, monkeypatch):
    assert Segmenter.load(model_copy).runtime == "tf"  # no record
    assert "no runtime.json" in Segmenter.load(model_copy).runtime_note
    _record(model_copy, keras_segmenter.model, keras_segmenter.card)
    chosen = Segmenter.load(model_copy)
    assert chosen.runtime == "onnx" and chosen.runtime_note == "fastest faithful (test)"

    real = runtimes.missing_package
    monkeypatch.setattr(runtimes, "missing_package",
                        lambda name: "onnx needs the onnxruntime package" if name == "onnx" else real(name))
    fallback = Segmenter.load(model_copy)
    assert fallback.runtime == "tf" and "onnxruntime" in fallback.runtime_note
    with pytest.raises(RuntimeUnavailable, match="onnxruntime"):
        Segmenter.load(model_copy, runtime="onnx")


def test_a_record_for_other_weights_is_ignored(model_copy, keras_segmenter):
    write_json(model_copy / runtimes.RECORD_FILE, {
        "digest": "0" * 64, "chosen": {"runtime": "litert", "quantize": None}})
    segmenter = Segmenter.load(model_copy)
    assert segmenter.runtime == "tf" and "other weights" in segmenter.runtime_note


def test_choose_checks_names():
    assert choose("tf", None, None)[0] == "tf"
    assert choose("auto", None, None)[0] == "tf"
    with pytest.raises(ValueError, match="Unknown runtime"):
        choose("tensorrt", None, None)


def test_a_missing_package_is_reported_by_name(monkeypatch):
    monkeypatch.setattr(runtimes.importlib.util, "find_spec", lambda name: None)
    assert "ai_edge_litert" in runtimes.missing_package("litert")
    assert runtimes.missing_package("tf") is None
    with pytest.raises(RuntimeUnavailable, match="pip install onnxruntime"):
        runtimes.OnnxRunner("model.onnx")


def test_large_photos_on_the_fast_resize_match_the_exact_path(keras_segmenter):
    photo = synthetic_photo(1600, 1200, seed=5)
    prediction = keras_segmenter.predict(photo)
    expected = exact_labels(prediction.input_probabilities, (1200, 1600))
    assert prediction.mask.shape == (1200, 1600)
    assert np.mean(prediction.mask != expected) <= 1e-5
    assert len(np.unique(expected)) > 1
    assert prediction._confidence is None  # not computed until asked for
    confidence = prediction.confidence
    assert confidence.shape == (1200, 1600) and confidence.min() >= 1 / 3 - 1e-6
