"""decode_image on what phones, editors and attackers produce: only JPEG and PNG, in bounded memory.

Pillow allocates its bitmaps in C, where ``tracemalloc`` sees nothing: the memory tests decode in a fresh
Python process and read its peak resident size, with nothing else imported than the decoder. That is
``VmHWM`` on Linux: ``ru_maxrss`` there keeps the peak of the process it was forked from (pytest's) across
``exec``; elsewhere ``ru_maxrss``.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

from fruitjob import decoding
from fruitjob.decoding import ImageDecodeError, decode_image
from tests.hostile_inputs import jpeg_bomb, png_bomb

# A fresh interpreter with numpy and Pillow imported peaks at ~30 MB; before the fix the 16-bit PNG below
# took 1.7 GB and the RGBA one 1.2 GB.
MEMORY_LIMIT_MB = 600


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _streamed_png(path: Path, width: int, height: int, bit_depth: int, color_type: int, pixel: bytes) -> Path:
    """A PNG of one colour written row by row, so that the test process never holds the bitmap."""
    row = b"\x00" + pixel * width  # filter type 0, then the row's samples
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    return path


def _decode_in_fresh_process(path: Path) -> dict:
    """decode_image on the file in a new interpreter: its result (or reason) and the peak RSS in MB."""
    code = (
        "import json, resource, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from fruitjob.decoding import ImageDecodeError, decode_image\n"
        "data = open(sys.argv[2], 'rb').read()\n"
        "try:\n"
        "    array = decode_image(data)\n"
        "    out = {'shape': list(array.shape), 'mean': array.reshape(-1, 3).mean(axis=0).tolist()}\n"
        "except ImageDecodeError as exc:\n"
        "    out = {'error': str(exc)}\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "try:\n"  # Linux carries the parent's peak into ru_maxrss across exec; VmHWM is this image's own
        "    status = open('/proc/self/status').read().split('VmHWM:')[1]\n"
        "    peak = int(status.split()[0]) / 1024\n"
        "except (OSError, IndexError):\n"
        "    pass\n"
        "out['peak_mb'] = peak\n"
        "print(json.dumps(out))\n"
    )
    spark_jobs = str(Path(decoding.__file__).resolve().parent.parent)
    result = subprocess.run(
        [sys.executable, "-c", code, spark_jobs, str(path)], capture_output=True, text=True, timeout=300, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def huge_jpeg(tmp_path_factory) -> Path:
    """A 13000 x 9200 (120 MP) baseline JPEG of one colour, as a 200 MP phone's binned output; made in a
    subprocess so that this one never holds the 480 MB bitmap."""
    path = tmp_path_factory.mktemp("huge") / "phone.jpg"
    code = "import sys; from PIL import Image; Image.new('RGB', (13000, 9200), (180, 40, 40)).save(sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=120)
    return path


# -- only the formats the extensions promise ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "looks_like"),
    [("GIF", "GIF"), ("TIFF", "TIFF"), ("EPS", "PostScript/EPS"), ("BMP", "BMP"), ("WEBP", "WebP")],
)
def test_other_formats_named_like_jpeg_are_errors_saying_what_they_look_like(fmt, looks_like):
    data = _encoded(Image.new("RGB", (64, 48), (200, 120, 40)), fmt)
    with pytest.raises(ImageDecodeError) as raised:
        decode_image(data)
    assert str(raised.value) == "not a JPEG or PNG image (looks like %s)" % looks_like


def test_an_eps_named_jpg_never_starts_ghostscript(monkeypatch):
    """Pillow's EPS plugin runs ``gs`` (``gs --version`` first): no process may be started at all."""
    from PIL import EpsImagePlugin

    started = []

    class NoProcess:
        def __init__(self, args, *rest, **options):
            started.append(args)
            raise AssertionError("a process was started: %r" % (args,))

    monkeypatch.setattr(subprocess, "Popen", NoProcess)
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)  # as in a fresh worker: not looked up yet
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 48\n0 0 moveto 64 48 lineto stroke\nshowpage\n%%EOF\n"
    for data in (eps, _encoded(Image.new("RGB", (64, 48), (1, 2, 3)), "EPS")):
        with pytest.raises(ImageDecodeError, match=r"^not a JPEG or PNG image \(looks like PostScript/EPS\)$"):
            decode_image(data)
    assert started == []


def test_text_named_like_an_image_is_still_not_a_recognised_format():
    with pytest.raises(ImageDecodeError, match=r"^not a recognised image format \(20 bytes\)$"):
        decode_image(b"just some plain text")


