"""Robustness: each perturbation keeps photo and mask aligned and the labels valid, and the
command scores a tiny model on a tiny dataset end to end, `none` exactly as `evaluate` does."""
import json

import numpy as np
import pytest
from PIL import Image

from fixtures import make_oxford, scene
from segdemo.classes import PET_CLASSES, make_classes
from segdemo.cli import main
from segdemo.report import robustness_table
from segdemo.robustness import GREY, PERTURBATIONS, RobustnessError, select
from test_dashboard import write_tiny_model

PHOTO_ONLY = {"grayscale", "dark", "low_contrast", "jpeg_q10", "blur", "noise"}


def _pair(index: int = 1) -> tuple[Image.Image, np.ndarray]:
    image, mask = scene(index)
    mask = mask.copy()
    mask[0, :5] = 255  # ignored pixels must survive every perturbation
    return Image.fromarray(image), mask


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_perturbation_keeps_sizes_and_labels_valid_and_is_deterministic(name):
    image, mask = _pair()
    apply = PERTURBATIONS[name].apply
    out_image, out_mask = apply(image, mask, PET_CLASSES)
    assert out_image.mode == "RGB" and out_mask.dtype == np.uint8
    assert out_image.size == (out_mask.shape[1], out_mask.shape[0])
    assert set(np.unique(out_mask)) <= {0, 1, 2, 255}
    again_image, again_mask = apply(image, mask, PET_CLASSES)
    assert np.array_equal(np.asarray(again_image), np.asarray(out_image))
    assert np.array_equal(again_mask, out_mask)
    if name in PHOTO_ONLY:
        assert out_mask is mask
        assert not np.array_equal(np.asarray(out_image), np.asarray(image))


def test_low_resolution_keeps_a_third_and_only_existing_labels():
    image, mask = _pair()
    small_image, small_mask = PERTURBATIONS["low_resolution"].apply(image, mask, PET_CLASSES)
    assert small_image.size == (13, 10)
    assert set(np.unique(small_mask)) <= set(np.unique(mask))


def test_noise_differs_between_photos():
    first, second = (PERTURBATIONS["noise"].apply(*_pair(i), PET_CLASSES)[0] for i in (1, 2))
    noise = [np.asarray(p, np.int16) - scene(i)[0] for p, i in ((first, 1), (second, 2))]
    assert not np.array_equal(noise[0], noise[1])


def test_zoom_out_pads_with_background_or_ignore():
    image, mask = _pair()
    canvas, padded = PERTURBATIONS["zoom_out"].apply(image, mask, PET_CLASSES)
    assert canvas.size == (80, 60) and canvas.getpixel((0, 0)) == GREY
    assert np.array_equal(np.asarray(canvas)[15:45, 20:60], np.asarray(image))
    assert np.array_equal(padded[15:45, 20:60], mask)
    border = padded.copy()
    border[15:45, 20:60] = 1
    assert np.all(border == 1)  # PET_CLASSES[1] is "background"
    _, ignored = PERTURBATIONS["zoom_out"].apply(image, mask, make_classes(["cat", "dog"]))
    assert ignored[0, 0] == 255 and np.array_equal(ignored[15:45, 20:60], mask)


def test_unknown_perturbation_lists_the_known_ones():
    with pytest.raises(RobustnessError, match="unknown perturbation 'sepia'; known: none, "):
        select(["none", "sepia"])
    assert list(select(["dark", "none"])) == ["dark", "none"]


# --- end to end ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny U-Net folder, a 3-image test split and one full robustness run through the CLI."""
    root = tmp_path_factory.mktemp("robust")
    data = make_oxford(root / "pets", trainval=4, test=3)
    weights = root / "weights"
    write_tiny_model(weights, "unet")
    assert main(["robustness", "--weights", str(weights), "--data", str(data)]) == 0
    return data, weights


def test_cli_writes_the_documented_json(run, capsys):
    data, weights = run
    report = json.loads((weights / "robustness.json").read_text())
    assert report.keys() == {"date", "data", "format", "split", "images", "perturbations", "models"}
    assert (report["data"], report["format"], report["split"], report["images"]) == (
        str(data.resolve()), "oxford", "test", 3)
    assert list(report["perturbations"]) == list(PERTURBATIONS)
    assert report["models"].keys() == {"unet"}
    for scores in report["models"]["unet"].values():
        assert scores.keys() == {"miou", "pixel_accuracy", "iou"}
        assert scores["iou"].keys() == {"pet", "background", "border"}
        assert 0 <= scores["pixel_accuracy"] <= 1 and 0 <= scores["miou"] <= 1


