import numpy as np
import pytest

from segdemo.metrics import PixelAccuracy, confusion_matrix, mean_iou_metric, scores

LABELS = np.array([[0, 0, 1, 1], [1, 2, 2, 255]])
PREDS = np.array([[0, 1, 1, 1], [2, 2, 0, 0]])


def test_confusion_matrix_counts_and_drops_ignored_pixels():
    cm = confusion_matrix(LABELS, PREDS, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 1], [1, 0, 1]]
    assert cm.sum() == 7


def test_scores_match_hand_computation():
    s = scores(confusion_matrix(LABELS, PREDS, 3), ["a", "b", "c"])
    assert s["pixel_accuracy"] == pytest.approx(4 / 7)
    iou = {"a": 1 / 3, "b": 2 / 4, "c": 1 / 3}  # tp / (label + pred - tp)
    assert s["iou"] == pytest.approx(iou)
    assert s["miou"] == pytest.approx(np.mean(list(iou.values())))
    assert s["dice"]["b"] == pytest.approx(2 * 2 / (3 + 3))
    assert s["class_accuracy"] == pytest.approx({"a": 1 / 2, "b": 2 / 3, "c": 1 / 2})
    assert s["mean_class_accuracy"] == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3)


def test_class_absent_from_labels_and_predictions_is_left_out_of_the_means():
    labels = np.array([0, 0, 1, 1])
    preds = np.array([0, 1, 1, 1])
    s = scores(confusion_matrix(labels, preds, 3))
    assert s["iou"]["2"] is None and s["dice"]["2"] is None and s["class_accuracy"]["2"] is None
    assert s["miou"] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_class_predicted_but_absent_from_labels_scores_zero_iou():
    s = scores(confusion_matrix(np.array([0, 0]), np.array([0, 1]), 2))
    assert s["iou"]["1"] == 0.0 and s["class_accuracy"]["1"] is None
    assert s["miou"] == pytest.approx((0.5 + 0.0) / 2)


def test_out_of_range_label_is_refused():
    with pytest.raises(ValueError, match="label values"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)


def _logits(preds, num_classes=3):
    return np.eye(num_classes, dtype=np.float32)[preds] * 5.0


def test_keras_metrics_agree_with_the_confusion_matrix():
    y_true = LABELS[None]
    y_pred = _logits(PREDS)[None]
    expected = scores(confusion_matrix(LABELS, PREDS, 3))
    accuracy = PixelAccuracy()
    accuracy.update_state(y_true, y_pred)
    assert float(accuracy.result()) == pytest.approx(expected["pixel_accuracy"])
    miou = mean_iou_metric(3)
    miou.update_state(y_true, y_pred)
    assert float(miou.result()) == pytest.approx(expected["miou"], rel=1e-6)


def test_keras_miou_leaves_out_absent_classes_like_scores():
    labels = np.array([[0, 0, 1, 1]])
    preds = np.array([[0, 1, 1, 1]])
    miou = mean_iou_metric(3)
    miou.update_state(labels[None], _logits(preds)[None])
    assert float(miou.result()) == pytest.approx(scores(confusion_matrix(labels, preds, 3))["miou"])
