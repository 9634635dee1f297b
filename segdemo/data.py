"""Segmentation datasets: folders on disk -> validated (image, mask) pairs -> tf.data pipelines.

Every problem with a file becomes a `DataError` naming the file and what is wrong, so a person who
points the CLI or the dashboard at a folder learns what to fix rather than reading a traceback.
Masks are class indices and are only ever resized by nearest neighbour: interpolating labels
invents classes at region boundaries that exist nowhere in the annotation.
"""
from __future__ import annotations

import math
import os
import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

from segdemo.errors import SegDemoError
from segdemo.classes import PET_CLASSES, VOC_CLASSES, ClassInfo, make_classes
from segdemo.images import ImageError, is_image_file, open_image, resize_nearest
from segdemo.preprocessing import get_preprocessor

FORMATS = ("oxford", "voc", "folders", "tfds")
SPLITS = ("train", "val", "test")
# Oxford-IIIT Pet: breeds with fewer training images than this form the "probe" split, a check on
# breeds the model rarely (or, with `holdout_minor_breeds`, never) saw.
MINOR_BREED_MAX_IMAGES = 20
IGNORE_INDEX = 255
BINARY_CLASS_NAMES = ["background", "foreground"]
# With random crops on, samples are kept this much larger than the model input so that a crop
# resized up to the input still has real detail.
CROP_MARGIN = 1.25
# Folders without class names: how many masks to look at to recognise a binary (0/1, 0/255) set.
_INFER_SCAN = 64
_EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the transpose that makes the stored pixels upright (as ImageOps.exif_transpose).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_GREY_MODES = ("P", "L", "I", "I;16", "I;16L", "I;16B", "I;16N")


class DataError(SegDemoError, ValueError):
    """A dataset problem; the message names the file and what is wrong, for the end user."""


@dataclass(frozen=True)
class Sample:
    """One labelled example: an image file and the mask file that annotates it."""

    name: str
    image: Path
    mask: Path

    def __post_init__(self) -> None:  # accept str paths from callers
        object.__setattr__(self, "image", Path(self.image))
        object.__setattr__(self, "mask", Path(self.mask))


