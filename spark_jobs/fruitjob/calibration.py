"""The calibration set of ``--featurizer tflite-int8``: fixed, shipped with the code, the same for every run.

Full-integer quantization needs sample inputs to choose each activation's int8 range. They are drawn here, not
taken from the run's input: a sample of the input would give every input its own int8 model, hence its own
feature space, and ``--incremental`` (new images join the sample) or ``--pca-model`` across batches would have
to refuse every int8 run. The set is made by numpy alone from a fixed seed (no image codec, so no library's
JPEG or resampling code can change it): fruit-like shaded discs, one or two, of varied colour, size, place and
texture, on light backgrounds as product photos (Fruits-360) have, plus a share of darker, busier scenes. Its
description (:func:`describe`: method, count, seed and the sha256 of the pixels) is part of the feature space's
identity, so features of two int8 models calibrated differently never mix.
"""

from __future__ import annotations

import hashlib
from typing import Dict, List, Optional

import numpy as np

# Bump when the generator changes: the pixels (and so the hash, the model and the feature space) change with it.
GENERATOR = "fruitflow-synthetic-fruits-v1"
IMAGES = 128
SEED = 2026
SIZE = 224
# The sha256 of images(IMAGES, SEED), the same with numpy 1.26 (the cluster) and 2.x (here): the identity is known
# without drawing the set (~1 s), and a conversion checks it on the pixels it calibrates with.
SHA256 = "3cf5e4b06a7ba089d7c7d9c84b9d7c3e77d0ba1b97be1c5a2169da1a75638ec2"


def _scene(rng: np.random.Generator) -> np.ndarray:
    """One 224x224 RGB uint8 scene: a shaded, textured fruit (or two) on a background."""
    # float64 throughout: numpy 1 and 2 promote mixed float32/float64 differently (NEP 50), and the set must be the
    # same bytes on the cluster's numpy 1.26 as here.
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) / SIZE
    dark = rng.random() < 0.2  # a fifth with darker, noisier backgrounds: photos that are not product shots
    base = rng.uniform(20, 140, 3) if dark else rng.uniform(215, 255, 3)
    gradient = rng.uniform(-30, 30, 3)[None, None, :] * (yy[..., None] - 0.5)
    image = base[None, None, :] + gradient + rng.normal(0, 12 if dark else 3, (SIZE, SIZE, 3))
    for _ in range(rng.integers(1, 3)):
        cx, cy = rng.uniform(0.3, 0.7, 2)
        rx, ry = rng.uniform(0.15, 0.42) * np.array([1.0, rng.uniform(0.7, 1.3)])
        angle = rng.uniform(0, np.pi)
        dx, dy = xx - cx, yy - cy
        u = (dx * np.cos(angle) + dy * np.sin(angle)) / rx
        v = (-dx * np.sin(angle) + dy * np.cos(angle)) / ry
        r2 = u * u + v * v
        inside = r2 <= 1.0
        colour = rng.uniform(0, 255, 3)
        hx, hy = rng.uniform(-0.5, 0.5, 2)  # where the highlight sits, in the disc's own coordinates
        light = 0.55 + 0.45 * np.clip(1.0 - ((u - hx) ** 2 + (v - hy) ** 2) / 2.0, 0.0, 1.0)
        texture = 1.0 + rng.uniform(0.0, 0.12) * np.sin(rng.uniform(20, 90) * u + rng.uniform(0, 6.3))
        fruit = colour[None, None, :] * (light * texture)[..., None] + rng.normal(0, 6, (SIZE, SIZE, 3))
        image = np.where(inside[..., None], fruit, image)
        if rng.random() < 0.6:  # a stem
            top = (np.abs(u) < 0.06) & (v > -1.25) & (v < -0.9)
            image = np.where(top[..., None], np.array([90.0, 60.0, 20.0])[None, None, :], image)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def images(count: Optional[int] = None, seed: Optional[int] = None) -> np.ndarray:
    """The calibration images (:data:`IMAGES` of them, from :data:`SEED`), ``(n, 224, 224, 3)`` uint8, as the
    decoder gives a real image to the model.

    Each image has its own generator (seed, index), so the first ``n`` images of any larger set are the same.
    """
    seed = SEED if seed is None else seed
    return np.stack([_scene(np.random.default_rng([seed, index])) for index in range(count or IMAGES)])


def batches() -> List[np.ndarray]:
    """The set, one image per item as the converter's ``representative_dataset`` takes them, once its pixels are
    shown to be the ones :data:`SHA256` names (what the feature space's identity records)."""
    data = images()
    digest = hashlib.sha256(data.tobytes()).hexdigest()
    if digest != SHA256:
        raise RuntimeError(
            "the calibration set drawn here (numpy %s) is not %s: sha256 %s, expected %s; an int8 model calibrated "
            "on it would be recorded under the wrong identity" % (np.__version__, GENERATOR, digest, SHA256)
        )
    return [data[index : index + 1] for index in range(len(data))]


def describe() -> Dict[str, object]:
    """What metrics.json records as ``calibration`` (and the feature space's identity holds); nothing is drawn."""
    return {
        "method": "full-integer post-training quantization (int8 weights and activations)",
        "set": GENERATOR,
        "how_chosen": "synthetic fruit scenes drawn by numpy from a fixed seed (fruitjob/calibration.py), "
        "the same for every run and input",
        "images": IMAGES,
        "seed": SEED,
        "sha256": SHA256,
    }


def calibration_of(featurizer: str) -> Optional[Dict[str, object]]:
    """The calibration a featurizer's model was made with: None for the float ones."""
    return describe() if featurizer == "tflite-int8" else None
