"""Model package: every registered architecture builds, runs, saves and reloads; pretrained
encoder weights are found, copied exactly, or refused with an actionable message."""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from segdemo.models import (ARCHITECTURES, EncoderWeightsError, UnknownArchitectureError,
                            build_model, get_architecture)
from segdemo.models.backbones import build_backbone, build_encoder
from segdemo.models.encoder_weights import canonical_names
from segdemo.preprocessing import PREPROCESSORS
from fixtures import write_fake_voc_encoder, write_fake_voc_head

REPO = Path(__file__).resolve().parents[1]
MOBILENET_FILE = (REPO.parent / "shared" / "pretrained"
                  / "mobilenet_v2_1.0_224_imagenet_no_top.weights.h5")
needs_mobilenet_file = pytest.mark.skipif(
    not MOBILENET_FILE.is_file(), reason=f"{MOBILENET_FILE} not available (../shared missing)")

ARCH_IDS = list(ARCHITECTURES)
ENCODER_ARCH_IDS = [a for a, arch in ARCHITECTURES.items() if arch.encoder]
# Slimmer options where a builder has them, to keep the suite fast; others use their defaults.
FAST_OPTIONS = {
    "deeplabv3plus_xception": {"width": 0.25},
    "fcn8s_vgg16": {"width": 0.25, "head_filters": 64},
    "unet": {"base_filters": 8},
}
SIZES = [(64, 64), (96, 64)]
REFERENCES = {"mobilenetv2": keras.applications.MobileNetV2,
              "xception": keras.applications.Xception, "vgg16": keras.applications.VGG16}


def fast_build(arch_id: str, num_classes: int = 3, input_size=(64, 64), **options) -> keras.Model:
    return build_model(arch_id, num_classes, input_size=input_size,
                       **{**FAST_OPTIONS.get(arch_id, {}), **options})


def images(input_size, batch: int = 2) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (batch, *input_size, 3)).astype("float32")


def predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x, training=False))


@pytest.fixture(scope="module")
def small_models() -> dict[str, keras.Model]:
    """One small 3-class model per architecture, shared by the save/load and freezing tests."""
    return {arch_id: fast_build(arch_id) for arch_id in ARCH_IDS}


def test_registry_entries_are_consistent():
    for arch_id, arch in ARCHITECTURES.items():
        assert arch.id == arch_id and arch.title and arch.description
        assert arch.preprocessing in PREPROCESSORS
        assert arch.encoder in (None, "mobilenetv2", "xception", "vgg16")
        assert get_architecture(arch_id) is arch


@pytest.mark.parametrize("input_size", SIZES)
@pytest.mark.parametrize("num_classes", [2, 3])
@pytest.mark.parametrize("arch_id", ARCH_IDS)
def test_builds_logits_at_input_resolution(arch_id, num_classes, input_size):
    model = fast_build(arch_id, num_classes, input_size)
    assert model.name == arch_id
    out = predict(model, images(input_size))
    assert out.shape == (2, *input_size, num_classes)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("arch_id", ARCH_IDS)
def test_default_size_and_budget(arch_id):
    """Default-size models stay within the 32 MB float32 budget."""
    model = build_model(arch_id, 3)
    assert model.input_shape == (None, *ARCHITECTURES[arch_id].input_size, 3)
    assert model.count_params() * 4 <= 32e6


@pytest.mark.parametrize("arch_id", ARCH_IDS)
def test_save_and_reload_give_identical_outputs(arch_id, small_models, tmp_path):
    model = small_models[arch_id]
    x = images((64, 64))
    expected = predict(model, x)

    model.save(tmp_path / "model.keras")
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(predict(reloaded, x), expected)

    model.save_weights(tmp_path / "model.weights.h5")
    fresh = fast_build(arch_id)
    fresh.load_weights(tmp_path / "model.weights.h5")
    np.testing.assert_array_equal(predict(fresh, x), expected)


