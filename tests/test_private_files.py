"""Files cached in the shared temp directory (job zip, weights, converted models) are never someone else's.

Every test runs with a temp directory of its own that is shared like ``/tmp`` (mode 1777), and plants files
or directories there as another user of the machine would.
"""

from __future__ import annotations

import os
import stat
import tempfile
import zipfile
from pathlib import Path

import pytest

from fruitjob.weights import Weights

UID = os.getuid()
WEIGHTS = Weights("test", 0.35, b"the genuine weights", ".weights.h5")


@pytest.fixture(autouse=True)
def shared_tmp(tmp_path, monkeypatch) -> Path:
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    try:
        from fruitjob import private_files
    except ImportError:
        pass
    else:
        monkeypatch.setattr(private_files, "_FALLBACK", {})
    return shared


def _is_private(folder: str | Path) -> bool:
    info = os.lstat(folder)
    return stat.S_ISDIR(info.st_mode) and info.st_uid == UID and stat.S_IMODE(info.st_mode) == 0o700


@pytest.fixture
def fake_converter(monkeypatch) -> list[bytes]:
    """tflite_engine without TensorFlow: ``convert`` returns fixed bytes and counts its calls."""
    from fruitjob import tflite_engine

    calls: list[bytes] = []

    def convert(weights):
        calls.append(weights.data)
        return b"the converted model of " + weights.data

    monkeypatch.setattr(tflite_engine, "convert", convert)
    monkeypatch.setattr(tflite_engine, "_tf_version", lambda: "9.9.9")
    return calls


# -- what is planted under the expected name is never used ---------------------------------------------------


def test_a_planted_weights_file_is_replaced_not_loaded():
    from fruitjob.weights import write_temp_weights

    path = write_temp_weights(WEIGHTS)
    assert Path(path).read_bytes() == WEIGHTS.data and path.endswith(".weights.h5")
    Path(path).write_bytes(b"weights planted under the expected name")

    again = write_temp_weights(WEIGHTS)

    assert Path(again).read_bytes() == WEIGHTS.data
    assert _is_private(os.path.dirname(again)), "the weights must live in a private 0700 directory"


def test_a_planted_tflite_model_is_not_loaded(shared_tmp, fake_converter):
    from fruitjob.tflite_engine import tflite_model

    assert tflite_model(WEIGHTS) == b"the converted model of " + WEIGHTS.data
    assert tflite_model(WEIGHTS) == b"the converted model of " + WEIGHTS.data
    assert len(fake_converter) == 1, "a genuine cached model is reused"
    cached = list(shared_tmp.rglob("*.tflite"))
    assert cached and all(_is_private(path.parent) for path in cached)
    for path in cached:
        path.write_bytes(b"a model planted under the cached name")

    assert tflite_model(WEIGHTS) == b"the converted model of " + WEIGHTS.data
    assert len(fake_converter) == 2, "the planted model was loaded instead of converting again"
    assert all(path.read_bytes() != b"a model planted under the cached name" for path in shared_tmp.rglob("*.tflite"))


def test_clear_cache_forgets_converted_models(fake_converter):
    from fruitjob.tflite_engine import clear_cache, tflite_model

    tflite_model(WEIGHTS)
    clear_cache()
    tflite_model(WEIGHTS)
    assert len(fake_converter) == 2


def test_a_planted_job_zip_is_replaced_not_shipped(shared_tmp):
    import fruitjob
    from fruitjob.packaging import zip_package

    path = zip_package(str(shared_tmp))
    assert _is_private(os.path.dirname(path)), "the zip must not be written straight into the shared temp dir"
    planted = shared_tmp / "planted.zip"
    with zipfile.ZipFile(planted, "w") as archive:
        archive.writestr("fruitjob/__init__.py", "raise SystemExit('planted code imported')\n")
    os.replace(planted, path)

    again = zip_package(str(shared_tmp))

    package = Path(fruitjob.__file__).parent
    with zipfile.ZipFile(again) as archive:
        assert archive.read("fruitjob/__init__.py") == (package / "__init__.py").read_bytes()
        assert archive.read("fruitjob/decoding.py") == (package / "decoding.py").read_bytes()


