"""The benchmark runs end to end on a tiny model and writes the JSON the dashboard reads.
Benchmarks are not tests: nothing here looks at how long anything took, only that the figures
exist, are finite and positive, and land where they should."""
import json

import pytest

from segdemo import benchmark
from segdemo.artifacts import check_model_dir
from segdemo.benchmark import finite_numbers, format_report, run_benchmark
from segdemo.cli import main
from fixtures import BENCH_FAST as FAST
from fixtures import BENCH_OPTIONS as OPTIONS
from fixtures import BENCH_SIZES as SMALL
from segdemo.models import build_model


def test_json_has_the_schema_the_dashboard_reads(tiny_benchmark, tiny_benchmark_weights):
    written = json.loads((tiny_benchmark_weights / "benchmark.json").read_text())
    assert written["models"].keys() == {"unet"}
    assert isinstance(written["device"], str) and written["device"]
    assert isinstance(written["date"], str) and written["date"]
    assert "not trained" in written["skipped"]["fcn8s_vgg16"]
    assert finite_numbers(written)
    assert 0.0 <= written["other_cpu_percent_before"] <= 100.0
    m = written["models"]["unet"]
    for key in ("p50_ms", "p95_ms", "cold_load_s", "weights_mb", "batch_images_per_s",
                "train_images_per_s", "peak_rss_mb", "peak_rss_train_mb", "speedup_vs_seed"):
        assert m[key] > 0, key
    assert m["p95_ms"] >= m["p50_ms"]
    assert m["parameters"] == build_model("unet", 3, (32, 32), **OPTIONS).count_params()
    assert m["seed"]["p50_ms"] > 0 and m["seed"]["runs"] == 2
    assert m["large"].keys() == SMALL.keys()
    for stage in m["large"].values():
        for key in ("total_ms", "downscale_ms", "network_ms", "resize_back_ms", "colorize_ms"):
            assert stage[key] >= 0
    assert written["targets"]["unet"].keys() == {"speedup_at_least_5x",
                                                 "chosen_runtime_agrees_99.5%"}
    assert written["matmul_gflops"] > 0 and m["gflop"] > 0 and m["flop_limit_ms"] > 0
    assert m["flop_multiple"] == pytest.approx(m["p50_ms"] / m["flop_limit_ms"], rel=0.01)


def test_every_runtime_is_timed_and_the_choice_recorded(tiny_benchmark, tiny_benchmark_weights):
    m = tiny_benchmark["models"]["unet"]
    assert {"tf", "onnx", "litert", "litert-float16"} <= m["runtimes"].keys()
    assert "onnx-int8" not in m["runtimes"]  # no dataset on the card: nothing to calibrate on
    for row in m["runtimes"].values():
        assert row["p50_ms"] > 0 and row["network_p50_ms"] > 0 and row["flop_multiple"] > 0
    # no `benchmark --fidelity` ran, so only the reference qualifies
    assert m["runtime"] == "tf" and m["runtimes"]["onnx"]["faithful"] is None
    record = json.loads((tiny_benchmark_weights / "unet" / "runtime.json").read_text())
    assert record["chosen"]["runtime"] == "tf" and record["timings"].keys() == m["runtimes"].keys()
    assert "end to end p50 ms" in format_report(tiny_benchmark)


def test_candidates_cover_the_alternatives(tiny_benchmark):
    c = tiny_benchmark["candidates"]
    assert c["model"] == "unet"
    assert c["network_batch1"].keys() == {"predict", "eager_call", "tf_function", "tf_function_xla"}
    assert c["network_batch16"].keys() == {"tf_function", "tf_function_xla"}
    assert c["xla_max_abs_difference"] < 1e-4
    for row in c["resize_back"].values():
        assert row["tf_float32"]["changed_pixels"] == 0.0
        assert row["pil_float32"]["changed_pixels"] < 1e-3  # same interpolation, other rounding
        assert all(v["p50_ms"] > 0 for v in row.values())
    assert "unet" in format_report(tiny_benchmark)


def test_selection_skips_unusable_ids_and_json_path_overrides(tiny_benchmark_weights, tmp_path):
    target = tmp_path / "out.json"
    result = run_benchmark(["unet", "fcn8s_vgg16", "no_such_model"], tiny_benchmark_weights, json_path=target,
                           with_candidates=False, **{**FAST, "train_steps": 0})
    assert result["models"].keys() == {"unet"}
    assert result["skipped"].keys() == {"fcn8s_vgg16", "no_such_model"}
    assert "unknown architecture" in result["skipped"]["no_such_model"]
    written = json.loads(target.read_text())["models"]["unet"]
    assert written["p50_ms"] > 0 and written["train_images_per_s"] is None
    assert "unet" in format_report(result)


def test_untrained_models_need_no_weights(tmp_path, monkeypatch, tiny_benchmark_weights):
    folder = benchmark.untrained_folder("unet", tmp_path / "fresh")
    assert check_model_dir(folder) is None
    card = json.loads((folder / "card.json").read_text())
    assert card["untrained"] is True and card["input_size"] == [128, 128]

    def tiny(arch_id, root):  # the same plumbing, without timing a full-size U-Net
        assert arch_id == "unet"
        return tiny_benchmark_weights / "unet"
    monkeypatch.setattr(benchmark, "untrained_folder", tiny)
    result = run_benchmark(["unet", "nope"], tmp_path / "nothing", untrained=True,
                           with_candidates=False, **{**FAST, "train_steps": 0})
    assert result["models"].keys() == {"unet"} and "nope" in result["skipped"]
    assert "json_path" not in result and not (tmp_path / "nothing").exists()


def test_cli_help_and_nothing_to_benchmark(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["benchmark", "--help"])
    assert exit_info.value.code == 0
    assert "--untrained" in capsys.readouterr().out
    assert main(["benchmark", "--weights", str(tmp_path)]) == 2
    assert "--untrained" in capsys.readouterr().err