def test_none_reproduces_evaluate(run):
    from segdemo.data import load_dataset
    from segdemo.evaluate import evaluate
    from segdemo.inference import Segmenter
    from segdemo.robustness import robustness

    data, weights = run
    report = json.loads((weights / "robustness.json").read_text())
    segmenter, dataset = Segmenter.load(weights / "unet"), load_dataset(data, "oxford")
    plain = evaluate(segmenter, dataset)["original_resolution"]
    none = report["models"]["unet"]["none"]
    assert (none["miou"], none["pixel_accuracy"]) == (plain["miou"], plain["pixel_accuracy"])
    calls = []
    robustness(segmenter, dataset, names=["dark"], limit=2,
               progress=lambda *args: calls.append(args))
    assert calls == [("dark", 1, 2), ("dark", 2, 2)]


def test_results_robustness_prints_the_table(run, capsys):
    _, weights = run
    assert main(["results", "--robustness", "--weights", str(weights)]) == 0
    text = capsys.readouterr().out
    report = json.loads((weights / "robustness.json").read_text())
    assert text == robustness_table(report) + "\n"
    assert "| model | `none` | `low_resolution` |" in text and "| `unet` |" in text
    assert "- `zoom_out`: photo centred on a grey canvas" in text


def test_selected_perturbations_limit_and_json_path(run, tmp_path, capsys):
    data, weights = run
    target = tmp_path / "r.json"
    assert main(["robustness", "--weights", str(weights), "--models", "unet", "--data", str(data),
                 "--perturbations", "dark", "none", "--limit", "2", "--json", str(target)]) == 0
    report = json.loads(target.read_text())
    assert list(report["perturbations"]) == ["dark", "none"] and report["images"] == 2
    assert list(report["models"]["unet"]) == ["dark", "none"]
    assert f"written to {target}" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--perturbations", "sepia"], "unknown perturbation 'sepia'; known: none, low_resolution"),
    (["--models", "nope"], "cannot score nope: unknown architecture 'nope'"),
    (["--models", "unet_mobilenetv2"], "cannot score unet_mobilenetv2: no folder"),
    (["--limit", "0"], "--limit must be at least 1."),
    (["--split", "nosuch"], "has no images in its 'nosuch' split."),
])
def test_cli_errors_are_one_line(run, capsys, extra, message):
    data, weights = run
    assert main(["robustness", "--weights", str(weights), "--data", str(data), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_cli_errors_without_models_or_data(run, tmp_path, capsys):
    data, weights = run
    assert main(["robustness", "--weights", str(tmp_path), "--data", str(data)]) == 2
    assert "no trained model folder in" in capsys.readouterr().err
    assert main(["robustness", "--weights", str(weights), "--data", str(tmp_path / "x")]) == 2
    assert "Dataset folder not found" in capsys.readouterr().err


def test_results_robustness_reports_a_missing_or_invalid_json(tmp_path, capsys):
    assert main(["results", "--robustness", "--weights", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"error: no robustness JSON at {tmp_path / 'robustness.json'}: run `python -m segdemo "
        "robustness --data PATH` first, or pass --json PATH.\n")
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["results", "--robustness", "--json", str(tmp_path / "bad.json")]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    (tmp_path / "bench.json").write_text('{"models": {}}')
    assert main(["results", "--robustness", "--json", str(tmp_path / "bench.json")]) == 2
    assert "is not a robustness JSON" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["results", "--robustness", "--speed"])


def test_table_shows_the_worst_drop_from_none():
    def scores(miou):
        return {"miou": miou, "pixel_accuracy": 0.9, "iou": {}}

    report = {"data": "/x/oxford-pets", "split": "test", "images": 7,
              "perturbations": {"none": "as is", "dark": "darker", "blur": "blurred"},
              "models": {"a": {"none": scores(0.8), "dark": scores(0.5), "blur": scores(0.7)},
                         "b": {"none": scores(None), "dark": scores(0.5), "blur": scores(None)}}}
    lines = robustness_table(report).splitlines()
    assert lines[0].startswith("mIoU at the original resolution on the test split (7 images) of "
                               "`oxford-pets`")
    assert "| model | `none` | `dark` | `blur` | worst drop vs `none` |" in lines
    assert "| `a` | 0.800 | 0.500 | 0.700 | 0.300 (`dark`) |" in lines
    assert "| `b` | n/a | 0.500 | n/a | n/a |" in lines
    assert lines[-1] == "- `blur`: blurred"


def test_rescoring_one_model_keeps_the_others_scored_on_the_same_photos(run, tmp_path):
    data, weights = run
    target = tmp_path / "kept.json"
    args = ["robustness", "--weights", str(weights), "--data", str(data), "--json", str(target),
            "--perturbations", "none", "dark", "--limit", "2"]
    assert main(args) == 0
    report = json.loads(target.read_text())
    report["models"]["other"] = report["models"]["unet"]  # as if scored by an earlier run
    target.write_text(json.dumps(report))
    assert main(args + ["--models", "unet"]) == 0
    assert json.loads(target.read_text())["models"].keys() == {"unet", "other"}
    # on other photos (a different --limit) the old scores would not compare: they are dropped
    assert main(args[:-1] + ["1", "--models", "unet"]) == 0
    assert json.loads(target.read_text())["models"].keys() == {"unet"}
