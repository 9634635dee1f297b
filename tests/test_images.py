import io

import numpy as np
import pytest
from PIL import Image

from segdemo.images import ImageError, is_image_file, open_image, resize_nearest


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _photo(width=40, height=30) -> Image.Image:
    arr = np.zeros((height, width, 3), dtype=np.uint8)
    arr[:, : width // 2] = (200, 30, 30)
    arr[:, width // 2:] = (30, 30, 200)
    return Image.fromarray(arr)


def test_empty_file_is_named():
    with pytest.raises(ImageError, match=r"empty\.png is empty \(0 bytes\)"):
        open_image(b"", name="empty.png")


def test_text_renamed_png_is_refused(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello, I am not a picture")
    with pytest.raises(ImageError, match="notes.png is not an image"):
        open_image(path)


def test_truncated_jpeg_is_refused():
    data = _encode(_photo(200, 150), "JPEG")
    with pytest.raises(ImageError, match="cut.jpg could not be decoded: .*truncated"):
        open_image(data[: len(data) // 2], name="cut.jpg")


def test_decompression_bomb_is_refused_before_decoding():
    data = _encode(Image.new("L", (300, 300)), "PNG")
    with pytest.raises(ImageError, match="too large"):
        open_image(data, name="bomb.png", max_pixels=200 * 200)


def test_real_decompression_bomb_beyond_pillows_limit(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)
    data = _encode(Image.new("L", (250, 250)), "PNG")  # over twice the limit: Pillow raises itself
    with pytest.raises(ImageError, match="too large"):
        open_image(data, name="bomb.png")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ImageError, match="gone.jpg: file not found"):
        open_image(tmp_path / "gone.jpg")


def test_one_pixel_image_works():
    image = open_image(_encode(Image.new("RGB", (1, 1), (9, 8, 7)), "PNG"))
    assert image.size == (1, 1) and image.mode == "RGB"


def test_16_bit_png_is_scaled_to_8_bit():
    arr = np.full((4, 5), 65535, dtype=np.uint16)
    arr[0, 0] = 0
    data = _encode(Image.fromarray(arr), "PNG")
    out = np.asarray(open_image(data))
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8
    assert out[1, 1].tolist() == [255, 255, 255] and out[0, 0].tolist() == [0, 0, 0]


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "LA", "1"])
def test_other_modes_become_rgb(mode):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    image = open_image(_encode(_photo().convert(mode), fmt))
    assert image.mode == "RGB" and image.size == (40, 30)


def test_transparent_pixels_become_white():
    rgba = Image.new("RGBA", (2, 1), (255, 0, 0, 0))
    rgba.putpixel((1, 0), (255, 0, 0, 255))
    out = np.asarray(open_image(_encode(rgba, "PNG")))
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [255, 0, 0]


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    out = np.asarray(open_image(buffer.getvalue()))
    assert out[0, 0, 0] > 200 and out[0, 0, 1] < 50


def test_exif_orientation_is_applied():
    photo = _photo(40, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image = open_image(_encode(photo, "JPEG", exif=exif.tobytes()))
    assert image.size == (30, 40)
    arr = np.asarray(image)
    assert arr[0, 0, 0] > 150 and arr[-1, 0, 2] > 150  # red (was left) is now on top


def test_image_extension_filter(tmp_path):
    assert is_image_file(tmp_path / "a.JPG") and is_image_file(tmp_path / "b.webp")
    assert not is_image_file(tmp_path / "README.txt") and not is_image_file(tmp_path / ".DS_Store")


def test_resize_nearest_keeps_labels_labels():
    mask = np.zeros((37, 53), np.uint8)
    mask[5:30, 10:40] = 2
    mask[0, :] = 255  # ignore
    big = resize_nearest(mask, (111, 160))
    assert big.shape == (111, 160) and big.dtype == np.uint8
    assert set(np.unique(big)) == {0, 2, 255}  # nothing in between invented
    assert resize_nearest(mask, (37, 53)) is mask
    confidence = np.linspace(0, 1, 20 * 30, dtype=np.float32).reshape(20, 30)
    small = resize_nearest(confidence, (10, 15))
    assert small.dtype == np.float32 and np.isin(small, confidence).all()
