"""Image bytes -> 224x224 RGB uint8, or a one-line reason why not.

Only JPEG and PNG are opened: the formats the listing's extensions promise. Any other format named like
them (GIF, TIFF, PostScript/EPS, WebP, ...) is an error with a reason, and no other decoder of Pillow ever
runs on it (Pillow's EPS plugin would start Ghostscript).

Memory stays bounded whatever the image declares: a baseline JPEG is decoded at 1/2 to 1/8 scale by
libjpeg (``draft``), so that photos of 100-250 MP phones decode in a few MB; a format that must be decoded
at full size (PNG, progressive JPEG) is refused above ``MAX_PIXELS``, and what is decoded is box-reduced
right away (``Image.reduce``), before any mode conversion (16-bit, alpha, palette) touches it.
"""

from __future__ import annotations

import io
import warnings
from typing import Optional, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SIZE = 224
# A bitmap decoded at full size is refused above this many pixels (a decompression bomb or far larger than
# a photo needs): PNGs and progressive JPEGs (libjpeg keeps every coefficient of those in memory), and any
# JPEG still this large after draft's 1/8 scale.
MAX_PIXELS = 64_000_000
# A baseline JPEG may declare up to this many: draft decodes it at 1/8 scale (250 MP -> 3.9 MP).
MAX_JPEG_PIXELS = 250_000_000
# Pillow's own check runs when a file is opened: above this it warns (an error here), above twice it raises.
Image.MAX_IMAGE_PIXELS = MAX_JPEG_PIXELS
FORMATS = ("JPEG", "PNG")
JPEG_FORMATS = ("JPEG", "MPO")  # MPO: Pillow's name for a multi-picture JPEG (many phones write them)
EMPTY_FILE = "empty file (0 bytes)"
UNREADABLE = "file could not be read (vanished, unreadable or a dangling link)"
# Modes Image.reduce() cannot take, and the mode they are reduced in (band by band, never the whole image).
_REDUCE_AS = {"1": "L", "I;16": "I", "I;16B": "I", "I;16L": "I", "I;16N": "I"}
_BAND_PIXELS = 4_000_000
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Leading bytes of the formats most often found under a .jpg/.png name, to say what a refused file is.
_SIGNATURES = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
    (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"%PDF", "PDF"),
    (b"BM", "BMP"),
    (b"8BPS", "Photoshop PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\xffO\xffQ", "JPEG 2000"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"qoif", "QOI"),
    (b"DDS ", "DDS"),
    (b"v/1\x01", "OpenEXR"),
    (b"<svg", "SVG"),
    (b"<?xml", "XML/SVG"),
)


class ImageDecodeError(ValueError):
    """An image that cannot become model input; its message is the reason stored in ``errors``."""


def _looks_like(data: bytes) -> Optional[str]:
    """The format a file's first bytes announce, if it is one we know; ``None`` otherwise."""
    for signature, name in _SIGNATURES:
        if data.startswith(signature):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"):
            return "HEIC/HEIF"
        return "ISO media (%s)" % brand.decode("ascii", "replace")
    return None


def _not_allowed(data: bytes) -> str:
    kind = _looks_like(data)
    if kind:
        return "not a JPEG or PNG image (looks like %s)" % kind
    return "not a recognised image format (%d bytes)" % len(data)


def _too_large(img: Image.Image, what: str, limit: int) -> str:
    width, height = img.size
    return "image too large: %s of %d pixels (%d x %d), more than %d" % (what, width * height, width, height, limit)


def _check_size(img: Image.Image) -> None:
    """Refuse, before anything is decoded, what would not fit in bounded memory."""
    width, height = img.size
    pixels = width * height
    if img.format in JPEG_FORMATS:
        if img.info.get("progressive") or img.info.get("progression"):
            if pixels > MAX_PIXELS:
                raise ImageDecodeError(_too_large(img, "progressive JPEG (decoded at full size)", MAX_PIXELS))
        elif pixels > MAX_JPEG_PIXELS:
            raise ImageDecodeError(_too_large(img, "JPEG", MAX_JPEG_PIXELS))
    elif pixels > MAX_PIXELS:
        raise ImageDecodeError(_too_large(img, img.format or "image", MAX_PIXELS))