def test_a_multi_picture_jpeg_from_a_phone_is_decoded_at_reduced_scale(monkeypatch):
    """Pillow calls a JPEG with an MPF segment "MPO": it is a JPEG, and draft must reduce it like one."""
    from PIL import JpegImagePlugin

    drafts = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = real_draft(self, mode, size)
        drafts.append((self.format, self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    first, second = Image.new("RGB", (4000, 3000), (30, 160, 60)), Image.new("RGB", (4000, 3000), (0, 0, 0))
    data = _encoded(first, "MPO", save_all=True, append_images=[second], quality=80)
    with Image.open(io.BytesIO(data)) as probe:
        assert probe.format == "MPO"

    array = decode_image(data)

    assert array.shape == (224, 224, 3)
    assert drafts == [("MPO", (500, 375))], "draft did not decode the MPO at 1/8 scale"
    assert abs(array[..., 1].mean() - 160) < 3  # the first picture, not the second


# -- memory bounded below the pixel limit -------------------------------------------------------------------


def test_a_16_bit_png_below_the_pixel_limit_decodes_in_bounded_memory(tmp_path):
    """7,900 x 7,900 16-bit grey in 130 KB: 1.7 GB peak before (float64 copies at full size), now ~170 MB."""
    path = _streamed_png(tmp_path / "sixteen.png", 7900, 7900, 16, 0, struct.pack(">H", 30000))
    assert path.stat().st_size < 200_000

    result = _decode_in_fresh_process(path)

    assert result.get("shape") == [224, 224, 3], result
    assert result["mean"] == pytest.approx([116, 116, 116], abs=1)  # 30000 / 65535 * 255: scaled, not clipped
    assert result["peak_mb"] < MEMORY_LIMIT_MB, result


def test_an_rgba_png_below_the_pixel_limit_decodes_in_bounded_memory(tmp_path):
    """7,900 x 7,900 RGBA: 1.2 GB peak before (full-size RGBA copies to composite it), now ~300 MB."""
    path = _streamed_png(tmp_path / "alpha.png", 7900, 7900, 8, 6, bytes((10, 20, 30, 128)))

    result = _decode_in_fresh_process(path)

    assert result.get("shape") == [224, 224, 3], result
    assert result["mean"] == pytest.approx([132, 137, 142], abs=1)  # composited on white
    assert result["peak_mb"] < MEMORY_LIMIT_MB, result


def test_large_16_bit_palette_and_alpha_pngs_decode_like_small_ones():
    """The reduced path (band by band) gives the colours the direct path gives for a small image."""
    cases = {
        "16-bit": Image.new("I;16", (2000, 1500), 30000),
        "palette": Image.new("RGB", (2000, 1500), (200, 50, 50)).convert("P", palette=Image.Palette.ADAPTIVE),
        "alpha": Image.new("RGBA", (2000, 1500), (10, 20, 30, 128)),
        "grey+alpha": Image.new("LA", (2000, 1500), (100, 128)),
        "bilevel": Image.new("1", (2000, 1500), 1),
    }
    for name, big in cases.items():
        small = big.resize((100, 75))
        expected = decode_image(_encoded(small, "PNG")).reshape(-1, 3).mean(axis=0)
        actual = decode_image(_encoded(big, "PNG")).reshape(-1, 3).mean(axis=0)
        assert abs(actual - expected).max() <= 1, name


def test_exif_orientation_survives_the_reduction():
    stored = Image.new("RGB", (800, 1600), (255, 255, 255))
    stored.paste((0, 0, 0), (0, 0, 800, 800))  # top half black; "rotate 90 CW" shows the right half black
    exif = Image.Exif()
    exif[0x0112] = 6
    for fmt in ("PNG", "JPEG"):
        decoded = decode_image(_encoded(stored, fmt, exif=exif.tobytes()))
        assert decoded[:, :100].mean() > 200 and decoded[:, 124:].mean() < 50, fmt


# -- big phone JPEGs decode at reduced scale; bombs are still refused ---------------------------------------


def test_a_120_megapixel_phone_jpeg_decodes_at_reduced_scale_in_bounded_memory(huge_jpeg):
    """Refused before ("image too large", the limit was 64 MP for every format); draft decodes it at 1/8."""
    result = _decode_in_fresh_process(huge_jpeg)

    assert result.get("shape") == [224, 224, 3], result
    assert result["mean"] == pytest.approx([180, 40, 40], abs=3)
    assert result["peak_mb"] < 150, result  # ~50 MB measured: the bitmap is 1625 x 1150


def test_decompression_bombs_are_still_refused():
    for bomb in (png_bomb(), jpeg_bomb()):
        with pytest.raises(ImageDecodeError, match="^image too large"):
            decode_image(bomb)


def _with_frame_size(jpeg: bytes, marker: bytes, width: int, height: int) -> bytes:
    data = bytearray(jpeg)
    sof = data.index(marker)  # start-of-frame: length(2) precision(1) height(2) width(2)
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_what_cannot_be_decoded_at_reduced_scale_keeps_the_pixel_limit(tmp_path):
    """PNG and progressive JPEG are decoded at full size: above 64 MP they are refused before any allocation,
    and so is a baseline JPEG above 250 MP."""
    small = Image.new("RGB", (16, 16), (9, 9, 9))
    progressive = _with_frame_size(_encoded(small, "JPEG", progressive=True), b"\xff\xc2", 13000, 9200)
    baseline = _with_frame_size(_encoded(small, "JPEG"), b"\xff\xc0", 20000, 13000)  # 260 MP
    png = _streamed_png(tmp_path / "big.png", 8100, 8000, 8, 0, b"\x80").read_bytes()  # 64.8 MP, grey
    for data in (progressive, baseline, png):
        with pytest.raises(ImageDecodeError, match="^image too large"):
            decode_image(data)
