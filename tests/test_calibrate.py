"""Class-bias calibration: the offset arithmetic by hand, the choice on the validation split, the
card it writes, the segmenter applying it and the CLI."""
import json
from types import SimpleNamespace

import numpy as np
import pytest

from segdemo.calibrate import (CalibrationError, apply_bias, bias_vector, calibrate,
                               write_calibration)
from segdemo.classes import PET_CLASSES
from segdemo.cli import main
from segdemo.upsample import bilinear_labels

NAMES = [c.name for c in PET_CLASSES]  # pet, background, border


def test_an_offset_scales_one_class_and_renormalises():
    probs = np.array([[0.5, 0.3, 0.2]], np.float32)
    shifted = apply_bias(probs, bias_vector({"border": -np.log(2)}, NAMES))
    np.testing.assert_allclose(shifted, [[0.5 / 0.9, 0.3 / 0.9, 0.1 / 0.9]], rtol=1e-6)
    assert apply_bias(probs, None) is probs
    assert bias_vector({"border": 0.0}, NAMES) is None and bias_vector(None, NAMES) is None


@pytest.mark.parametrize("bias, message", [
    ({"fur": -0.5}, "names the class 'fur', but the model's classes are pet, background, border"),
    ({"border": float("nan")}, "must be a finite number"),
    ({"border": "low"}, "must be a finite number"),
    ([-0.5], "must map class names to numbers")])
def test_bad_offsets_are_named(bias, message):
    with pytest.raises(CalibrationError, match=message):
        bias_vector(bias, NAMES)


class _FixedSegmenter:
    """Every photo gets the same input-size probabilities: border 0.45, background 0.40."""
    classes = PET_CLASSES
    class_bias = None

    def prepare(self, image):
        return np.zeros((4, 4, 3), np.uint8), (8, 6)

    def input_probabilities(self, batch):
        return np.broadcast_to(np.float32([0.15, 0.40, 0.45]), (len(batch), 4, 4, 3)).copy()

    def full_labels(self, probs, size):
        return bilinear_labels(probs, (size[1], size[0]))


def _background_only(count: int = 2):
    """A dataset whose validation masks are all background."""
    return SimpleNamespace(root="pets", ignore_index=255, splits={"val": list(range(count))},
                           read_image=lambda sample: None,
                           read_mask=lambda sample: np.ones((6, 8), np.uint8))


def test_the_smallest_offset_that_wins_on_validation_is_chosen():
    # Border wins every pixel until its offset is below log(0.40 / 0.45) = -0.118: from -0.25 on
    # every pixel is background, as the truth is (mIoU 1.0); the smaller shift wins the tie.
    record = calibrate(_FixedSegmenter(), _background_only(), "border", grid=(0.25, 0, -0.25, -1))
    assert [row["miou"] for row in record["grid"]] == [0.0, 0.0, 1.0, 1.0]
    assert record["bias"] == -0.25 and record["split"] == "val" and record["images"] == 2
    card = write_calibration({"id": "unet", "class_bias": {"pet": 0.1}, "test_miou": 0.7}, record)
    assert card["class_bias"] == {"pet": 0.1, "border": -0.25} and card["calibration"] is record
    assert "test_miou" not in card  # measured without the offset: metrics.json says the rest
    unchanged = write_calibration({"id": "unet"}, {**record, "bias": 0.0})
    assert unchanged["class_bias"] is None


def test_calibration_refuses_what_it_cannot_use():
    with pytest.raises(CalibrationError, match="no class 'fur'"):
        calibrate(_FixedSegmenter(), _background_only(), "fur")
    with pytest.raises(CalibrationError, match="no images in its 'val' split"):
        calibrate(_FixedSegmenter(), _background_only(0), "border")
    biased = _FixedSegmenter()
    biased.class_bias = np.zeros(3)
    with pytest.raises(CalibrationError, match="without class_bias"):
        calibrate(biased, _background_only(), "border")


def test_the_segmenter_applies_the_cards_offset_after_tta(tiny_model_dir, tmp_path):
    from PIL import Image

    from segdemo.inference import Segmenter

    card = json.loads((tiny_model_dir / "card.json").read_text())
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 30, 3), np.uint8))
    plain = Segmenter.load(tiny_model_dir, tta="flip").predict(image).input_probabilities
    from segdemo.artifacts import load_model

    model, _ = load_model(tiny_model_dir)
    biased = Segmenter(model, {**card, "class_bias": {"border": -1.5}}, tta="flip")
    shifted = biased.predict(image).input_probabilities
    expected = plain * np.float32([1, 1, np.exp(-1.5)])
    np.testing.assert_allclose(shifted, expected / expected.sum(-1, keepdims=True), atol=1e-5)
    assert (shifted[..., 2] < plain[..., 2]).all()


def test_the_cli_writes_the_chosen_offset_into_the_card(tiny_model_dir, tmp_path, capsys):
    import shutil

    from fixtures import make_oxford

    folder = tmp_path / "unet"
    shutil.copytree(tiny_model_dir, folder)
    data = make_oxford(tmp_path / "pets", trainval=10)
    assert main(["calibrate", "--model", str(folder), "--data", str(data), "--grid", "0", "-1",
                 "--dry-run"]) == 0
    assert "<- chosen" in capsys.readouterr().out
    assert "class_bias" not in json.loads((folder / "card.json").read_text())
    assert main(["calibrate", "--model", str(folder), "--data", str(data),
                 "--grid", "0", "-1"]) == 0
    card = json.loads((folder / "card.json").read_text())
    assert [row["bias"] for row in card["calibration"]["grid"]] == [0.0, -1.0]
    best = max(card["calibration"]["grid"], key=lambda r: (round(r["miou"], 4), -abs(r["bias"])))
    assert card["calibration"]["bias"] == best["bias"]
    assert (card["class_bias"] or {}).get("border", 0.0) == best["bias"]
    assert main(["calibrate", "--model", str(folder), "--data", str(data), "--class", "fur"]) == 2
    assert "no class 'fur'" in capsys.readouterr().err


def test_the_recipe_names_the_offset():
    from segdemo.artifacts import training_recipe

    card = {"config": {"epochs": 16, "img_size": 384}, "class_bias": {"border": -0.5}}
    assert training_recipe(card).endswith(
        "border log-probability -0.5 (calibrated on the validation split)")
