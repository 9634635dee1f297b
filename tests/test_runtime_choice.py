"""benchmark --fidelity scores the runtimes into runtime.json; the choice is the fastest faithful."""
import json
import shutil

import pytest

from segdemo.cli import main
from segdemo.runtime_choice import choose, measure_fidelity, record_choice, split_variant


@pytest.fixture()
def folder(tiny_model_dir, tmp_path):
    shutil.copytree(tiny_model_dir, tmp_path / "unet")
    return tmp_path / "unet"


def test_fidelity_then_choice_round_trip(folder):
    from segdemo.inference import Segmenter

    record = measure_fidelity(folder, names=("tf", "onnx", "litert"), log=lambda line: None)
    scores = record["fidelity"]["runtimes"]
    assert scores.keys() == {"onnx", "litert"}
    assert "synthetic" in record["fidelity"]["checked_on"]
    for row in scores.values():
        assert row["agreement"] > 0.999 and row["faithful"]
    segmenter = Segmenter.load(folder, runtime="tf")
    timings = {"tf": {"p50_ms": 30.0}, "onnx": {"p50_ms": 20.0}, "litert": {"p50_ms": 25.0}}
    written = record_choice(folder, segmenter.model, segmenter.card, timings)
    assert written["chosen"]["runtime"] == "onnx" and "20.0 ms" in written["chosen"]["why"]
    assert written["fidelity"] == record["fidelity"]  # kept for these weights
    assert Segmenter.load(folder).runtime == "onnx"  # what `auto` now runs


def test_unfaithful_or_unchecked_variants_are_not_picked():
    record = {"fidelity": {"runtimes": {
        "onnx-int8": {"agreement": 0.96, "delta_miou": -0.01, "faithful": False},
        "litert": {"agreement": 1.0, "delta_miou": 0.0, "faithful": True}}}}
    timings = {"tf": {"p50_ms": 30.0}, "onnx-int8": {"p50_ms": 10.0},
               "litert": {"p50_ms": 28.0}, "onnx": {"p50_ms": 5.0}}
    chosen = choose(record, timings)
    assert chosen["variant"] == "litert" and chosen["quantize"] is None
    assert choose({}, timings)["variant"] == "tf"
    assert split_variant("litert-int8") == ("litert", "int8")


def test_cli_fidelity(folder, capsys):
    assert main(["benchmark", "--fidelity", "--weights", str(folder.parent), "--models", "unet"]) == 0
    record = json.loads((folder / "runtime.json").read_text())
    assert record["fidelity"]["runtimes"].keys() >= {"onnx", "litert"}
    assert "masks agree on" in capsys.readouterr().out
