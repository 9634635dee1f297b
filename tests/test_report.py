import json

from segdemo.artifacts import write_json
from segdemo.cli import main
from segdemo.report import speed_tables


def _model(folder, arch, miou):
    write_json(folder / arch / "card.json", {
        "id": arch, "input_size": [160, 160], "parameters": 2_500_000, "file_mb": 9.87,
        "training_seconds": 1500.0, "hardware": "2 CPU cores (x86_64), no GPU"})
    write_json(folder / arch / "metrics.json", {"original_resolution": {
        "pixel_accuracy": 0.9012, "miou": miou, "iou": {"pet": 0.8, "background": 0.9, "border": None}}})


def test_results_table_is_generated_from_cards_and_metrics(tmp_path, capsys):
    _model(tmp_path, "unet", 0.61234)
    _model(tmp_path, "unet_mobilenetv2", 0.7)
    (tmp_path / "not_trained").mkdir()
    assert main(["results", "--weights", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| model | input | parameters | MB | pixel acc. | mIoU | IoU pet |")
    assert len(lines) == 4
    assert lines[2] == ("| `unet` | 160x160 | 2.50 M | 9.9 | 0.901 | 0.612 | 0.800 | 0.900 | n/a | "
                        "n/a | n/a | 25 min | 2 CPU cores (x86_64), no GPU |")


def test_results_table_has_the_reference_row_with_cut_out_scores_only(tmp_path, capsys):
    _model(tmp_path, "unet", 0.61234)
    write_json(tmp_path / "reference_voc.json", {
        "card": {"file_mb": 2.09}, "input_resolution": {"size": [513, 513]},
        "original_resolution": {"miou": 0.5, "foreground_iou": 0.91234, "boundary_f": 0.7}})
    assert main(["results", "--weights", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "pet-vs-background IoU | boundary F" in lines[0]
    assert lines[-1] == ("| reference: no pet training (PASCAL VOC DeepLabV3, int8 TFLite) | 513x513 |  "
                         "| 2.1 | n/a | n/a | n/a | n/a | n/a | 0.912 | 0.700 | none | "
                         "PASCAL VOC (Google) |")


# --- speed tables -------------------------------------------------------------------------------
# A hand-built benchmark JSON with the keys `run_benchmark` writes (a real run is tested last).

def _bench_model(p50, untrained=False, train=31.25):
    return {
        "title": "t", "untrained": untrained, "input_size": [160, 160], "classes": 3,
        "parameters": 6_504_000, "weights_mb": 25.18, "load_s": 1.5, "first_prediction_s": 0.8,
        "cold_load_s": 2.345, "p50_ms": p50, "p95_ms": 48.04, "mean_ms": 41.0, "runs": 30,
        "seed": {"p50_ms": 130.2, "p95_ms": 150.0, "mean_ms": 135.0, "runs": 30},
        "speedup_vs_seed": 3.21, "batch_size": 16, "batch_images_per_s": 28.46,
        "large": {"0.3": {"size": [640, 480], "total_ms": 44.4, "downscale_ms": 1.0,
                          "network_ms": 38.6, "resize_back_ms": 3.0, "colorize_ms": 1.0},
                  "12": {"size": [4000, 3000], "total_ms": 612.7, "downscale_ms": 60.0,
                         "network_ms": 39.2, "resize_back_ms": 400.0, "colorize_ms": 100.0}},
        "peak_rss_mb": 1234.4, "rss_mb": 1100.0, "train_batch_size": 8,
        "train_images_per_s": train, "peak_rss_train_mb": None if train is None else 1500.0,
    }


def _bench_json(candidates=True):
    data = {
        "device": "2 CPU cores (x86_64), no GPU, Some CPU", "date": "2025-01-02T03:04:05+00:00",
        "settings": {"photo_size": [500, 375]}, "load_average_before": [0.31, 0.2, 0.1],
        "load_average_after": [0.87, 0.3, 0.2],
        "models": {"unet_mobilenetv2": _bench_model(40.12),
                   "unet": _bench_model(12.0, untrained=True, train=None)},
        "skipped": {"fcn8s_vgg16": "fcn8s_vgg16: not trained"},
        "targets": {"unet_mobilenetv2": {"speedup_at_least_3x": True, "p50_at_most_50_ms": True},
                    "unet": {"speedup_at_least_3x": False}},
    }
    if candidates:
        data["candidates"] = {
            "model": "unet_mobilenetv2",
            "network_batch1": {k: {"p50_ms": v, "p95_ms": v + 1, "mean_ms": v, "runs": 30}
                               for k, v in (("predict", 90.5), ("eager_call", 45.0),
                                            ("tf_function", 36.25), ("tf_function_xla", 30.0))},
            "network_batch16": {"tf_function": {"images_per_s": 30.0},
                                "tf_function_xla": {"images_per_s": 35.5}},
            "xla_max_abs_difference": 2.5e-6,
            "resize_back": {"0.19": {"tf_float32": {"p50_ms": 3.0, "changed_pixels": 0.0},
                                     "argmax_then_nearest": {"p50_ms": 0.5,
                                                             "changed_pixels": 0.0123}},
                            "12": {"tf_float32": {"p50_ms": 300.0, "changed_pixels": 0.0},
                                   "argmax_then_nearest": {"p50_ms": 20.0,
                                                           "changed_pixels": 0.02}}},
            "note": "changed_pixels compares ...",
        }
    return data


def test_speed_tables_show_every_figure_of_the_json():
    text = speed_tables(_bench_json())
    lines = text.splitlines()
    assert ("| model | input | parameters | weights MB | cold load s | p50 ms | p95 ms | "
            "seed path p50 ms | speed-up | batch of 16 images/s | training images/s (batch 8) | "
            "peak RSS MB |") in lines
    assert ("| `unet_mobilenetv2` | 160x160 | 6.50 M | 25.2 | 2.35 | 40.1 | 48.0 | 130.2 | 3.2x | "
            "28.5 | 31.2 | 1234 |") in lines
    assert "| `unet` (untrained) | 160x160 | 6.50 M | 25.2 | 2.35 | 12.0 | 48.0 | 130.2 | 3.2x | " \
           "28.5 | n/a | 1234 |" in lines
    assert ("| model | 0.3 MP (640x480): total / network ms | "
            "12 MP (4000x3000): total / network ms |") in lines
    assert "| `unet_mobilenetv2` | 44 / 39 | 613 / 39 |" in lines
    assert "| call | batch 1 p50 ms | batch 1 p95 ms | batch 16 images/s |" in lines
    assert "| `predict` | 90.5 | 91.5 | n/a |" in lines
    assert "| `tf_function_xla` | 30.0 | 31.0 | 35.5 |" in lines
    assert "at most 2.5e-06" in text
    assert ("| resize back | 0.19 MP: p50 ms (changed pixels) | "
            "12 MP: p50 ms (changed pixels) |") in lines
    assert "| `argmax_then_nearest` | 0.5 (1.23%) | 20.0 (2.00%) |" in lines
    assert "- `unet_mobilenetv2`: speedup_at_least_3x met, p50_at_most_50_ms met" in lines
    assert "- `unet`: speedup_at_least_3x NOT met" in lines
    assert lines[-1].startswith("Measured on 2 CPU cores (x86_64), no GPU, Some CPU "
                                "(2025-01-02T03:04:05+00:00); 1-minute load average 0.31 before, "
                                "0.87 after; untrained (random weights): `unet`")
    assert "500x375 photo" in text and "fcn8s_vgg16" not in text


def test_speed_tables_leave_out_missing_parts():
    data = _bench_json(candidates=False)
    del data["targets"], data["load_average_after"], data["settings"]
    data["models"] = {"unet_mobilenetv2": _bench_model(40.0)}
    del data["models"]["unet_mobilenetv2"]["large"]
    text = speed_tables(data)
    assert "candidates" not in text and "Targets" not in text and "MP" not in text
    assert "load average" not in text and "untrained" not in text
    assert text.splitlines()[-1].endswith("; all models trained.")
    assert text.count("| `unet_mobilenetv2` |") == 1


def test_results_speed_prints_the_tables_of_a_json(tmp_path, capsys):
    target = tmp_path / "bench.json"
    write_json(target, _bench_json())
    assert main(["results", "--speed", "--json", str(target)]) == 0
    assert capsys.readouterr().out == speed_tables(_bench_json()) + "\n"


def test_results_speed_reports_a_missing_or_invalid_json(tmp_path, capsys):
    assert main(["results", "--speed", "--weights", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: no benchmark JSON at {tmp_path / 'benchmark.json'}: run "
                   f"`python -m segdemo benchmark` first, or pass --json PATH.")
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["results", "--speed", "--json", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'bad.json'} is not valid JSON")
    assert err.count("\n") == 1
    write_json(tmp_path / "other.json", {"original_resolution": {}})
    assert main(["results", "--speed", "--json", str(tmp_path / "other.json")]) == 2
    assert "is not a benchmark JSON" in capsys.readouterr().err
    assert main(["results", "--json", str(tmp_path / "other.json")]) == 2
    assert "--json goes with --speed" in capsys.readouterr().err


def test_results_speed_on_a_real_tiny_benchmark_run(tiny_benchmark, tiny_benchmark_weights, capsys):
    # The run has written <weights>/benchmark.json, the default path of `results --speed`.
    assert main(["results", "--speed", "--weights", str(tiny_benchmark_weights)]) == 0
    text = capsys.readouterr().out
    m = tiny_benchmark["models"]["unet"]
    assert (f"| `unet` | 32x32 | {m['parameters'] / 1e6:.2f} M | {m['weights_mb']:.1f} | "
            f"{m['cold_load_s']:.2f} | {m['p50_ms']:.1f} | {m['p95_ms']:.1f} | "
            f"{m['seed']['p50_ms']:.1f} | {m['speedup_vs_seed']:.1f}x |") in text
    assert "0.01 MP (120x90): total / network ms" in text
    for name in ("predict", "eager_call", "tf_function", "tf_function_xla", "tf_float32",
                 "pil_float32", "pil_uint8", "argmax_then_nearest", "edge_band"):
        assert f"| `{name}` |" in text
    assert "- `unet`: speedup_at_least_5x" in text and "all models trained" in text
    tf_row = m["runtimes"]["tf"]
    assert f"**{tf_row['p50_ms']:.1f} ({tf_row['flop_multiple']:.1f}x), 100.00%**" in text
    assert "| model | GFLOP | FLOP limit ms | `tf` | `onnx` |" in text
    assert "fcn8s_vgg16" not in text


def test_probe_table_puts_test_beside_probe_and_says_who_saw_the_probe(tmp_path, capsys):
    _model(tmp_path, "unet", 0.61234)
    write_json(tmp_path / "unet" / "probe.json", {"images": 21, "original_resolution": {
        "miou": 0.5, "foreground_iou": 0.75, "boundary_f": 0.6}})
    _model(tmp_path, "held", 0.7)
    card = tmp_path / "held" / "card.json"
    write_json(card, {**json.loads(card.read_text()), "id": "unet",
                      "config": {"holdout_minor_breeds": True}})  # a candidate run of unet
    write_json(tmp_path / "held" / "probe.json", {"images": 21, "original_resolution": {
        "miou": 0.55, "foreground_iou": 0.8, "boundary_f": 0.65}})
    assert main(["results", "--probe", "--weights", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| model | test mIoU | test pet-vs-bg IoU |")
    assert lines[2] == ("| `held` (unet) | 0.700 | n/a | n/a | 0.550 | 0.800 | 0.650 | 21 "
                        "| no (held out) |")
    assert lines[3] == "| `unet` | 0.612 | n/a | n/a | 0.500 | 0.750 | 0.600 | 21 | yes |"


def test_results_video_prints_the_video_table_and_names_a_missing_report(tmp_path, capsys):
    row = {"fps": 3.21, "network_fps": 3.5, "flicker": 0.0012}
    write_json(tmp_path / "video_benchmark.json", {
        "clip": {"width": 640, "height": 426, "frames": 48, "scene": "s"}, "batch_size": 8,
        "smooth": 0.6, "models": {"unet": {"input_size": [160, 160], "plain": row,
                                           "smoothed": {**row, "flicker": 0.0005}}}})
    assert main(["results", "--video", "--weights", str(tmp_path)]) == 0
    assert "| `unet` | 160x160 | 3.2 | 3.5 | 0.12% | 0.05% | 3.2 |" in capsys.readouterr().out
    assert main(["results", "--video", "--weights", str(tmp_path / "none")]) == 2
    assert "benchmark --video" in capsys.readouterr().err


def test_recipes_table_says_how_each_model_was_trained(tmp_path, capsys):
    _model(tmp_path, "unet", 0.6)
    card = tmp_path / "unet" / "card.json"
    write_json(card, {**json.loads(card.read_text()), "best_val_miou": 0.71, "best_epoch": 40,
                      "encoder_weights": "none: the whole network is trained from scratch",
                      "distillation": {"teacher": "unet_mobilenetv2", "alpha": 0.5},
                      "config": {"epochs": 50, "img_size": 160, "loss": "dice_ce",
                                 "zoom_out": 0.3, "copy_paste": 0.5,
                                 "holdout_minor_breeds": True,
                                 "holdout_breeds": ["Bengal", "Bombay"]}})
    _model(tmp_path, "no_config", 0.5)  # a card without its configuration: no row
    assert main(["results", "--recipes", "--weights", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert lines[2] == ("| `unet` | 50 epochs at 160 px; Dice + cross-entropy; from scratch; "
                        "zoom-out 0.3; copy-paste 0.5; distilled from unet_mobilenetv2 (weight "
                        "0.5); minor breeds held out; Bengal, Bombay held out | 0.710 | 40 | "
                        "25 min |")


def test_recipe_names_a_pretrained_head_and_whether_it_was_frozen():
    from segdemo.artifacts import training_recipe

    card = {"encoder_weights": "PASCAL VOC segmentation-pretrained mobilenetv2 from x.weights.h5",
            "head_weights": "PASCAL VOC DeepLabV3 head (...) from head.npz",
            "config": {"epochs": 16, "img_size": 384, "loss": "ce", "freeze_encoder_epochs": 16}}
    assert training_recipe(card) == ("16 epochs at 384 px; cross-entropy; encoder: PASCAL VOC "
                                     "segmentation-pretrained mobilenetv2; head: PASCAL VOC DeepLabV3")
    card["config"]["freeze_head"] = True
    assert training_recipe(card).endswith("head: PASCAL VOC DeepLabV3, frozen with the encoder "
                                          "for 16 epochs")


def test_candidates_table_shows_each_run_beside_the_shipped_model(tmp_path, capsys):
    entry = {"model": "unet", "recipe": "16 epochs at 224 px", "best_val_miou": 0.73,
             "test": {"miou": 0.77, "foreground_iou": 0.88, "boundary_f": 0.74},
             "probe": {"miou": 0.76, "foreground_iou": 0.87, "boundary_f": None},
             "shift_mean_miou": 0.732, "zoom_out_miou": 0.706}
    write_json(tmp_path / "candidates.json", {"runs": {
        "unet (shipped)": {**entry, "shipped": True, "probe_seen": True},
        "unet_voc224": {**entry, "shipped": False, "probe_seen": False, "zoom_out_miou": None}}})
    assert main(["results", "--candidates", "--weights", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[2] == ("| `unet` (shipped) | 16 epochs at 224 px | 0.730 | 0.770 | 0.880 | 0.740 "
                        "| 0.760 | 0.870 | yes | 0.732 | 0.706 |")
    assert lines[3].startswith("| `unet_voc224` |") and lines[3].endswith("| no | 0.732 | n/a |")
    assert main(["results", "--candidates", "--weights", str(tmp_path / "none")]) != 0
    assert "scripts/compare_candidates.py" in capsys.readouterr().err


def test_leave_a_breed_out_runs_have_their_own_table(tmp_path, capsys):
    entry = {"model": "unet", "recipe": "16 epochs; Bengal held out", "best_val_miou": 0.7,
             "test": {"miou": 0.75, "foreground_iou": 0.86, "boundary_f": 0.7},
             "probe": {"miou": 0.74, "foreground_iou": 0.85, "boundary_f": 0.6},
             "shipped": False, "probe_seen": False, "shift_mean_miou": None,
             "zoom_out_miou": None}
    unseen = {"images": 198, "miou": 0.712, "foreground_iou": 0.845, "boundary_f": 0.65}
    write_json(tmp_path / "candidates.json", {"runs": {
        "unet_voc224": entry,
        "unet_nobengal": {**entry, "held_out_breeds": ["Bengal"], "unseen": unseen}}})
    assert main(["results", "--candidates", "--weights", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[2].startswith("| `unet_voc224` |")  # another test split
    assert main(["results", "--unseen", "--weights", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert lines[2] == ("| `unet_nobengal` | 16 epochs; Bengal held out | 0.700 | Bengal | 198 | "
                        "0.712 | 0.845 | 0.650 | 0.750 | 0.860 | 0.740 | 0.850 |")
    write_json(tmp_path / "candidates.json", {"runs": {"unet_voc224": entry}})
    assert main(["results", "--unseen", "--weights", str(tmp_path)]) == 2
    assert "--holdout-breed" in capsys.readouterr().err


def _load_run(sessions, p95, served=None, nice=0, start_page=2.5):
    return {"date": "2026-12-02T16:00:00+00:00", "machine": {"cores": 2, "load_avg_1m": 1.25},
            "settings": {"browser_nice": nice},
            "start": {"listen_s": 0.91, "first_page_s": start_page, "first_mask_s": 7.04,
                      "first_all_masks_s": 8.6, "rss_mb": 1021.6},
            "concurrent": {"sessions": sessions, "served": sessions if served is None else served,
                           "overlay_s": {"p50": p95 / 2, "p95": p95, "max": p95 + 1, "n": 2},
                           "failures": ["session 3: TimeoutError"] * (sessions - (served or sessions)),
                           "batch_sizes": [1, 7, 7, 8], "queued_ms": {"p95": 812},
                           "rss_mb": {"before_uploads": 1003.4, "after": 1053.5}, "cores_s": 81.9,
                           "uploads_cpu_s": {"server": 8.3, "browser": 67.2, "other": 6.1}}}


def _soak(cycles=200, ratio=1.12, growth=40.4):
    every = [{"cycle": c, "rss_mb": 1000.0 + c / 10, "mean_cycle_s": 2.0 + c / 1000}
             for c in range(10, cycles + 1, 10)]
    return {"date": "2026-12-03T10:00:00+00:00", "machine": {"cores": 2, "load_avg_1m": 0.5},
            "start": {"listen_s": 0.62, "first_page_s": 6.25, "first_mask_s": 9.2,
                      "first_all_masks_s": 10.7, "rss_mb": 1023.7},
            "soak": {"cycles": cycles, "planned": 200, "keep": False, "every_10": every,
                     "failures": [], "last_over_first": ratio, "rss_growth_after_20_mb": growth}}


def test_results_load_renders_start_concurrent_soak_and_targets(tmp_path, capsys):
    report = {"concurrent": {"16": _load_run(16, 39.94), "8": _load_run(8, 9.5, served=7),
                             "16_nice19": _load_run(16, 8.04, nice=19)},
              "soak": _soak()}
    write_json(tmp_path / "loadtest.json", report)
    assert main(["results", "--load", "--weights", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    # start costs: one row per fresh server, concurrent runs by session count, then the soak
    starts = [l for l in lines if l.endswith("| 1022 | 1.2 |") or l.endswith("| 1024 | 0.5 |")]
    assert [l.split(" |")[0] for l in starts] == [
        "| 8 sessions", "| 16 sessions", "| 16 sessions, browsers at nice 19", "| soak"]
    assert starts[-1] == "| soak | 0.6 | 6.2 | 9.2 | 10.7 | 1024 | 0.5 |"
    assert ("| 8 sessions | 7/8 | 4.8 | 9.5 | 10.5 | 1 | 1003 → 1054 | 8.3 / 67.2 / 6.1 of 81.9 "
            "| 1: 1, 7: 2, 8: 1 | 812 |") in lines
    # the soak: every 10 cycles summarised at 10, 20, every 50 and the last
    assert "| cycle | 10 | 20 | 50 | 100 | 150 | 200 |" in lines
    assert "| server RSS MB | 1001 | 1002 | 1005 | 1010 | 1015 | 1020 |" in lines
    assert "took 1.12× the time of the first 10; server RSS grew 40 MB after cycle 20" in text
    # the targets judge the plain 16-session run, not the one with niced browsers
    assert "- 16 sessions, 2 models each: 16/16 served, overlay p95 39.9 s" in text
    assert "<= 10 s): NOT met" in text and "8.0 s" not in text.split("Targets:")[1]
    assert "- 200 upload cycles: last 10 / first 10 1.12×, RSS growth after cycle 20 40 MB" in text
    assert "<= 150 MB): met" in text
    assert "at most 6.2 s over 4 fresh servers (target <= 5 s): NOT met" in text
    assert lines[-1].startswith("Measured with `scripts/loadtest.py` on 2 CPU cores "
                                "(2026-12-02 to 2026-12-03)")


def test_results_load_leaves_out_missing_parts_and_names_a_missing_report(tmp_path, capsys):
    write_json(tmp_path / "soak_only.json", {"soak": _soak(cycles=120, ratio=1.7)})
    assert main(["results", "--load", "--json", str(tmp_path / "soak_only.json")]) == 0
    text = capsys.readouterr().out
    assert "Sessions uploading" not in text and "sessions, 2 models each" not in text
    assert "- 120 upload cycles: last 10 / first 10 1.70×" in text and "): NOT met" in text
    assert "| cycle | 10 | 20 | 50 | 100 | 120 |" in text
    assert main(["results", "--load", "--weights", str(tmp_path)]) == 2
    assert "no load test JSON at" in capsys.readouterr().err
    write_json(tmp_path / "other.json", {"models": {}})
    assert main(["results", "--load", "--json", str(tmp_path / "other.json")]) == 2
    assert "is not a load test JSON" in capsys.readouterr().err
