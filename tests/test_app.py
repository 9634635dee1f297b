"""The dashboard through Streamlit's AppTest: widgets, tabs, uploads, bad files, the side-by-side
rows, TTA and ensemble rows, the cut-out, batches and the example gallery, and proof (via
`segdemo.dashboard.inference_calls`) that sliders, toggles and tab switches run no new inference."""
from __future__ import annotations

import base64
import csv
import io
import json
import re
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from segdemo import dashboard as db
from test_dashboard import photo_bytes, write_tiny_model
from fixtures import make_oxford

APP = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")
TIMEOUT_S = 180  # first runs build models on a busy CPU
CLASS_NAMES = ("pet", "background", "border")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """unet and unet_mobilenetv2 usable; deeplabv3plus_xception with corrupt weights."""
    root = tmp_path_factory.mktemp("weights")
    write_tiny_model(root, "unet")
    write_tiny_model(root, "unet_mobilenetv2")
    corrupt = root / "deeplabv3plus_xception"
    corrupt.mkdir()
    (corrupt / "card.json").write_text((root / "unet" / "card.json").read_text())
    (corrupt / "model.weights.h5").write_bytes(b"\0" * 64)
    return root


def start(monkeypatch, weights: Path, data: Path | None = None) -> AppTest:
    monkeypatch.setenv("SEGDEMO_WEIGHTS", str(weights))
    if data is None:
        monkeypatch.delenv("SEGDEMO_DATA", raising=False)
    else:
        monkeypatch.setenv("SEGDEMO_DATA", str(data))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    assert not at.exception
    return at


def upload(at: AppTest, *files: tuple[str, bytes]) -> AppTest:
    at.file_uploader(key="uploads").set_value([(n, b, "application/octet-stream") for n, b in files])
    return at.run()


def captions(at: AppTest) -> list[str]:
    return [shown(c) for image in at.image for c in image.captions]


def shown(markdown: str) -> str:
    """What a browser shows for text that went through `db.plain` (escapes and word joiners)."""
    return re.sub(r"\\(.)", r"\1", markdown).replace(db.WORD_JOINER, "")


def texts(elements) -> list[str]:
    return [shown(e.value) for e in elements]


def open_tab(at: AppTest, label: str) -> AppTest:
    at.session_state["tab"] = label
    return at.run()


def figures(at: AppTest) -> list[dict]:
    """The plotly figure of every chart on the page."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def inspectors(at: AppTest) -> list[dict]:
    """The mask figures (hover read-out + photo/mask slider) of the Segment tab's rows."""
    return [f for f in figures(at) if f["layout"].get("sliders")]


def histories(node) -> list[str]:
    """The per-row training-history charts (inline SVG) under `node` (the app or a column)."""
    return [m.value for m in node.markdown if 'aria-label="Training history"' in m.value]


def decoded(spec) -> np.ndarray:
    """A plotly typed-array spec (numpy arrays travel base64-encoded) as an array."""
    shape = [int(n) for n in spec["shape"].split(",")]
    return np.frombuffer(base64.b64decode(spec["bdata"]), np.dtype(spec["dtype"])).reshape(shape)


def row_titles(at: AppTest) -> list[str]:
    return [shown(m.value).split("**")[1] for m in at.markdown if m.value.startswith("**")]


@pytest.fixture
def downloads(monkeypatch) -> dict:
    """Every download button's data by key, deferred callables as they are, so that a test can
    'click' one (AppTest serves no files)."""
    from streamlit.elements.widgets.button import ButtonMixin

    seen: dict = {}

    def recording(original):
        def download_button(*args, **kwargs):
            seen[kwargs["key"]] = kwargs.get("data", args[-1] if len(args) > 1 else None)
            return original(*args, **kwargs)
        return download_button

    monkeypatch.setattr(ButtonMixin, "download_button", recording(ButtonMixin.download_button))
    monkeypatch.setattr(st, "download_button", recording(st.download_button))
    return seen


def test_starts_with_the_default_and_with_an_empty_weights_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("SEGDEMO_WEIGHTS", raising=False)
    assert not AppTest.from_file(APP, default_timeout=TIMEOUT_S).run().exception
    at = start(monkeypatch, tmp_path)
    assert "No trained model" in at.warning[0].value
    assert all(box.disabled for box in at.checkbox) and len(at.checkbox) == 5
    assert all(box.label.endswith(" · not trained") for box in at.checkbox)