@dataclass
class Dataset:
    """A labelled dataset: its classes and the samples of each split ("train", "val", "test")."""

    name: str
    format: str
    root: str
    classes: list[ClassInfo]
    splits: dict[str, list[Sample]]
    ignore_index: int = IGNORE_INDEX

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def read_image(self, sample: Sample) -> Image.Image:
        """The sample's image as upright 8-bit RGB (grey, alpha, palette and CMYK converted)."""
        try:
            return open_image(sample.image, name=str(sample.image))
        except ImageError as exc:
            raise DataError(str(exc)) from None

    def read_mask(self, sample: Sample) -> np.ndarray:
        """The sample's mask as (H, W) uint8 class indices (or `ignore_index`), aligned with its image.

        Values are checked against the classes on every read, so a bad file is reported by name.
        """
        stored, orientation = _image_geometry(sample.image)
        mask = self._class_indices(_read_mask_values(sample.mask), sample.mask)
        upright = stored[::-1] if orientation in (5, 6, 7, 8) else stored
        size = (mask.shape[1], mask.shape[0])
        if orientation in _UPRIGHT and size == stored:
            # Annotations are drawn on the stored pixels (mask PNGs carry no EXIF): turn the mask
            # exactly as `open_image` turns the photo.
            mask = np.asarray(Image.fromarray(mask).transpose(_UPRIGHT[orientation]))
            size = (mask.shape[1], mask.shape[0])
        if size != upright:
            raise DataError(
                f"{sample.mask}: the mask is {size[0]}x{size[1]} pixels but its image "
                f"{sample.image.name} is {upright[0]}x{upright[1]}; a mask must have exactly the "
                "size of its image."
            )
        return mask

    def read_pair(self, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 image and (H, W) uint8 mask of one sample, validated and aligned."""
        image = np.asarray(self.read_image(sample))
        return image, self.read_mask(sample)

    def _class_indices(self, values: np.ndarray, path: Path) -> np.ndarray:
        """Map a mask file's values to class indices for this dataset's format, or say why not."""
        found = np.unique(values)
        if self.format in ("oxford", "tfds"):
            bad = found[~np.isin(found, (1, 2, 3))]
            if bad.size:
                raise DataError(
                    f"{path}: trimap values must be 1 (pet), 2 (background) or 3 (border); "
                    f"found {_list_values(bad)}."
                )
            return (values - 1).astype(np.uint8)
        if self.format == "folders" and self.num_classes == 2 and found.max() == 255 and np.isin(
            found, (0, 255)
        ).all():
            values = values // 255  # a black/white binary mask: 255 means foreground, not ignore
            found = np.unique(values)
        bad = found[((found < 0) | (found >= self.num_classes)) & (found != self.ignore_index)]
        if bad.size:
            hint = " Name the classes in classes.txt (one per line) in the dataset folder." if (
                self.format == "folders"
            ) else ""
            raise DataError(
                f"{path}: mask values {_list_values(bad)} are not class indices; this dataset has "
                f"{self.num_classes} classes (0-{self.num_classes - 1}) and {self.ignore_index} "
                f"marks pixels to ignore.{hint}"
            )
        return values.astype(np.uint8)


def _list_values(values: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(str(int(v)) for v in values[:limit])
    return shown + (f" and {values.size - limit} more" if values.size > limit else "")


def _image_geometry(path: Path) -> tuple[tuple[int, int], int]:
    """Stored (width, height) and EXIF orientation, from the header only (no pixel decoding)."""
    try:
        with Image.open(path) as image:
            return image.size, int(image.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except FileNotFoundError:
        raise DataError(f"Image file not found: {path}.") from None
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"{path}: the image cannot be read ({exc}).") from None


def _read_mask_values(path: Path) -> np.ndarray:
    """A mask file's raw per-pixel values (H, W), never palette-converted to colours."""
    if not path.is_file():
        raise DataError(f"Mask file not found: {path}.")
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            values = np.asarray(image)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: the mask cannot be read ({exc}).") from None
    if mode in _GREY_MODES:
        return values
    if mode == "1":
        return values.astype(np.uint8)
    if mode in ("LA", "PA"):
        return values[..., 0]
    if mode in ("RGB", "RGBA"):
        rgb = values[..., :3]
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            return rgb[..., 0]
        raise DataError(
            f"{path}: the mask is a colour (RGB) image. Masks must be single-channel images whose "
            "pixel values are class indices (0, 1, 2, ...), e.g. a greyscale or palette PNG; "
            "convert colour-coded masks to class indices first."
        )
    raise DataError(
        f"{path}: masks must be single-channel images of class indices; image mode {mode} is not "
        "supported."
    )


# ----------------------------------------------------------------------------- listing and splits


def _index_images(folder: Path) -> dict[str, Path]:
    """Image files in `folder` by stem; anything else (README.txt, .DS_Store, thumbs.db) is ignored."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not (path.is_file() and is_image_file(path)):
            continue
        if path.stem in found:
            warnings.warn(f"{path}: another file named {found[path.stem].name} has the same name; "
                          f"using {found[path.stem].name}.", stacklevel=3)
            continue
        found[path.stem] = path
    return found


def _read_split_file(path: Path, images: dict[str, Path]) -> list[str]:
    """Names listed in a split file (first word of each line) that have an image on disk."""
    names = list(dict.fromkeys(
        line.split()[0] for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ))
    missing = [n for n in names if n not in images]
    if missing:
        warnings.warn(f"{path}: {len(missing)} listed images are not in the image folder "
                      f"(e.g. {', '.join(missing[:3])}); skipped.", stacklevel=3)
    return [n for n in names if n in images]


def _carve(names: list[str], fraction: float, seed: int, salt: int) -> tuple[list[str], list[str]]:
    """Seeded split of `names` into (kept, carved): about `fraction` carved, at least one if > 0.

    The draw is over the sorted names, so it depends only on which names there are and the seed.
    """
    if fraction <= 0 or len(names) < 2:
        return list(names), []
    count = min(len(names) - 1, max(1, round(fraction * len(names))))
    order = sorted(names)
    carved = {order[i] for i in np.random.default_rng([seed, salt]).permutation(len(order))[:count]}
    return [n for n in names if n not in carved], [n for n in names if n in carved]


def _split_three(names: list[str], val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[str]]:
    """Seeded train/val/test split for datasets without split files (each non-empty from 3 up)."""
    rest, test = _carve(sorted(names), test_fraction, seed, salt=1)
    train, val = _carve(rest, val_fraction / (1 - test_fraction), seed, salt=2)
    return {"train": train, "val": val, "test": test}


def _listed_or_random_split(root: Path, train_list: Path, test_list: Path, images: dict[str, Path],
                            annotated: Callable[[str], bool], val_fraction: float,
                            test_fraction: float, seed: int) -> dict[str, list[str]]:
    """The dataset's own train/test lists (validation carved from train) when both exist, else a
    seeded random split of the images that have a mask."""
    if train_list.is_file() and test_list.is_file():
        train, val = _carve(_read_split_file(train_list, images), val_fraction, seed, salt=2)
        return {"train": train, "val": val, "test": _read_split_file(test_list, images)}
    warnings.warn(f"{root}: {train_list.relative_to(root)} or {test_list.name} is missing; "
                  f"splitting the annotated images at random (seed {seed}).", stacklevel=4)
    return _split_three([n for n in images if annotated(n)], val_fraction, test_fraction, seed)


def _require_dirs(root: Path, layout: str, *folders: Path) -> None:
    for folder in folders:
        if not folder.is_dir():
            raise DataError(f"{root} does not look like {layout}: {folder.relative_to(root)}/ is "
                            f"missing.{_layout_hint(root)}")


def _layout_hint(root: Path) -> str:
    if (root / "JPEGImages").is_dir():
        return " It looks like a PASCAL VOC folder: use --format voc."
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return " It looks like paired image/mask folders: use --format folders."
    if (root / "annotations" / "trimaps").is_dir():
        return " It looks like Oxford-IIIT Pet: use --format oxford."
    return ""


# ----------------------------------------------------------------------------- format readers


def _load_oxford(root: Path, classes: list[str] | None, val_fraction: float, test_fraction: float,
                 seed: int, *, format: str = "oxford", holdout_minor_breeds: bool = False,
                 holdout_breeds: Sequence[str] = ()) -> Dataset:
    images_dir, trimaps = root / "images", root / "annotations" / "trimaps"
    _require_dirs(root, "Oxford-IIIT Pet (images/, annotations/trimaps/)", images_dir, trimaps)
    images = _index_images(images_dir)
    names = _listed_or_random_split(
        root, root / "annotations" / "trainval.txt", root / "annotations" / "test.txt", images,
        lambda n: (trimaps / f"{n}.png").is_file(), val_fraction, test_fraction, seed)
    if classes is None:
        class_info = PET_CLASSES
    elif len(classes) == len(PET_CLASSES):
        class_info = [ClassInfo(name, c.color) for name, c in zip(classes, PET_CLASSES)]
    else:
        raise DataError(f"Oxford-IIIT Pet trimaps have 3 classes (pet, background, border); "
                        f"{len(classes)} class names were given.")
    listed = (root / "annotations" / "trainval.txt").is_file()  # names carry breeds
    probe = _minor_breeds(names["train"] + names["val"]) if listed else []
    if probe:
        names["probe"] = probe
    if holdout_minor_breeds:
        probe = set(probe)
        names["train"] = [n for n in names["train"] if n not in probe]
        names["val"] = [n for n in names["val"] if n not in probe]
    if holdout_breeds:
        _hold_out_breeds(names, holdout_breeds)
    splits = {s: [Sample(n, images[n], trimaps / f"{n}.png") for n in names[s]] for s in names}
    return Dataset("oxford-iiit-pet", format, str(root), class_info, splits)


def _hold_out_breeds(names: dict[str, list[str]], breeds: Sequence[str]) -> None:
    """Move every image of `breeds` (train, val and test lists alike) into an "unseen" split: a
    probe of whole breeds the model never saw, ~200 photos for a major breed here instead of the
    21 of the minor-breed probe, for comparing training recipes beyond its noise."""
    known = {breed_of(n) for split in ("train", "val", "test") for n in names.get(split, [])}
    unknown = [b for b in breeds if b not in known]
    if unknown:
        raise DataError(f"No images of breed {', '.join(map(repr, unknown))} here; the breeds are "
                        f"{', '.join(sorted(known))} (names as in the file names).")
    held = set(breeds)
    names["unseen"] = sorted(n for split in ("train", "val", "test") for n in names.get(split, [])
                             if breed_of(n) in held)
    for split in ("train", "val", "test"):
        names[split] = [n for n in names.get(split, []) if breed_of(n) not in held]


def breed_of(name: str) -> str:
    """The breed in an Oxford-IIIT Pet file name (`great_pyrenees_12` -> `great_pyrenees`)."""
    return name.rsplit("_", 1)[0]


def _minor_breeds(names: list[str]) -> list[str]:
    """The names whose breed has fewer than MINOR_BREED_MAX_IMAGES images among `names`; none
    when no breed has that many (then nothing is minor)."""
    counts: dict[str, int] = {}
    for name in names:
        counts[breed_of(name)] = counts.get(breed_of(name), 0) + 1
    if max(counts.values(), default=0) < MINOR_BREED_MAX_IMAGES:
        return []
    return sorted(n for n in names if counts[breed_of(n)] < MINOR_BREED_MAX_IMAGES)


def _load_voc(root: Path, classes: list[str] | None, val_fraction: float, test_fraction: float,
              seed: int) -> Dataset:
    images_dir, masks_dir = root / "JPEGImages", root / "SegmentationClass"
    _require_dirs(root, "PASCAL VOC (JPEGImages/, SegmentationClass/)", images_dir, masks_dir)
    images, masks = _index_images(images_dir), _index_images(masks_dir)
    sets = root / "ImageSets" / "Segmentation"
    names = _listed_or_random_split(root, sets / "train.txt", sets / "val.txt", images,
                                    lambda n: n in masks, val_fraction, test_fraction, seed)
    class_info = make_classes(classes) if classes else VOC_CLASSES
    splits = {s: [Sample(n, images[n], masks.get(n, masks_dir / f"{n}.png")) for n in names[s]]
              for s in SPLITS}
    return Dataset(root.name, "voc", str(root), class_info, splits)


def _load_folders(root: Path, classes: list[str] | None, val_fraction: float, test_fraction: float,
                  seed: int) -> Dataset:
    images_dir, masks_dir = root / "images", root / "masks"
    _require_dirs(root, "paired folders (images/, masks/)", images_dir, masks_dir)
    images, masks = _index_images(images_dir), _index_images(masks_dir)
    for extra, other, what in ((images, masks, "images without a mask"),
                               (masks, images, "masks without an image")):
        unpaired = sorted(set(extra) - set(other))
        if unpaired:
            warnings.warn(f"{root}: skipping {len(unpaired)} {what} (matched by file name without "
                          f"extension): {', '.join(unpaired[:5])}"
                          f"{' ...' if len(unpaired) > 5 else ''}.", stacklevel=3)
    names = sorted(set(images) & set(masks))
    if not names:
        raise DataError(f"{root}: no image in images/ has a mask in masks/ with the same name "
                        "(e.g. images/cat1.jpg and masks/cat1.png).")
    samples = {n: Sample(n, images[n], masks[n]) for n in names}
    if classes is None and (root / "classes.txt").is_file():
        classes = [line.strip() for line in (root / "classes.txt").read_text().splitlines()
                   if line.strip()]
    if classes is None:
        classes = _infer_binary([masks[n] for n in names], root)
    if len(classes) < 2:
        raise DataError(f"{root}: a segmentation dataset needs at least 2 classes; got {classes}.")
    split_names = _split_three(names, val_fraction, test_fraction, seed)
    splits = {s: [samples[n] for n in split_names[s]] for s in SPLITS}
    return Dataset(root.name, "folders", str(root), make_classes(classes), splits)


def _infer_binary(mask_paths: list[Path], root: Path) -> list[str]:
    """Class names for unnamed masks: binary when (a spread sample of) the masks are 0/1 or 0/255."""
    step = max(1, len(mask_paths) // _INFER_SCAN)
    found = np.unique(np.concatenate([np.unique(_read_mask_values(p))
                                      for p in mask_paths[::step]]))
    if np.isin(found, (0, 1, IGNORE_INDEX)).all():
        return list(BINARY_CLASS_NAMES)
    raise DataError(f"{root}: the masks hold values {_list_values(found)}, so they are not a "
                    "binary (0/1 or 0/255) set; list the class names, one per line in order of "
                    "their value, in classes.txt in that folder (or pass --classes).")


def load_tfds(data_dir: str | Path | None = None, *, classes: list[str] | None = None,
              val_fraction: float = 0.1, seed: int = 0) -> Dataset:
    """Oxford-IIIT Pet through `tensorflow-datasets` (optional; downloads about 800 MB once).

    The prepared examples are written once as an Oxford-layout folder next to the TFDS data, so
    this source is read, validated and split exactly like a local copy (`format="oxford"`).
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError("Reading Oxford-IIIT Pet through TensorFlow Datasets needs an optional "
                        "package: pip install tensorflow-datasets (or download the dataset and use "
                        "--format oxford --data PATH).") from None
    try:
        builder = tfds.builder("oxford_iiit_pet", data_dir=None if data_dir is None else str(data_dir))
        builder.download_and_prepare()
    except Exception as exc:  # network and IO failures come in many third-party types
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"Downloading oxford_iiit_pet with tensorflow-datasets failed ({reason}). "
                        "Without a network connection, use a local copy of the dataset: "
                        "--format oxford --data PATH (the folder holding images/ and "
                        "annotations/).") from None
    export = Path(builder.data_dir).parent.parent / "segdemo" / f"oxford_iiit_pet-{builder.version}"
    if not export.is_dir():
        _export_tfds(tfds, builder, export)
    return _load_oxford(export, classes, val_fraction, 0.0, seed, format="tfds")


