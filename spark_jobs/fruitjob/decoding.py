"""Image bytes -> 224x224 RGB uint8, or a one-line reason why not."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SIZE = 224
# Above this many pixels an image is refused (a decompression bomb or far larger than a photo needs).
MAX_PIXELS = 64_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
EMPTY_FILE = "empty file (0 bytes)"
UNREADABLE = "file could not be read (vanished, unreadable or a dangling link)"


class ImageDecodeError(ValueError):
    """An image that cannot become model input; its message is the reason stored in ``errors``."""


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / float greyscale: scale to 8 bits instead of clipping everything to white.
        values = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or values.max() > 255 else 255.0
        img = Image.fromarray(np.clip(values * (255.0 / top), 0, 255).astype(np.uint8), mode="L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    return img.convert("RGB")


def decode_image(data: bytes, size: int = IMAGE_SIZE) -> np.ndarray:
    """Decode, orient, convert to RGB and resize to ``size`` x ``size``.

    JPEGs are decoded at a reduced scale when they are much larger than needed (Pillow's draft mode),
    which keeps memory and time low for big photos.
    """
    if not data:
        raise ImageDecodeError(EMPTY_FILE)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.format == "JPEG":
                    img.draft("RGB", (size, size))
                img.load()
                img = ImageOps.exif_transpose(img)
                img = _to_rgb(img)
                img = img.resize((size, size), Image.BILINEAR)
                return np.asarray(img, dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError("image too large: %s" % exc) from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not a recognised image format (%d bytes)" % len(data)) from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a reason, not a crash
        reason = " ".join(str(exc).split()) or "no detail"
        raise ImageDecodeError("cannot decode image: %s: %s" % (type(exc).__name__, reason)) from None
