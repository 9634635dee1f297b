"""The dashboard's logic without Streamlit; also home of the tiny model folders the app and browser
tests share (built once per process: a weights file per architecture, copied into each folder)."""
from __future__ import annotations

import gc
import io
import json
import os
import re
import weakref
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
    write_json(folder / "metrics.json", {"dataset": {"name": "tiny-pets", "split": "test"},
                                         "images": len(truth), "original_resolution": result,
                                         "per_image": per_image})
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
    rows = {r["model"]: r for r in db.comparison_rows(db.variants(entries), {"unet": 0.0123})}
    unet = rows["U-Net (from scratch)"]
    assert unet["segmenter ms (this photo)"] == 12.3 and unet["benchmark p50 (ms)"] == 12.5
    assert unet["parameters"] == 1234 and unet["MB"] > 0 and unet["test mIoU"] is not None
    (flip,) = db.comparison_rows(db.variants(entries[1:], "flip"), {"unet-flip": 0.02})
    assert flip["model"] == "U-Net (from scratch) · flip TTA" and flip["segmenter ms (this photo)"] == 20
    assert flip["test mIoU"] is None and flip["benchmark p50 (ms)"] is None  # cards score no TTA
    assert db.latency_text(0.02) == "segmenter 20 ms for this photo (resize, network, resize back)"
    assert db.latency_text(None, 12.4) == "benchmark p50 12 ms on an idle machine"


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


