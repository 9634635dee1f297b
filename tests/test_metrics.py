import numpy as np
import pytest

from segdemo.metrics import (PixelAccuracy, boundary_scores, boundary_tolerance_px, confusion_matrix,
                             foreground_iou, mean_iou_metric, scores)

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


def test_foreground_iou_ignores_true_border_and_keeps_predicted_border_as_pet():
    names = ["pet", "background", "border"]
    cm = np.array([[10, 2, 3],   # true pet: 10 pet, 2 background, 3 border
                   [4, 20, 1],   # true background
                   [5, 5, 5]])   # true border: ignored entirely
    # TP = 10 + 3, FP = 4 + 1, FN = 2
    assert foreground_iou(cm, names) == pytest.approx(13 / 20)
    assert foreground_iou(cm, ["a", "b", "c"]) is None
    assert foreground_iou(np.zeros((3, 3)), names) is None


def _halves(split_by_row):
    labels = np.zeros((6, 6), dtype=np.uint8)
    for row, column in enumerate(split_by_row):
        labels[row, column:] = 1
    return labels


def test_boundary_scores_hand_computed():
    truth = _halves([3] * 6)  # true edge pixels: column 2, six of them
    shifted = _halves([5] * 6)  # predicted edge two columns off
    assert boundary_scores(truth, shifted, 1)["boundary_f"] == 0.0
    assert boundary_scores(truth, shifted, 2)["boundary_f"] == pytest.approx(1.0)
    # rows 0-2 right, rows 3-5 two columns off: 8 predicted edge pixels (3 + 3 + 2 along the step),
    # 4 within 1 px of the truth; 4 of the 6 true ones within 1 px of a predicted one
    mixed = _halves([3, 3, 3, 5, 5, 5])
    got = boundary_scores(truth, mixed, 1)
    assert got["boundary_precision"] == pytest.approx(4 / 8)
    assert got["boundary_recall"] == pytest.approx(4 / 6)
    assert got["boundary_f"] == pytest.approx(4 / 7)
    flat = np.zeros((6, 6), dtype=np.uint8)
    assert boundary_scores(flat, flat, 1)["boundary_f"] == 1.0
    assert boundary_scores(truth, flat, 1)["boundary_f"] == 0.0


def test_boundary_edges_next_to_ignored_pixels_do_not_count():
    truth = np.zeros((4, 4), dtype=np.uint8)
    truth[:, 2:] = 255  # right half unlabelled
    prediction = np.zeros((4, 4), dtype=np.uint8)
    prediction[:, 2:] = 1  # an edge only where the truth is ignored
    assert boundary_scores(truth, prediction, 1)["boundary_f"] == 1.0


def test_boundary_tolerance_is_a_share_of_the_diagonal():
    assert boundary_tolerance_px((375, 500)) == 5  # 0.008 * 625
    assert boundary_tolerance_px((10, 10)) == 1



def test_keras_metrics_take_soft_targets_as_their_most_likely_class():
    labels = LABELS[None]
    counted = labels != 255
    onehot = np.eye(3, dtype=np.float32)[np.where(counted, labels, 0)]
    soft = (onehot * 0.6 + 0.2 * (1 - onehot)) * counted[..., None]  # ignored pixel: all zeros
    y_pred = _logits(PREDS)[None]
    for make in (PixelAccuracy, lambda: mean_iou_metric(3)):
        hard, smooth = make(), make()
        hard.update_state(labels, y_pred)
        smooth.update_state(soft, y_pred)
        assert float(smooth.result()) == pytest.approx(float(hard.result()))
