"""A planted dataset for the health stage's quality: real photos with known duplicates, leaks, mislabels, outliers.

    .venv/bin/python bench/health_cases.py --root /tmp/health-cases [--source ../shared/data/fruits-360-sample]
        [--classes 24] [--per-class 16] [--plants 12] [--seed 0]

From ``--source`` (one folder per label) it takes ``--classes`` labels and writes two inputs under ``--root``:

- ``earlier/<label>/``: other photos of the same classes, the input of an "earlier output" (last week's batch);
- ``batch/<label>/``: ``--per-class`` photos per label, plus, ``--plants`` of each kind (disjoint photos):
  near-duplicates (a photo re-encoded at JPEG quality 60, resized to 70% or 140%, cropped by 6% or brightened by 25%:
  ``--plants`` of each transformation), exact copies (the same bytes under another name), label conflicts (a copy,
  bytes or re-encoded, in another label's folder), leaks (an earlier photo re-encoded into the batch, same label),
  mislabels (a photo moved into a wrong label's folder) and outliers (pictures that are not fruit, made with Pillow
  at other sizes: gradients, stripes, noise, a calibration card, a blank shelf).

``planted.json`` under ``--root`` lists every plant with the paths as the job records them (``file:/...``) and the
"family" of each image (the photo it was made from), which ``bench/health_quality.py`` scores against.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance

from fruitjob.rules import to_uri

SOURCE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "fruits-360-sample"
TRANSFORMS = ("reencode", "resize-down", "resize-up", "crop", "brighten")


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


# A re-save as cameras and editors do (at 35, MobileNetV2 sees another photo: docs/dataset-health.md).
REENCODE_QUALITY = 60


def transformed(data: bytes, kind: str, quality: int = REENCODE_QUALITY) -> bytes:
    """A near-duplicate of a photo: the same picture, other bytes."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    width, height = image.size
    if kind == "reencode":
        return _jpeg(image, quality=quality)
    if kind == "resize-down":
        return _jpeg(image.resize((int(width * 0.7), int(height * 0.7)), Image.LANCZOS))
    if kind == "resize-up":
        return _jpeg(image.resize((int(width * 1.4), int(height * 1.4)), Image.LANCZOS))
    if kind == "crop":
        dx, dy = int(width * 0.06), int(height * 0.06)
        return _jpeg(image.crop((dx, dy, width - dx, height - dy)))
    if kind == "brighten":
        return _jpeg(ImageEnhance.Brightness(image).enhance(1.25))
    raise ValueError(f"unknown transformation {kind!r}; known: {', '.join(TRANSFORMS)}")