def test_streamlit_config_serves_users():
    """No file watcher (a `.venv` in the repository made it walk ~7,000 folders), a photo-sized
    upload limit, XSRF protection on."""
    import tomllib

    config = tomllib.loads((db.REPO_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["fileWatcherType"] == "none"
    assert config["server"]["maxUploadSize"] == 25
    assert config["server"]["enableXsrfProtection"] is True


def test_truncated_or_empty_weights_are_not_offered(weights, tmp_path):
    from segdemo.artifacts import ModelLoadError, load_model

    folder = tmp_path / "weights" / "unet"
    folder.mkdir(parents=True)
    for name in ("card.json", "model.weights.h5"):
        (folder / name).write_bytes((weights / "unet" / name).read_bytes())
    size = (folder / "model.weights.h5").stat().st_size
    with (folder / "model.weights.h5").open("r+b") as fh:
        fh.truncate(size // 2)
    entry = next(e for e in db.discover_models(tmp_path / "weights") if e.id == "unet")
    assert not entry.ready
    assert entry.problem == (
        f"unavailable: unet: model.weights.h5 is incomplete: {size // 2 / 1e6:.1f} MB of "
        f"{size / 1e6:.1f} MB (an interrupted copy or download?). Copy the model folder again or "
        f"retrain the model.")
    with pytest.raises(ModelLoadError, match="is incomplete"):
        load_model(folder)
    import h5py

    with h5py.File(folder / "model.weights.h5", "w") as h5:
        h5.create_group("layers")
    assert "holds no weights" in db.discover_models(tmp_path / "weights")[-1].problem


@pytest.mark.filterwarnings("ignore:Skipping nested container")
def test_load_failures_are_worded_for_a_person(weights, tmp_path):
    from segdemo.artifacts import ModelLoadError, load_model

    folder = tmp_path / "unet"
    folder.mkdir()
    (folder / "model.weights.h5").write_bytes((weights / "unet" / "model.weights.h5").read_bytes())
    card = json.loads((weights / "unet" / "card.json").read_text())
    write_json(folder / "card.json", card | {"options": {"base_filters": 8, "depth": 2}})
    with pytest.raises(ModelLoadError) as wrong_shapes:
        load_model(folder)
    assert str(wrong_shapes.value).startswith(
        "unet: model.weights.h5 could not be loaded into unet: it holds the weights of a "
        "different network than card.json describes")
    write_json(folder / "card.json", card | {"options": {"no_such_option": 1}})
    with pytest.raises(ModelLoadError, match="cannot be built by this version of SegDemo"):
        load_model(folder)
    write_json(folder / "card.json", card | {"id": "no_such_arch"})
    with pytest.raises(ModelLoadError, match="names an architecture this version of SegDemo"):
        load_model(folder)


def test_unreadable_history_and_metrics_are_not_called_missing(weights, tmp_path):
    root = tmp_path / "weights"
    folder = write_tiny_model(root, "unet")
    (folder / "history.json").write_text("[{")
    (folder / "metrics.json").unlink()
    (folder / "metrics.json").mkdir()
    entry = next(e for e in db.discover_models(root) if e.id == "unet")
    assert entry.ready and entry.history == [] and entry.metrics is None
    assert entry.history_problem.startswith("history.json is unreadable: it is not valid JSON (")
    assert entry.metrics_problem == "metrics.json is unreadable: Is a directory."
    (folder / "history.json").write_text('{"loss": 1}')
    entry = next(e for e in db.discover_models(root) if e.id == "unet")
    assert entry.history_problem == ("history.json is unreadable: it should hold a list of "
                                     "epochs, but holds a JSON object.")
    (folder / "history.json").unlink()
    entry = next(e for e in db.discover_models(root) if e.id == "unet")
    assert entry.history_problem is None and entry.history == []


def test_plain_text_cannot_become_markdown():
    name = "a [x](http://example.com) www.example.com me@example.com *b* `c` $d$ :cat: <i>.jpg"
    text = db.plain(name)
    assert re.sub(r"\\(.)", r"\1", text).replace(db.WORD_JOINER, "") == name
    for special in "[]*`$:<>.":
        assert not re.search(rf"(?<!\\){re.escape(special)}", text), special
    assert "://" not in text and "www." not in text and "@e" not in text  # no autolinks
    assert db.plain("- item\nnext") == "\\- item next"


def test_upload_rules_name_the_types_and_the_size():
    assert db.upload_problem("cat.JPG") is None and db.upload_problem("scan.tiff") is None
    assert db.upload_problem("drawing.svg") == (
        "drawing.svg: SVG files are not accepted. Upload a photo as JPG, JPEG, PNG, WEBP, BMP, "
        "TIF, TIFF or GIF.")
    assert db.upload_problem("README").startswith("README: Files without an extension are not")
    assert "up to 25 MB per file" in db.upload_rules(25) and "refused" in db.upload_rules(25)


def test_live_sample_spreads_over_the_whole_split():
    names = [f"{breed}_{i}" for breed in ("Abyssinian", "Bengal", "beagle", "pug") for i in range(50)]
    picked = db.live_sample(names, limit=24, seed=0)
    assert len(picked) == 24 and picked == db.live_sample(names, limit=24, seed=0)
    assert picked == sorted(picked, key=names.index)  # original order
    assert {n.split("_")[0] for n in picked} == {"Abyssinian", "Bengal", "beagle", "pug"}
    assert db.live_sample(names[:5], limit=24) == names[:5]
    assert db.live_sample_text("pets", "test", 200) == (
        "metrics.json does not cover pets: scoring 24 of the 200 test-split images (a seeded "
        "random sample across the split) live here.")


def test_score_rows_name_the_data_and_show_new_scores_only_when_present(weights):
    entry = next(e for e in db.discover_models(weights) if e.id == "unet")
    assert db.metrics_source(entry) == "test split of tiny-pets, 6 images"
    (row,) = db.score_rows([entry])
    assert set(row) == {"model", "scored on", "mIoU"}
    entry.metrics = {**entry.metrics, "boundary_tolerance_px": 2,
                     "original_resolution": {**entry.metrics["original_resolution"],
                                             "foreground_iou": 0.8, "boundary_f": 0.4}}
    (row,) = db.score_rows([entry])
    assert (row["foreground IoU"], row["boundary F"], row["boundary tolerance (px)"]) == (0.8, 0.4, 2)


def test_out_of_domain_hint_and_class_notes():
    mask = np.ones((10, 10), np.uint8)  # background
    mask[:5] = 0  # half of it marked as pet
    confidence = np.full((10, 10), 0.95, np.float32)
    assert db.out_of_domain_note(mask, confidence, PET_CLASSES) is None
    confidence[:2] = 0.5  # unsure over 2 of the 5 pet rows
    note = db.out_of_domain_note(mask, confidence, PET_CLASSES)
    assert note == ("This photo may be unlike the photos the model was trained on: it is unsure "
                    "about 40% of what it marks as pet, so that area may well be wrong.")
    assert db.out_of_domain_note(np.ones((10, 10), np.uint8), confidence, PET_CLASSES) is None
    assert db.class_notes(PET_CLASSES) == [db.CLASS_NOTES["border"]]
    assert "annotators" in db.CLASS_NOTES["border"]


def _two_models(tmp_path) -> list[db.ModelEntry]:
    root = tmp_path / "weights"
    write_tiny_model(root, "unet")
    write_tiny_model(root, "unet_mobilenetv2")
    return [e for e in db.discover_models(root) if e.ready]


def test_rows_are_models_then_their_ensemble_each_with_its_own_cache_key(tmp_path):
    first, second = _two_models(tmp_path)
    plain = db.variants([first, second])
    assert [v.id for v in plain] == ["unet_mobilenetv2", "unet"]
    assert plain[0].key == first.cache_key and plain[0].plain  # what the Video tab's pool uses
    rows = db.variants([first, second], "flip", ensemble=True)
    assert [v.id for v in rows] == ["unet_mobilenetv2-flip", "unet-flip",
                                    "ensemble-unet_mobilenetv2+unet-flip"]
    ensemble = rows[-1]
    assert ensemble.title == ("Ensemble of U-Net with MobileNetV2 encoder + U-Net (from scratch) "
                              "· flip TTA")
    assert ensemble.key == ((first.cache_key, second.cache_key), "flip")
    assert len({plain[0].key, rows[0].key, ensemble.key, db.variants([first, second],
                                                                    ensemble=True)[-1].key}) == 4
    assert [p.key for p in ensemble.parts()] == [rows[0].key, rows[1].key]
    assert rows[0].without_tta().key == first.cache_key
    assert [v.id for v in db.variants([first], ensemble=True)] == ["unet_mobilenetv2"]
    assert db.ensemble_problem([first]) == "Choose two or more models to add their ensemble."
    second.card = {**second.card, "classes": [{"name": "road", "color": [1, 2, 3]}]}
    assert "different classes" in db.ensemble_problem([first, second])
    assert len(db.variants([first, second], ensemble=True)) == 2  # not possible: no ensemble row


def test_best_epoch_is_the_cards_else_the_best_val_miou(weights):
    entry = next(e for e in db.discover_models(weights) if e.id == "unet")
    assert db.best_epoch(entry) == 3
    entry.card = {k: v for k, v in entry.card.items() if k != "best_epoch"}
    entry.history = [{"epoch": 1, "val_miou": 0.5}, {"epoch": 2, "val_miou": 0.7},
                     {"epoch": 3, "val_miou": float("nan")}]
    assert db.best_epoch(entry) == 2
    entry.history = []
    assert db.best_epoch(entry) is None


def test_bilinear_matches_tensorflow_and_the_hover_grid_is_whole_percent():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(3), (32, 32)).astype(np.float32)
    for shape in ((150, 200), (20, 12), (32, 32)):
        expected = tf.image.resize(probabilities, shape, method="bilinear").numpy()
        np.testing.assert_allclose(db.bilinear(probabilities, shape), expected, atol=1e-5)
    grid = db.probability_grid(probabilities, (4000, 3000))
    assert grid.shape == (150, 200, 3) and grid.dtype == np.uint8
    assert np.abs(grid.astype(int).sum(axis=-1) - 100).max() <= 2
    assert db.probability_grid(probabilities, (50, 40)).shape == (40, 50, 3)  # never enlarged


def test_load_stages_tta_and_the_ensembles_full_resolution(tmp_path):
    from segdemo.ensemble import Ensemble

    first, second = _two_models(tmp_path)
    stages = []
    base = db.load_segmenter(first.folder, stages.append)
    assert stages == ["reading the weights", "preparing the network (first run)"]
    flipped = db.with_tta(base, "flip")
    assert flipped.tta == "flip" and flipped.model is base.model  # no second copy of the weights
    assert db.full_resolution(base) is base
    other = db.load_segmenter(second.folder)
    ensemble = Ensemble([base, other])
    assert db.full_resolution(ensemble).input_size == ensemble.input_size
    photo = db.decode_input(photo_bytes(50, 30), "p.png").image
    prediction = ensemble.predict(photo)
    mask, _ = db.full_resolution(ensemble).full_mask(prediction.input_probabilities, (50, 30))
    np.testing.assert_array_equal(mask, prediction.mask)


def test_examples_are_read_without_importing_scikit_image_and_batches_are_counted():
    path = db.example_path(db.SKIMAGE_EXAMPLES["Chelsea the cat"])
    assert path is not None and db.decode_input(path.read_bytes(), path.name).image.size == (451, 300)
    assert db.example_path("no_such_photo.png") is None
    assert db.batch_text(2, 6, 3, 2) == "Segmenting 3 photos with 2 models: 2 of 6 results ready"
    assert db.batch_text(0, 1, 1, 1) == "Segmenting 1 photo with 1 model: 0 of 1 results ready"


def test_freeze_heap_leaves_later_garbage_collectable():
    """Objects alive at the freeze leave the collector's scans; cycles made afterwards are still
    collected (a weak reference to one dies)."""
    class Node:
        pass

    try:
        db.freeze_heap()
        assert gc.get_freeze_count() > 0
        node = Node()
        node.self = node  # a reference cycle: only the collector can free it
        alive = weakref.ref(node)
        del node
        gc.collect()
        assert alive() is None
    finally:
        gc.unfreeze()
