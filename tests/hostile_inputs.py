"""A corpus of the files people really upload, generated in a few milliseconds, with the outcome each must have.

``make_hostile_corpus(root)`` writes it and returns ``{relative path: "ok" | "error" | "skipped"}``: "ok" images
must get features, "error" image-named files must land in ``errors/`` with a reason, "skipped" files are not
images by extension and are only counted. Directory links (a loop) are not files and are not in the map.
"""

from __future__ import annotations

import io
import os
import random
import re
import struct
import zlib
from pathlib import Path

from PIL import Image

OK, ERROR, SKIPPED = "ok", "error", "skipped"


def _jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, **options)
    return buffer.getvalue()


def _png(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def _gradient(width: int, height: int, seed: int) -> Image.Image:
    rng = random.Random(seed)
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    overlay = Image.new("RGB", (width, height), tuple(rng.randint(0, 255) for _ in range(3)))
    return Image.blend(image, overlay, 0.5)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A 60-byte PNG that declares 10^10 pixels: opening it must be refused before any allocation."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\0")) + _chunk(b"IEND", b"")


def jpeg_bomb(width: int = 65_000, height: int = 65_000) -> bytes:
    """A tiny JPEG whose start-of-frame claims ``width`` x ``height`` (4.2 billion pixels)."""
    data = bytearray(_jpeg(_gradient(16, 16, 1)))
    sof = data.index(b"\xff\xc0")  # baseline start-of-frame: length(2) precision(1) height(2) width(2)
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def exif_rotated_jpeg() -> bytes:
    """A 40x80 JPEG, top half black, whose EXIF says "rotate 90 clockwise": displayed, its right half is black."""
    stored = Image.new("RGB", (40, 80), (255, 255, 255))
    stored.paste((0, 0, 0), (0, 0, 40, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation 6: rotate 90 CW to display
    return _jpeg(stored, exif=exif.tobytes())


def make_hostile_corpus(root: Path) -> dict[str, str]:
    """Write the corpus under ``root`` (one sub-folder per label) and return the expected outcome per file."""
    files: dict[str, bytes] = {}
    expected: dict[str, str] = {}

    def add(path: str, data: bytes, outcome: str) -> None:
        files[path], expected[path] = data, outcome

    # Decodable, in every shape a camera, an editor or a script produces.
    for index in range(4):
        add(f"Apple Red/plain {index}.jpg", _jpeg(_gradient(64, 48, 10 + index)), OK)
    add("Apple Red/UPPER.JPG", _jpeg(_gradient(50, 50, 20)), OK)
    add("Apple Red/upper.JPEG", _jpeg(_gradient(50, 50, 21)), OK)
    add("Apple Red/Upper.PNG", _png(_gradient(30, 30, 22)), OK)
    add("Apple Red/100% fresh #1 (copy).jpg", _jpeg(_gradient(40, 40, 23)), OK)
    add("Apple Red/a[1]{b}*?.jpg", _jpeg(_gradient(40, 40, 24)), OK)
    add("Apple Red/_thumb.jpg", _jpeg(_gradient(40, 40, 25)), OK)  # Spark hides _x and .x files from listings
    add("Apple Red/.hidden.jpg", _jpeg(_gradient(40, 40, 26)), OK)
    add("Pêche Blanche/ünïcødé 桃 🍑.jpg", _jpeg(_gradient(40, 40, 27)), OK)
    add("Banana/alpha.png", _png(_gradient(32, 32, 30).convert("RGBA")), OK)
    palette = _gradient(32, 32, 31).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    add("Banana/palette.png", _png(palette), OK)
    add("Banana/palette-transparent.png", _png(palette, transparency=0), OK)
    add("Banana/sixteen-bit.png", _png(Image.linear_gradient("L").resize((32, 32)).convert("I;16")), OK)
    add("Banana/grayscale.jpg", _jpeg(_gradient(32, 32, 32).convert("L")), OK)
    add("Banana/cmyk.jpg", _jpeg(_gradient(32, 32, 33).convert("CMYK")), OK)
    add("Banana/exif-rotated.jpg", exif_rotated_jpeg(), OK)
    add("Banana/one-pixel.png", _png(Image.new("RGB", (1, 1), (200, 180, 40))), OK)
    add("Banana/one-pixel.jpg", _jpeg(Image.new("RGB", (1, 1), (200, 180, 40))), OK)
    # Image-named, not decodable: each must be an error row with a reason, never a crash.
    whole = _jpeg(_gradient(64, 64, 40))
    add("Broken/zero-bytes.jpg", b"", ERROR)
    add("Broken/truncated.jpg", whole[: len(whole) // 2], ERROR)
    add("Broken/random-bytes.jpg", random.Random(41).randbytes(2048), ERROR)
    add("Broken/text.png", b"this is a text file, named like a PNG\n" * 10, ERROR)
    add("Broken/bomb.png", png_bomb(), ERROR)
    add("Broken/bomb.jpg", jpeg_bomb(), ERROR)
    add("Broken/AppleDouble ._x.jpg", b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + b"\0" * 64, ERROR)
    # Not images by extension: counted as skipped.
    add("README.txt", b"fruit photos, one folder per label\n", SKIPPED)
    add("Banana/.DS_Store", b"\x00\x00\x00\x01Bud1" + b"\0" * 100, SKIPPED)
    add("metadata/labels.csv", b"path,label\na.jpg,Apple\n", SKIPPED)
    add("metadata/2024/extra.csv", b"x,y\n1,2\n", SKIPPED)
    add("Banana/notes.jpg.txt", b"a text file whose name contains .jpg", SKIPPED)
    # Names that Hadoop's Path, Spark's file sources or a shell trip over: each is an image like any other.
    add("Apple Red/IMG 2026-11-30 12:30:00.jpg", _jpeg(_gradient(40, 40, 50)), OK)
    add("Apple Red/new\nline\ttab.jpg", _jpeg(_gradient(40, 40, 51)), OK)
    add("Apple Red/" + "long" * 60 + ".jpg", _jpeg(_gradient(40, 40, 52)), OK)  # 244 bytes: near NAME_MAX
    add("Apple Red/50%25 off + more & {x} [y] *z* ?.jpg", _jpeg(_gradient(40, 40, 53)), OK)
    # Deeper than one folder: labelled by the first folder under the root, as Keras does.
    add("Apple Red/2026/November/deep.jpg", _jpeg(_gradient(40, 40, 54)), OK)
    # Named like an image, and not one that may be decoded: a GIF (Pillow would decode it) and PostScript
    # (Pillow would run Ghostscript on it).
    gif = io.BytesIO()
    _gradient(16, 16, 55).save(gif, format="GIF")
    add("Broken/really a gif.jpg", gif.getvalue(), ERROR)
    add("Broken/postscript.jpg", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", ERROR)
    # Directly under the root: no label folder.
    add("at the root.jpg", _jpeg(_gradient(40, 40, 56)), ERROR)

    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "Empty Class").mkdir()
    # Links: a directory loop (never descended), a file-link loop and a dangling link (listed, unreadable).
    os.symlink(".", root / "Banana" / "loop")
    os.symlink(root, root / "Broken" / "back to root")
    os.symlink("loop-b.jpg", root / "Broken" / "loop-a.jpg")
    os.symlink("loop-a.jpg", root / "Broken" / "loop-b.jpg")
    os.symlink("does-not-exist.jpg", root / "Broken" / "dangling.jpg")
    expected.update({"Broken/loop-a.jpg": ERROR, "Broken/loop-b.jpg": ERROR, "Broken/dangling.jpg": ERROR})
    # A link to a good image is an image like any other.
    os.symlink("plain 0.jpg", root / "Apple Red" / "link to plain 0.jpg")
    expected["Apple Red/link to plain 0.jpg"] = OK
    # A label folder that is a link to a folder elsewhere (datasets are often assembled so): followed.
    elsewhere = root.parent / (root.name + "-elsewhere")
    elsewhere.mkdir()
    for index in range(3):
        (elsewhere / f"kiwi {index}.jpg").write_bytes(_jpeg(_gradient(40, 40, 60 + index)))
        expected[f"Linked Kiwi/kiwi {index}.jpg"] = OK
    os.symlink(elsewhere, root / "Linked Kiwi")
    # Not files, or not readable whole: a FIFO (a read would block forever), a sparse 3 GB file (over Spark's
    # 2 GB row limit), a name that is not UTF-8.
    os.mkfifo(root / "Broken" / "fifo.jpg")
    expected["Broken/fifo.jpg"] = ERROR
    with open(root / "Broken" / "huge sparse.jpg", "wb") as handle:
        handle.truncate(3 * 2**30)
    expected["Broken/huge sparse.jpg"] = ERROR
    not_utf8 = os.fsdecode(b"Broken/caf\xe9 latin-1.jpg")
    (root / not_utf8).write_bytes(_jpeg(_gradient(40, 40, 63)))
    expected[not_utf8] = ERROR
    return expected


def output_uri(root: Path, relative: str) -> str:
    """The ``path`` column value of a corpus file: a decoded ``file:`` URI; a name that is not UTF-8 as the
    ``file:///`` URI of its bytes, each byte that is not UTF-8 (and each ``%``) written ``%XX``."""
    raw = os.fsencode(str(root / relative))
    try:
        return "file:" + raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "surrogateescape").replace("%", "%25")
        return "file://" + re.sub("[\udc80-\udcff]", lambda bad: "%%%02X" % (ord(bad.group()) - 0xDC00), text)
