import io

import keras
import numpy as np
import pytest
from PIL import Image

from segdemo.artifacts import ModelLoadError, check_model_dir, load_model, write_json
from segdemo.classes import PET_CLASSES
from segdemo.inference import Segmenter, class_shares, colorize, mask_png, overlay
from segdemo.models import build_model
from segdemo.preprocessing import get_preprocessor

OPTIONS = {"base_filters": 4, "depth": 2}


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir):
    return tiny_model_dir


@pytest.fixture(scope="module")
def segmenter(model_dir):
    return Segmenter.load(model_dir)


def _random_image(width, height, seed=0, mode="RGB"):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert(mode)


def test_masks_come_back_at_the_original_size(segmenter):
    for size in ((500, 375), (33, 97), (1, 1)):
        prediction = segmenter.predict(_random_image(*size))
        assert prediction.size == size
        assert prediction.mask.dtype == np.uint8 and prediction.mask.max() < 3
        assert prediction.confidence.shape == prediction.mask.shape
        assert np.all((prediction.confidence >= 1 / 3 - 1e-6) & (prediction.confidence <= 1 + 1e-6))
        probs = prediction.probabilities()
        assert probs.shape == (size[1], size[0], 3)
        np.testing.assert_array_equal(probs.argmax(-1), prediction.mask)


def test_fast_path_matches_the_plain_keras_call(segmenter):
    image = _random_image(64, 48, seed=3)
    x = np.asarray(image.resize((32, 32), Image.BILINEAR), dtype=np.float32)
    logits = segmenter.model(get_preprocessor("unit")(x)[None], training=False).numpy()[0]
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    prediction = segmenter.predict(image)
    np.testing.assert_allclose(prediction.input_probabilities, expected, atol=1e-5)


def test_no_retracing_over_many_image_sizes(segmenter):
    segmenter.predict(_random_image(50, 40))
    traces = segmenter.trace_count
    for i, size in enumerate([(20, 30), (640, 480), (31, 7), (200, 200), (99, 301)]):
        segmenter.predict(_random_image(*size, seed=i))
    segmenter.predict_batch([_random_image(10, 10), _random_image(70, 20)])
    assert segmenter.trace_count == traces


def test_modes_and_exif_rotation_are_handled(segmenter):
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    _random_image(60, 40).save(buffer, format="JPEG", exif=exif.tobytes())
    assert segmenter.predict(buffer.getvalue()).size == (40, 60)
    for mode in ("L", "RGBA", "P", "CMYK"):
        assert segmenter.predict(_random_image(30, 20, mode=mode)).size == (30, 20)


def test_batch_gives_the_same_masks_as_single_calls(segmenter):
    images = [_random_image(40, 30, seed=s) for s in range(3)]
    batch = segmenter.predict_batch(images)
    for image, result in zip(images, batch):
        np.testing.assert_array_equal(segmenter.predict(image).mask, result.mask)


def test_colour_helpers():
    mask = np.array([[0, 1], [2, 2]], dtype=np.uint8)
    rgb = colorize(mask, PET_CLASSES)
    assert rgb[0, 0].tolist() == list(PET_CLASSES[0].color)
    photo = Image.new("RGB", (2, 2), (0, 0, 0))
    assert np.asarray(overlay(photo, mask, PET_CLASSES, 1.0)).tolist() == rgb.tolist()
    assert np.asarray(overlay(photo, mask, PET_CLASSES, 0.0)).max() == 0
    png = Image.open(io.BytesIO(mask_png(mask, PET_CLASSES)))
    assert png.mode == "P" and np.asarray(png).tolist() == mask.tolist()
    assert class_shares(mask, 3).tolist() == [0.25, 0.25, 0.5]
    with pytest.raises(ValueError, match="opacity"):
        overlay(photo, mask, PET_CLASSES, 1.5)