def _export_tfds(tfds, builder, target: Path) -> None:
    """Write the raw TFDS image and trimap bytes (no re-encoding) as images/ + annotations/."""
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "images").mkdir(parents=True)
    (partial / "annotations" / "trimaps").mkdir(parents=True)
    raw = {"image": tfds.decode.SkipDecoding(), "segmentation_mask": tfds.decode.SkipDecoding()}
    for split, list_name in (("train", "trainval.txt"), ("test", "test.txt")):
        names = []
        for example in tfds.as_numpy(builder.as_dataset(split=split, decoders=raw)):
            name = Path(example["file_name"].decode()).stem
            (partial / "images" / f"{name}.jpg").write_bytes(example["image"])
            (partial / "annotations" / "trimaps" / f"{name}.png").write_bytes(
                example["segmentation_mask"])
            names.append(name)
        (partial / "annotations" / list_name).write_text("".join(f"{n}\n" for n in names))
    partial.rename(target)


def load_dataset(path: str | Path | None, format: str = "oxford", *,
                 classes: list[str] | None = None, val_fraction: float = 0.1,
                 test_fraction: float = 0.2, seed: int = 0,
                 holdout_minor_breeds: bool = False, holdout_breeds: Sequence[str] = ()) -> Dataset:
    """Read a dataset folder in one of `FORMATS` into splits "train", "val" and "test".

    Split files are honoured where the format has them, with "val" carved (seeded) out of the
    training list for model selection; `test_fraction` only applies where there are none.
    Oxford-IIIT Pet with minor breeds also gets a "probe" split: the training-list images of its minor breeds
    (see `MINOR_BREED_MAX_IMAGES`); `holdout_minor_breeds` removes them from "train" and "val",
    so the probe measures breeds the model never saw. `holdout_breeds` (Oxford) moves whole
    breeds out of every split into "unseen".
    """
    if format not in FORMATS:
        raise DataError(f"Unknown dataset format {format!r}; choose one of {', '.join(FORMATS)}.")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must "
                        "each be in [0, 1) and leave some images for training.")
    if seed < 0:
        raise DataError(f"The split seed must be a non-negative integer, not {seed}.")
    if format == "tfds":
        return load_tfds(path, classes=classes, val_fraction=val_fraction, seed=seed)
    if path is None:
        raise DataError(f"Format {format!r} reads a local folder: give its path (--data PATH).")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"Dataset folder not found: {root}.")
    if format == "oxford":
        dataset = _load_oxford(root, classes, val_fraction, test_fraction, seed,
                               holdout_minor_breeds=holdout_minor_breeds,
                               holdout_breeds=holdout_breeds)
    else:
        if holdout_minor_breeds or holdout_breeds:
            raise DataError("Holding out breeds needs the Oxford-IIIT Pet format.")
        loader = {"voc": _load_voc, "folders": _load_folders}[format]
        dataset = loader(root, classes, val_fraction, test_fraction, seed)
    if dataset.num_classes > IGNORE_INDEX:
        raise DataError(f"{root}: at most {IGNORE_INDEX} classes are supported "
                        f"({IGNORE_INDEX} marks ignored pixels).")
    if not dataset.splits["train"]:
        raise DataError(f"{root}: no training images found.")
    return dataset


