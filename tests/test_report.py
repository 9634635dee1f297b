from segdemo.artifacts import write_json
from segdemo.cli import main


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
                        "25 min | 2 CPU cores (x86_64), no GPU |")
