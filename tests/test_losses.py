import math

import numpy as np
import pytest

from segdemo.losses import DiceCrossEntropy, DiceLoss, MaskedCrossEntropy, get_loss


def _log_softmax(row):
    row = np.asarray(row, dtype=np.float64)
    return row - math.log(np.exp(row).sum())


LOGITS = np.array([[[[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]],
                    [[0.0, 3.0, 0.0], [1.0, -2.0, 4.0]]]], dtype=np.float32)  # (1, 2, 2, 3)
LABELS = np.array([[[0, 2], [1, 255]]], dtype=np.int32)


def test_cross_entropy_matches_hand_computation_and_ignores_255():
    expected = -np.mean([_log_softmax(LOGITS[0, 0, 0])[0], _log_softmax(LOGITS[0, 0, 1])[2],
                         _log_softmax(LOGITS[0, 1, 0])[1]])
    value = float(MaskedCrossEntropy()(LABELS, LOGITS))
    assert value == pytest.approx(expected, rel=1e-5)


def test_class_weights_give_a_weighted_mean():
    weights = [1.0, 2.0, 3.0]
    terms = [(_log_softmax(LOGITS[0, 0, 0])[0], 1.0), (_log_softmax(LOGITS[0, 0, 1])[2], 3.0),
             (_log_softmax(LOGITS[0, 1, 0])[1], 2.0)]
    expected = -sum(t * w for t, w in terms) / sum(w for _, w in terms)
    value = float(MaskedCrossEntropy(class_weights=weights)(LABELS, LOGITS))
    assert value == pytest.approx(expected, rel=1e-5)


def test_dice_matches_hand_computation():
    logits = np.log(np.array([[[[0.8, 0.2], [0.4, 0.6]]]], dtype=np.float32))  # probs per pixel
    labels = np.array([[[0, 1]]], dtype=np.int32)
    smooth = 1.0
    dice0 = (2 * 0.8 + smooth) / ((0.8 + 0.4) + 1 + smooth)
    dice1 = (2 * 0.6 + smooth) / ((0.2 + 0.6) + 1 + smooth)
    expected = 1 - (dice0 + dice1) / 2
    assert float(DiceLoss()(labels, logits)) == pytest.approx(expected, rel=1e-5)


def test_dice_is_near_zero_for_a_perfect_prediction_and_ignores_255():
    labels = np.array([[[0, 1], [1, 255]]], dtype=np.int32)
    logits = np.zeros((1, 2, 2, 2), dtype=np.float32)
    logits[0, 0, 0, 0] = logits[0, 0, 1, 1] = logits[0, 1, 0, 1] = 30.0
    logits[0, 1, 1, 0] = 30.0  # wrong but ignored
    assert float(DiceLoss(smooth=1e-6)(labels, logits)) == pytest.approx(0.0, abs=1e-5)


def test_dice_ce_is_the_sum_of_both():
    total = float(DiceCrossEntropy()(LABELS, LOGITS))
    assert total == pytest.approx(float(MaskedCrossEntropy()(LABELS, LOGITS))
                                  + float(DiceLoss()(LABELS, LOGITS)), rel=1e-5)


def test_unknown_loss_is_named():
    with pytest.raises(ValueError, match="focal"):
        get_loss("focal")


def test_soft_targets_give_the_expected_cross_entropy_and_all_zero_rows_are_ignored():
    # Pixel (0,0): half class 0, half class 1; (0,1): one-hot class 2; (1,0): all zeros (ignored).
    soft = np.zeros((1, 2, 2, 3), np.float32)
    soft[0, 0, 0] = [0.5, 0.5, 0.0]
    soft[0, 0, 1] = [0.0, 0.0, 1.0]
    soft[0, 1, 1] = [0.2, 0.0, 0.8]
    first = -(0.5 * _log_softmax(LOGITS[0, 0, 0])[0] + 0.5 * _log_softmax(LOGITS[0, 0, 0])[1])
    second = -_log_softmax(LOGITS[0, 0, 1])[2]
    third = -(0.2 * _log_softmax(LOGITS[0, 1, 1])[0] + 0.8 * _log_softmax(LOGITS[0, 1, 1])[2])
    value = float(MaskedCrossEntropy()(soft, LOGITS))
    assert value == pytest.approx((first + second + third) / 3, rel=1e-5)


def test_one_hot_soft_targets_equal_the_labels_they_encode():
    onehot = np.zeros((1, 2, 2, 3), np.float32)
    for (y, x), label in np.ndenumerate(LABELS[0]):
        if label != 255:
            onehot[0, y, x, label] = 1.0
    for loss in (MaskedCrossEntropy(class_weights=[1.0, 2.0, 3.0]), DiceLoss(), DiceCrossEntropy()):
        assert float(loss(onehot, LOGITS)) == pytest.approx(float(loss(LABELS, LOGITS)), rel=1e-5)