def test_reruns_do_not_clear_the_keras_session(monkeypatch, weights):
    # Streamlit's post-run cleanup calls keras.backend.clear_session() (a full garbage collection
    # and TensorFlow's kernel cache emptied) after every run; the app replaces it on its first run.
    from streamlit.runtime.scriptrunner import script_runner

    cleared = []
    monkeypatch.setattr(script_runner, "_clean_problem_modules", lambda: cleared.append(1))
    at = start(monkeypatch, weights)
    upload(at, ("keras.png", photo_bytes(56, 40)))  # a photo of its own: results are cached
    assert not at.exception and "Overlay (50% mask)" in captions(at)
    assert cleared == [] and script_runner._clean_problem_modules() is None


def test_two_models_tabs_and_opacity_without_new_inference(monkeypatch, weights):
    at = start(monkeypatch, weights)
    sidebar = " ".join(texts(at.sidebar.caption))
    assert "Unavailable: deeplabv3plus_xception: model.weights.h5 is corrupt" in sidebar
    assert "Test mIoU" not in sidebar  # descriptions and scores sit behind the help icons
    assert "Test mIoU: 0.611" in at.checkbox(key="model_unet_mobilenetv2").help
    assert at.checkbox(key="model_fcn8s_vgg16").label == "FCN-8s with VGG16 encoder (half width) · not trained"
    assert at.checkbox(key="model_deeplabv3plus_xception").disabled
    at.checkbox(key="model_unet").check()
    before = db.inference_calls
    upload(at, ("cat.png", photo_bytes(64, 48)))
    assert not at.exception and db.inference_calls == before + 2  # one per model
    shown = captions(at)
    assert shown.count("Input") == 2 and shown.count("Overlay (50% mask)") == 2
    assert not at.get("plotly_chart") and len(histories(at)) == 2  # no Plotly by default
    at.toggle(key="inspector").set_value(True).run()
    assert len(inspectors(at)) == 2 and db.inference_calls == before + 2
    legends = [m.value for m in at.markdown if "background" in m.value]
    assert len(legends) == 2 and all(name in legends[0] for name in CLASS_NAMES)
    assert sum("Covers: pet" in c.value for c in at.caption) == 2
    assert sum("segmenter" in m.value and "ms for this photo" in m.value for m in at.markdown) == 2
    assert [b.label for b in at.download_button][1:] == [
        "Mask PNG (class indices)", "Overlay PNG", "Cut-out PNG"] * 2
    assert at.download_button(key="batch_zip").label.startswith("All results as one ZIP")

    at.slider(key="opacity").set_value(0.8).run()
    assert captions(at).count("Overlay (80% mask)") == 2
    at.toggle(key="legend").set_value(False).run()
    assert not [m for m in at.markdown if "background" in m.value]
    at.toggle(key="confidence").set_value(True).run()
    assert sum(c.startswith("Confidence") for c in captions(at)) == 2
    at.toggle(key="cutout").set_value(True).run()
    assert captions(at).count("Cut-out (transparent background)") == 2

    open_tab(at, "Compare")
    assert len(at.get("plotly_chart")) == 1
    assert "disagree" in figures(at)[0]["layout"]["title"]["text"]
    table = at.dataframe[0].value
    assert len(table) == 2 and {"test mIoU", "segmenter ms (this photo)"} <= set(table.columns)
    open_tab(at, "Training")
    curves = {(trace["name"], trace["meta"]) for trace in figures(at)[0]["data"]}
    assert curves == {(m, key) for m in ("U-Net (from scratch)", "U-Net with MobileNetV2 encoder")
                      for key in ("loss", "val_loss", "accuracy", "val_accuracy", "val_miou")}
    open_tab(at, "Evaluation")
    assert len(at.get("plotly_chart")) == 3  # IoU bars + a confusion matrix per model
    open_tab(at, "Segment")
    assert not at.exception
    assert db.inference_calls == before + 2, "a slider, toggle or tab switch re-ran inference"


