import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from segdemo.classes import PET_CLASSES, VOC_CLASSES
from segdemo.data import (
    MINOR_BREED_MAX_IMAGES, Augment, DataError, Dataset, Sample, breed_of, load_dataset, load_tfds,
    make_tf_dataset, resize_pair,
)
from tests.fixtures import (
    CLASS_COLOURS, HEIGHT, WIDTH, make_folders, make_oxford, make_voc, save_png, scene,
)


def _all_samples(dataset: Dataset) -> list[Sample]:
    return [s for split in ("train", "val", "test") for s in dataset.splits[split]]


def _batches(ds: tf.data.Dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x.numpy(), y.numpy()) for x, y in ds]


# ----------------------------------------------------------------------------- formats


def test_oxford_layout_loads_with_trimap_minus_one(tmp_path):
    dataset = load_dataset(make_oxford(tmp_path), "oxford")
    assert (dataset.name, dataset.format, dataset.classes) == ("oxford-iiit-pet", "oxford", PET_CLASSES)
    sizes = {k: len(v) for k, v in dataset.splits.items()}
    assert sizes == {"train": 5, "val": 1, "test": 3}  # one breed: nothing is minor, no probe
    assert {s.name for s in dataset.splits["test"]} == {"Cat_6", "Cat_7", "Cat_8"}
    sample = dataset.splits["train"][0]
    trimap = np.asarray(Image.open(sample.mask))
    mask = dataset.read_mask(sample)
    assert mask.dtype == np.uint8 and mask.shape == (HEIGHT, WIDTH)
    np.testing.assert_array_equal(mask, trimap - 1)
    image = dataset.read_image(sample)
    assert image.mode == "RGB" and image.size == (WIDTH, HEIGHT)


def test_oxford_without_split_files_falls_back_to_a_seeded_split(tmp_path):
    root = make_oxford(tmp_path, trainval=8, test=2, split_files=False)
    with pytest.warns(UserWarning, match="trainval.txt"):
        dataset = load_dataset(root, "oxford")
    names = [s.name for s in _all_samples(dataset)]
    assert sorted(names) == sorted(f"Cat_{i}" for i in range(10))
    assert all(dataset.splits[s] for s in ("train", "val", "test"))


def test_voc_layout_keeps_palette_indices_and_ignore(tmp_path):
    dataset = load_dataset(make_voc(tmp_path), "voc")
    assert dataset.format == "voc" and dataset.classes == VOC_CLASSES and dataset.num_classes == 21
    assert {k: len(v) for k, v in dataset.splits.items()} == {"train": 5, "val": 1, "test": 2}
    mask = dataset.read_mask(dataset.splits["test"][0])
    assert set(np.unique(mask)) == {0, 1, 15, 255}  # indices, not palette colours; 255 kept
    assert dataset.read_image(dataset.splits["test"][0]).mode == "RGB"


def test_voc_custom_classes_reject_larger_indices(tmp_path):
    dataset = load_dataset(make_voc(tmp_path), "voc", classes=["background", "cat"])
    assert [c.name for c in dataset.classes] == ["background", "cat"]
    with pytest.raises(DataError, match=r"2007_000000\.png: mask values 15 are not class indices"):
        dataset.read_mask(dataset.splits["train"][0])


def test_folders_binary_0_255_becomes_0_1_and_junk_files_are_skipped(tmp_path):
    root = make_folders(tmp_path, count=10, binary_255=True)
    for junk in ("README.txt", ".DS_Store", "thumbs.db"):
        (root / "images" / junk).write_text("not an image")
        (root / "masks" / junk).write_text("not an image")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # junk files are skipped silently
        dataset = load_dataset(root, "folders")
    assert dataset.format == "folders" and dataset.name == tmp_path.name
    assert [c.name for c in dataset.classes] == ["background", "foreground"]
    assert len(_all_samples(dataset)) == 10
    assert {k: len(v) for k, v in dataset.splits.items()} == {"train": 7, "val": 1, "test": 2}
    for sample in _all_samples(dataset):
        mask = dataset.read_mask(sample)
        _, source = scene(int(sample.name[3:]))
        np.testing.assert_array_equal(mask, (source > 0).astype(np.uint8))