@pytest.mark.parametrize("arch_id", ARCH_IDS)
def test_freezing_encoder_leaves_only_decoder_trainable(arch_id, small_models):
    model = small_models[arch_id]
    if ARCHITECTURES[arch_id].encoder is None:
        assert "encoder" not in [layer.name for layer in model.layers]
        return
    encoder = model.get_layer("encoder")
    assert isinstance(encoder, keras.Model) and len(encoder.outputs) >= 2
    encoder.trainable = False
    try:
        encoder_ids = {id(w) for w in encoder.weights}
        trainable = model.trainable_weights
        assert trainable and not any(id(w) in encoder_ids for w in trainable)
        decoder = [w for layer in model.layers if layer is not encoder
                   for w in layer.trainable_weights]
        assert {id(w) for w in trainable} == {id(w) for w in decoder}
    finally:
        encoder.trainable = True


def test_unknown_architecture_message():
    with pytest.raises(UnknownArchitectureError) as info:
        build_model("segformer", 3)
    assert isinstance(info.value, KeyError)
    message = str(info.value)
    assert message.startswith("Unknown architecture 'segformer'")
    assert all(arch_id in message for arch_id in ARCH_IDS)


@pytest.mark.parametrize("arch_id", ARCH_IDS)
def test_bad_input_size_and_classes(arch_id):
    with pytest.raises(ValueError, match="multiples of"):
        build_model(arch_id, 3, input_size=(100, 96))
    with pytest.raises(ValueError, match="num_classes"):
        fast_build(arch_id, num_classes=1)


def test_unet_input_size_follows_depth():
    assert fast_build("unet", input_size=(48, 48), depth=3).output_shape == (None, 48, 48, 3)
    with pytest.raises(ValueError, match="multiples of 16"):
        fast_build("unet", input_size=(40, 40))


@pytest.mark.parametrize("arch_id", ENCODER_ARCH_IDS)
def test_imagenet_download_failure_is_actionable(arch_id, monkeypatch):
    def offline(*args, **kwargs):
        assert kwargs.get("weights") == "imagenet"
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- "
                        "[Errno -3] Temporary failure in name resolution")

    for constructor in REFERENCES.values():
        monkeypatch.setattr(keras.applications, constructor.__name__, offline)
    full_width = {"width": 1.0} if "width" in ARCHITECTURES[arch_id].options else {}
    with pytest.raises(EncoderWeightsError) as info:
        build_model(arch_id, 2, input_size=(64, 64), encoder_weights="imagenet", **full_width)
    message = str(info.value)
    assert "failed" in message and "encoder_weights=None" in message
    assert ".weights.h5" in message and "mobilenet_v2_1.0_224_imagenet_no_top" in message


def test_pretrained_weights_need_full_width():
    with pytest.raises(ValueError, match="width 1.0"):
        build_model("fcn8s_vgg16", 2, input_size=(64, 64), encoder_weights="imagenet")


def test_unet_takes_no_encoder_weights():
    with pytest.raises(ValueError, match="from scratch"):
        build_model("unet", 2, encoder_weights="imagenet")


@pytest.mark.filterwarnings("ignore:Skipping nested container")
def test_missing_or_foreign_weights_file(tmp_path):
    missing = tmp_path / "nope.weights.h5"
    with pytest.raises(EncoderWeightsError, match="nope.weights.h5.*does not exist"):
        build_model("unet_mobilenetv2", 2, input_size=(64, 64), encoder_weights=missing)

    foreign = tmp_path / "foreign.weights.h5"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save_weights(foreign)
    with pytest.raises(EncoderWeightsError, match="foreign.weights.h5.*MobileNetV2"):
        build_model("unet_mobilenetv2", 2, input_size=(64, 64), encoder_weights=str(foreign))


@pytest.mark.parametrize("backbone", ["mobilenetv2", "xception", "vgg16"])
def test_backbones_reproduce_keras_applications(backbone):
    def signature(model):
        return [(name, type(layer).__name__, [tuple(w.shape) for w in layer.weights])
                for name, layer in canonical_names(model).items()
                if not isinstance(layer, keras.layers.InputLayer)]

    ours = build_backbone(backbone, (96, 96, 3))
    reference = REFERENCES[backbone](include_top=False, weights=None, input_shape=(96, 96, 3))
    assert signature(ours) == signature(reference)
    assert ours.output_shape == reference.output_shape


