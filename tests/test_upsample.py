"""The edge-band label resize gives the labels of the exact path (TF bilinear float32 + argmax)."""
import numpy as np
import pytest

from segdemo.upsample import bilinear_labels, exact_labels


def _smooth_probabilities(height, width, classes=3, seed=0):
    """Softmax of smooth random logits: regions with edges between them, as a network gives."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(max(2, height // 6), max(2, width // 6), classes)).astype(np.float32)
    logits = tf.image.resize(coarse * 4, (height, width), method="bicubic").numpy()
    logits += rng.normal(size=logits.shape).astype(np.float32) * 0.2
    return tf.nn.softmax(logits).numpy()


@pytest.mark.parametrize("source, size", [
    ((32, 32), (300, 400)),   # enlarged, another aspect ratio
    ((40, 24), (41, 25)),     # barely enlarged
    ((32, 32), (7, 90)),      # shrunk in y, enlarged in x
    ((16, 16), (16, 16)),     # the same size
    ((20, 30), (1, 1)),
])
def test_labels_match_the_exact_path(source, size):
    for seed in range(3):
        probs = _smooth_probabilities(*source, seed=seed)
        expected = exact_labels(probs, size)
        labels = bilinear_labels(probs, size)
        assert labels.shape == size and labels.dtype == np.uint8
        assert np.mean(labels != expected) <= 1e-4  # float rounding at exact ties only
        assert len(np.unique(expected)) > 1 or size == (1, 1)  # the case has edges to get right


def test_more_classes_and_two_classes():
    for classes in (2, 5):
        probs = _smooth_probabilities(24, 24, classes=classes, seed=7)
        np.testing.assert_array_equal(bilinear_labels(probs, (100, 77)),
                                      exact_labels(probs, (100, 77)))