def dataset_for_card(card: dict, data: str | None, format: str | None = None) -> Dataset:
    """The dataset at `data`, read with the classes and split settings (seed, fractions) the model
    of `card` was trained with, so that its test split is the one it never saw."""
    config = card.get("config", {})
    return load_dataset(data, format or card.get("dataset", {}).get("format", "oxford"),
                        classes=config.get("classes"), seed=config.get("seed", 0),
                        val_fraction=config.get("val_fraction", 0.1),
                        test_fraction=config.get("test_fraction", 0.2),
                        holdout_minor_breeds=config.get("holdout_minor_breeds", False),
                        holdout_breeds=config.get("holdout_breeds") or ())


# ----------------------------------------------------------------------------- tf.data pipeline


def resize_pair(image: np.ndarray, mask: np.ndarray,
                size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize a uint8 (H, W, 3) image bilinearly and its (H, W) mask by nearest neighbour to size=(H, W)."""
    if image.dtype != np.uint8:
        raise TypeError(f"resize_pair expects a uint8 image, got {image.dtype}.")
    if image.shape[:2] != mask.shape:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape} sizes differ.")
    height, width = size
    if image.shape[:2] == (height, width):
        return image, mask
    resized = Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized), resize_nearest(mask, size)


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation, applied identically to image and mask (colour: image only).

    flip: random horizontal flip. scale: (min, max) fraction of each side kept by a random crop,
    None for no crop. color_jitter: brightness/contrast/saturation strength in [0, 1), 0 = off.
    zoom_out: probability of shrinking the photo to a random `zoom_out_range` fraction of each
    side and placing it on a plain canvas of random colour whose mask is `pad_label` — visitors'
    photos often show the pet small, where models trained on close-ups fail.
    copy_paste: probability of pasting another photo's pet (every pixel its mask does not call
    background or ignored, the border band included), cut out by the mask, scaled to a random
    `copy_paste_range` fraction of each side and placed at random, onto this photo: pets on
    backgrounds and at scales the dataset never paired (Ghiasi et al., 2021). The donor is the
    next photo in the batch.
    """

    flip: bool = True
    scale: tuple[float, float] | None = (0.6, 1.0)
    color_jitter: float = 0.0
    zoom_out: float = 0.0
    zoom_out_range: tuple[float, float] = (0.4, 0.9)
    pad_label: int = IGNORE_INDEX
    copy_paste: float = 0.0
    copy_paste_range: tuple[float, float] = (0.3, 0.8)

    def __post_init__(self) -> None:
        if self.scale is not None and not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"Augment.scale must satisfy 0 < min <= max <= 1, got {self.scale}.")
        if not 0 <= self.color_jitter < 1:
            raise ValueError(f"Augment.color_jitter must be in [0, 1), got {self.color_jitter}.")
        if not 0 <= self.zoom_out <= 1:
            raise ValueError(f"Augment.zoom_out is a probability in [0, 1], got {self.zoom_out}.")
        if not 0 < self.zoom_out_range[0] <= self.zoom_out_range[1] <= 1:
            raise ValueError("Augment.zoom_out_range must satisfy 0 < min <= max <= 1, "
                             f"got {self.zoom_out_range}.")
        if not 0 <= self.copy_paste <= 1:
            raise ValueError(f"Augment.copy_paste is a probability in [0, 1], got {self.copy_paste}.")
        if not 0 < self.copy_paste_range[0] <= self.copy_paste_range[1] <= 1:
            raise ValueError("Augment.copy_paste_range must satisfy 0 < min <= max <= 1, "
                             f"got {self.copy_paste_range}.")