def _reduce(img: Image.Image, factors: Tuple[int, int]) -> Image.Image:
    """Box-average by integer factors per axis, band by band: ``reduce`` itself converts RGBA and LA to a
    premultiplied copy of the whole image first, and some modes (16-bit, palette) must be converted first."""
    if factors == (1, 1):
        return img
    target = _REDUCE_AS.get(img.mode, img.mode)
    if img.mode == "P":
        target = "RGBA" if "transparency" in img.info else "RGB"
    width, height = img.size
    x_factor, y_factor = factors
    out = Image.new(target, (-(-width // x_factor), -(-height // y_factor)))
    rows = max(1, _BAND_PIXELS // (width * y_factor)) * y_factor
    for top in range(0, height, rows):
        band = img.crop((0, top, width, min(height, top + rows)))
        if band.mode != target:
            band = band.convert(target)
        out.paste(band.reduce(factors), (0, top // y_factor))
    return out


def _eight_bits(img: Image.Image, top: float) -> Image.Image:
    """16-bit / 32-bit / float greyscale scaled to 8 bits ("L") instead of clipping everything to white."""
    values = np.asarray(img, dtype=np.float64)
    return Image.fromarray(np.clip(values * (255.0 / top), 0, 255).astype(np.uint8), mode="L")


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(img, dtype=np.float64)
        img = _eight_bits(img, 65535.0 if img.mode.startswith("I;16") or values.max() > 255 else 255.0)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    return img.convert("RGB")


def _decode(data: bytes, size: int) -> np.ndarray:
    try:
        opened = Image.open(io.BytesIO(data), formats=list(FORMATS))
    except UnidentifiedImageError:
        raise ImageDecodeError(_not_allowed(data)) from None
    with opened as img:
        _check_size(img)
        if img.format in JPEG_FORMATS:
            img.draft("RGB", (size, size))  # libjpeg decodes at 1/2, 1/4 or 1/8 scale, still >= size
            if img.size[0] * img.size[1] > MAX_PIXELS:  # an extreme aspect ratio: draft could not reduce it
                raise ImageDecodeError(_too_large(img, "JPEG even at reduced scale", MAX_PIXELS))
        img.load()
        orientation = img.getexif().get(0x0112)  # EXIF Orientation; read before reduce makes a new image
        sixteen_bit = img.mode.startswith("I;16")
        factors = (max(1, img.size[0] // size), max(1, img.size[1] // size))
        img = _reduce(img, factors)  # at most (2 * size)^2 pixels from here on
        if sixteen_bit and img.mode == "I":  # reduced as 32-bit: scale it to 8 bits as a 16-bit image
            img = _eight_bits(img, 65535.0)
        if orientation in _TRANSPOSE:
            img = img.transpose(_TRANSPOSE[orientation])
        img = _to_rgb(img)
        img = img.resize((size, size), Image.BILINEAR)
        return np.asarray(img, dtype=np.uint8)


def decode_image(data: bytes, size: int = IMAGE_SIZE) -> np.ndarray:
    """Decode, orient, convert to RGB and resize to ``size`` x ``size``.

    Large images are reduced as early as their format allows (JPEG: while decoding; PNG: right after), so
    that memory stays a small multiple of what the file declares, and is refused where it cannot be.
    """
    if not data:
        raise ImageDecodeError(EMPTY_FILE)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _decode(data, size)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError("image too large: %s" % exc) from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a reason, not a crash
        reason = " ".join(str(exc).split()) or "no detail"
        raise ImageDecodeError("cannot decode image: %s: %s" % (type(exc).__name__, reason)) from None