@pytest.mark.parametrize("backbone", ["mobilenetv2", "xception"])
@pytest.mark.parametrize("output_stride", [32, 16, 8])
def test_output_stride(backbone, output_stride):
    model = build_backbone(backbone, (64, 64, 3), output_stride=output_stride,
                           width=1.0 if backbone == "mobilenetv2" else 0.25)
    assert model.output_shape[1:3] == (64 // output_stride,) * 2


@pytest.fixture(scope="module")
def mobilenet_reference() -> keras.Model:
    reference = keras.applications.MobileNetV2(include_top=False, weights=None,
                                               input_shape=(64, 64, 3))
    reference.load_weights(MOBILENET_FILE)
    return reference


def assert_same_weights(encoder: keras.Model, reference: keras.Model) -> None:
    with_weights = [layer for layer in encoder.layers if layer.weights]
    assert len(with_weights) > 100
    for layer in with_weights:
        for ours, theirs in zip(layer.get_weights(), reference.get_layer(layer.name).get_weights(),
                                strict=True):
            np.testing.assert_array_equal(ours, theirs)


@needs_mobilenet_file
def test_pretrained_mobilenet_matches_keras_applications(mobilenet_reference):
    model = build_model("unet_mobilenetv2", 3, input_size=(64, 64),
                        encoder_weights=MOBILENET_FILE)
    assert_same_weights(model.get_layer("encoder"), mobilenet_reference)
    # Same structure, same weights: the same features.
    encoder = build_encoder("mobilenetv2", (64, 64, 3), ["out_relu"],
                            encoder_weights=str(MOBILENET_FILE))
    x = images((64, 64))
    np.testing.assert_allclose(predict(encoder, x), predict(mobilenet_reference, x), atol=1e-4)


@needs_mobilenet_file
@pytest.mark.parametrize("output_stride", [16, 8])
def test_pretrained_dilated_mobilenet(output_stride, mobilenet_reference):
    model = build_model("deeplabv3plus_mobilenetv2", 3, input_size=(64, 64),
                        encoder_weights=MOBILENET_FILE, output_stride=output_stride)
    encoder = model.get_layer("encoder")
    assert_same_weights(encoder, mobilenet_reference)
    assert encoder.outputs[-1].shape[1:3] == (64 // output_stride,) * 2
    assert np.isfinite(predict(model, images((64, 64)))).all()


def test_mobile_head_starts_from_voc_head(tmp_path):
    """The loaded head computes the VOC DeepLab's ASPP exactly, from the BN-ed last feature."""
    from segdemo.models.voc_head import load_voc_head

    arrays = write_fake_voc_head(tmp_path / "head.npz")
    model = build_model("deeplabv3plus_mobilenetv2", 3, input_size=(64, 64), head="mobile")
    assert not [layer for layer in model.layers if layer.name.startswith("aspp_rate")]
    load_voc_head(model, tmp_path / "head.npz")
    encoder = model.get_layer("encoder")
    assert encoder.outputs[1] is encoder.get_layer("block_16_project_BN").output
    probe = keras.Model(model.input, [encoder(model.input)[1], model.get_layer("aspp_proj_relu").output])
    features, ours = (keras.ops.convert_to_numpy(t) for t in probe(images((64, 64)), training=False))

    def conv(x, name):
        return np.maximum(x @ arrays[f"{name}_kernel"][0, 0] + arrays[f"{name}_bias"], 0)

    pooled = conv(features.mean(axis=(1, 2), keepdims=True), "image_pooling")
    branches = [np.broadcast_to(pooled, features.shape[:3] + (256,)), conv(features, "aspp0")]
    expected = conv(np.concatenate(branches, axis=-1), "concat_projection")
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)


def test_voc_head_refusals(tmp_path):
    from segdemo.models.voc_head import HeadWeightsError, load_voc_head

    mobile = build_model("deeplabv3plus_mobilenetv2", 3, input_size=(64, 64), head="mobile")
    with pytest.raises(HeadWeightsError, match="nope.npz.*does not exist"):
        load_voc_head(mobile, tmp_path / "nope.npz")
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(HeadWeightsError, match="text.npz.*not a readable .npz"):
        load_voc_head(mobile, tmp_path / "text.npz")
    write_fake_voc_head(tmp_path / "head.npz")
    atrous = build_model("deeplabv3plus_mobilenetv2", 3, input_size=(64, 64))
    with pytest.raises(HeadWeightsError, match="head='mobile'"):
        load_voc_head(atrous, tmp_path / "head.npz")
    with pytest.raises(ValueError, match="head must be"):
        build_model("deeplabv3plus_xception", 3, input_size=(64, 64), width=0.25, head="mobile")


def test_pet_prior_is_the_voc_models_pet_vs_background():
    """log P(cat or dog), log P(anything else), and their minimum for the border class."""
    from segdemo.models.deeplabv3plus import PetPrior

    logits = np.random.default_rng(1).normal(0, 3, (2, 4, 5, 21)).astype("float32")
    prior = PetPrior(3)
    ours = keras.ops.convert_to_numpy(prior(logits))
    p = np.exp(logits.astype("float64"))
    p /= p.sum(axis=-1, keepdims=True)
    pet = np.log(p[..., 8] + p[..., 12])
    background = np.log(1 - p[..., 8] - p[..., 12])
    expected = np.stack([pet, background, np.minimum(pet, background)], axis=-1)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)
    again = PetPrior.from_config(prior.get_config())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(again(logits)), ours)


