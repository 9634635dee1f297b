"""The serve load test's report and table (the measuring loop runs against a real endpoint in
tests/test_serving.py)."""
from __future__ import annotations

import json

from segdemo.cli import main
from segdemo.serve_load import serve_table


def level(clients: int, rate: float, batch: float) -> dict:
    return {"clients": clients, "photos_per_s": rate, "errors": 0, "mean_batch": batch,
            "latency_ms": {"p50": 1000 / rate, "p95": 2000 / rate, "max": 3000 / rate},
            "in_replica_ms": {"p50": 900 / rate}}


def report() -> dict:
    return {"model": "unet", "machine": {"cpus": 2}, "requests_per_level": 10,
            "photos": {"source": "x/images", "mean_width": 400, "mean_height": 300,
                       "mean_kb": 50.0},
            "settings": [{"replicas": 1, "max_batch": 1, "batch_wait_ms": 10.0,
                          "levels": [level(8, 10.0, 1.0), level(64, 12.0, 1.0)]},
                         {"replicas": 1, "max_batch": 8, "batch_wait_ms": 50.0,
                          "levels": [level(8, 11.0, 2.0), level(64, 18.0, 6.0)]}]}


def test_the_table_has_a_row_per_level_and_the_batching_gain_over_the_best_single_level():
    table = serve_table(report())
    rows = [line for line in table.splitlines() if line.startswith("| Ray Serve | 1 |")]
    assert len(rows) == 4
    assert rows[0].startswith("| Ray Serve | 1 | 1 | - | 8 | 10.0 |")
    assert rows[3].startswith("| Ray Serve | 1 | 8 | 50.0 | 64 | 18.0 |")
    assert "Ray Serve, 1 replica, batches of 8 waiting 50.0 ms: 1.50x (18.0 vs 12.0" in table


def test_in_process_rows_get_their_own_batching_gain():
    data = report()
    data["settings"] += [{"engine": "in-process", "replicas": 1, "max_batch": 1,
                          "batch_wait_ms": 5.0, "levels": [level(8, 20.0, 1.0)]},
                         {"engine": "in-process", "replicas": 1, "max_batch": 8,
                          "batch_wait_ms": 5.0, "levels": [level(8, 30.0, 4.0)]}]
    table = serve_table(data)
    assert "| in process (one dashboard process's queue) | 1 | 8 | 5.0 | 8 | 30.0 |" in table
    assert "queue), 1 replica, batches of 8 waiting 5.0 ms: 1.50x (30.0 vs 20.0" in table
    assert "Ray Serve, 1 replica, batches of 8 waiting 50.0 ms: 1.50x (18.0 vs 12.0" in table


def test_results_serve_prints_it_from_the_json(tmp_path, capsys):
    path = tmp_path / "serve_loadtest.json"
    path.write_text(json.dumps(report()))
    assert main(["results", "--serve", "--json", str(path)]) == 0
    assert "| Ray Serve | 1 | 8 | 50.0 | 64 |" in capsys.readouterr().out
    assert main(["results", "--serve", "--json", str(tmp_path / "missing.json")]) == 2
    assert "segdemo loadtest" in capsys.readouterr().err


def test_the_in_process_baseline_goes_through_the_dashboards_queue(tiny_model_dir):
    from segdemo.images import synthetic_photo
    from segdemo.inference import png_bytes
    from segdemo.serve_load import run_in_process

    photos = [png_bytes(synthetic_photo(90 + 10 * i, 70, seed=i)) for i in range(3)]
    photos.append(b"not an image")
    setting = run_in_process(tiny_model_dir, photos, levels=[4], requests=12, max_batch=4,
                             batch_wait_s=0.05, log=lambda line: None)
    assert (setting["engine"], setting["max_batch"], setting["runtime"]) == ("in-process", 4, "tf")
    [level] = setting["levels"]
    assert (level["ok"], level["errors"]) == (9, 3)  # every 4th photo is the broken one
    assert level["error_examples"] == ["the image is not an image file that can be read (unknown "
                                      "format)."]
    assert 1 < level["largest_batch_seen"] <= 4  # concurrent clients shared network calls
    assert level["latency_ms"]["p50"] >= level["in_replica_ms"]["p50"] > 0
