"""Paths as users give them (issue 19, cases 5, 6 and 8): an output inside the input through a link or ``..``, glob
characters in ``--images`` and ``--output`` (with sibling folders the glob would match), and file names that are
not UTF-8 beside names that spell their escape."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote_to_bytes

import pytest
from pyarrow import fs

from fruitjob.listing import NOT_UTF8
from tasks.local.sample_images import make_sample_images
from tasks.validation import verify_output
from tests.conftest import JOB_DEFAULTS, NO_HEALTH
from tests.helpers import metrics, read_parquet


def _run(spark, images, output, *extra):
    from fruitjob.job import run
    from fruitjob.options import parse_options

    argv = ["--images", str(images), "--output", str(output), *JOB_DEFAULTS, *NO_HEALTH, "--pca-components", "2"]
    argv += extra
    return run(spark, parse_options(argv))


# --- glob characters (case 6) -----------------------------------------------------------------------------------

# For each glob character, a folder name holding it and a sibling that the name, read as a glob, would match
# instead (None: the name is not a valid glob; read as one, it fails or matches nothing).
GLOB_NAMES = {
    "[": ("wk[4", None),
    "]": ("wk]4", "wk]4-unused"),  # "]" alone is literal in a glob: the sibling must simply never be read
    "{": ("wk{4", None),
    "}": ("wk}4", "wk}4-unused"),
    "*": ("wk*", "wk4"),
    "?": ("wk?", "wk9"),
    "[49]": ("wk[49]", "wk4"),
    "{4,9}": ("wk{4,9}", "wk9"),
}


@pytest.mark.parametrize("case", list(GLOB_NAMES), ids=list(GLOB_NAMES))
def test_read_parquet_reads_the_named_folder_never_a_sibling_the_glob_matches(spark, tmp_path, case):
    from fruitjob import storage

    name, sibling = GLOB_NAMES[case]
    spark.createDataFrame([("mine",)], "who string").write.parquet(str(tmp_path / name / "features"))
    if sibling:
        spark.createDataFrame([("sibling",)], "who string").write.parquet(str(tmp_path / sibling / "features"))
    rows = storage.read_parquet(spark, str(tmp_path / name / "features")).collect()
    assert [row.who for row in rows] == ["mine"]


@pytest.fixture
def glob_folders(tmp_path) -> tuple[Path, Path]:
    """Images under a folder named with every glob character, and siblings the unescaped names would match."""
    images = make_sample_images(tmp_path / "in[1]{a,b}*?", per_class=2, size=48)
    (images / "Banana" / "broken [1]{a}*?.jpg").write_bytes(b"not a jpeg")  # errors/ gets a row too
    make_sample_images(tmp_path / "in1a-sibling", per_class=1, size=48)  # "in[1]{a,b}*?" matches it as a glob
    out = tmp_path / "wk[49]{a,b}*?"
    (tmp_path / "wk4b-sibling").mkdir()  # "wk[49]{a,b}*?" matches it as a glob; an output-like decoy inside
    (tmp_path / "wk4b-sibling" / "features").mkdir()
    return images, out


def test_a_run_with_glob_characters_in_images_and_output_read_by_binaryfile(spark, glob_folders):
    """binaryFile (what EMR uses) is given each listed image's path, escaped; the python reader is in the next test."""
    images, out = glob_folders
    m = _run(spark, images, out, "--reader", "binaryfile")
    assert (m.images_ok, m.images_failed) == (12, 1)
    assert all(path.startswith(f"file:{images}/") for path in read_parquet(out, "features")["path"])
    verify_output(str(out), fs.LocalFileSystem())