def test_each_row_sets_input_mask_overlay_and_history_side_by_side(monkeypatch, weights):
    """One row of four columns per model; the history (inline SVG) marks the kept epoch; with the
    pixel inspector on, the mask figure carries the probabilities its hover read-out shows (whole
    percentages over the photo, as the kept probabilities say) and a slider from photo to mask,
    and is built once."""
    from segdemo import plots
    from segdemo.inference import Segmenter

    built = []
    monkeypatch.setattr(plots, "inspect_figure",
                        lambda *args, _make=plots.inspect_figure: built.append(1) or _make(*args))
    at = start(monkeypatch, weights)
    data = photo_bytes(80, 60, seed=4)
    upload(at, ("cat.png", data))
    columns = at.columns
    assert len(columns) == 4  # input | mask | overlay | history, in that order
    assert [len(c.image) for c in columns] == [1, 1, 1, 0]  # the mask is a plain image by default
    assert [len(histories(c)) for c in columns] == [0, 0, 0, 1]
    (history,) = histories(at)
    assert "<title>kept: epoch 3, val_miou" in history and "<title>epoch 1: loss" in history
    assert "weights kept from epoch 3" in " ".join(texts(at.caption))
    assert not at.get("plotly_chart")
    at.toggle(key="inspector").set_value(True).run()
    columns = at.columns
    assert [len(c.image) for c in columns] == [1, 0, 1, 0]
    assert [len(c.get("plotly_chart")) for c in columns] == [0, 1, 0, 0]
    (inspector,) = inspectors(at)
    photo, mask, hover = inspector["data"]
    assert (photo["type"], mask["type"], hover["type"]) == ("image", "image", "heatmap")
    expected = Segmenter.load(weights / "unet_mobilenetv2").predict(db.decode_input(data, "x").image)
    grid = decoded(hover["customdata"])
    np.testing.assert_array_equal(grid, db.probability_grid(expected.input_probabilities, (80, 60)))
    assert grid.shape == (60, 80, 3) and hover["hovertemplate"].startswith(
        "x %{x}, y %{y}<br>pet: %{customdata[0]}%<br>background: %{customdata[1]}%")
    steps = inspector["layout"]["sliders"][0]["steps"]
    assert [s["args"] for s in steps][0] == [{"opacity": 0.0}, [1]]
    at.slider(key="opacity").set_value(0.3).run()
    at.toggle(key="legend").set_value(False).run()
    assert len(built) == 1 and len(inspectors(at)) == 1  # reruns reuse the figure


def test_tta_and_ensemble_rows_run_once_per_setting(monkeypatch, weights):
    at = start(monkeypatch, weights)
    assert at.toggle(key="ensemble").disabled  # one model chosen
    upload(at, ("cat.png", photo_bytes(50, 40)))
    at.checkbox(key="model_unet").check().run()
    before = db.inference_calls
    at.toggle(key="ensemble").set_value(True).run()
    assert not at.exception and db.inference_calls == before + 1
    assert row_titles(at) == ["U-Net with MobileNetV2 encoder", "U-Net (from scratch)",
                              "Ensemble of U-Net with MobileNetV2 encoder + U-Net (from scratch)"]
    assert any("an ensemble is not trained" in c for c in texts(at.caption))
    at.toggle(key="tta").set_value(True).run()
    assert db.inference_calls == before + 4  # two models and their ensemble, mirrored
    assert all(t.endswith(" · flip TTA") for t in row_titles(at)) and len(row_titles(at)) == 3
    at.toggle(key="tta").set_value(False).run()
    at.toggle(key="ensemble").set_value(False).run()
    at.toggle(key="ensemble").set_value(True).run()
    at.toggle(key="tta").set_value(True).run()
    assert not at.exception and db.inference_calls == before + 4, "a setting seen before re-ran"
    open_tab(at, "Compare")
    table = at.dataframe[0].value
    assert len(table) == 3 and table["test mIoU"].isna().all()


