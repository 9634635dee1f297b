"""'Remove background': the photo with everything but the pet made transparent.

Like the DeepLabV3+ platform's `mix_type=2` (keep only the target), but with an alpha channel
instead of black, and a soft edge instead of a hard one: the Oxford trimaps' `border` class is the
band where annotators did not decide between pet and background, so there the pet's share of
"pet or background" sets the opacity, and the outline fades over the band instead of being cut
along one side of it.

Built from the input-size probabilities the page keeps (a few hundred KB), only when shown or
downloaded: the alpha is computed at the model's input size and upsampled once to the photo, so
a 12-megapixel cut-out needs 12 MB for its alpha, never full-resolution probabilities.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from segdemo.classes import ClassInfo
from segdemo.errors import SegDemoError
from segdemo.inference import png_bytes

BACKGROUND = "background"
UNDECIDED = ("border",)  # classes that are neither pet nor background: left out of the ratio
# Opacity ramp over the pet's share: below LOW transparent, above HIGH opaque. It removes the
# faint haze a few percent of "pet" would leave over the whole background, and pinholes in the
# pet, while the border band keeps its soft edge.
LOW, HIGH = 0.1, 0.9


class CutoutError(SegDemoError, ValueError):
    """The model's classes do not say what the background is."""


def background_index(classes: Sequence[ClassInfo]) -> int | None:
    """Index of the class named "background", or None (then no cut-out can be made)."""
    return next((i for i, c in enumerate(classes) if c.name.lower() == BACKGROUND), None)


def foreground_alpha(probabilities: np.ndarray, classes: Sequence[ClassInfo]) -> np.ndarray:
    """uint8 opacity (h, w) from class probabilities (h, w, C): P(foreground) / (P(foreground) +
    P(background)), where foreground is every class that is neither background nor undecided,
    passed through the LOW..HIGH ramp."""
    background = background_index(classes)
    if background is None:
        raise CutoutError("A cut-out needs a class named 'background'; this model's classes are "
                          + ", ".join(c.name for c in classes) + ".")
    foreground = [i for i, c in enumerate(classes)
                  if i != background and c.name.lower() not in UNDECIDED]
    probabilities = np.asarray(probabilities, np.float32)
    pet = probabilities[..., foreground].sum(axis=-1)
    share = pet / np.maximum(pet + probabilities[..., background], 1e-6)
    ramp = np.clip((share - LOW) / (HIGH - LOW), 0.0, 1.0)
    return (ramp * 255 + 0.5).astype(np.uint8)


def cutout(image: Image.Image, probabilities: np.ndarray,
           classes: Sequence[ClassInfo]) -> Image.Image:
    """RGBA `image` (at its own size) whose alpha is `foreground_alpha` of `probabilities` (any
    resolution, typically the model's input size), upsampled bilinearly."""
    alpha = Image.fromarray(foreground_alpha(probabilities, classes), "L")
    if alpha.size != image.size:
        alpha = alpha.resize(image.size, Image.BILINEAR)
    rgba = image.convert("RGB")  # a new image: the caller's photo keeps no alpha
    rgba.putalpha(alpha)
    return rgba


def cutout_png(image: Image.Image, probabilities: np.ndarray,
               classes: Sequence[ClassInfo]) -> bytes:
    """The cut-out as PNG bytes (PNG keeps the transparency)."""
    return png_bytes(cutout(image, probabilities, classes))
