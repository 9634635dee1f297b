"""Batches as files: the ZIP the dashboard offers and the folder `predict` writes, with the same
names and CSV; folders and glob patterns on the command line; the terminal progress bar."""
from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segdemo.batch_export import (SUMMARY_FILE, BatchExport, ProgressBar, Timing, expand_inputs,
                                  folder_writer, zip_bytes)
from segdemo.classes import PET_CLASSES, make_classes


def _result(width: int = 40, height: int = 30):
    """A photo, its mask (left half pet, right half background) and input-size probabilities."""
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    mask = np.ones((height, width), np.uint8)
    mask[:, : width // 2] = 0
    probabilities = np.zeros((8, 8, 3), np.float32)
    probabilities[:, :4, 0] = probabilities[:, 4:, 1] = 1
    return photo, mask, probabilities


def test_a_zip_holds_each_results_files_and_one_csv():
    photo, mask, probabilities = _result()

    def fill(export: BatchExport) -> None:
        for name in ("cat.jpg", "cat.png"):  # the same stem twice
            export.add(name, "unet", photo, mask, probabilities, PET_CLASSES,
                       Timing(0.0123, 0.004, 2), folder="unet")
        export.add("cat.jpg", "unet-flip", photo, mask, probabilities, PET_CLASSES,
                   Timing(0.02), folder="unet-flip", tta="flip")

    archive = zipfile.ZipFile(io.BytesIO(zip_bytes(fill, opacity=0.3)))
    names = set(archive.namelist())
    assert names == {SUMMARY_FILE} | {f"{folder}/{stem}_{kind}.png"
                                      for folder, stem in (("unet", "cat"), ("unet", "cat-2"),
                                                           ("unet-flip", "cat"))
                                      for kind in ("mask", "overlay", "cutout")}
    assert all(i.compress_type == zipfile.ZIP_STORED for i in archive.infolist()
               if i.filename.endswith(".png"))
    labels = Image.open(io.BytesIO(archive.read("unet/cat_mask.png")))
    assert labels.mode == "P" and np.array_equal(np.asarray(labels), mask)
    cut = Image.open(io.BytesIO(archive.read("unet/cat-2_cutout.png")))
    assert cut.mode == "RGBA" and cut.size == (40, 30)
    alpha = np.asarray(cut)[..., 3]
    assert alpha[:, 0].min() == 255 and alpha[:, -1].max() == 0
    rows = list(csv.DictReader(io.StringIO(archive.read(SUMMARY_FILE).decode())))
    assert [(r["photo"], r["model"], r["tta"]) for r in rows] == [
        ("cat.jpg", "unet", "none"), ("cat.png", "unet", "none"), ("cat.jpg", "unet-flip", "flip")]
    first = rows[0]
    assert (first["width"], first["height"], first["share_pet"], first["share_background"],
            first["share_border"]) == ("40", "30", "0.5", "0.5", "0.0")
    assert (first["segmenter_ms"], first["queue_ms"], first["batch_size"]) == ("12.3", "4.0", "2")
    assert rows[2]["queue_ms"] == "" and rows[1]["files"].split() == [
        "unet/cat-2_mask.png", "unet/cat-2_overlay.png", "unet/cat-2_cutout.png"]


def test_a_folder_gets_the_same_files_and_no_cutout_without_a_background(tmp_path):
    photo, mask, probabilities = _result()
    export = BatchExport(folder_writer(tmp_path / "out"))
    written = export.add("dir/photo.jpg", "m", photo, mask, probabilities, PET_CLASSES, Timing(0.01))
    export.add("road.png", "m", photo, mask, probabilities[..., :2], make_classes(["road", "car"]),
               Timing(0.01))
    export.close()
    assert written == ["photo_mask.png", "photo_overlay.png", "photo_cutout.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "photo_cutout.png", "photo_mask.png", "photo_overlay.png", "road_mask.png",
        "road_overlay.png", SUMMARY_FILE]
    header = (tmp_path / "out" / SUMMARY_FILE).read_text().splitlines()[0].split(",")
    assert {"share_pet", "share_border", "share_road", "share_car"} <= set(header)


def test_folders_and_patterns_expand_to_files(tmp_path):
    for name in ("b.jpg", "a.png", "notes.txt", "sub/c.jpg", "sub/deep/d.JPG"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    files, problems = expand_inputs([str(tmp_path), str(tmp_path / "sub" / "*.jpg"),
                                     str(tmp_path / "**" / "*.[jJ][pP][gG]"), str(tmp_path / "a.png"),
                                     str(tmp_path / "missing.jpg"), str(tmp_path / "*.gif"),
                                     str(tmp_path / "empty")])
    assert [Path(f).relative_to(tmp_path).as_posix() if f.startswith(str(tmp_path)) else f
            for f in files] == ["a.png", "b.jpg", "sub/c.jpg", "sub/deep/d.JPG", "missing.jpg"]
    assert problems == [f"{tmp_path / '*.gif'} matches no file.",
                        f"{tmp_path / 'empty'} holds no image files."]
    videos, _ = expand_inputs([str(tmp_path)], accept=lambda p: p.suffix == ".txt")
    assert videos == [str(tmp_path / "notes.txt")]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_redraws_one_line_on_a_terminal_only(capsys):
    quiet = io.StringIO()
    bar = ProgressBar(2, quiet)
    bar.step("a.jpg")
    bar.close()
    assert quiet.getvalue() == "" and bar.line() == f"[{'#' * 12}{'-' * 12}] 1/2 a.jpg"
    terminal = _Terminal()
    bar = ProgressBar(4, terminal, width=8)
    bar.step("a.jpg")
    bar.note("a.jpg: 40x30, 12 ms")
    bar.step("b.jpg")
    bar.close()
    assert terminal.getvalue() == ("\r\033[K[##------] 1/4 a.jpg" "\r\033[K" "\r\033[K[##------] 1/4 a.jpg"
                                   "\r\033[K[####----] 2/4 b.jpg\n")
    assert capsys.readouterr().out == "a.jpg: 40x30, 12 ms\n"


@pytest.mark.parametrize("opacity", [0.0, 1.0])
def test_overlay_opacity_reaches_the_files(opacity):
    photo, mask, probabilities = _result()
    files = {}
    export = BatchExport(files.__setitem__, opacity)
    export.add("p.png", "m", photo, mask, probabilities, PET_CLASSES, Timing(0))
    shown = np.asarray(Image.open(io.BytesIO(files["p_overlay.png"])))[:, -1]  # background
    expected = np.asarray(photo)[:, -1] if opacity == 0 else PET_CLASSES[1].color
    assert np.array_equal(shown, np.broadcast_to(expected, shown.shape))


def test_predict_takes_folders_and_patterns_and_writes_the_batch_files(tmp_path, capsys):
    from test_dashboard import photo_bytes, write_tiny_model

    from segdemo.cli import main

    model = write_tiny_model(tmp_path / "weights", "unet")
    photos = tmp_path / "photos"
    (photos / "more").mkdir(parents=True)
    (photos / "cat.png").write_bytes(photo_bytes(40, 30))
    (photos / "notes.txt").write_text("not a photo")
    (photos / "more" / "cat.jpg").write_bytes(photo_bytes(20, 10, "JPEG"))
    (photos / "more" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    out = tmp_path / "out"
    code = main(["predict", "--model", str(model), str(photos), str(photos / "more" / "*.jpg"),
                 str(photos / "*.webp"), "--out", str(out)])
    assert code == 1  # a pattern matched nothing and one file is broken; the rest are written
    err = capsys.readouterr().err
    assert f"skipped: {photos / '*.webp'} matches no file." in err
    assert "broken.jpg" in err and "notes.txt" not in err
    assert sorted(p.name for p in out.iterdir()) == [
        "cat-2_cutout.png", "cat-2_mask.png", "cat-2_overlay.png", "cat_cutout.png",
        "cat_mask.png", "cat_overlay.png", SUMMARY_FILE]
    rows = list(csv.DictReader((out / SUMMARY_FILE).open()))
    assert [(Path(r["photo"]).name, r["model"], r["width"]) for r in rows] == [
        ("cat.png", "unet", "40"), ("cat.jpg", "unet", "20")]
    assert Image.open(out / "cat-2_cutout.png").size == (20, 10)
