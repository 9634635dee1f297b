"""The 'remove background' cut-out: pet opaque, background transparent, soft over the border band."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from segdemo.classes import PET_CLASSES, make_classes
from segdemo.cutout import CutoutError, background_index, cutout, cutout_png, foreground_alpha
from segdemo.errors import SegDemoError


def _columns() -> np.ndarray:
    """(1, 5, 3) probabilities of pet / background / border: pet, pet, border leaning to pet,
    border leaning to background, background."""
    return np.array([[[0.98, 0.01, 0.01], [0.9, 0.05, 0.05], [0.3, 0.1, 0.6], [0.1, 0.3, 0.6],
                      [0.02, 0.97, 0.01]]], np.float32)


def test_alpha_is_the_pets_share_of_pet_or_background_ramped():
    alpha = foreground_alpha(_columns(), PET_CLASSES)
    assert alpha.dtype == np.uint8 and alpha.shape == (1, 5)
    assert alpha[0, 0] == alpha[0, 1] == 255  # pet: opaque (above the ramp's top)
    assert alpha[0, 4] == 0                   # background: transparent
    # In the border band the pet's share of "pet or background" decides: 0.75 and 0.25.
    assert alpha[0, 2] == round((0.75 - 0.1) / 0.8 * 255)
    assert alpha[0, 3] == round((0.25 - 0.1) / 0.8 * 255)


def test_without_an_undecided_class_alpha_is_one_minus_background():
    classes = make_classes(["background", "cat", "dog"])
    probabilities = np.array([[[0.5, 0.3, 0.2], [0.95, 0.05, 0.0]]], np.float32)
    assert foreground_alpha(probabilities, classes).tolist() == [[round(0.4 / 0.8 * 255), 0]]


def test_cutout_keeps_the_photo_at_its_size_with_a_soft_upsampled_alpha():
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8))
    result = cutout(photo, _columns(), PET_CLASSES)
    assert result.mode == "RGBA" and result.size == (50, 30) and photo.mode == "RGB"
    pixels = np.asarray(result)
    np.testing.assert_array_equal(pixels[..., :3], np.asarray(photo))
    row = pixels[15, :, 3].astype(int)
    assert row[0] == 255 and row[-1] == 0
    assert np.all(np.diff(row) <= 0) and len(set(row.tolist())) > 5  # a ramp, not a step
    decoded = Image.open(io.BytesIO(cutout_png(photo, _columns(), PET_CLASSES)))
    assert decoded.mode == "RGBA" and decoded.size == (50, 30)
    np.testing.assert_array_equal(np.asarray(decoded), pixels)


def test_a_model_without_a_background_class_gets_a_user_error():
    classes = make_classes(["road", "car"])
    assert background_index(classes) is None and background_index(PET_CLASSES) == 1
    with pytest.raises(CutoutError, match="needs a class named 'background'.*road, car") as error:
        foreground_alpha(np.zeros((2, 2, 2), np.float32), classes)
    assert isinstance(error.value, SegDemoError)
