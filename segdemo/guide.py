"""Make a VOC-guided model folder from a trained one (`python -m segdemo guide`).

The trained network is kept as it is; the frozen zero-shot PASCAL VOC DeepLab is added beside
it and fused into its output (`segdemo.models.voc_guide`). The new folder holds one weights file
with both, the card (option `voc_guide`, and what the guide is) and the training history; its
metrics are measured afresh (`evaluate`), never copied.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from segdemo.artifacts import CARD_FILE, HISTORY_FILE, WEIGHTS_FILE, load_model, write_json
from segdemo.errors import SegDemoError

DEFAULT_WEIGHT = 0.5  # chosen on the validation split (see the README); the probe only reports it
EXAMPLE_ENCODER_FILE = "../shared/pretrained/mobilenet_v2_1.0_voc_deeplab_no_top.weights.h5"


class GuideError(SegDemoError, ValueError):
    """The model cannot be guided; the message says why."""


def graft_voc_guide(model_dir: str | os.PathLike, out_dir: str | os.PathLike,
                    encoder_weights: str | os.PathLike, head_weights: str | os.PathLike,
                    weight: float = DEFAULT_WEIGHT) -> Path:
    """Write the guided copy of `model_dir` to `out_dir` (which must not be `model_dir`)."""
    from segdemo.models.voc_guide import load_voc_guide, with_voc_guide

    source, out = Path(model_dir), Path(out_dir)
    if out.resolve() == source.resolve():
        raise GuideError("The guided model needs its own folder: --out must differ from --model.")
    model, card = load_model(source)  # ModelLoadError says what is wrong with the folder
    names = [c["name"] for c in card["classes"]][:2]
    if card.get("options", {}).get("voc_guide"):
        raise GuideError(f"{source.name} is already VOC-guided.")
    if names != ["pet", "background"]:
        raise GuideError("The VOC guide splits pet from background: the model's classes must "
                         f"start with pet, background (it has {', '.join(names)}).")
    try:  # GuideFusion checks the weight, with_voc_guide the preprocessing
        guided = with_voc_guide(model, weight, card["preprocessing"])
    except ValueError as error:
        raise GuideError(f"{source.name}: {error}") from None
    load_voc_guide(guided, encoder_weights, head_weights)
    out.mkdir(parents=True, exist_ok=True)
    guided.save_weights(out / WEIGHTS_FILE)
    size = (out / WEIGHTS_FILE).stat().st_size
    card = {**card, "options": {**card.get("options", {}), "voc_guide": weight},
            "voc_guide": (f"frozen zero-shot PASCAL VOC DeepLabV3 (encoder "
                          f"{Path(encoder_weights).name}, head {Path(head_weights).name}) "
                          f"splits pet from background with weight {weight:g}"),
            "guided_from": source.name, "parameters": guided.count_params(),
            "file_bytes": size, "file_mb": round(size / 2**20, 2)}
    write_json(out / CARD_FILE, card)
    if (source / HISTORY_FILE).is_file():
        shutil.copyfile(source / HISTORY_FILE, out / HISTORY_FILE)
    return out
