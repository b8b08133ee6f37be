"""preprocess(images, spec) -> float32 NCHW: the one preprocessing path every exporter, runtime and check uses."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vitship.models.errors import ImageError
from vitship.models.spec import DEFAULT_SPEC, ModelSpec

ImageLike = Union[str, Path, Image.Image, np.ndarray]

# Anything larger is refused before decoding: a 40 MP photo is fine, a decompression bomb is not.
MAX_IMAGE_PIXELS = 64_000_000
_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and float grayscale modes scaled to 8 bits (PIL's convert would clip them)."""
    array = np.asarray(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N") or (img.mode == "I" and array.max(initial=0) > 255):
        array = (array.astype(np.float64) / 65535.0 * 255.0).round()
    elif img.mode == "F":
        lo, hi = float(array.min(initial=0)), float(array.max(initial=1))
        array = (array - lo) / (hi - lo or 1.0) * 255.0
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), mode="L")


# The files a folder of images (calibration, eval) is read for: what PIL decodes and photos come as.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def image_files(folder: Path) -> list[Path]:
    """The image files under ``folder`` (recursively, by suffix, case-insensitive), sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB: alpha over white, palette, CMYK, 1-bit, 16-bit and float grayscale."""
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _to_8bit(img)
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB") if img.mode != "RGB" else img


def load_image(source: ImageLike, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Open an image file safely: size-checked before decode, EXIF-rotated, converted to RGB."""
    if isinstance(source, np.ndarray):
        array = source if source.dtype == np.uint8 else np.clip(source, 0, 255).astype(np.uint8)
        return to_rgb(Image.fromarray(array))
    if isinstance(source, Image.Image):
        return to_rgb(ImageOps.exif_transpose(source) or source)
    path = Path(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageError(f"{path}: {width}x{height} is {width * height / 1e6:.0f} MP, over the "
                                     f"{max_pixels / 1e6:.0f} MP limit (possible decompression bomb); refusing to decode")
                img.load()
                return to_rgb(ImageOps.exif_transpose(img) or img)
    except ImageError:
        raise
    except FileNotFoundError as err:
        raise ImageError(f"{path}: no such file") from err
    except UnidentifiedImageError as err:
        raise ImageError(f"{path}: not an image file PIL can read") from err
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(f"{path}: refused as a possible decompression bomb ({err})") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{path}: corrupt or truncated image ({err})") from err


def resized_size(height: int, width: int, spec: ModelSpec) -> tuple[int, int]:
    """(height, width) after the spec's resize, before the crop.

    "shortest_edge" uses torchvision's Resize(int) arithmetic, which timm's eval transform uses: the short
    side becomes ``resize_size[0]`` and the long side is truncated, not rounded. The in-graph resize of the
    image-input artifacts computes the same sizes (``exporters/image_input.py``).
    """
    if spec.resize_mode == "exact":
        return spec.resize_size
    short = spec.resize_size[0]
    if width <= height:
        return int(short * height / width), short
    return short, int(short * width / height)


def crop_origin(height: int, width: int, spec: ModelSpec) -> tuple[int, int]:
    """(top, left) of the center crop in a ``height`` x ``width`` image (Python's round: half to even)."""
    crop_h, crop_w = spec.crop_size
    return int(round((height - crop_h) / 2.0)), int(round((width - crop_w) / 2.0))


def resize_and_crop(img: Image.Image, spec: ModelSpec) -> Image.Image:
    """Resize by the spec's rule with its interpolation, then center-crop if the spec says so."""
    height, width = resized_size(img.height, img.width, spec)
    if height * width > MAX_IMAGE_PIXELS:  # a 1 x 20000 strip would resize to 384 x 7.68 M pixels
        raise ImageError(f"a {img.width}x{img.height} image resizes to {width}x{height} ({height * width / 1e6:.0f} MP), "
                         f"over the {MAX_IMAGE_PIXELS / 1e6:.0f} MP limit: its aspect ratio is too extreme; crop it first")
    img = img.resize((width, height), resample=_RESAMPLE[spec.interpolation])
    if spec.do_center_crop:
        top, left = crop_origin(img.height, img.width, spec)
        crop_h, crop_w = spec.crop_size
        img = img.crop((left, top, left + crop_w, top + crop_h))
    return img


def normalize(img: Image.Image, spec: ModelSpec) -> np.ndarray:
    """HWC uint8 RGB -> CHW float32 scaled and normalised per channel."""
    array = np.asarray(img, dtype=np.float32) * np.float32(spec.rescale_factor)
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    return ((array - mean) / std).transpose(2, 0, 1)


def preprocess(images: ImageLike | Iterable[ImageLike], spec: ModelSpec = DEFAULT_SPEC) -> np.ndarray:
    """Turn images (paths, PIL images or uint8 arrays) into the model's float32 NCHW input batch."""
    if isinstance(images, (str, Path, Image.Image)) or (isinstance(images, np.ndarray) and images.ndim in (2, 3)):
        images = [images]
    arrays = [normalize(resize_and_crop(load_image(item), spec), spec) for item in images]
    if not arrays:
        raise ImageError("no images to preprocess")
    return np.ascontiguousarray(np.stack(arrays), dtype=np.float32)