def test_missing_and_corrupt_weights_are_reported(model_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "card.json").write_text((model_dir / "card.json").read_text())
    assert "not trained" in check_model_dir(broken)
    with pytest.raises(ModelLoadError, match="not trained"):
        load_model(broken)
    (broken / "model.weights.h5").write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="corrupt"):
        Segmenter.load(broken)
    (broken / "card.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="card.json is not valid JSON"):
        Segmenter.load(broken)


def test_weights_for_another_shape_are_reported(model_dir, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    build_model("unet", 3, (32, 32), base_filters=8, depth=2).save_weights(other / "model.weights.h5")
    (other / "card.json").write_text((model_dir / "card.json").read_text())
    with pytest.raises(ModelLoadError, match="could not be loaded into unet"):
        Segmenter.load(other)


def _plain_keras_mask(segmenter, image):
    """The reference: the plain Keras call, softmax, bilinear float resize, argmax in NumPy."""
    import tensorflow as tf

    height, width = segmenter.input_size
    x = np.asarray(image.resize((width, height), Image.BILINEAR), dtype=np.float32)
    logits = segmenter.model(get_preprocessor("unit")(x)[None], training=False)
    probs = tf.nn.softmax(logits, axis=-1)[0]
    resized = tf.image.resize(probs, (image.size[1], image.size[0]), method="bilinear").numpy()
    top_two = np.sort(resized, axis=-1)[..., -2:]
    return resized.argmax(-1), resized.max(-1), top_two[..., 1] - top_two[..., 0]


def _assert_same_labels(actual, reference, margin):
    """Identical labels wherever the reference's top two classes differ by more than float error;
    at a near tie (the graph may fuse ops in another order) either label is right."""
    decisive = margin > 1e-5  # float32 error is ~1e-7; close calls lie on class boundaries
    assert decisive.mean() > 0.9
    np.testing.assert_array_equal(actual[decisive], reference[decisive])


def test_masks_at_the_original_size_match_the_plain_keras_call(segmenter):
    for i, size in enumerate([(500, 375), (37, 91), (1200, 900)]):
        image = _random_image(*size, seed=10 + i)
        mask, confidence, margin = _plain_keras_mask(segmenter, image)
        prediction = segmenter.predict(image)
        _assert_same_labels(prediction.mask, mask, margin)
        np.testing.assert_allclose(prediction.confidence, confidence, atol=1e-6)


def test_xla_option_gives_the_same_answer_without_retracing(model_dir, segmenter):
    xla = Segmenter.load(model_dir, jit_compile=True)
    assert xla.jit_compile and not segmenter.jit_compile
    assert xla.warm_up() > 0
    traces = xla.trace_count
    assert traces == 2  # the network and the resize back, once each
    for i, size in enumerate([(64, 48), (300, 200), (17, 5)]):
        image = _random_image(*size, seed=20 + i)
        fast, reference = xla.predict(image), segmenter.predict(image)
        np.testing.assert_allclose(fast.input_probabilities, reference.input_probabilities,
                                   atol=1e-5)
        mask, _, margin = _plain_keras_mask(segmenter, image)
        _assert_same_labels(fast.mask, mask, margin)
    xla.predict_batch([_random_image(10, 10), _random_image(70, 20)])
    assert xla.trace_count == traces


def test_flip_tta_averages_the_photo_and_its_mirror_image(model_dir, segmenter):
    flipped = Segmenter.load(model_dir, tta="flip")
    image = _random_image(32, 32, seed=3)
    plain = segmenter.predict(image).input_probabilities
    mirror = segmenter.predict(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)).input_probabilities
    expected = (plain + mirror[:, ::-1]) / 2
    np.testing.assert_allclose(flipped.predict(image).input_probabilities, expected, atol=1e-5)
    assert not np.allclose(plain, expected, atol=1e-3)  # the untrained net is not symmetric
    with pytest.raises(ValueError, match="test-time augmentation"):
        Segmenter.load(model_dir, tta="rotate")


def test_ensemble_averages_members_at_the_largest_input_size(model_dir, segmenter, tmp_path):
    from segdemo.ensemble import Ensemble

    keras.utils.set_random_seed(1)
    other = tmp_path / "other"
    other.mkdir()
    build_model("unet", 3, (64, 64), **OPTIONS).save_weights(other / "model.weights.h5")
    write_json(other / "card.json", {
        "id": "unet", "title": "U-Net", "classes": [c.to_json() for c in PET_CLASSES],
        "input_size": [64, 64], "preprocessing": "unit", "options": OPTIONS})
    big = Segmenter.load(other)
    ensemble = Ensemble([segmenter, big])
    assert ensemble.input_size == (64, 64)
    image = _random_image(50, 40, seed=5)
    small = segmenter.predict(image).input_probabilities
    import tensorflow as tf
    expected = (tf.image.resize(small[None], (64, 64)).numpy()[0] + big.predict(image).input_probabilities) / 2
    got = ensemble.predict(image)
    np.testing.assert_allclose(got.input_probabilities, expected, atol=1e-5)
    assert got.mask.shape == (40, 50)
    with pytest.raises(ValueError, match="at least two"):
        Ensemble([segmenter])