def test_folders_class_names_from_classes_txt_or_argument(tmp_path):
    root = make_folders(tmp_path, count=4, classes=["sky", "tree", "house"])
    dataset = load_dataset(root, "folders")
    assert [c.name for c in dataset.classes] == ["sky", "tree", "house"]
    assert set(np.unique(dataset.read_mask(dataset.splits["train"][0]))) == {0, 1, 2}
    dataset = load_dataset(root, "folders", classes=["a", "b", "c", "d"])
    assert dataset.num_classes == 4


def test_folders_unnamed_multiclass_masks_ask_for_classes_txt(tmp_path):
    with pytest.raises(DataError, match="classes.txt"):
        load_dataset(make_folders(tmp_path, count=4), "folders")


def test_folders_unpaired_files_warn_and_nothing_paired_is_an_error(tmp_path):
    root = make_folders(tmp_path, count=4, binary_255=True)
    save_png(scene(0)[0], root / "images" / "lonely.png")
    save_png(scene(0)[1], root / "masks" / "orphan.png")
    with pytest.warns(UserWarning) as record:
        dataset = load_dataset(root, "folders")
    text = " ".join(str(w.message) for w in record)
    assert "lonely" in text and "orphan" in text
    assert "lonely" not in {s.name for s in _all_samples(dataset)}

    other = tmp_path / "other"
    save_png(scene(0)[0], other / "images" / "a.png")
    save_png(scene(0)[1], other / "masks" / "b.png")
    with pytest.warns(UserWarning), pytest.raises(DataError, match="no image in images/ has a mask"):
        load_dataset(other, "folders")


def test_grey_rgba_palette_and_cmyk_images_load_as_rgb(tmp_path):
    root = tmp_path / "modes"
    rgb = Image.fromarray(scene(0)[0])
    (root / "images").mkdir(parents=True)
    rgb.convert("L").save(root / "images" / "grey.png")
    rgb.convert("RGBA").save(root / "images" / "rgba.png")
    rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=8).save(root / "images" / "palette.png")
    rgb.convert("CMYK").save(root / "images" / "cmyk.jpg")
    (root / "masks").mkdir()
    for name in ("grey", "rgba", "palette", "cmyk"):
        save_png(scene(0)[1], root / "masks" / f"{name}.png")
    dataset = load_dataset(root, "folders", classes=["a", "b", "c"])
    for sample in _all_samples(dataset):
        image = dataset.read_image(sample)
        assert image.mode == "RGB" and image.size == (WIDTH, HEIGHT), sample.name


# ----------------------------------------------------------------------------- errors name the file


def test_missing_mask_names_the_file(tmp_path):
    dataset = load_dataset(make_oxford(tmp_path), "oxford")
    sample = dataset.splits["test"][0]
    sample.mask.unlink()
    with pytest.raises(DataError, match=rf"Mask file not found: .*{sample.name}\.png"):
        dataset.read_mask(sample)


def test_unreadable_mask_names_the_file(tmp_path):
    dataset = load_dataset(make_oxford(tmp_path), "oxford")
    sample = dataset.splits["test"][0]
    sample.mask.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=rf"{sample.name}\.png: the mask cannot be read"):
        dataset.read_mask(sample)


def test_trimap_value_outside_1_2_3_names_file_and_values(tmp_path):
    dataset = load_dataset(make_oxford(tmp_path), "oxford")
    sample = dataset.splits["test"][1]
    trimap = np.asarray(Image.open(sample.mask)).copy()
    trimap[0, :3] = 7
    trimap[1, 0] = 0
    save_png(trimap, sample.mask)
    with pytest.raises(DataError, match=rf"{sample.name}\.png: trimap values .* found 0, 7"):
        dataset.read_mask(sample)


def test_colour_mask_is_refused_with_an_explanation(tmp_path):
    root = make_folders(tmp_path, count=4, classes=["a", "b", "c"])
    colour = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    colour[:, :10] = (128, 0, 0)
    save_png(colour, root / "masks" / "img01.png")
    grey_as_rgb = np.repeat(scene(2)[1][..., None], 3, axis=2)
    save_png(grey_as_rgb, root / "masks" / "img02.png")  # equal channels: fine
    dataset = load_dataset(root, "folders")
    by_name = {s.name: s for s in _all_samples(dataset)}
    np.testing.assert_array_equal(dataset.read_mask(by_name["img02"]), scene(2)[1])
    with pytest.raises(DataError, match=r"img01\.png: the mask is a colour \(RGB\) image.*single-channel"):
        dataset.read_mask(by_name["img01"])


