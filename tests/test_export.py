"""Every export format, reloaded and compared with the Keras model; the cache of converted files."""
import json

import numpy as np
import pytest

from fixtures import make_oxford
from segdemo.artifacts import load_model
from segdemo.cli import main
from segdemo.export import (ExportError, convert, converted_file, export_model, model_digest)
from segdemo.images import synthetic_photo, model_input
from segdemo.runtimes import TFRunner, open_file


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    return make_oxford(tmp_path_factory.mktemp("pets"), trainval=6, test=4)


@pytest.fixture(scope="module")
def keras_model(tiny_model_dir):
    return load_model(tiny_model_dir)


def _batch(input_size, count=3):
    return np.stack([model_input(synthetic_photo(90, 70, seed=i), input_size) for i in range(count)])


@pytest.mark.parametrize("fmt", ["saved_model", "tflite", "onnx"])
def test_float_exports_reload_and_match_keras(fmt, tiny_model_dir, dataset_dir, keras_model, tmp_path):
    model, card = keras_model
    out = tmp_path / fmt
    entry = export_model(tiny_model_dir, fmt, out=out, data=dataset_dir, log=lambda line: None)
    written = json.loads((out / "card.json").read_text())
    assert written["id"] == card["id"] and written["classes"] == card["classes"]
    assert written["export"] == entry
    assert entry["format"] == fmt and entry["quantize"] == "float32" and entry["images"] == 4
    assert "test split" in entry["checked_on"]
    assert entry["agreement"] >= 0.999 and abs(entry["delta_miou"]) < 1e-6 and entry["faithful"]
    batch = _batch(card["input_size"])
    reloaded = open_file(fmt, out / entry["file"])(batch)
    np.testing.assert_allclose(reloaded, TFRunner(model, card)(batch), atol=1e-4)


@pytest.mark.parametrize("fmt, quantize, atol", [("tflite", "float16", 2e-2),
                                                 ("tflite", "int8", 0.2), ("onnx", "int8", 0.2)])
def test_quantised_exports_reload_close_to_keras(fmt, quantize, atol, keras_model, dataset_dir,
                                                 tmp_path):
    model, card = keras_model
    calibration = _batch(card["input_size"], count=4)
    path = convert(model, card, fmt, tmp_path / f"model.{fmt}", quantize, calibration)
    batch = _batch(card["input_size"])
    reference = TFRunner(model, card)(batch)
    probs = open_file(fmt, path)(batch)
    assert probs.shape == reference.shape
    assert np.abs(probs - reference).mean() < atol
    assert np.mean(probs.argmax(-1) == reference.argmax(-1)) > 0.8
    if quantize == "float16":  # half the weights' bytes
        assert path.stat().st_size < 0.7 * convert(model, card, fmt, tmp_path / "f32", None).stat().st_size


def test_cli_export_without_data_checks_on_synthetic_photos(tiny_model_dir, tmp_path, capsys):
    assert main(["export", "--model", str(tiny_model_dir), "--format", "tflite", "--quantize",
                 "int8", "--out", str(tmp_path)]) == 0
    entry = json.loads((tmp_path / "card.json").read_text())["export"]
    assert entry["quantize"] == "int8" and "dynamic range" in entry["calibration"]
    assert "synthetic" in entry["checked_on"] and "delta_miou" not in entry
    assert 0.5 < entry["agreement"] <= 1.0
    assert "agree with Keras" in capsys.readouterr().out


def test_unsupported_combinations_are_refused(tiny_model_dir, tmp_path, capsys):
    with pytest.raises(ExportError, match="cannot be quantised"):
        export_model(tiny_model_dir, "onnx", "float16", out=tmp_path)
    with pytest.raises(ExportError, match="Unknown export format"):
        export_model(tiny_model_dir, "coreml", out=tmp_path)
    assert main(["export", "--model", str(tmp_path / "missing"), "--format", "onnx"]) == 2
    assert "card.json is missing" in capsys.readouterr().err


def test_converted_files_are_cached_by_weights(keras_model, converted_files_cache):
    model, card = keras_model
    first = converted_file(model, card, "tflite")
    assert converted_files_cache in first.parents
    built = first.stat().st_mtime_ns
    assert converted_file(model, card, "tflite") == first and first.stat().st_mtime_ns == built
    original = model.weights[-1].numpy()
    try:
        model.weights[-1].assign(original + 1.0)
        assert model_digest(model, card) not in str(first)
        assert converted_file(model, card, "tflite") != first
    finally:
        model.weights[-1].assign(original)
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".")]  # no partial files
