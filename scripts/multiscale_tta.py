"""Multi-scale test-time augmentation, measured before it is built into `Segmenter`: the photo at
the model's input size S, enlarged by s, cut into overlapping S x S tiles (half a tile apart),
their probabilities stitched (averaged where tiles overlap), shrunk back to S x S and averaged
with the plain pass; "flip" adds the mirror image of all of it. Scores go through `evaluate` at
each photo's original resolution, on the unseen-breed probe and the test split.

    python scripts/multiscale_tta.py --model weights/deeplabv3plus_mobilenetv2 --limit 80 \
        --variants plain flip "flip 1+1.25" "flip 1+1.5"
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from segdemo.artifacts import load_model  # noqa: E402
from segdemo.evaluate import dataset_for_card, evaluate  # noqa: E402
from segdemo.images import bilinear  # noqa: E402
from segdemo.inference import Segmenter  # noqa: E402
from segdemo.runtimes import TFRunner  # noqa: E402


class MultiScale:
    """A `Runner` for `Segmenter`: the plain network at `scales` (1 = as is), optionally mirrored."""

    name = "tf-multiscale"

    def __init__(self, runner: TFRunner, side: int, scales: list[float], flip: bool):
        self.runner, self.side, self.scales, self.flip = runner, side, scales, flip

    def _scaled(self, batch: np.ndarray, scale: float) -> np.ndarray:
        S, big = self.side, int(round(self.side * scale))
        up = np.stack([np.asarray(Image.fromarray(b).resize((big, big), Image.BILINEAR))
                       for b in batch])
        offsets = sorted({0, big - S} | set(range(0, big - S, S // 2)))
        corners = [(y, x) for y in offsets for x in offsets]
        tiles = np.stack([up[:, y:y + S, x:x + S] for y, x in corners], 1)
        n, t = tiles.shape[:2]
        probs = self.runner(tiles.reshape(n * t, S, S, 3)).reshape(n, t, S, S, -1)
        total = np.zeros((n, big, big, probs.shape[-1]), np.float32)
        count = np.zeros((1, big, big, 1), np.float32)
        for k, (y, x) in enumerate(corners):
            total[:, y:y + S, x:x + S] += probs[:, k]
            count[:, y:y + S, x:x + S] += 1
        return np.stack([bilinear(p, (S, S)) for p in total / count])

    def _once(self, batch: np.ndarray) -> np.ndarray:
        return np.mean([self.runner(batch) if s == 1 else self._scaled(batch, s)
                        for s in self.scales], axis=0)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        probs = self._once(batch)
        if self.flip:
            probs = (probs + self._once(np.ascontiguousarray(batch[:, :, ::-1]))[:, :, ::-1]) / 2
        return probs


def parse_variant(text: str) -> tuple[list[float], bool]:
    """"plain", "flip", "1+1.5", "flip 1+1.25" -> (scales, flip)."""
    words = text.split()
    flip = "flip" in words
    scales = [w for w in words if w not in ("flip", "plain")]
    return ([float(s) for s in scales[0].split("+")] if scales else [1.0]), flip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", default="../shared/data/oxford-pets")
    parser.add_argument("--limit", type=int, help="test split: only its first N photos")
    parser.add_argument("--splits", nargs="+", default=["probe", "test"])
    parser.add_argument("--variants", nargs="+", default=["plain", "flip", "flip 1+1.25"])
    args = parser.parse_args()
    model, card = load_model(args.model)
    runner, dataset = TFRunner(model, card), dataset_for_card(card, args.data)
    for variant in args.variants:
        scales, flip = parse_variant(variant)
        segmenter = Segmenter(model, card, runtime=MultiScale(runner, card["input_size"][0],
                                                              scales, flip))
        for split in args.splits:
            start = time.perf_counter()
            scores = evaluate(segmenter, dataset, split,
                              limit=args.limit if split == "test" else None)
            o = scores["original_resolution"]
            print(f"{variant:14s} {split:6s} {scores['images']:4d} photos  "
                  f"mIoU {o['miou']:.3f}  "
                  f"pet-vs-bg {o['foreground_iou']:.3f}  boundary F {o['boundary_f']:.3f}  "
                  f"{time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
