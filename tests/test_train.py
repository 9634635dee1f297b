"""End to end through the CLI: train a tiny U-Net for an epoch, resume, evaluate, predict."""
import json
import math

import h5py
import numpy as np
import pytest
from PIL import Image

from fixtures import make_folders, make_oxford
from segdemo.cli import main
from segdemo.train import recalibrate_batchnorm

TINY = ["--arch", "unet", "--option", "base_filters=4", "--option", "depth=2", "--img-size", "32",
        "--batch-size", "4", "--format", "oxford"]


def _finite_numbers(value):
    if isinstance(value, dict):
        return all(_finite_numbers(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite_numbers(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return True


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    data = make_oxford(root / "pets", trainval=8, test=3)
    out = root / "model"
    assert main(["train", *TINY, "--data", str(data), "--epochs", "1", "--out", str(out)]) == 0
    return data, out


def test_training_writes_weights_and_three_json_files(trained):
    _, out = trained
    with h5py.File(out / "model.weights.h5") as weights:  # shipped weights carry no optimizer state
        assert "optimizer" not in weights and "layers" in weights
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 1
    assert set(history[0]) >= {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "val_miou",
                               "lr", "seconds"}
    card = json.loads((out / "card.json").read_text())
    assert card["id"] == "unet" and card["input_size"] == [32, 32]
    assert [c["name"] for c in card["classes"]] == ["pet", "background", "border"]
    assert card["dataset"]["splits"] == {"train": 7, "val": 1, "test": 3}
    assert card["parameters"] > 0 and card["file_bytes"] > 0
    assert card["command"].startswith("python -m segdemo train --arch unet")
    assert "trained from scratch" in card["encoder_weights"]
    recalibration = card["batchnorm_recalibration"]
    assert recalibration["images"] == 7
    assert recalibration["kept"] == (recalibration["val_miou_after"] >= recalibration["val_miou_before"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 3
    for key in ("original_resolution", "input_resolution"):
        assert 0.0 <= metrics[key]["pixel_accuracy"] <= 1.0
        assert np.array(metrics[key]["confusion_matrix"]).shape == (3, 3)
    assert np.sum(metrics["original_resolution"]["confusion_matrix"]) == 3 * 40 * 30
    for document in (history, card, metrics):
        assert _finite_numbers(document)


def test_resume_continues_from_the_checkpoint(trained, tmp_path, capsys):
    data, out = trained
    run = tmp_path / "resumed"
    run.mkdir()
    for name in ("history.json", "model.weights.h5"):
        (run / name).write_bytes((out / name).read_bytes())
    (run / "checkpoint").mkdir()
    for name in ("model.weights.h5", "optimizer.npz", "state.json"):
        (run / "checkpoint" / name).write_bytes((out / "checkpoint" / name).read_bytes())
    args = ["train", *TINY, "--data", str(data), "--epochs", "2", "--out", str(run)]
    assert main(args) == 2  # refuses to overwrite without --resume
    assert "--resume" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    assert "Resuming unet from epoch 1 of 2" in capsys.readouterr().out
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[0] == json.loads((out / "history.json").read_text())[0]
    assert json.loads((run / "checkpoint" / "state.json").read_text())["epoch"] == 2


def test_evaluate_reproduces_the_training_metrics(trained, tmp_path, capsys):
    data, out = trained
    target = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(out), "--data", str(data), "--json", str(target)]) == 0
    assert "mIoU" in capsys.readouterr().out
    again = json.loads(target.read_text())
    written = json.loads((out / "metrics.json").read_text())
    for key in ("original_resolution", "input_resolution"):
        assert again[key]["confusion_matrix"] == written[key]["confusion_matrix"]


def test_predict_writes_masks_at_the_original_size(trained, tmp_path, capsys):
    _, out = trained
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (57, 41), (120, 60, 30)).save(photo)
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    assert main(["predict", "--model", str(out), str(photo), str(bad), "--out", str(tmp_path / "o")]) == 1
    assert "bad.png is not an image" in capsys.readouterr().err
    mask = Image.open(tmp_path / "o" / "photo_mask.png")
    assert mask.size == (57, 41) and mask.mode == "P"
    assert Image.open(tmp_path / "o" / "photo_overlay.png").size == (57, 41)


def test_user_errors_are_one_line_messages(tmp_path, capsys):
    assert main(["train", "--arch", "segformer", "--data", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "Unknown architecture 'segformer'" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path), "--data", str(tmp_path)]) == 2
    assert "card.json is missing" in capsys.readouterr().err
    data = make_oxford(tmp_path / "pets")
    assert main(["train", *TINY, "--data", str(data), "--holdout-breed", "Siamese",
                 "--out", str(tmp_path / "y")]) == 2
    assert "No images of breed 'Siamese' here; the breeds are Cat" in capsys.readouterr().err


def test_recalibration_sets_moving_statistics_to_the_mean_over_batches():
    import keras

    inputs = keras.Input((4, 4, 2))
    inner = keras.Model(inputs, keras.layers.BatchNormalization(name="inner_bn")(inputs), name="encoder")
    x = keras.Input((4, 4, 2))
    model = keras.Model(x, keras.layers.BatchNormalization(name="outer_bn")(inner(x)))
    inner.trainable = False  # a frozen encoder's BatchNorm must be recalibrated too
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0 * i, 1.0 + i, (5, 4, 4, 2)).astype("float32") for i in range(3)]
    assert recalibrate_batchnorm(model, [(b, None) for b in batches]) == 15
    bn = inner.get_layer("inner_bn")
    expected_mean = np.mean([b.mean(axis=(0, 1, 2)) for b in batches], axis=0)
    expected_var = np.mean([b.var(axis=(0, 1, 2)) for b in batches], axis=0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean), expected_mean, rtol=1e-4)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_variance), expected_var, rtol=1e-3)
    assert bn.momentum == 0.99 and not bn.trainable and not inner.trainable  # settings restored
    assert keras.ops.convert_to_numpy(model.get_layer("outer_bn").moving_mean).any()


