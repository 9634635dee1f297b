import numpy as np
import pytest
import tensorflow as tf

from segdemo.distill import DistillError, Teacher
from segdemo.models import get_architecture


def _teacher(alpha: float) -> Teacher:
    arch = get_architecture("unet")
    model = arch.build(3, (16, 16), base_filters=4, depth=2)
    card = {"id": "unet", "input_size": [16, 16], "preprocessing": "unit",
            "classes": [{"name": n, "color": [0, 0, 0]} for n in ("pet", "background", "border")]}
    return Teacher(model, card, alpha)


def test_targets_mix_the_teachers_probabilities_with_the_labels_and_fill_ignored_pixels():
    teacher = _teacher(0.25)
    images = tf.random.stateless_uniform((2, 24, 24, 3), (1, 2), 0, 255)
    masks = tf.constant(np.where(np.arange(24 * 24).reshape(1, 24, 24) % 7 == 0, 255,
                                 np.arange(24 * 24).reshape(1, 24, 24) % 3).repeat(2, 0), tf.int32)
    resized = tf.image.resize(images, (16, 16))
    probs = tf.image.resize(tf.nn.softmax(teacher.model(resized / 255.0), -1), (24, 24)).numpy()
    targets = teacher.targets(images, masks).numpy()
    masks = masks.numpy()
    assert targets.shape == (2, 24, 24, 3)
    np.testing.assert_allclose(targets.sum(-1), 1.0, atol=1e-5)
    ignored = masks == 255
    np.testing.assert_allclose(targets[ignored], probs[ignored], atol=1e-5)
    onehot = np.eye(3)[np.where(ignored, 0, masks)]
    np.testing.assert_allclose(targets[~ignored], (0.25 * probs + 0.75 * onehot)[~ignored], atol=1e-5)


def test_a_weight_outside_zero_one_is_refused():
    with pytest.raises(DistillError, match="distillation weight"):
        _teacher(0.0)
