"""A small, deterministic set of fruit-like images, so that a newcomer's first run needs no data."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter
from prefect import task

# Folder names as real datasets ship them: spaces, digits and a non-ASCII character.
SAMPLE_CLASSES = {
    "Apple Red 1": (200, 30, 40),
    "Banana": (235, 210, 60),
    "Lime Verde": (90, 190, 60),
    "Orange Navel": (245, 140, 30),
    "Plum Dark": (90, 30, 90),
    "Pêche Blanche": (250, 200, 170),
}


def draw_fruit(rng: random.Random, colour: tuple, size: int) -> Image.Image:
    """A shaded disc with a stem on a light background, jittered in position, size and colour."""
    image = Image.new("RGB", (size, size), (245, 245, 245))
    draw = ImageDraw.Draw(image)
    radius = rng.uniform(0.28, 0.42) * size
    cx = size / 2 + rng.uniform(-0.08, 0.08) * size
    cy = size / 2 + rng.uniform(-0.08, 0.08) * size
    jitter = [max(0, min(255, c + rng.randint(-25, 25))) for c in colour]
    for step in range(8, 0, -1):  # concentric discs: a cheap highlight
        shade = [min(255, int(c * (0.75 + 0.04 * (8 - step)))) for c in jitter]
        r = radius * step / 8
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(shade))
    draw.line([cx, cy - radius, cx + rng.uniform(-4, 4), cy - radius - size * 0.08], fill=(90, 60, 20), width=3)
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))


def make_sample_images(folder: Path, per_class: int = 10, size: int = 100, seed: int = 7) -> Path:
    """Write ``per_class`` JPEGs for each sample class under ``folder``; returns the folder."""
    rng = random.Random(seed)
    for label, colour in SAMPLE_CLASSES.items():
        class_dir = folder / label
        class_dir.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            draw_fruit(rng, colour, size).save(class_dir / f"{index:03d}.jpg", quality=90)
    return folder


@task(name="make-sample-images")
def make_sample_images_task(folder: str, per_class: int = 10) -> str:
    """Make the embedded demo's images (only when no ``--images`` was given)."""
    return str(make_sample_images(Path(folder), per_class=per_class))