def test_voc_prior_adds_the_frozen_voc_classifier(tmp_path):
    """voc_prior=True: the VOC classifier is loaded and frozen, and with the decoder's own
    classifier at zero the logits are the VOC model's pet-vs-background prior, upsampled."""
    from segdemo.models.deeplabv3plus import PetPrior
    from segdemo.models.voc_head import load_voc_head

    arrays = write_fake_voc_head(tmp_path / "head.npz")
    model = build_model("deeplabv3plus_mobilenetv2", 3, input_size=(64, 64), head="mobile",
                        voc_prior=True)
    load_voc_head(model, tmp_path / "head.npz")
    voc = model.get_layer("voc_logits")
    assert not voc.trainable and voc not in [l for l in model.layers if l.trainable_weights]
    np.testing.assert_array_equal(voc.get_weights()[0], arrays["logits_kernel"])
    np.testing.assert_array_equal(voc.get_weights()[1], arrays["logits_bias"])
    classifier = model.get_layer("classifier")
    classifier.set_weights([np.zeros_like(w) for w in classifier.get_weights()])
    x = images((64, 64))
    features = keras.Model(model.input, model.get_layer("aspp_proj_relu").output)(x, training=False)
    voc_pet = keras.ops.convert_to_numpy(PetPrior(3)(voc(features)))
    summed = keras.Model(model.input, model.get_layer("classifier_plus_prior").output)
    ours = keras.ops.convert_to_numpy(summed(x, training=False))
    expected = keras.layers.Resizing(*ours.shape[1:3], interpolation="bilinear")(voc_pet)
    np.testing.assert_allclose(ours, keras.ops.convert_to_numpy(expected), rtol=1e-4, atol=1e-4)


def test_voc_prior_refusals(tmp_path):
    from segdemo.models.voc_head import HeadWeightsError, load_voc_head

    with pytest.raises(ValueError, match="voc_prior needs head='mobile'"):
        build_model("deeplabv3plus_mobilenetv2", 3, input_size=(64, 64), voc_prior=True)
    write_fake_voc_head(tmp_path / "head.npz", logits=False)
    model = build_model("deeplabv3plus_mobilenetv2", 3, input_size=(64, 64), head="mobile",
                        voc_prior=True)
    with pytest.raises(HeadWeightsError, match="lacks logits_kernel"):
        load_voc_head(model, tmp_path / "head.npz")