@pytest.mark.slow
def test_incremental_and_pca_model_from_folders_with_glob_characters(spark, glob_folders, tmp_path):
    images, out = glob_folders
    first = _run(spark, images, out)
    assert (first.images_ok, first.images_failed) == (12, 1) and not (out / "_featurized").exists()
    # The escape is for reads only: the model is saved under its plain name (a writer given "wk\\[49\\]" would make
    # a folder of that name), and loaded from it.
    assert (out / "pca_model" / "metadata").is_dir() and (out / "pca_model" / "pca_model.npz").is_file()
    assert not [path for path in tmp_path.rglob("*") if "\\" in path.name]
    verify_output(str(out), fs.LocalFileSystem())

    chained = tmp_path / "week 2 [x]{y}*?"
    second = _run(spark, images, chained, "--pca-model", str(out))  # PipelineModel.load of a glob-named folder
    assert second.pca_model_id == first.pca_model_id
    verify_output(str(chained), fs.LocalFileSystem())

    (images / "Banana" / "new.jpg").write_bytes((images / "Banana" / "000.jpg").read_bytes())
    third = _run(spark, images, out, "--incremental")
    assert (third.images_already_done, third.images_ok, third.images_failed) == (12, 1, 1)
    assert third.pca_model_id == first.pca_model_id
    assert len(read_parquet(out, "pca")) == 13
    verify_output(str(out), fs.LocalFileSystem())
    assert metrics(out)["pca_model_id"] == first.pca_model_id


READERS = ("parquet", "json", "text", "csv", "orc")


def _spark_reads(tree) -> list:
    """The calls that hand Spark a path to read: ``X.read.parquet/json/text/csv/orc(...)``, ``X.load(path)`` (but our
    ``private_files`` cache), ``textFile``, ``binaryFiles``."""
    import ast

    calls = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args):
            continue
        name, receiver = node.func.attr, node.func.value
        if name in ("textFile", "binaryFiles", "wholeTextFiles"):
            calls.append(node)
        elif name in READERS and ".read" in ast.unparse(receiver):  # spark.read[.option(...)...].parquet(path)
            calls.append(node)
        elif name == "load" and not (isinstance(receiver, ast.Name) and receiver.id in ("private_files", "json")):
            calls.append(node)
    return calls


def test_every_spark_read_of_a_path_escapes_its_glob_characters():
    """Spark's readers glob the paths they are given (Hadoop's FileSystem calls and Spark's writers do not): every
    read in the job, a Parquet dataset, a model or images, is given an escaped path."""
    import ast

    package = Path(__file__).resolve().parent.parent / "spark_jobs" / "fruitjob"
    reads = {}
    for module in sorted(package.glob("*.py")):
        for call in _spark_reads(ast.parse(module.read_text())):
            reads[f"{module.name}:{call.lineno}"] = ast.unparse(call)
    assert len(reads) >= 4, reads  # read_parquet, the model, binaryFile's two loads
    assert {where: code for where, code in reads.items() if "escape_glob(" not in code} == {}


# --- an output inside the input through a link or ".." (case 5) ---------------------------------------------------


def _inside_cases(tmp: Path) -> dict[str, tuple[str, str]]:
    """(images, output) pairs whose output really lies inside the input, though their spelled paths do not say so."""
    photos = make_sample_images(tmp / "photos", per_class=1, size=48)
    os.symlink(photos / "Apple Red 1", tmp / "apple_link")
    os.symlink(photos, tmp / "photos_link")
    (tmp / "parent").mkdir()
    os.symlink(tmp, tmp / "parent" / "up")  # tmp/parent/up/photos is photos
    return {
        "output-through-a-link": (str(photos), str(tmp / "apple_link" / "out")),
        "input-through-a-link": (str(tmp / "photos_link"), str(photos / "out")),
        "dotdot-in-the-output": (str(photos), str(tmp / "photos_link" / "Apple Red 1" / ".." / "out")),
        "dotdot-in-the-input": (
            str(tmp / "parent" / "up" / "photos" / "Apple Red 1" / ".."),
            str(photos / "Banana" / "o"),
        ),
    }


INSIDE_IDS = ["output-through-a-link", "input-through-a-link", "dotdot-in-the-output", "dotdot-in-the-input"]


