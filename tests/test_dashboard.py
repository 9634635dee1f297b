"""The dashboard's logic without Streamlit; also home of the tiny model folders the app and browser
tests share (built once per process: a weights file per architecture, copied into each folder)."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segdemo import dashboard as db
from segdemo.artifacts import write_json
from segdemo.classes import PET_CLASSES
from segdemo.images import ImageError
from segdemo.metrics import confusion_matrix, scores

# Smallest builds of two registry architectures (unet_mobilenetv2 needs multiples of 32).
TINY = {
    "unet": {"preprocessing": "unit", "options": {"base_filters": 4, "depth": 2}},
    "unet_mobilenetv2": {"preprocessing": "tf", "options": {}},
}
_weights: dict[str, bytes] = {}


def write_tiny_model(weights_dir: Path, arch_id: str, test_names: list[str] | None = None) -> Path:
    """weights/<arch_id>/ with untrained weights, a card, a 3-epoch history and metrics.json."""
    from segdemo.models import build_model

    spec = TINY[arch_id]
    folder = weights_dir / arch_id
    folder.mkdir(parents=True, exist_ok=True)
    if arch_id not in _weights:
        build_model(arch_id, 3, (32, 32), **spec["options"]).save_weights(folder / "model.weights.h5")
        _weights[arch_id] = (folder / "model.weights.h5").read_bytes()
    else:
        (folder / "model.weights.h5").write_bytes(_weights[arch_id])
    names = [c.name for c in PET_CLASSES]
    truth = np.array([0, 0, 1, 1, 2, 1])
    result = scores(confusion_matrix(truth, np.array([0, 1, 1, 1, 2, 0]), 3), names)
    write_json(folder / "card.json", {
        "id": arch_id, "title": arch_id, "classes": [c.to_json() for c in PET_CLASSES],
        "input_size": [32, 32], "preprocessing": spec["preprocessing"],
        "options": spec["options"], "test_miou": result["miou"], "parameters": 1234,
        "epochs": 3, "best_epoch": 3,
    })
    write_json(folder / "history.json", [
        {"epoch": e, "loss": 1 / e, "accuracy": 0.5 + e / 10, "val_loss": 1.2 / e,
         "val_accuracy": 0.45 + e / 10, "val_miou": 0.3 + e / 10} for e in (1, 2, 3)])
    per_image = [{"name": n, "miou": 0.9 - i / 10, "pixel_accuracy": 0.95}
                 for i, n in enumerate(test_names or [])][::-1]
    write_json(folder / "metrics.json", {"original_resolution": result, "per_image": per_image})
    return folder


def photo_bytes(width: int = 48, height: int = 40, fmt: str = "PNG", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("weights")
    write_tiny_model(root, "unet")
    broken = root / "fcn8s_vgg16"
    broken.mkdir()
    (broken / "card.json").write_text(json.dumps({"id": "fcn8s_vgg16"}))
    corrupt = root / "deeplabv3plus_xception"
    corrupt.mkdir()
    (corrupt / "card.json").write_text((root / "unet" / "card.json").read_text().replace(
        '"unet"', '"deeplabv3plus_xception"'))
    (corrupt / "model.weights.h5").write_bytes(b"not hdf5")
    write_json(root / "deeplabv3plus_mobilenetv2" / "card.json", json.loads(
        (root / "unet" / "card.json").read_text()) | {"id": "deeplabv3plus_mobilenetv2"})
    write_json(root / "benchmark.json", {"models": {"unet": {"p50_ms": 12.5}, "x": "junk"}})
    return root


def test_every_registry_model_is_listed_with_its_state(weights):
    entries = {e.id: e for e in db.discover_models(weights)}
    assert list(entries)[0] == "unet_mobilenetv2"  # registry order
    assert entries["unet"].ready and entries["unet"].benchmark_p50_ms == 12.5
    assert entries["unet"].test_miou == pytest.approx(entries["unet"].card["test_miou"])
    assert len(entries["unet"].history) == 3 and entries["unet"].per_class_iou
    assert entries["unet_mobilenetv2"].problem == "not trained"
    assert entries["fcn8s_vgg16"].problem.startswith("unavailable: ") and "lacks" in \
        entries["fcn8s_vgg16"].problem
    assert "corrupt" in entries["deeplabv3plus_xception"].problem
    assert entries["deeplabv3plus_mobilenetv2"].problem == (
        "unavailable: deeplabv3plus_mobilenetv2: not trained (model.weights.h5 is missing).")
    assert "Test mIoU" in entries["unet"].summary and "Test mIoU" not in entries["unet_mobilenetv2"].summary


def test_empty_or_missing_weights_dir_means_nothing_trained(tmp_path):
    for folder in (tmp_path, tmp_path / "absent"):
        entries = db.discover_models(folder)
        assert entries and all(e.problem == "not trained" for e in entries)
    assert db.read_benchmark(tmp_path / "absent") == {}


def test_cache_key_changes_when_weights_are_replaced(weights):
    entry = next(e for e in db.discover_models(weights) if e.id == "unet")
    before = entry.cache_key
    path = entry.folder / "model.weights.h5"
    os.utime(path, ns=(1, 1))
    assert entry.cache_key != before


def test_config_from_arguments_and_environment(tmp_path):
    config = db.parse_config(["-q", "--durations=3", "--data", str(tmp_path)], {})
    assert config.data_dir == tmp_path and config.data_format == "oxford"
    assert config.weights_dir == db.REPO_ROOT / "weights"
    config = db.parse_config([], {"SEGDEMO_WEIGHTS": str(tmp_path), "SEGDEMO_DATA": "/d"})
    assert config.weights_dir == tmp_path and config.data_dir == Path("/d")
    assert db.parse_config(["--format", "voc"], {}).data_format == "voc"


def test_inputs_are_hashed_by_content_and_bad_files_raise_image_error():
    a, b = db.decode_input(photo_bytes(), "a.png"), db.decode_input(photo_bytes(), "b.png")
    assert a.digest == b.digest and a.stem == "a"
    assert db.decode_input(photo_bytes(seed=1), "c.png").digest != a.digest
    with pytest.raises(ImageError, match="empty"):
        db.decode_input(b"", "empty.png")


def test_run_inference_counts_calls(weights):
    segmenter = db.load_segmenter(weights / "unet")
    before = db.inference_calls
    result = db.run_inference(segmenter, db.decode_input(photo_bytes(50, 30), "x.png"))
    assert db.inference_calls == before + 1 and result.mask.shape == (30, 50)


def test_display_helpers():
    assert db.display_size((4000, 3000)) == (1024, 768) and db.display_size((10, 5)) == (10, 5)
    mask = np.zeros((2000, 100), np.uint8)
    mask[:, 50:] = 2
    small = db.shrink_array(mask)
    assert small.shape == (1024, 51) and set(np.unique(small)) == {0, 2}
    confidence = db.confidence_image(np.array([[0.0, 1.0]], np.float32))
    assert confidence.getpixel((0, 0)) == (68, 1, 84) and confidence.getpixel((1, 0)) == (253, 231, 37)
    html = db.legend_html(PET_CLASSES)
    assert all(c.name in html for c in PET_CLASSES) and "#ff8c00" in html
    truth = db.colour_mask(np.array([[0, 255]], np.uint8), PET_CLASSES)
    assert truth.getpixel((1, 0)) == (255, 255, 255)


def test_disagreement_counts_models_off_the_majority():
    a = np.array([[0, 1, 2]], np.uint8)
    b = np.array([[0, 1, 1]], np.uint8)
    c = np.array([[0, 2, 0]], np.uint8)
    assert db.disagreement([a, b, c]).tolist() == [[0, 1, 2]]
    assert db.disagreement([a, a]).max() == 0


def test_comparison_rows_and_latency_text(weights):
    entries = [e for e in db.discover_models(weights) if e.id in ("unet", "unet_mobilenetv2")]
    rows = {r["model"]: r for r in db.comparison_rows(entries, {"unet": 0.0123})}
    unet = rows["U-Net (from scratch)"]
    assert unet["latency here (ms)"] == 12.3 and unet["benchmark p50 (ms)"] == 12.5
    assert unet["parameters"] == 1234 and unet["MB"] > 0
    assert db.latency_text(0.02, None) == "inference 20 ms (measured here)"
    assert "p50 12 ms" in db.latency_text(None, 12.4)


def test_per_image_scores_from_metrics_only_when_they_match_the_dataset(weights):
    entry = next(e for e in db.discover_models(weights) if e.id == "unet")
    entry.metrics = {"per_image": [{"name": "b", "miou": 0.2}, {"name": "a", "miou": 0.7}]}
    assert [s.name for s in db.ranked_test_images(entry, ["a", "b", "c"])] == ["b", "a"]
    assert db.ranked_test_images(entry, ["a"]) is None  # "b" is not in this dataset
    entry.metrics = None
    assert db.ranked_test_images(entry, ["a"]) is None
    truth = np.array([[0, 0, 1, 1]], np.uint8)
    score = db.score_image("x", np.array([[0, 0, 1, 0]], np.uint8), truth, ["a", "b", "c"], 255)
    assert score.pixel_accuracy == 0.75
    ranked = db.worst_first([db.ImageScore("n", None, None), score, db.ImageScore("y", 0.1, 0.5)])
    assert [s.name for s in ranked] == ["y", "x", "n"]


def test_training_rows_leave_out_columns_no_card_fills(weights):
    entries = [e for e in db.discover_models(weights) if e.id == "unet"]
    entries[0].card = {**entries[0].card, "training_seconds": 90}
    assert db.training_rows(entries) == [{"model": "U-Net (from scratch)", "epochs": 3,
                                          "best epoch": 3, "training (min)": 1.5}]
