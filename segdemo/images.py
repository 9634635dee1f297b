"""Reading user images safely: any file a person drops in becomes an RGB PIL image or an
`ImageError` that names the file and the problem. Shared by the data loaders, inference and the app.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from segdemo.errors import SegDemoError

ImageSource = Union[str, os.PathLike, bytes, BinaryIO, Image.Image]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


class ImageError(SegDemoError, ValueError):
    """An input that cannot be used as an image; the message is meant for the end user."""


def _describe(source: ImageSource, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    return getattr(source, "name", None) or "the image"


def _to_8bit_rgb(image: Image.Image) -> Image.Image:
    """Grey, 16-bit, float, palette, CMYK and alpha images become 8-bit RGB."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(image).astype(np.int64)
        peak = 65535 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255
        arr = np.clip(arr * 255 // peak, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode == "F":
        arr = np.nan_to_num(np.asarray(image, dtype=np.float32))
        peak = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        return Image.fromarray(np.clip(arr / peak * 255, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode != "RGB":
        return image.convert("RGB")
    return image


def open_image(
    source: ImageSource, name: str | None = None, max_pixels: int | None = None
) -> Image.Image:
    """Decode `source` (path, bytes, file object or PIL image) into an upright 8-bit RGB image.

    EXIF orientation is applied, animations give their first frame, and images larger than
    `max_pixels` (default: Pillow's decompression-bomb limit) are refused before decoding.
    """
    label = _describe(source, name)
    limit = max_pixels if max_pixels is not None else Image.MAX_IMAGE_PIXELS
    if isinstance(source, Image.Image):
        image = source
    else:
        if isinstance(source, bytes):
            data: BinaryIO = io.BytesIO(source)
        elif isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not path.is_file():
                raise ImageError(f"{label}: file not found ({path}).")
            data = io.BytesIO(path.read_bytes())  # no file handle left open
        else:
            data = source
        try:
            data.seek(0, io.SEEK_END)
            size = data.tell()
            data.seek(0)
        except (OSError, AttributeError):
            size = None
        if size == 0:
            raise ImageError(f"{label} is empty (0 bytes).")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(data)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError(
                f"{label} is too large to open safely (over {limit:,} pixels)."
            ) from None
        except UnidentifiedImageError:
            raise ImageError(f"{label} is not an image file that can be read (unknown format).") from None
        except OSError as exc:
            raise ImageError(f"{label} could not be read: {exc}.") from None
    width, height = image.size
    if width * height > limit:
        raise ImageError(
            f"{label} is too large: {width}x{height} = {width * height:,} pixels "
            f"(the limit is {limit:,})."
        )
    if width < 1 or height < 1:
        raise ImageError(f"{label} has no pixels ({width}x{height}).")
    try:
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)
        image.load()
        image = ImageOps.exif_transpose(image) or image
        return _to_8bit_rgb(image)
    except (OSError, SyntaxError, ValueError) as exc:
        reason = "the file is truncated or damaged" if "truncated" in str(exc) else str(exc)
        raise ImageError(f"{label} could not be decoded: {reason}.") from None


def is_image_file(path: Path) -> bool:
    """Whether `path` has an image extension (cheap filter before trying to decode)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def resize_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a label mask (or a float map) to size=(H, W) by nearest neighbour.

    The only correct choice for labels: every output value is one of the input values (255 =
    ignore included), where interpolation would invent in-between classes.
    """
    height, width = size
    if array.shape[:2] == (height, width):
        return array
    return np.asarray(Image.fromarray(array).resize((width, height), Image.Resampling.NEAREST))


def bilinear(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """`array` (h, w, ...) resized to shape=(H, W) by bilinear interpolation with half-pixel
    centres, as `tf.image.resize` does (which makes the full-resolution masks), in float32."""
    array = np.asarray(array, np.float32)

    def axis(out: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        position = np.clip((np.arange(out) + 0.5) * size / out - 0.5, 0, size - 1)
        low = np.floor(position).astype(int)
        return low, np.minimum(low + 1, size - 1), (position - low).astype(np.float32)

    (y0, y1, wy), (x0, x1, wx) = axis(shape[0], array.shape[0]), axis(shape[1], array.shape[1])
    wx = wx.reshape((1, -1) + (1,) * (array.ndim - 2))
    wy = wy.reshape((-1, 1) + (1,) * (array.ndim - 2))
    top = array[y0][:, x0] * (1 - wx) + array[y0][:, x1] * wx
    bottom = array[y1][:, x0] * (1 - wx) + array[y1][:, x1] * wx
    return top * (1 - wy) + bottom * wy


def synthetic_photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A photo-like RGB image (smooth shapes and gradients plus noise, not pure noise), cheap to
    make at 12 megapixels."""
    rng = np.random.default_rng(seed)
    small_w, small_h = max(2, width // 50), max(2, height // 50)
    coarse = rng.integers(0, 256, (small_h, small_w, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.BILINEAR)
    noise = Image.effect_noise((width, height), 24).convert("RGB")
    return Image.blend(image, noise, 0.15)


def model_input(image: Image.Image, input_size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 RGB at input_size=(H, W): the photo as every model is fed (PIL bilinear,
    which averages over the shrunk area)."""
    height, width = input_size
    return np.asarray(image.resize((width, height), Image.BILINEAR), dtype=np.uint8)