def test_recalibration_skips_the_layers_it_is_told_to():
    """A loaded VOC head's BatchNorms hold biases, not statistics: recalibration leaves them."""
    import keras

    x = keras.Input((4, 4, 2))
    head = keras.layers.BatchNormalization(name="aspp_proj_bn")
    model = keras.Model(x, keras.layers.BatchNormalization(name="decoder_bn")(head(x)))
    batches = [(np.full((3, 4, 4, 2), 5.0, "float32"), None)]
    assert recalibrate_batchnorm(model, batches, skip=["aspp_proj_bn"]) == 3
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(head.moving_mean), 0.0)
    assert keras.ops.convert_to_numpy(model.get_layer("decoder_bn").moving_mean).any()


def test_recalibration_leaves_models_without_batchnorm_alone():
    import keras

    def never():
        raise AssertionError("a model without BatchNormalization needs no data")
        yield

    model = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Conv2D(3, 1)])
    assert recalibrate_batchnorm(model, never()) == 0


def test_decoder_bn_momentum_leaves_the_encoder_alone():
    import keras

    from segdemo.models import build_model
    from segdemo.train import _set_decoder_bn_momentum

    model = build_model("deeplabv3plus_mobilenetv2", 3, (64, 64))
    _set_decoder_bn_momentum(model, 0.9)
    encoder_bn = [l for l in model.get_layer("encoder").layers
                  if isinstance(l, keras.layers.BatchNormalization)]
    decoder_bn = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert encoder_bn and decoder_bn
    assert {l.momentum for l in encoder_bn} == {0.999}
    assert {l.momentum for l in decoder_bn} == {0.9}


def test_distillation_and_copy_paste_train_and_are_recorded(trained, tmp_path):
    data, teacher = trained
    out = tmp_path / "student"
    assert main(["train", *TINY, "--data", str(data), "--epochs", "1", "--out", str(out),
                 "--teacher", str(teacher), "--distill-alpha", "0.7", "--copy-paste", "0.5"]) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["distillation"] == {"teacher": "unet", "teacher_input_size": [32, 32], "alpha": 0.7}
    assert card["config"]["copy_paste"] == 0.5
    history = json.loads((out / "history.json").read_text())
    assert math.isfinite(history[0]["loss"]) and 0 <= history[0]["val_miou"] <= 1