def make_tf_dataset(dataset: Dataset, split: str, input_size: tuple[int, int], preprocessing: str,
                    batch_size: int, *, augment: Augment | None = None, shuffle: bool = False,
                    seed: int = 0, cache: bool = True, repeat: bool = False,
                    targets: Callable[[tf.Tensor, tf.Tensor], tf.Tensor] | None = None,
                    ) -> tf.data.Dataset:
    """Batches of (float32 preprocessed images (N, H, W, 3), int32 masks (N, H, W)) for `split`.

    `targets`, if given, replaces each batch's masks by what it returns for (the augmented
    images in [0, 255], the masks): the soft targets of distillation (`segdemo.distill`).

    Files are decoded with PIL and shrunk to a working size (the input size, or `CROP_MARGIN`
    larger when random crops are on). With `cache` every sample is decoded up front, in parallel,
    into one uint8 array: file problems surface at once as `DataError`, and shuffling permutes
    indices, so memory stays one copy of the split. Without `cache` files are decoded every epoch
    (for splits too large for memory). Augmentation uses stateless random ops keyed by `seed`:
    the same seed gives the same batches, and each epoch draws new ones.
    """
    samples = dataset.splits.get(split)
    if samples is None:
        raise DataError(f"Unknown split {split!r}; {dataset.name} has {', '.join(dataset.splits)}.")
    if not samples:
        raise DataError(f"The {split!r} split of {dataset.name} has no images.")
    normalise = get_preprocessor(preprocessing)
    height, width = input_size
    crops = augment is not None and augment.scale is not None
    work = (math.ceil(height * CROP_MARGIN), math.ceil(width * CROP_MARGIN)) if crops else (height, width)

    def load(index: int) -> tuple[np.ndarray, np.ndarray]:
        image, mask = dataset.read_pair(samples[int(index)])
        return resize_pair(image, mask, work)

    preloaded = _decode_all(load, len(samples), work) if cache else None

    def fetch(index: int) -> tuple[np.ndarray, np.ndarray]:
        if preloaded is None:
            return load(index)
        return preloaded[0][index], preloaded[1][index]

    def read(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image, mask = tf.numpy_function(fetch, [index], (tf.uint8, tf.uint8), stateful=False)
        image.set_shape((*work, 3))
        mask.set_shape(work)
        return image, mask

    pairs = tf.data.Dataset.range(len(samples))
    if shuffle:
        pairs = pairs.shuffle(len(samples), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        pairs = pairs.repeat()
    pairs = pairs.map(read, num_parallel_calls=tf.data.AUTOTUNE)

    if augment is None:
        pairs = pairs.map(lambda image, mask: (tf.cast(image, tf.float32), mask))
    else:
        keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(
            2, drop_remainder=True)
        pairs = tf.data.Dataset.zip((pairs, keys)).map(
            lambda pair, key: _augment(pair[0], pair[1], key, augment, (height, width)),
            num_parallel_calls=tf.data.AUTOTUNE)

    batches = pairs.batch(batch_size)
    if augment is not None and augment.copy_paste > 0:
        keys = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=True).batch(
            2, drop_remainder=True)
        batches = tf.data.Dataset.zip((batches, keys)).map(
            lambda batch, key: _copy_paste(batch[0], batch[1], key, augment),
            num_parallel_calls=tf.data.AUTOTUNE)

    def finish(images: tf.Tensor, masks: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        masks = tf.cast(masks, tf.int32)
        if targets is not None:
            masks = targets(images, masks)
        return tf.cast(normalise(images), tf.float32), masks

    batches = batches.map(finish, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    if targets is not None:
        # A teacher's forward pass inside tf.data gets one thread per op by default: 2.0 s for a
        # batch of 8 at 160 px against 0.9 s in a tf.function (1.3 s with the machine's cores).
        options = tf.data.Options()
        options.threading.max_intra_op_parallelism = os.cpu_count() or 1
        batches = batches.with_options(options)
    return batches


def _decode_all(load: Callable[[int], tuple[np.ndarray, np.ndarray]], count: int,
                size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """All samples as one uint8 image array and one mask array, decoded in parallel threads
    (PIL releases the GIL while decoding and resizing)."""
    images = np.empty((count, *size, 3), np.uint8)
    masks = np.empty((count, *size), np.uint8)

    def fill(index: int) -> None:
        images[index], masks[index] = load(index)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(fill, range(count)))
    return images, masks


def _augment(image: tf.Tensor, mask: tf.Tensor, key: tf.Tensor, augment: Augment,
             size: tuple[int, int]) -> tuple[tf.Tensor, tf.Tensor]:
    """Random crop (resized to `size`: image bilinear, mask nearest), flip and colour jitter."""
    crop_key, offset_key, flip_key, colour_key, zoom_key = tf.unstack(
        tf.random.experimental.stateless_split(key, 5))
    image = tf.cast(image, tf.float32)
    mask = mask[..., None]
    if augment.scale is not None:
        side = tf.random.stateless_uniform([], crop_key, augment.scale[0], augment.scale[1])
        shape = tf.shape(mask)[:2]
        crop = tf.maximum(1, tf.cast(tf.round(side * tf.cast(shape, tf.float32)), tf.int32))
        room = tf.cast(shape - crop + 1, tf.float32)
        offset = tf.cast(tf.random.stateless_uniform([2], offset_key) * room, tf.int32)
        offset = tf.minimum(offset, shape - crop)
        image = tf.slice(image, tf.concat([offset, [0]], 0), tf.concat([crop, [3]], 0))
        mask = tf.slice(mask, tf.concat([offset, [0]], 0), tf.concat([crop, [1]], 0))
        image = tf.image.resize(image, size, method="bilinear")
        mask = tf.image.resize(mask, size, method="nearest")
    if augment.flip:
        flip = tf.random.stateless_uniform([], flip_key) < 0.5
        image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
        mask = tf.cond(flip, lambda: tf.reverse(mask, [1]), lambda: mask)
    if augment.color_jitter > 0:
        image = _jitter_colour(image, augment.color_jitter, colour_key)
    if augment.zoom_out > 0:
        image, mask = _zoom_out(image, mask, zoom_key, augment, size)
    image = tf.ensure_shape(image, (*size, 3))
    return image, tf.ensure_shape(mask[..., 0], size)


def _copy_paste(images: tf.Tensor, masks: tf.Tensor, key: tf.Tensor,
                augment: Augment) -> tuple[tf.Tensor, tf.Tensor]:
    """Each photo of the batch, with probability `augment.copy_paste`, gets the next photo's pet
    pasted on (see Augment). One `crop_and_resize` per batch does every scale and offset: its box
    maps each output pixel back to the donor pixel it shows, and pixels mapped outside the donor
    get the background label, so they keep the photo's own."""
    apply_key, side_key, offset_key = tf.unstack(tf.random.experimental.stateless_split(key, 3))
    count = tf.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    donors = tf.roll(images, 1, axis=0)
    donor_masks = tf.cast(tf.roll(masks, 1, axis=0), tf.float32)[..., None]
    side = tf.random.stateless_uniform([count], side_key, *augment.copy_paste_range)
    offset = tf.random.stateless_uniform([count, 2], offset_key) * (1.0 - side[:, None])
    # Output pixel y shows donor row (y - offset_y * H) / side; boxes are in units of (H - 1).
    top = -offset[:, 0] * height / side / max(height - 1, 1)
    left = -offset[:, 1] * width / side / max(width - 1, 1)
    bottom = top + 1.0 / side
    right = left + 1.0 / side
    boxes = tf.stack([top, left, bottom, right], axis=1)
    index = tf.range(count)
    pasted = tf.image.crop_and_resize(donors, boxes, index, (height, width), method="bilinear")
    labels = tf.image.crop_and_resize(donor_masks, boxes, index, (height, width), method="nearest",
                                      extrapolation_value=float(augment.pad_label))[..., 0]
    labels = tf.cast(tf.round(labels), masks.dtype)
    chosen = tf.random.stateless_uniform([count], apply_key) < augment.copy_paste
    pet = ((labels != augment.pad_label) & (labels != IGNORE_INDEX)
           & chosen[:, None, None])
    return (tf.where(pet[..., None], pasted, images),
            tf.where(pet, labels, masks))


def _jitter_colour(image: tf.Tensor, strength: float, key: tf.Tensor) -> tf.Tensor:
    """Random brightness, contrast and saturation (each by a factor in 1 +- strength), [0, 255] kept."""
    brightness_key, contrast_key, saturation_key = tf.unstack(
        tf.random.experimental.stateless_split(key, 3))
    low, high = 1 - strength, 1 + strength
    image = image * tf.random.stateless_uniform([], brightness_key, low, high)
    image = tf.image.stateless_random_contrast(image, low, high, contrast_key)
    image = tf.image.stateless_random_saturation(image, low, high, saturation_key)
    return tf.clip_by_value(image, 0.0, 255.0)


def _zoom_out(image: tf.Tensor, mask: tf.Tensor, key: tf.Tensor, augment: Augment,
              size: tuple[int, int]) -> tuple[tf.Tensor, tf.Tensor]:
    """With probability `augment.zoom_out`, the photo shrunk onto a plain canvas (see Augment)."""
    apply_key, side_key, offset_key, colour_key = tf.unstack(
        tf.random.experimental.stateless_split(key, 4))

    def shrink() -> tuple[tf.Tensor, tf.Tensor]:
        side = tf.random.stateless_uniform([], side_key, *augment.zoom_out_range)
        full = tf.constant(size, tf.int32)
        small = tf.maximum(1, tf.cast(tf.round(side * tf.cast(full, tf.float32)), tf.int32))
        offset = tf.cast(tf.random.stateless_uniform([2], offset_key)
                         * tf.cast(full - small + 1, tf.float32), tf.int32)
        offset = tf.minimum(offset, full - small)
        picture = tf.image.resize(image, small, method="bilinear")
        labels = tf.image.resize(mask, small, method="nearest")
        colour = tf.random.stateless_uniform([3], colour_key, 0.0, 255.0)
        inside = tf.image.pad_to_bounding_box(tf.ones_like(picture[..., :1]), offset[0], offset[1],
                                              *size)
        placed = tf.image.pad_to_bounding_box(picture, offset[0], offset[1], *size)
        canvas = placed + (1.0 - inside) * colour
        shifted = tf.image.pad_to_bounding_box(tf.cast(labels, tf.int32) + 1, offset[0],
                                               offset[1], *size)  # 0 marks the canvas
        labels = tf.where(shifted == 0, augment.pad_label, shifted - 1)
        return canvas, tf.cast(labels, mask.dtype)

    chosen = tf.random.stateless_uniform([], apply_key) < augment.zoom_out
    return tf.cond(chosen, shrink, lambda: (image, mask))