def test_mask_size_mismatch_names_both_sizes(tmp_path):
    dataset = load_dataset(make_oxford(tmp_path), "oxford")
    sample = dataset.splits["train"][0]
    save_png(np.ones((15, 20), np.uint8), sample.mask)
    with pytest.raises(DataError, match=rf"{sample.name}\.png: the mask is 20x15 pixels but its image "
                                        rf"{sample.name}\.png is 40x30"):
        dataset.read_mask(sample)


def test_undecodable_image_names_the_file_even_in_the_pipeline(tmp_path):
    dataset = load_dataset(make_oxford(tmp_path), "oxford")
    sample = dataset.splits["val"][0]
    sample.image.write_bytes(sample.image.read_bytes()[:60])
    with pytest.raises(DataError, match=rf"{sample.name}\.png"):
        dataset.read_image(sample)
    with pytest.raises(DataError, match=rf"{sample.name}\.png"):
        make_tf_dataset(dataset, "val", (16, 16), "unit", 2)


def test_bad_arguments_and_layouts(tmp_path):
    with pytest.raises(DataError, match="Unknown dataset format"):
        load_dataset(tmp_path, "coco")
    with pytest.raises(DataError, match="not found"):
        load_dataset(tmp_path / "nowhere", "oxford")
    with pytest.raises(DataError, match=r"--format folders"):
        load_dataset(make_folders(tmp_path, count=3, binary_255=True), "oxford")
    with pytest.raises(ValueError):
        Augment(scale=(0.0, 1.0))


def test_exif_rotated_image_gets_its_mask_turned_the_same_way(tmp_path):
    root = tmp_path / "exif"
    image, mask = scene(1)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees clockwise
    (root / "images").mkdir(parents=True)
    Image.fromarray(image).save(root / "images" / "a.jpg", exif=exif, quality=95)
    save_png(mask, root / "masks" / "a.png")  # drawn on the stored pixels
    save_png(np.rot90(mask, -1), root / "masks" / "b.png")  # drawn on the upright photo
    Image.fromarray(image).save(root / "images" / "b.jpg", exif=exif, quality=95)
    dataset = load_dataset(root, "folders", classes=["a", "b", "c"], val_fraction=0, test_fraction=0)
    for sample in dataset.splits["train"]:
        upright, labels = dataset.read_pair(sample)
        assert labels.shape == upright.shape[:2] == (WIDTH, HEIGHT)
        np.testing.assert_array_equal(labels, np.rot90(mask, -1))


# ----------------------------------------------------------------------------- splits


def test_splits_are_deterministic_per_seed(tmp_path):
    root = make_folders(tmp_path, count=30, binary_255=True)

    def split_names(seed):
        dataset = load_dataset(root, "folders", seed=seed)
        return {k: [s.name for s in v] for k, v in dataset.splits.items()}

    first = split_names(0)
    assert first == split_names(0)
    assert first != split_names(1)
    assert sorted(sum(first.values(), [])) == [f"img{i:02d}" for i in range(30)]
    assert {k: len(v) for k, v in first.items()} == {"train": 21, "val": 3, "test": 6}

    oxford = make_oxford(tmp_path / "ox", trainval=20, test=2)
    vals = {seed: [s.name for s in load_dataset(oxford, seed=seed).splits["val"]] for seed in (0, 0, 5)}
    assert len(vals[0]) == 2 and vals[0] != vals[5]


# ----------------------------------------------------------------------------- resizing


def test_nearest_resize_never_invents_labels():
    mask = np.zeros((30, 40), np.uint8)
    mask[:, 20:] = 2
    mask[0] = 255
    # What the seed tutorials did: bilinear resizing of labels invents class 1 between 0 and 2.
    bilinear = tf.image.resize(mask[..., None], (17, 23), "bilinear").numpy().round()
    assert 1 in bilinear
    image = np.zeros((30, 40, 3), np.uint8)
    for size in [(17, 23), (64, 91), (7, 5), (30, 40), (1, 1)]:
        small_image, small_mask = resize_pair(image, mask, size)
        assert small_image.shape == (*size, 3) and small_mask.shape == size
        assert set(np.unique(small_mask)) <= {0, 2, 255}