def test_a_teacher_with_other_classes_is_refused(trained, tmp_path, capsys):
    data, teacher = trained
    card = json.loads((teacher / "card.json").read_text())
    card["classes"] = card["classes"][::-1]
    other = tmp_path / "other"
    other.mkdir()
    (other / "card.json").write_text(json.dumps(card))
    (other / "model.weights.h5").write_bytes((teacher / "model.weights.h5").read_bytes())
    assert main(["train", *TINY, "--data", str(data), "--epochs", "1", "--out",
                 str(tmp_path / "student"), "--teacher", str(other)]) != 0
    assert "must match in order" in capsys.readouterr().err


def test_a_voc_head_starts_the_model_and_stays_frozen_with_the_encoder(tmp_path):
    """--head-weights copies the head (and, with voc_prior, the VOC classifier) in; with
    --freeze-head and every epoch frozen, the kept weights still hold it (and its BatchNorms
    their identity statistics); the card says so."""
    from fixtures import write_fake_voc_head

    data = make_oxford(tmp_path / "pets", trainval=8, test=2)
    arrays = write_fake_voc_head(tmp_path / "head.npz")
    out = tmp_path / "model"
    assert main(["train", "--arch", "deeplabv3plus_mobilenetv2", "--option", "head=mobile",
                 "--option", "voc_prior=true", "--img-size", "64", "--batch-size", "4", "--format", "oxford", "--data", str(data),
                 "--epochs", "1", "--freeze-encoder-epochs", "1", "--freeze-head",
                 "--head-weights", str(tmp_path / "head.npz"), "--out", str(out)]) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["head_weights"].endswith("from head.npz") and card["options"]["head"] == "mobile"
    assert card["options"]["voc_prior"] is True
    from segdemo.inference import Segmenter

    model = Segmenter.load(out).model  # the card's options rebuild the mobile head
    np.testing.assert_array_equal(model.get_layer("aspp_1x1_conv").get_weights()[0],
                                  arrays["aspp0_kernel"])
    np.testing.assert_array_equal(model.get_layer("voc_logits").get_weights()[0],
                                  arrays["logits_kernel"])
    gamma, beta, mean, variance = model.get_layer("aspp_proj_bn").get_weights()
    np.testing.assert_array_equal(beta, arrays["concat_projection_bias"])
    assert (mean == 0).all() and np.allclose(variance, 1 - 1e-3)


def test_voc_prior_needs_the_head_weights_and_pet_first(tmp_path, capsys):
    data = make_oxford(tmp_path / "pets", trainval=4, test=1)
    args = ["train", "--arch", "deeplabv3plus_mobilenetv2", "--option", "head=mobile", "--option",
            "voc_prior=true", "--img-size", "64", "--format", "oxford", "--data", str(data),
            "--epochs", "1", "--out", str(tmp_path / "model")]
    assert main(args) != 0
    assert "voc_prior=true needs --head-weights" in capsys.readouterr().err
    from fixtures import write_fake_voc_head

    write_fake_voc_head(tmp_path / "head.npz")
    folders = make_folders(tmp_path / "scenes", count=6, classes=["sky", "pet", "background"])
    args[args.index("--data") + 1], args[args.index("--format") + 1] = str(folders), "folders"
    assert main([*args, "--head-weights", str(tmp_path / "head.npz")]) != 0
    assert "classes pet and background first" in capsys.readouterr().err


def test_voc_guide_is_not_trained(tmp_path, capsys):
    data = make_oxford(tmp_path / "pets", trainval=4, test=1)
    assert main(["train", *TINY[:2], "--option", "voc_guide=0.5", "--data", str(data),
                 "--out", str(tmp_path / "model")]) != 0
    assert "python -m segdemo guide" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()