def test_guide_fusion_keeps_our_border_and_blends_the_pet_split():
    """P(border) is ours; P(pet | not border) is ours^(1-w) * VOC's cat-or-dog^w, normalised."""
    from segdemo.models.voc_guide import GuideFusion

    rng = np.random.default_rng(2)
    ours = rng.normal(0, 2, (2, 4, 5, 3)).astype("float32")
    voc = rng.normal(0, 3, (2, 4, 5, 21)).astype("float32")
    fusion = GuideFusion(0.7)
    fused = np.exp(keras.ops.convert_to_numpy(fusion([ours, voc])).astype("float64"))

    p = np.exp(ours.astype("float64"))
    p /= p.sum(axis=-1, keepdims=True)
    q = np.exp(voc.astype("float64"))
    q /= q.sum(axis=-1, keepdims=True)
    voc_pet = q[..., 8] + q[..., 12]
    our_pet = p[..., 0] / (p[..., 0] + p[..., 1])
    pet = our_pet ** 0.3 * voc_pet ** 0.7
    pet = pet / (pet + (1 - our_pet) ** 0.3 * (1 - voc_pet) ** 0.7)
    expected = np.stack([(1 - p[..., 2]) * pet, (1 - p[..., 2]) * (1 - pet), p[..., 2]], -1)
    np.testing.assert_allclose(fused, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fused.sum(axis=-1), 1.0, atol=1e-5)
    again = GuideFusion.from_config(fusion.get_config())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(again([ours, voc])),
                               keras.ops.convert_to_numpy(fusion([ours, voc])), rtol=1e-6)
    # weight 1: the split is the VOC model's alone
    only_voc = np.exp(keras.ops.convert_to_numpy(GuideFusion(1.0)([ours, voc])))
    np.testing.assert_allclose(only_voc[..., 0] / (only_voc[..., 0] + only_voc[..., 1]), voc_pet,
                               rtol=1e-4)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="weight must be in"):
            GuideFusion(bad)


def test_voc_guide_wraps_a_model_with_the_frozen_voc_branch(tmp_path):
    """voc_guide=w: the VOC branch loads from the encoder and head files, trains nothing, saves
    and reloads with the model, and leaves the wrapped model's border probability as it was."""
    from segdemo.models.voc_guide import GUIDE_NAME, load_voc_guide

    head = write_fake_voc_head(tmp_path / "head.npz")
    encoder = write_fake_voc_encoder(tmp_path / "encoder.weights.h5")
    model = fast_build("deeplabv3plus_mobilenetv2", head="mobile", voc_guide=0.5)
    load_voc_guide(model, encoder, tmp_path / "head.npz")
    guide = model.get_layer(GUIDE_NAME)
    assert not guide.trainable_weights and model.trainable_weights
    np.testing.assert_array_equal(guide.get_layer("voc_logits").get_weights()[0],
                                  head["logits_kernel"])
    x = images((64, 64))
    fused = keras.ops.convert_to_numpy(keras.ops.softmax(model(x, training=False)))
    unguided = keras.Model(model.input, model.get_layer("voc_guide_fusion").input[0])
    border = keras.ops.convert_to_numpy(keras.ops.softmax(unguided(x, training=False)))[..., 2]
    np.testing.assert_allclose(fused[..., 2], border, rtol=1e-4, atol=1e-6)

    model.save_weights(tmp_path / "model.weights.h5")
    fresh = fast_build("deeplabv3plus_mobilenetv2", head="mobile", voc_guide=0.5)
    fresh.load_weights(tmp_path / "model.weights.h5")
    np.testing.assert_allclose(predict(fresh, x), predict(model, x), rtol=1e-5, atol=1e-5)


def test_voc_guide_refuses_other_preprocessing():
    with pytest.raises(ValueError, match=r"\[-1, 1\] inputs.*'caffe'"):
        fast_build("fcn8s_vgg16", voc_guide=0.5)