def test_augmented_pipeline_never_invents_labels(tmp_path):
    root = make_folders(tmp_path, count=6, binary_255=True)
    for i in range(6):
        mask = np.where(scene(i)[1] > 0, 2, 0).astype(np.uint8)
        mask[:2] = 255
        save_png(mask, root / "masks" / f"img{i:02d}.png")
    dataset = load_dataset(root, "folders", classes=["a", "b", "c"])
    ds = make_tf_dataset(dataset, "train", (21, 27), "unit", 4, augment=Augment(color_jitter=0.3),
                         shuffle=True, repeat=True).take(10)
    labels = np.unique(np.concatenate([y.ravel() for _, y in _batches(ds)]))
    assert set(labels) == {0, 2, 255}


# ----------------------------------------------------------------------------- tf.data pipeline


@pytest.mark.parametrize("preprocessing, low, high", [("tf", -1.0, 1.0), ("unit", 0.0, 1.0)])
def test_pipeline_shapes_dtypes_and_value_range(tmp_path, preprocessing, low, high):
    dataset = load_dataset(make_oxford(tmp_path), "oxford")
    for augment in (None, Augment(color_jitter=0.4)):
        batches = _batches(make_tf_dataset(dataset, "train", (24, 32), preprocessing, 2,
                                           augment=augment, shuffle=True))
        assert [len(x) for x, _ in batches] == [2, 2, 1]
        for x, y in batches:
            assert x.dtype == np.float32 and x.shape[1:] == (24, 32, 3)
            assert y.dtype == np.int32 and y.shape[1:] == (24, 32)
            assert low <= x.min() and x.max() <= high and x.max() - x.min() > 0.5 * (high - low)
            assert set(np.unique(y)) <= {0, 1, 2}


def test_pipeline_without_augment_is_the_plain_resize(tmp_path):
    dataset = load_dataset(make_oxford(tmp_path), "oxford")
    (x, y), = _batches(make_tf_dataset(dataset, "test", (20, 25), "unit", 8, cache=False))
    for i, sample in enumerate(dataset.splits["test"]):
        image, mask = resize_pair(*dataset.read_pair(sample), (20, 25))
        np.testing.assert_allclose(x[i], image / 255.0, atol=1e-6)
        np.testing.assert_array_equal(y[i], mask)


def _check_alignment(x: np.ndarray, y: np.ndarray) -> int:
    """Every pixel whose 5x5 neighbourhood has one label shows that label's colour; returns count.

    Two bilinear resizes (working size, then crop to input) blur colour edges over up to two
    pixels, and a region just outside the crop can bleed in, hence the margin and the border.
    """
    checked = 0
    for image, labels in zip(x, y):
        padded = np.pad(labels, 2, constant_values=-1)
        windows = np.lib.stride_tricks.sliding_window_view(padded, (5, 5))
        interior = (windows == labels[..., None, None]).all(axis=(-1, -2))
        expected = CLASS_COLOURS[labels] / 255.0
        error = np.abs(image - expected).max(axis=-1)
        assert error[interior].max() < 0.1
        checked += int(interior.sum())
    return checked


def test_labels_stay_aligned_with_image_content_through_flips_and_crops(tmp_path):
    dataset = load_dataset(make_oxford(tmp_path), "oxford")
    ds = make_tf_dataset(dataset, "train", (30, 40), "unit", 5, augment=Augment(scale=(0.5, 1.0)),
                         shuffle=True, seed=3)
    checked, flips = 0, 0
    for epoch in range(6):
        for x, y in _batches(ds):
            checked += _check_alignment(x, y)
            with pytest.raises(AssertionError):  # the check does catch a one-sided flip
                _check_alignment(x[:, :, ::-1], y)
            # Class 2 sits on the right of every scene; after a flip it is on the left.
            flips += sum(np.mean(np.nonzero(m == 2)[1]) < 20 for m in y if (m == 2).any())
    assert checked > 6 * 5 * 30 * 40 * 0.4
    assert 0 < flips < 6 * 5