def test_cutout_and_batch_zip_downloads_at_the_original_size(monkeypatch, weights, downloads):
    at = start(monkeypatch, weights)
    at.checkbox(key="model_unet").check().run()
    before = db.inference_calls
    upload(at, ("a.png", photo_bytes(70, 50, seed=1)), ("b.jpg", photo_bytes(30, 20, "JPEG", 2)),
           ("a.jpg", photo_bytes(40, 40, "JPEG", 3)), ("bad.png", b"not an image"))
    assert db.inference_calls == before + 6 and len(texts(at.error)) == 1
    (bar,) = at.get("progress")
    assert re.fullmatch(r"Segmenting 3 photos with 2 models: 6 of 6 results ready in \d+\.\d s",
                        bar.proto.text) and bar.proto.value == 100
    cut = Image.open(io.BytesIO(downloads["cutout_png_0_unet"]()))
    assert cut.mode == "RGBA" and cut.size == (70, 50)
    archive = zipfile.ZipFile(io.BytesIO(downloads["batch_zip"]()))
    assert len(archive.namelist()) == 6 * 3 + 1
    assert {"unet/a_mask.png", "unet/a-2_cutout.png", "unet_mobilenetv2/b_overlay.png",
            "summary.csv"} <= set(archive.namelist())
    mask = Image.open(io.BytesIO(archive.read("unet_mobilenetv2/b_mask.png")))
    assert mask.mode == "P" and mask.size == (30, 20) and np.asarray(mask).max() <= 2
    rows = list(csv.DictReader(io.StringIO(archive.read("summary.csv").decode())))
    assert [(r["photo"], r["model"]) for r in rows] == [
        (p, m) for p in ("a.png", "b.jpg", "a.jpg") for m in ("unet_mobilenetv2", "unet")]
    assert all(float(r["segmenter_ms"]) > 0 and r["batch_size"] for r in rows)
    assert abs(sum(float(rows[0][f"share_{c}"]) for c in CLASS_NAMES) - 1) < 1e-5
    at.run()
    assert not at.get("progress") and db.inference_calls == before + 6  # cached: no bar, no run