def not_fruit(number: int, rng: random.Random) -> bytes:
    """A picture that is no fruit, at a size of its own: what an outlier looks like in a fruit dataset."""
    size = rng.choice([(100, 100), (160, 120), (64, 96), (220, 140)])
    kind = number % 5
    tint = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
    if kind == 0:  # a gradient, turned and tinted: no two alike
        gradient = Image.linear_gradient("L").rotate(rng.randrange(360)).resize(size)
        image = Image.merge("RGB", [gradient.point(lambda v, c=c: v * c // 255) for c in tint])
    elif kind == 1:  # stripes
        image = Image.new("RGB", size, tint)
        draw = ImageDraw.Draw(image)
        step = rng.randrange(8, 24)
        for x in range(0, size[0], step):
            draw.rectangle((x, 0, x + step // 2, size[1]), fill=(rng.randrange(256), rng.randrange(256), 255))
    elif kind == 2:  # noise
        image = Image.effect_noise(size, rng.randrange(40, 120)).convert("RGB")
    elif kind == 3:  # a calibration card
        image = Image.new("RGB", size, (235, 235, 235))
        draw = ImageDraw.Draw(image)
        for i, colour in enumerate([(255, 0, 0), (0, 200, 0), (0, 0, 255), (0, 0, 0), (255, 255, 0), (0, 255, 255)]):
            x = 6 + i * (size[0] - 12) // 6
            draw.rectangle((x, size[1] // 3, x + (size[0] - 12) // 6 - 3, 2 * size[1] // 3), fill=colour)
        draw.text((6, 4), f"CARD {number}", fill=(0, 0, 0))
    else:  # a blank shelf: grey planks
        image = Image.new("RGB", size, tuple(100 + c // 3 for c in tint))
        draw = ImageDraw.Draw(image)
        for y in range(0, size[1], size[1] // 4):
            draw.line((0, y, size[0], y), fill=(90, 80, 70), width=3)
    return _jpeg(image)


def build(source: Path, root: Path, classes: int, per_class: int, plants: int, seed: int) -> dict:
    """Write ``root/earlier`` and ``root/batch`` and return (and write) the manifest of what was planted."""
    rng = random.Random(seed)
    shutil.rmtree(root, ignore_errors=True)
    labels = sorted(rng.sample(sorted(p.name for p in source.iterdir() if p.is_dir()), classes))
    photos = {label: sorted((source / label).iterdir()) for label in labels}
    earlier_per_class = max(1, (len(min(photos.values(), key=len)) - per_class) // 2)
    batch, earlier = root / "batch", root / "earlier"
    family: dict[str, str] = {}  # every image URI -> the URI of the photo it comes from
    base: list[tuple[str, Path]] = []  # (label, path in batch) of the untouched photos
    for label in labels:
        chosen = rng.sample(photos[label], per_class + earlier_per_class)
        for index, photo in enumerate(chosen):
            target = (batch if index < per_class else earlier) / label / photo.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(photo, target)
            family[to_uri(str(target))] = to_uri(str(target))
            if index < per_class:
                base.append((label, target))
    rng.shuffle(base)
    needed = plants * (len(TRANSFORMS) + 3)  # near kinds, exact, conflict, mislabel
    if needed > len(base):
        raise ValueError(f"{needed} photos needed for the plants, the batch has {len(base)}: ask fewer --plants")
    taken = iter(base)
    manifest: dict = {"near": [], "exact": [], "conflict": [], "leak": [], "mislabel": [], "outlier": []}

    def add(label: str, name: str, data: bytes, origin: str) -> str:
        target = batch / label / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        uri = to_uri(str(target))
        family[uri] = family.get(origin, uri)
        return uri

    for kind in TRANSFORMS:
        for _ in range(plants):
            label, photo = next(taken)
            origin = to_uri(str(photo))
            copy = add(label, f"{photo.stem}__{kind}.jpg", transformed(photo.read_bytes(), kind), origin)
            manifest["near"].append({"kind": kind, "path": origin, "other_path": copy, "label": label})
    for _ in range(plants):
        label, photo = next(taken)
        origin = to_uri(str(photo))
        copy = add(label, f"{photo.stem}__copy.jpg", photo.read_bytes(), origin)
        manifest["exact"].append({"path": origin, "other_path": copy, "label": label})
    for number in range(plants):
        label, photo = next(taken)
        other = rng.choice([name for name in labels if name != label])
        data = photo.read_bytes() if number % 2 == 0 else transformed(photo.read_bytes(), "reencode")
        origin = to_uri(str(photo))
        copy = add(other, f"{photo.stem}__from-{label.replace(' ', '_')}.jpg", data, origin)
        manifest["conflict"].append({"path": origin, "other_path": copy, "label": label, "other_label": other})
    earlier_photos = sorted(earlier.rglob("*.jpg"))
    for photo in rng.sample(earlier_photos, min(plants, len(earlier_photos))):
        origin = to_uri(str(photo))
        copy = add(photo.parent.name, f"{photo.stem}__leaked.jpg", transformed(photo.read_bytes(), "reencode"), origin)
        manifest["leak"].append({"path": copy, "other_path": origin, "label": photo.parent.name})
    for _ in range(plants):
        label, photo = next(taken)
        wrong = rng.choice([name for name in labels if name != label])
        target = batch / wrong / f"{photo.stem}__was-{label.replace(' ', '_')}.jpg"
        photo.rename(target)
        del family[to_uri(str(photo))]
        family[to_uri(str(target))] = to_uri(str(target))
        manifest["mislabel"].append({"path": to_uri(str(target)), "label": wrong, "true_label": label})
    for number in range(plants):
        label = rng.choice(labels)
        uri = add(label, f"not-fruit-{number}.jpg", not_fruit(number, rng), "")
        family[uri] = uri
        manifest["outlier"].append({"path": uri, "label": label})
    manifest.update(batch=to_uri(str(batch)), earlier=to_uri(str(earlier)), labels=labels, family=family)
    manifest.update(images=sum(1 for _ in batch.rglob("*.jpg")), earlier_images=len(earlier_photos))
    (root / "planted.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--classes", type=int, default=24)
    parser.add_argument("--per-class", type=int, default=16)
    parser.add_argument("--plants", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    manifest = build(args.source, args.root, args.classes, args.per_class, args.plants, args.seed)
    kinds = ", ".join(f"{len(manifest[k])} {k}" for k in ("near", "exact", "conflict", "leak", "mislabel", "outlier"))
    print(f"{manifest['images']} images in {manifest['batch']} ({kinds}); {manifest['earlier_images']} earlier")


if __name__ == "__main__":
    main()