def test_augmentation_is_seeded_and_changes_every_epoch(tmp_path):
    dataset = load_dataset(make_oxford(tmp_path), "oxford")

    def pipeline(seed):
        return make_tf_dataset(dataset, "train", (16, 16), "unit", 8, augment=Augment(), shuffle=True,
                               seed=seed)

    first_epoch, second_epoch = (_batches(pipeline(1))[0][1] for _ in range(2))
    np.testing.assert_array_equal(first_epoch, second_epoch)  # same seed, same batches
    ds = pipeline(1)
    epochs = [_batches(ds)[0][1] for _ in range(2)]
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(_batches(pipeline(2))[0][1], first_epoch)


# ----------------------------------------------------------------------------- tfds (no network)


def test_tfds_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(DataError, match="pip install tensorflow-datasets"):
        load_dataset(None, "tfds")


def _fake_tfds(default_dir: Path, examples: dict | None = None, error: Exception | None = None):
    class Builder:
        version = "4.0.0"

        def __init__(self, name, data_dir):
            assert name == "oxford_iiit_pet"
            self.data_dir = str(Path(data_dir) / name / self.version)

        def download_and_prepare(self):
            if error is not None:
                raise error

        def as_dataset(self, split, decoders):
            return examples[split]

    module = types.ModuleType("tensorflow_datasets")
    module.builder = lambda name, data_dir=None: Builder(name, data_dir or default_dir)
    module.as_numpy = iter
    module.decode = types.SimpleNamespace(SkipDecoding=lambda: None)
    return module


def test_tfds_failed_download_points_to_a_local_copy(tmp_path, monkeypatch):
    fake = _fake_tfds(tmp_path, error=ConnectionError("Failed to resolve host www.robots.ox.ac.uk"))
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    with pytest.raises(DataError, match=r"Downloading .* failed \(Failed to resolve host.*"
                                        r"--format oxford --data PATH"):
        load_dataset(None, "tfds")


def test_tfds_examples_become_an_oxford_layout_read_like_a_local_copy(tmp_path, monkeypatch):
    def example(i):
        image, mask = scene(i)
        encoded = {}
        for key, array in (("image", image), ("segmentation_mask", mask + 1)):
            path = save_png(array, tmp_path / "enc" / f"{key}{i}.png")
            encoded[key] = path.read_bytes()
        return {"file_name": f"Pet_{i}.jpg".encode(), **encoded}

    examples = {"train": [example(i) for i in range(5)], "test": [example(i) for i in range(5, 7)]}
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", _fake_tfds(tmp_path, examples))
    dataset = load_dataset(tmp_path / "tfds", "tfds")
    assert dataset.format == "tfds" and dataset.classes == PET_CLASSES
    assert {k: len(v) for k, v in dataset.splits.items()} == {"train": 4, "val": 1, "test": 2}
    sample = dataset.splits["test"][0]
    np.testing.assert_array_equal(dataset.read_mask(sample), scene(5)[1])
    assert sample.image.parent.parent == tmp_path / "tfds" / "segdemo" / "oxford_iiit_pet-4.0.0"
    assert load_tfds(tmp_path / "tfds").splits == dataset.splits  # exported once, then reused


def test_minor_breeds_form_a_probe_split_that_training_can_hold_out(tmp_path):
    root = tmp_path / "pets"
    names = [f"Big_{i}" for i in range(MINOR_BREED_MAX_IMAGES)] + ["Rare_1", "Rare_2"]
    for i, name in enumerate(names + ["Big_test"]):
        image, mask = scene(i)
        save_png(image, root / "images" / f"{name}.png")
        save_png(mask + 1, root / "annotations" / "trimaps" / f"{name}.png")
    (root / "annotations" / "trainval.txt").write_text("".join(f"{n} 1 1 1\n" for n in names))
    (root / "annotations" / "test.txt").write_text("Big_test 1 1 1\n")
    seen = load_dataset(root, "oxford")
    assert [s.name for s in seen.splits["probe"]] == ["Rare_1", "Rare_2"]
    assert len(seen.splits["train"]) + len(seen.splits["val"]) == len(names)
    held = load_dataset(root, "oxford", holdout_minor_breeds=True)
    trained = {s.name for split in ("train", "val") for s in held.splits[split]}
    assert trained == set(names) - {"Rare_1", "Rare_2"}
    assert [s.name for s in held.splits["probe"]] == ["Rare_1", "Rare_2"]
    assert breed_of("great_pyrenees_12") == "great_pyrenees"


