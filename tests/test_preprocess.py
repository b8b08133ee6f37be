"""Preprocessing: agreement with transformers and timm, every odd image mode, and every bad-image error."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitship.models import DEFAULT_SPEC, ImageError, load_image, preprocess, sample_images
from vitship.models.preprocess import MAX_IMAGE_PIXELS


@pytest.fixture(scope="module")
def photos() -> list[Path]:
    return sample_images()


def test_sample_images_are_real_photos(photos):
    assert len(photos) >= 15
    assert {"astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg"} <= {p.name for p in photos}


def test_matches_transformers_vit_image_processor(photos):
    from transformers.models.vit import ViTImageProcessor, ViTImageProcessorPil

    spec = DEFAULT_SPEC.replace(resize_mode="exact", do_center_crop=False)
    ours = preprocess(photos, spec)
    rgb = [Image.open(p).convert("RGB") for p in photos]
    settings = dict(size={"height": 384, "width": 384}, resample=3, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    pil = ViTImageProcessorPil(**settings)(rgb, return_tensors="np")["pixel_values"]
    assert ours.shape == pil.shape == (len(photos), 3, 384, 384)
    np.testing.assert_allclose(ours, pil, atol=1e-5)
    # transformers 5's default ViTImageProcessor resizes with torchvision on tensors, whose bicubic kernel
    # differs from PIL's by up to two 8-bit levels (2/255 * 2 in [-1, 1] units).
    torch_backend = ViTImageProcessor(**settings)(rgb, return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(ours, torch_backend, atol=4.01 / 255)


def test_default_matches_timm_eval_transform(photos):
    import timm.data

    transform = timm.data.create_transform(input_size=(3, 384, 384), interpolation="bicubic", mean=(0.5,) * 3,
                                           std=(0.5,) * 3, crop_pct=1.0, crop_mode="center")
    expected = np.stack([transform(Image.open(p).convert("RGB")).numpy() for p in photos])
    np.testing.assert_allclose(preprocess(photos), expected, atol=1e-5)


def _save(img: Image.Image, path: Path, **kwargs) -> Path:
    img.save(path, **kwargs)
    return path


@pytest.fixture(scope="module")
def base_rgb(photos) -> Image.Image:
    return Image.open(next(p for p in photos if p.name == "chelsea.png")).convert("RGB")


def test_rgba_is_composited_on_white(tmp_path, base_rgb):
    rgba = base_rgb.convert("RGBA")
    rgba.putalpha(0)
    out = load_image(_save(rgba, tmp_path / "a.png"))
    assert out.mode == "RGB" and np.asarray(out).min() == 255


def test_grayscale_palette_cmyk_and_16bit(tmp_path, base_rgb):
    gray = base_rgb.convert("L")
    paths = {
        "L": _save(gray, tmp_path / "g.png"),
        "P": _save(base_rgb.convert("P", palette=Image.Palette.ADAPTIVE), tmp_path / "p.png"),
        "CMYK": _save(base_rgb.convert("CMYK"), tmp_path / "c.jpg"),
        "I;16": _save(Image.fromarray((np.asarray(gray).astype(np.uint16) * 257)), tmp_path / "s16.png"),
    }
    batch = preprocess(list(paths.values()))
    assert batch.shape == (4, 3, 384, 384) and batch.dtype == np.float32
    gray_ref = preprocess(paths["L"])[0]
    sixteen = batch[3]
    # 16-bit data is scaled down, not clipped to white: it must equal the 8-bit version it came from.
    np.testing.assert_allclose(sixteen, gray_ref, atol=1e-5)
    assert np.abs(batch[1] - preprocess(base_rgb)[0]).mean() < 0.1  # palette keeps the picture
    assert np.abs(batch[2] - preprocess(base_rgb)[0]).mean() < 0.1  # CMYK round trip keeps the picture


def test_exif_orientation_is_applied(tmp_path, base_rgb):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    path = _save(base_rgb, tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    out = load_image(path)
    assert out.size == (base_rgb.height, base_rgb.width)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    side = int(MAX_IMAGE_PIXELS ** 0.5) + 100
    path = _save(Image.new("L", (side, side)), tmp_path / "bomb.png", optimize=True)
    with pytest.raises(ImageError, match="bomb"):
        load_image(path)


def test_not_an_image_names_the_file(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture")
    with pytest.raises(ImageError, match="notes.jpg: not an image"):
        preprocess([path])


def test_truncated_image_names_the_file(tmp_path, base_rgb):
    buffer = io.BytesIO()
    base_rgb.save(buffer, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[:2000])
    with pytest.raises(ImageError, match="cut.png"):
        preprocess([path])


def test_missing_file_and_empty_input(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        preprocess([tmp_path / "missing.png"])
    with pytest.raises(ImageError, match="no images"):
        preprocess([])
