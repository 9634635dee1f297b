"""`predict --engine ray` on a real local Ray cluster: the same files as the local engine."""
from __future__ import annotations

import csv

import pytest

from segdemo.cli import main
from test_dashboard import photo_bytes, write_tiny_model


def test_ray_data_writes_the_same_files_as_the_local_engine(ray_local, tmp_path):
    model = write_tiny_model(tmp_path / "weights", "unet")
    photos = tmp_path / "photos"
    (photos / "more").mkdir(parents=True)
    for i in range(5):
        (photos / f"p{i}.png").write_bytes(photo_bytes(40 + 3 * i, 30 + i, seed=i))
    (photos / "p0.jpg").write_bytes(photo_bytes(36, 30, "JPEG", seed=9))  # same stem as p0.png
    (photos / "broken.png").write_bytes(b"not an image")
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert main(["predict", "--model", str(model), str(photos), "--out", str(local)]) == 1
    assert main(["predict", "--model", str(model), str(photos), "--out", str(remote),
                 "--engine", "ray", "--actors", "1", "--batch-size", "3"]) == 1  # broken.png
    files = sorted(p.name for p in local.iterdir())
    assert files == sorted(p.name for p in remote.iterdir())
    assert "p0-2_mask.png" in files and len(files) == 6 * 3 + 1
    for name in files:
        if name.endswith(".png"):
            assert (remote / name).read_bytes() == (local / name).read_bytes(), name
    rows = {e: list(csv.DictReader((d / "summary.csv").open())) for e, d in
            (("local", local), ("ray", remote))}
    assert [r["photo"] for r in rows["ray"]] == [r["photo"] for r in rows["local"]]
    for ours, theirs in zip(rows["ray"], rows["local"]):
        assert {k: ours[k] for k in ours if k.startswith("share_")} == \
            {k: theirs[k] for k in theirs if k.startswith("share_")}
    assert {int(r["batch_size"]) for r in rows["ray"]} <= {1, 2, 3}
    assert max(int(r["batch_size"]) for r in rows["ray"]) > 1  # photos shared network calls


def test_clips_are_refused_by_the_ray_engine(tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\0")
    model = write_tiny_model(tmp_path / "weights", "unet")
    assert main(["predict", "--model", str(model), str(clip), "--out", str(tmp_path / "o"),
                 "--engine", "ray"]) == 2
    assert "clips" in capsys.readouterr().err