@pytest.mark.parametrize("case", INSIDE_IDS)
def test_an_output_really_inside_the_input_is_refused_by_the_job(spark, tmp_path, case):
    from fruitjob.job import JobError

    images, output = _inside_cases(tmp_path)[case]
    real_images = os.path.realpath(os.path.abspath(images))
    with pytest.raises(JobError, match="lies inside --images") as refused:
        _run(spark, images, output)
    assert f"file:{real_images}" in str(refused.value)  # the real paths, links resolved, in the message
    assert not Path(os.path.abspath(output)).exists()


@pytest.mark.parametrize("case", INSIDE_IDS)
def test_an_output_really_inside_the_input_is_refused_by_check_input_before_spark(tmp_path, case):
    from tasks.local.input_checks import InputError, check_local_input

    images, output = _inside_cases(tmp_path)[case]
    with pytest.raises(InputError, match="lies inside --images") as refused:
        check_local_input.fn(images, output)
    assert f"file:{os.path.realpath(os.path.abspath(images))}" in str(refused.value)


@pytest.fixture
def linked_label(tmp_path) -> tuple[Path, Path]:
    """Photos whose label folder "Kiwi" is a link to a folder elsewhere: the listing follows it."""
    photos = make_sample_images(tmp_path / "photos", per_class=1, size=48)
    elsewhere = tmp_path / "elsewhere"
    make_sample_images(elsewhere, per_class=1, size=48)
    os.symlink(elsewhere, photos / "Kiwi")
    return photos, elsewhere


def test_an_output_inside_a_folder_the_input_links_to_is_refused_by_the_job(spark, linked_label):
    from fruitjob.job import JobError

    photos, elsewhere = linked_label
    with pytest.raises(JobError, match=f"lies inside file:{elsewhere}, which the input links to .file:{photos}/Kiwi"):
        _run(spark, photos, elsewhere / "out")
    assert not (elsewhere / "out").exists()


def test_an_output_inside_a_folder_the_input_links_to_is_refused_by_check_input(linked_label):
    from tasks.local.input_checks import InputError, check_local_input

    photos, elsewhere = linked_label
    with pytest.raises(InputError, match=f"lies inside file:{elsewhere}, which the input links to"):
        check_local_input.fn(str(photos), str(elsewhere / "Banana" / "out"))


def test_outputs_beside_the_input_are_not_refused(tmp_path):
    from fruitjob.rules import output_inside_input

    photos = make_sample_images(tmp_path / "photos", per_class=1, size=48)
    os.symlink(photos / "Apple Red 1", tmp_path / "apple_link")
    assert output_inside_input(str(photos), str(tmp_path / "photos2" / "out")) is None  # a prefix, not a parent
    # The job writes where the spelled path points after ".." is removed, as every path option is made absolute:
    assert output_inside_input(str(photos), str(tmp_path / "apple_link" / ".." / "out")) is None
    assert output_inside_input(str(photos), "file:" + str(tmp_path / "out")) is None
    # On S3 the keys are compared, as written (no links there).
    assert output_inside_input("s3://b/photos", "s3://b/photos/out") is not None
    assert output_inside_input("s3://b/photos/", "s3://b/photos2/out") is None


# --- names that are not UTF-8 (case 8) ----------------------------------------------------------------------------


@pytest.fixture
def clashing_names(tmp_path) -> tuple[Path, dict[str, bytes]]:
    """Names that are not UTF-8 beside real names spelling what an escape of them could look like."""
    images = make_sample_images(tmp_path / "images", per_class=1, size=48)
    jpeg = (images / "Banana" / "000.jpg").read_bytes()
    banana = os.fsencode(images / "Banana")
    names = {
        "not-utf8": banana + b"/\xff.jpg",
        "backslash-x-f-f": banana + b"/\\xff.jpg",  # a real name: backslash, x, f, f
        "percent-f-f": banana + b"/%FF.jpg",  # a real name: percent, F, F
        "not-utf8-with-percent": banana + b"/%FF\xff.jpg",
        "in-a-folder-not-utf8": os.fsencode(images) + b"/Caf\xe9/fruit.jpg",
    }
    for raw in names.values():
        os.makedirs(os.path.dirname(raw), exist_ok=True)
        with open(raw, "wb") as handle:
            handle.write(jpeg)
    return images, names


