"""`python -m segdemo guide`: a trained model folder plus the frozen VOC branch, as a new folder
that loads and predicts like any other; refusals name the problem."""
from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from PIL import Image

from fixtures import write_fake_voc_encoder, write_fake_voc_head, write_tiny_unet
from segdemo.artifacts import write_json
from segdemo.classes import PET_CLASSES
from segdemo.cli import main
from segdemo.inference import Segmenter
from segdemo.models import build_model

OPTIONS = {"output_stride": 16, "head": "mobile"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small trained-looking DeepLabV3+ folder and fake VOC encoder and head files."""
    root = tmp_path_factory.mktemp("guide")
    folder = root / "deeplab"
    folder.mkdir()
    keras.utils.set_random_seed(0)
    build_model("deeplabv3plus_mobilenetv2", 3, (64, 64), **OPTIONS).save_weights(
        folder / "model.weights.h5")
    write_json(folder / "card.json", {
        "id": "deeplabv3plus_mobilenetv2", "title": "DeepLabV3+",
        "classes": [c.to_json() for c in PET_CLASSES], "input_size": [64, 64],
        "preprocessing": "tf", "options": OPTIONS})
    write_json(folder / "history.json", [{"epoch": 1, "val_miou": 0.5}])
    write_fake_voc_head(root / "head.npz")
    write_fake_voc_encoder(root / "encoder.weights.h5")
    return root, folder


def _guide(root, model, out, *extra):
    return main(["guide", "--model", str(model), "--out", str(out), "--encoder-weights",
                 str(root / "encoder.weights.h5"), "--head-weights", str(root / "head.npz"),
                 *extra])


def test_guided_folder_loads_and_keeps_the_border(files, capsys):
    root, folder = files
    out = root / "guided"
    assert _guide(root, folder, out, "--weight", "0.7") == 0
    assert "Guided model written" in capsys.readouterr().out
    card = json.loads((out / "card.json").read_text())
    assert card["options"] == {**OPTIONS, "voc_guide": 0.7} and card["guided_from"] == "deeplab"
    assert card["file_bytes"] == (out / "model.weights.h5").stat().st_size
    assert json.loads((out / "history.json").read_text()) == [{"epoch": 1, "val_miou": 0.5}]

    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), np.uint8))
    plain = Segmenter.load(folder, runtime="tf").predict(photo).input_probabilities
    guided = Segmenter.load(out, runtime="tf").predict(photo).input_probabilities
    assert guided.shape == plain.shape
    np.testing.assert_allclose(guided[..., 2], plain[..., 2], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(guided.sum(axis=-1), 1.0, atol=1e-5)
    assert not np.allclose(guided[..., 0], plain[..., 0], atol=1e-3)  # the VOC branch moved it

    assert _guide(root, out, root / "twice") != 0
    assert "already VOC-guided" in capsys.readouterr().err


def test_guide_refusals(files, tmp_path, capsys):
    root, folder = files
    assert _guide(root, folder, folder) != 0
    assert "--out must differ" in capsys.readouterr().err
    assert _guide(root, folder, tmp_path / "w", "--weight", "0") != 0
    assert "weight must be in (0, 1]" in capsys.readouterr().err
    assert _guide(root, tmp_path / "missing", tmp_path / "m") != 0
    assert "error:" in capsys.readouterr().err
    unit = write_tiny_unet(tmp_path / "unet")  # fed [0, 1], not the VOC encoder's [-1, 1]
    assert _guide(root, unit, tmp_path / "u") != 0
    assert "[-1, 1] inputs" in capsys.readouterr().err
    (tmp_path / "broken.npz").write_text("not an archive")
    assert main(["guide", "--model", str(folder), "--out", str(tmp_path / "b"), "--encoder-weights",
                 str(root / "encoder.weights.h5"), "--head-weights",
                 str(tmp_path / "broken.npz")]) != 0
    assert "broken.npz" in capsys.readouterr().err