def test_a_held_out_breed_leaves_every_split_for_the_unseen_one(tmp_path):
    root = tmp_path / "pets"
    train = [f"Big_{i}" for i in range(6)] + ["Other_1", "Other_2", "Other_3"]
    test = ["Big_t1", "Other_t1"]
    for i, name in enumerate(train + test):
        image, mask = scene(i)
        save_png(image, root / "images" / f"{name}.png")
        save_png(mask + 1, root / "annotations" / "trimaps" / f"{name}.png")
    (root / "annotations" / "trainval.txt").write_text("".join(f"{n} 1 1 1\n" for n in train))
    (root / "annotations" / "test.txt").write_text("".join(f"{n} 1 1 1\n" for n in test))
    held = load_dataset(root, "oxford", holdout_breeds=["Other"])
    assert [s.name for s in held.splits["unseen"]] == ["Other_1", "Other_2", "Other_3", "Other_t1"]
    for split in ("train", "val", "test"):
        assert all(breed_of(s.name) == "Big" for s in held.splits[split]), split
    assert [s.name for s in held.splits["test"]] == ["Big_t1"]
    assert len(held.splits["train"]) + len(held.splits["val"]) == 6
    with pytest.raises(DataError, match="No images of breed 'Siamese' here; the breeds are Big, "
                                        "Other"):
        load_dataset(root, "oxford", holdout_breeds=["Siamese"])
    with pytest.raises(DataError, match="needs the Oxford-IIIT Pet format"):
        load_dataset(make_voc(tmp_path / "voc"), "voc", holdout_breeds=["Other"])


def test_zoom_out_shrinks_the_photo_onto_a_canvas_labelled_background(tmp_path):
    dataset = load_dataset(make_oxford(tmp_path / "pets"), "oxford")
    augment = Augment(flip=False, scale=None, zoom_out=1.0, zoom_out_range=(0.5, 0.5), pad_label=1)
    _, masks = next(iter(make_tf_dataset(dataset, "train", (32, 32), "tf", 4, augment=augment)))
    masks = masks.numpy()
    for mask in masks:  # a 16x16 photo somewhere; the other 3/4 of the pixels are canvas
        canvas = mask == 1
        assert canvas.sum() >= 32 * 32 - 16 * 16
    with pytest.raises(ValueError, match="zoom_out"):
        Augment(zoom_out=1.5)


def test_copy_paste_puts_the_next_photos_objects_onto_each_photo_with_their_labels(tmp_path):
    dataset = load_dataset(make_oxford(tmp_path / "pets"), "oxford")
    plain = Augment(flip=False, scale=None)
    pasting = Augment(flip=False, scale=None, pad_label=0, copy_paste=1.0,
                      copy_paste_range=(0.5, 0.5))
    before = next(iter(make_tf_dataset(dataset, "train", (32, 32), "unit", 4, augment=plain)))
    after = next(iter(make_tf_dataset(dataset, "train", (32, 32), "unit", 4, augment=pasting)))
    images, masks = (t.numpy() for t in before)
    pasted_images, pasted_masks = (t.numpy() for t in after)
    changed = pasted_masks != masks
    assert changed.any()
    for index in range(4):
        donor = masks[(index - 1) % 4]
        # Half-size donor objects: at most a quarter of the donor's object pixels can land.
        assert changed[index].sum() <= (donor != 0).sum() / 4 + 32
        # Pixels outside the pasted objects keep the photo and its labels.
        keep = pasted_masks[index] == masks[index]
        assert np.allclose(pasted_images[index][keep & (masks[index] == 0)],
                           images[index][keep & (masks[index] == 0)])
    # The image colour encodes the class (fixtures.CLASS_COLOURS): a pasted pixel shows the colour
    # of the label it was given, so image and labels moved together.
    colours = np.array([(0, 0, 1), (1, 0, 0), (0, 1, 0)], np.float32)
    where = changed & (pasted_masks != 0)
    shown = pasted_images[where]
    expected = colours[pasted_masks[where]]
    assert np.mean(np.abs(shown - expected).max(axis=-1) < 0.3) > 0.8
    with pytest.raises(ValueError, match="copy_paste"):
        Augment(copy_paste=2.0)
