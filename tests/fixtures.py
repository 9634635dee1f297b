"""Tiny generated datasets for the data tests: image colour encodes the class of each pixel, so
alignment between image and mask can be checked after any geometric transform."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from segdemo.classes import voc_palette

WIDTH, HEIGHT = 40, 30
# Class index -> colour of the image there (far apart, so bilinear mixing is easy to spot).
CLASS_COLOURS = np.array([(0, 0, 255), (255, 0, 0), (0, 255, 0)], np.uint8)


def scene(index: int, width: int = WIDTH, height: int = HEIGHT) -> tuple[np.ndarray, np.ndarray]:
    """(image, mask) with class 0 background, class 1 a block on the left, class 2 on the right.

    Left-right asymmetric, so a flip applied to only one of them is detected.
    """
    mask = np.zeros((height, width), np.uint8)
    shift = index % 5
    mask[3:height - 5, 2 + shift:width // 2 - 2 + shift] = 1
    mask[2 + index % 4:height // 2 + index % 4, width * 3 // 5:width - 3] = 2
    return CLASS_COLOURS[mask], mask


def save_png(array: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def make_oxford(root: Path, trainval: int = 6, test: int = 3, split_files: bool = True,
                image_ext: str = ".png") -> Path:
    """Oxford-IIIT Pet layout; trimap value = class + 1. PNG images keep colours exact."""
    names = [f"Cat_{i}" for i in range(trainval + test)]
    for i, name in enumerate(names):
        image, mask = scene(i)
        save_png(image, root / "images" / f"{name}{image_ext}")
        save_png(mask + 1, root / "annotations" / "trimaps" / f"{name}.png")
    if split_files:
        (root / "annotations" / "trainval.txt").write_text(
            "".join(f"{n} 1 1 1\n" for n in names[:trainval]))
        (root / "annotations" / "test.txt").write_text(
            "# comment line\n" + "".join(f"{n} 1 1 1\n" for n in names[trainval:]))
    return root


def make_voc(root: Path, count: int = 8) -> Path:
    """PASCAL VOC layout: palette PNG masks (index = class, 255 = boundary), split lists."""
    palette = [c for rgb in voc_palette(256) for c in rgb]
    names = [f"2007_{i:06d}" for i in range(count)]
    for i, name in enumerate(names):
        image, mask = scene(i)
        mask = mask.copy()
        mask[mask == 2] = 15  # "person"
        mask[0, :] = 255  # boundary / ignore
        save_png(image, root / "JPEGImages" / f"{name}.jpg")
        labels = Image.fromarray(mask, "P")
        labels.putpalette(palette)
        (root / "SegmentationClass").mkdir(parents=True, exist_ok=True)
        labels.save(root / "SegmentationClass" / f"{name}.png")
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("".join(f"{n}\n" for n in names[:count - 2]))
    (sets / "val.txt").write_text("".join(f"{n}\n" for n in names[count - 2:]))
    return root


def make_folders(root: Path, count: int = 10, binary_255: bool = False,
                 classes: list[str] | None = None) -> Path:
    """images/ + masks/ with matching stems and mixed image extensions.

    binary_255: masks are black/white (0/255, foreground = classes 1 and 2 of the scene).
    classes: written to classes.txt (masks keep the 3-class scene labels).
    """
    for i in range(count):
        image, mask = scene(i)
        if binary_255:
            mask = np.where(mask > 0, 255, 0).astype(np.uint8)
        save_png(image, root / "images" / f"img{i:02d}{'.png' if i % 2 else '.bmp'}")
        save_png(mask, root / "masks" / f"img{i:02d}.png")
    if classes is not None:
        (root / "classes.txt").write_text("\n".join(classes) + "\n\n")
    return root


# A tiny U-Net benchmarked with few runs and small "large" photos: the benchmark's plumbing end to
# end in seconds (tests/conftest.py runs it once per session).
BENCH_OPTIONS = {"base_filters": 4, "depth": 2}
BENCH_SIZES = {"0.01": (120, 90), "0.05": (260, 195)}
BENCH_FAST = dict(runs=2, warmup=1, large_runs=1, batch_runs=1, train_steps=1,
                  large_sizes=BENCH_SIZES, log=lambda line: None)


def write_tiny_unet(folder: Path, arch: str = "unet", **card: object) -> Path:
    """A tiny U-Net folder (32x32, transposed convolutions as the shipped U-Nets) with sharpened
    logits, so that its classes do not tie everywhere as an untrained net's do; `card` adds fields."""
    import keras

    from segdemo.artifacts import write_json
    from segdemo.classes import PET_CLASSES
    from segdemo.models import build_model

    folder.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    model = build_model("unet", 3, (32, 32), **BENCH_OPTIONS)
    classifier = [layer for layer in model.layers if layer.weights][-1]
    classifier.set_weights([w * 50 for w in classifier.get_weights()])
    model.save_weights(folder / "model.weights.h5")
    write_json(folder / "card.json", {
        "id": arch, "title": "U-Net", "classes": [c.to_json() for c in PET_CLASSES],
        "input_size": [32, 32], "preprocessing": "unit", "options": BENCH_OPTIONS, **card})
    return folder


def write_fake_voc_head(path: Path, seed: int = 0, logits: bool = True) -> dict[str, np.ndarray]:
    """A head file in the VOC DeepLab layout (image-pooling branch first in the projection)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    shapes = [("aspp0", (1, 1, 320, 256)), ("image_pooling", (1, 1, 320, 256)),
              ("concat_projection", (1, 1, 512, 256))] + [("logits", (1, 1, 256, 21))] * logits
    for name, shape in shapes:
        arrays[f"{name}_kernel"] = rng.normal(0, 0.05, shape).astype("float32")
        arrays[f"{name}_bias"] = rng.normal(0, 0.1, shape[-1]).astype("float32")
    np.savez(path, **arrays)
    return arrays


def write_fake_voc_encoder(path: Path, seed: int = 0) -> Path:
    """A keras.applications MobileNetV2 no-top weights file (random), as the VOC encoder ships."""
    import keras

    keras.utils.set_random_seed(seed)
    keras.applications.MobileNetV2(input_shape=(64, 64, 3), include_top=False,
                                   weights=None).save_weights(path)
    return path
