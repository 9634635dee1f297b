import numpy as np
from PIL import Image

from segdemo import plots


def _history(epochs: int, with_miou: bool = True) -> list[dict]:
    rows = [{"epoch": e, "loss": 1 / e, "val_loss": 1.5 / e, "accuracy": 0.5, "val_accuracy": 0.4}
            for e in range(1, epochs + 1)]
    if with_miou:
        for r in rows:
            r["val_miou"] = 0.5
    return rows


def test_history_overlays_models_with_epochs_on_hover():
    fig = plots.history_figure({"A": _history(3), "B": _history(5, with_miou=False)})
    curves = [(t.name, t.meta) for t in fig.data]
    assert curves == [("A", "loss"), ("A", "val_loss"), ("A", "accuracy"), ("A", "val_accuracy"),
                      ("A", "val_miou"), ("B", "loss"), ("B", "val_loss"), ("B", "accuracy"),
                      ("B", "val_accuracy")]
    assert [t.showlegend for t in fig.data].count(True) == 2  # one legend entry per model
    assert list(fig.data[0].x) == [1, 2, 3] and list(fig.data[5].x) == [1, 2, 3, 4, 5]
    assert all("epoch %{x}" in t.hovertemplate and t.meta in t.hovertemplate for t in fig.data)
    assert fig.data[0].line.color == fig.data[1].line.color != fig.data[5].line.color
    assert fig.data[1].line.dash == "dash" and fig.data[0].line.dash == "solid"
    assert [a.text for a in fig.layout.annotations] == ["Loss", "Pixel accuracy", "Validation mIoU"]


def test_history_tolerates_gaps_and_nan():
    fig = plots.history_figure({"A": [{"loss": float("nan")}, {"loss": 0.5, "val_loss": None}]})
    assert len(fig.data) == 1 and list(fig.data[0].y) == [None, 0.5] and list(fig.data[0].x) == [1, 2]
    assert len(plots.history_figure({}).data) == 0


def test_iou_bars_group_classes_per_model():
    fig = plots.iou_bars({"A": {"pet": 0.8, "background": None}, "B": {"pet": 0.6, "background": 0.9}})
    assert [t.name for t in fig.data] == ["A", "B"] and fig.layout.barmode == "group"
    assert list(fig.data[0].x) == ["pet", "background"] and list(fig.data[0].y) == [0.8, None]


def test_confusion_matrix_is_row_normalised_with_counts_on_hover():
    fig = plots.confusion_figure([[3, 1], [0, 0]], ["pet", "background"], "A")
    heat = fig.data[0]
    np.testing.assert_allclose(np.asarray(heat.z), [[0.75, 0.25], [0, 0]])
    assert np.asarray(heat.customdata).tolist() == [[3, 1], [0, 0]]
    assert fig.layout.title.text == "A" and fig.layout.yaxis.autorange == "reversed"


def test_disagreement_map_is_shrunk_and_titled_with_the_share():
    counts = np.zeros((1000, 600), np.uint8)
    counts[:250] = 1
    fig = plots.disagreement_figure(counts, 2)
    z = np.asarray(fig.data[0].z)
    assert max(z.shape) <= plots.MAP_SIDE and z.max() == 1
    assert fig.data[0].x[1] == fig.data[0].y[1] > 1  # axes keep original pixel coordinates
    assert "25.0%" in fig.layout.title.text


def test_inspector_carries_probabilities_for_hover_and_a_photo_to_mask_slider():
    grid = np.zeros((3, 4, 3), np.uint8)
    grid[..., 0], grid[..., 1], grid[..., 2] = 70, 20, 10
    grid[:, 2:] = (5, 90, 5)
    photo = Image.new("RGB", (80, 60), (10, 20, 30))
    mask = Image.new("RGB", (80, 60), (255, 140, 0))
    fig = plots.inspect_figure(photo, mask, grid, (400, 300), ["pet", "back<ground>", "border"])
    shown_photo, shown_mask, hover = fig.data
    assert shown_photo.source.startswith("data:image/jpeg;base64,")
    assert shown_mask.source.startswith("data:image/png;base64,")
    assert shown_photo.dx == shown_mask.dx == 5 and shown_photo.x0 == 2.5  # photo coordinates
    assert shown_photo.hoverinfo == shown_mask.hoverinfo == "skip" and hover.opacity == 0
    assert np.array_equal(np.asarray(hover.customdata), grid)
    assert np.asarray(hover.z).tolist() == [[0, 0, 1, 1]] * 3
    assert list(hover.x) == [50, 150, 250, 350] and list(hover.y) == [50, 150, 250]
    assert hover.hovertemplate == ("x %{x}, y %{y}<br>pet: %{customdata[0]}%<br>"
                                   "back&lt;ground&gt;: %{customdata[1]}%<br>"
                                   "border: %{customdata[2]}%<extra></extra>")
    (slider,) = fig.layout.sliders
    assert [s.label for s in slider.steps] == ["photo", "25%", "50%", "75%", "mask"]
    assert slider.steps[0].args == ({"opacity": 0.0}, (1,))  # restyles the mask layer
    assert slider.active == 4 and all(s.method == "restyle" for s in slider.steps)
    assert fig.layout.yaxis.scaleanchor == "x" and list(fig.layout.yaxis.range) == [300, 0]
    assert fig.layout.dragmode is False
    assert plots.figure_bytes(fig) == (len(shown_photo.source) + len(shown_mask.source)
                                       + grid.nbytes + 12)  # + the (3, 4) uint8 labels