def test_the_empty_page_offers_example_photos(monkeypatch, weights):
    at = start(monkeypatch, weights)
    assert [b.label for b in at.main.button] == ["Chelsea the cat", "Coffee cup", "Astronaut",
                                                 "Rocket"]
    assert len(at.main.image) == 4
    before = db.inference_calls
    at.button(key="gallery_coffee.png").click().run()
    assert not at.exception and db.inference_calls == before + 1
    assert at.radio(key="source").value == "Examples"
    assert at.selectbox(key="example").value == "scikit-image: Coffee cup"
    assert texts(at.main.subheader) == ["scikit-image: Coffee cup"]
    assert "600×400 pixels" in texts(at.caption) and not at.main.button


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height 1-bit pixels: a decompression bomb in 60 bytes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _cut(data: bytes) -> bytes:
    """The first two thirds: headers intact, the scan data stops short (an interrupted copy)."""
    return data[: len(data) * 2 // 3]


def _bad_and_odd_files() -> tuple[dict[str, bytes], dict[str, str], dict[str, str]]:
    """The files, name -> expected error, and name -> size caption once decoded."""
    rng = np.random.default_rng(0)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 60x40, shown rotated to 40x60
    frames = [Image.new("P", (20, 10), i) for i in range(3)]
    files = {
        "empty.jpg": b"",
        "truncated.jpg": _cut(photo_bytes(80, 60, "JPEG")),
        "notes.png": b"shopping list: milk, eggs\n",
        "bomb.png": _png_header(20_000, 20_000),
        "one_pixel.png": _save(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"),
        "deep.png": _save(Image.fromarray(rng.integers(0, 65535, (30, 20), dtype=np.uint16)), "PNG"),
        "cmyk.jpg": _save(Image.new("CMYK", (24, 16), (0, 128, 255, 0)), "JPEG"),
        "animated.gif": _save(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "rotated.jpg": _save(Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)),
                             "JPEG", exif=exif.tobytes()),
    }
    errors = {"empty.jpg": "empty.jpg is empty (0 bytes)",
              "truncated.jpg": "truncated.jpg could not be decoded: the file is truncated",
              "notes.png": "notes.png is not an image file that can be read",
              "bomb.png": "bomb.png is too large to open safely"}
    sizes = {"one_pixel.png": "1×1 pixels", "deep.png": "20×30 pixels", "cmyk.jpg": "24×16 pixels",
             "animated.gif": "20×10 pixels", "rotated.jpg": "40×60 pixels"}
    return files, errors, sizes


def test_each_bad_input_gets_its_own_error_and_the_rest_still_work(monkeypatch, weights):
    files, errors, sizes = _bad_and_odd_files()
    assert Image.open(io.BytesIO(files["deep.png"])).mode.startswith("I")  # really 16-bit
    at = start(monkeypatch, weights)
    upload(at, *files.items())
    assert not at.exception
    messages = texts(at.error)
    assert len(messages) == len(errors)
    for name, message in errors.items():
        assert any(m.startswith(message) for m in messages), (name, messages)
    assert texts(at.main.subheader) == list(files)
    page = [c.value for c in at.caption]
    for name, size in sizes.items():
        assert size in page, name
    assert captions(at).count("Overlay (50% mask)") == len(sizes)


@pytest.mark.filterwarnings("ignore:Skipping nested container")
def test_a_model_that_fails_to_load_is_reported_and_the_other_works(monkeypatch, tmp_path):
    write_tiny_model(tmp_path, "unet_mobilenetv2")
    folder = write_tiny_model(tmp_path, "unet")
    card = (folder / "card.json").read_text().replace('"base_filters": 4', '"base_filters": 8')
    (folder / "card.json").write_text(card)
    at = start(monkeypatch, tmp_path)
    at.checkbox(key="model_unet").check()
    upload(at, ("cat.png", photo_bytes()))
    assert not at.exception
    assert "could not be loaded into unet" in at.error[0].value
    assert captions(at).count("Overlay (50% mask)") == 1


def test_examples_camera_and_dataset_browsing(monkeypatch, weights, tmp_path):
    data = make_oxford(tmp_path / "pets", trainval=4, test=3)
    at = start(monkeypatch, weights, data)
    at.radio(key="source").set_value("Examples").run()
    options = at.selectbox(key="example").options
    assert "scikit-image: Chelsea the cat" in options and "dataset: Cat_4" in options
    assert not at.error and "451×300 pixels" in [c.value for c in at.caption]
    at.selectbox(key="example").set_value("dataset: Cat_5").run()
    assert texts(at.main.subheader)[0] == "Cat_5.png" and not at.exception
    assert "Mask PNG (class indices)" in [b.label for b in at.download_button]

    at.radio(key="source").set_value("Camera").run()
    at.camera_input(key="camera").set_value(("snap.jpg", photo_bytes(40, 30, "JPEG"), "image/jpeg"))
    at.run()
    assert texts(at.main.subheader)[0] == "camera.jpg" and "Overlay (50% mask)" in captions(at)

    open_tab(at, "Evaluation")  # per_image of the tiny metrics.json names no Cat_*: scored live
    assert not at.exception
    assert "scoring all 3 test-split images live" in " ".join(texts(at.caption))
    ranked = [c for c in captions(at) if c.startswith("Cat_")]
    assert len(ranked) == 3 and captions(at).count("Ground truth") == 3
    scores = [float(c.split("mIoU ")[1]) for c in ranked]
    assert scores == sorted(scores)


def test_dataset_browsing_uses_metrics_per_image_when_it_matches(monkeypatch, tmp_path):
    data = make_oxford(tmp_path / "pets", trainval=4, test=3)
    write_tiny_model(tmp_path / "weights", "unet_mobilenetv2",
                     test_names=["Cat_4", "Cat_5", "Cat_6"])
    at = start(monkeypatch, tmp_path / "weights", data)
    open_tab(at, "Evaluation")
    assert not at.exception
    ranked = [c for c in captions(at) if c.startswith("Cat_")]
    assert ranked == ["Cat_6 · mIoU 0.700", "Cat_5 · mIoU 0.800", "Cat_4 · mIoU 0.900"]


def test_file_names_show_as_text_and_wrong_types_are_named(monkeypatch, weights):
    at = start(monkeypatch, weights)
    name = "a [x](http://example.com).jpg"
    upload(at, (name, photo_bytes(fmt="JPEG")),
           ("drawing.svg", b'<svg xmlns="http://www.w3.org/2000/svg"/>'))
    assert not at.exception
    heading = at.main.subheader[0].value
    assert shown(heading) == name
    assert not re.search(r"(?<!\\)[\[\]]", heading) and "://" not in heading  # no link syntax
    assert captions(at).count("Overlay (50% mask)") == 1
    (svg,) = texts(at.error)
    assert svg.startswith("drawing.svg: SVG files are not accepted") and "JPG, JPEG, PNG" in svg
    assert any("MB per file" in c and "JPG" in c for c in texts(at.sidebar.caption))


def test_an_upload_the_server_lost_is_reported(monkeypatch, weights):
    """Ticking another model keeps the upload (fixed uploader key); if the server no longer holds
    the files (the session was started again), the page says so instead of showing nothing."""
    from streamlit.testing.v1.local_script_runner import LocalScriptRunner

    at = start(monkeypatch, weights)
    upload(at, ("cat.png", photo_bytes()))
    uploader_id = at.file_uploader(key="uploads").id
    at.checkbox(key="model_unet").check().run()
    assert at.file_uploader(key="uploads").id == uploader_id
    assert captions(at).count("Overlay (50% mask)") == 2
    monkeypatch.setattr(LocalScriptRunner, "register_file", lambda self, rec: None)
    at.run()
    assert not at.exception
    assert any("1 uploaded file(s) are no longer on the server" in e for e in texts(at.error))


def test_truncated_weights_are_not_offered(monkeypatch, tmp_path):
    write_tiny_model(tmp_path, "unet_mobilenetv2")
    weights = write_tiny_model(tmp_path, "unet") / "model.weights.h5"
    with weights.open("r+b") as fh:
        fh.truncate(weights.stat().st_size // 2)
    at = start(monkeypatch, tmp_path)
    assert at.checkbox(key="model_unet").disabled
    sidebar = texts(at.sidebar.caption)
    problem = next(c for c in sidebar if c.startswith("Unavailable: unet:"))
    assert "model.weights.h5 is incomplete" in problem and "Test mIoU" not in problem
    assert "sblock" not in problem and "h5py" not in problem


def test_unreadable_history_and_metrics_say_why(monkeypatch, tmp_path):
    folder = write_tiny_model(tmp_path, "unet_mobilenetv2")
    (folder / "history.json").write_text('{"epoch": 1')
    (folder / "metrics.json").write_text("[]")
    at = start(monkeypatch, tmp_path)
    open_tab(at, "Training")
    (warning,) = texts(at.warning)
    assert warning.startswith("U-Net with MobileNetV2 encoder: history.json is unreadable: it is "
                              "not valid JSON")
    assert not any("no history.json" in c for c in texts(at.caption))
    open_tab(at, "Evaluation")
    assert any("metrics.json is unreadable: it should hold an object of scores, but holds a "
               "JSON list" in w for w in texts(at.warning))


def test_evaluation_names_its_data_and_shows_the_new_scores_when_present(monkeypatch, tmp_path):
    write_tiny_model(tmp_path, "unet")
    folder = write_tiny_model(tmp_path, "unet_mobilenetv2")
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["original_resolution"] |= {"foreground_iou": 0.81, "boundary_f": 0.42}
    metrics["boundary_tolerance_px"] = 3
    (folder / "metrics.json").write_text(json.dumps(metrics))
    at = start(monkeypatch, tmp_path)
    at.checkbox(key="model_unet").check().run()
    open_tab(at, "Evaluation")
    table = at.dataframe[0].value.set_index("model")
    assert table.loc["U-Net with MobileNetV2 encoder", "foreground IoU"] == 0.81
    assert table.loc["U-Net with MobileNetV2 encoder", "boundary F"] == 0.42
    assert table.loc["U-Net with MobileNetV2 encoder", "boundary tolerance (px)"] == 3
    assert table["scored on"].tolist() == ["test split of tiny-pets, 6 images"] * 2
    titles = [f["layout"]["title"]["text"] for f in figures(at)]
    assert titles[0] == "Per-class IoU · test split of tiny-pets, 6 images"
    assert all(t.endswith("· test split of tiny-pets, 6 images") for t in titles[1:])
    (folder / "metrics.json").write_text(json.dumps(metrics | {"original_resolution": {
        k: v for k, v in metrics["original_resolution"].items()
        if k not in ("foreground_iou", "boundary_f")}}))
    at = start(monkeypatch, tmp_path)
    open_tab(at, "Evaluation")
    assert "foreground IoU" not in at.dataframe[0].value.columns


def test_unsure_masks_get_a_hint_and_border_is_explained(monkeypatch, weights):
    at = start(monkeypatch, weights)
    upload(at, ("cat.png", photo_bytes()))
    border = [c for c in texts(at.caption) if c.startswith("border:")]
    assert border == [db.CLASS_NOTES["border"]]
    monkeypatch.setattr(db, "NOT_FOREGROUND", ())  # every pixel counts as marked
    monkeypatch.setattr(db, "UNSURE_PROBABILITY", 1.01)  # and as unsure
    at.run()
    assert any(w.startswith("This photo may be unlike the photos the model was trained on: it is "
                            "unsure about 100% of what it marks as pet or background or border")
               for w in texts(at.warning))
    monkeypatch.setattr(db, "UNSURE_PROBABILITY", 0.0)
    at.run()
    assert not at.warning