def test_the_job_zip_is_named_by_its_content_and_made_once(tmp_path):
    from fruitjob.packaging import zip_package
    from fruitjob.private_files import sha256_hex

    first, second = zip_package(str(tmp_path)), zip_package(str(tmp_path))
    assert first == second and os.path.dirname(first) == str(tmp_path)
    name = os.path.basename(first)
    assert name == "fruitjob-%s.zip" % sha256_hex(Path(first).read_bytes())
    assert [n for n in os.listdir(tmp_path) if n.startswith(".partial")] == []


# -- the private directory --------------------------------------------------------------------------------


def test_the_private_directory_is_made_0700_and_reused(shared_tmp):
    from fruitjob.private_files import private_dir

    folder = private_dir()
    assert folder == str(shared_tmp / ("fruitflow-%d" % UID)) and _is_private(folder)
    assert private_dir() == folder


def _other_users_dir(path: Path) -> None:
    if UID != 0:
        pytest.skip("needs root to make a directory owned by another uid")
    path.mkdir(mode=0o700)
    os.chown(path, 65534, 65534)


def _world_writable_dir(path: Path) -> None:
    path.mkdir()
    path.chmod(0o777)


def _link_to_a_dir(path: Path) -> None:
    target = path.parent / "elsewhere"
    target.mkdir(mode=0o700)
    os.symlink(target, path)


def _a_file(path: Path) -> None:
    path.write_bytes(b"not a directory")


@pytest.mark.parametrize(
    "plant", [_other_users_dir, _world_writable_dir, _link_to_a_dir, _a_file], ids=lambda f: f.__name__.strip("_")
)
def test_an_untrustworthy_directory_under_the_expected_name_is_not_used(shared_tmp, plant, fake_converter):
    from fruitjob.packaging import zip_package
    from fruitjob.tflite_engine import tflite_model
    from fruitjob.weights import write_temp_weights

    expected = shared_tmp / ("fruitflow-%d" % UID)
    plant(expected)
    before = os.lstat(expected)

    paths = [write_temp_weights(WEIGHTS), zip_package(str(shared_tmp))]
    tflite_model(WEIGHTS)
    folder = os.path.dirname(paths[0])

    assert folder != str(expected) and _is_private(folder)
    for path in paths:
        assert os.path.dirname(path) == folder and Path(path).exists()
        assert not Path(path).resolve().is_relative_to(shared_tmp / "elsewhere")
    assert not (shared_tmp / "elsewhere").exists() or os.listdir(shared_tmp / "elsewhere") == []
    if stat.S_ISDIR(before.st_mode) and not stat.S_ISLNK(before.st_mode):
        assert os.listdir(expected) == []
    after = os.lstat(expected)
    assert (after.st_mode, after.st_uid) == (before.st_mode, before.st_uid), "the planted path was changed"
    from fruitjob.private_files import private_dir

    assert private_dir() == folder, "one fresh directory per process, not one per call"


def test_a_planted_weights_file_in_the_private_directory_with_the_right_name_but_a_link_is_not_used(shared_tmp):
    """Even in our own directory a link is never followed: the name's bytes are written there instead."""
    from fruitjob.private_files import content_name, private_dir
    from fruitjob.weights import write_temp_weights

    elsewhere = shared_tmp / "attacker.h5"
    elsewhere.write_bytes(WEIGHTS.data)  # the right bytes, but not our file to trust
    link = Path(private_dir()) / content_name("weights", WEIGHTS.data, WEIGHTS.suffix)
    os.symlink(elsewhere, link)

    path = write_temp_weights(WEIGHTS)

    assert not os.path.islink(path) and Path(path).read_bytes() == WEIGHTS.data


def test_weights_files_of_earlier_runs_do_not_pile_up():
    """Random weights are new bytes in every run (HDF5 timestamps): files unused for an hour are removed."""
    from fruitjob.weights import write_temp_weights

    old_path = Path(write_temp_weights(Weights("random", 0.35, b"an earlier run's bytes", ".weights.h5")))
    recent_path = Path(write_temp_weights(Weights("random", 0.35, b"a concurrent run's bytes", ".weights.h5")))
    os.utime(old_path, (0, 0))

    path = write_temp_weights(WEIGHTS)

    assert Path(path).read_bytes() == WEIGHTS.data
    assert not old_path.exists() and recent_path.exists()