def test_the_job_and_validation_list_every_file_under_its_own_path(spark, clashing_names):
    from fruitjob.listing import list_input
    from fruitjob.rules import local_file
    from tasks.input_listing import list_input_facts

    images, names = clashing_names
    listed = list_input(spark, str(images)).images
    facts = list_input_facts(str(images), fs.LocalFileSystem())
    assert len({image.path for image in listed}) == len(listed) == 6 + len(names)
    assert {image.path: image.label for image in listed} == facts.images  # the same paths and labels, both walks
    # A name that is not UTF-8 is the file:/// URI of its bytes, percent-encoded where they are not UTF-8 (and "%"):
    # a real name is always file:/... (one slash), so the two never meet; a person reads it, unquote decodes it.
    expected = {
        "not-utf8": f"file://{images}/Banana/%FF.jpg",
        "backslash-x-f-f": f"file:{images}/Banana/\\xff.jpg",
        "percent-f-f": f"file:{images}/Banana/%FF.jpg",
        "not-utf8-with-percent": f"file://{images}/Banana/%25FF%FF.jpg",
        "in-a-folder-not-utf8": f"file://{images}/Caf%E9/fruit.jpg",
    }
    by_path = {image.path: image for image in listed}
    for key, path in expected.items():
        image = by_path[path]
        assert (image.label, image.problem is None) == (
            ("Caf%E9", False) if key.startswith("in-a") else ("Banana", "not-utf8" not in key)
        )
        assert os.fsencode(local_file(path)) == names[key]  # the path names its file, both forms
        if path.startswith("file:///"):
            assert unquote_to_bytes(path[len("file://") :]) == names[key]
            assert image.problem == NOT_UTF8 and "%XX" in NOT_UTF8


def test_a_name_that_is_not_utf8_beside_one_spelling_its_escape_both_accounted_for(spark, clashing_names, tmp_path):
    images, names = clashing_names
    _run(spark, images, tmp_path / "out")
    errors, features = read_parquet(tmp_path / "out", "errors"), read_parquet(tmp_path / "out", "features")
    assert sorted(errors["path"]) == sorted(
        [f"file://{images}/Banana/%FF.jpg", f"file://{images}/Banana/%25FF%FF.jpg", f"file://{images}/Caf%E9/fruit.jpg"]
    )
    assert set(errors["error"]) == {NOT_UTF8}
    assert {f"file:{images}/Banana/\\xff.jpg", f"file:{images}/Banana/%FF.jpg"} <= set(features["path"])
    assert len(features) == 8
    verify_output(str(tmp_path / "out"), fs.LocalFileSystem())  # VALID: every file accounted for, once


@pytest.mark.slow
def test_the_flow_on_folders_with_glob_characters_beside_folders_the_glob_matches(prefect_harness, tmp_path):
    from flows.fruit_features import fruit_features
    from tests.conftest import TEST_ALPHA

    images = make_sample_images(tmp_path / "wk[49] {a,b}*?", per_class=2, size=48)
    make_sample_images(tmp_path / "wk4 a-sibling", per_class=1, size=48)  # the input's name as a glob matches it
    output = tmp_path / "out[49]{a,b}*?"
    (tmp_path / "out9b-sibling" / "features").mkdir(parents=True)  # the output's name as a glob matches it
    state = fruit_features(
        images=str(images), output=str(output), return_state=True, weights="random", alpha=TEST_ALPHA, pca_components=2
    )
    assert state.is_completed(), state.message
    report = state.result().validation
    assert (report.metrics.images_ok, report.metrics.images_failed) == (12, 0)
    assert (output / "summary.md").exists() and not (output / "_featurized").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["wk[49] {a,b}*?", "wk4 a-sibling", "out[49]{a,b}*?", "out9b-sibling"]
    )
