"""Validation checks the feature space's identity and the bytes of the Parquet files (issue 19, case 10).

The job records the space (weights, their sha256, alpha, featurizer, calibration) in metrics.json, space.json, the
footer of every file of features/ and pca/ (pca/ with its model's id) and the PCA model's identity.json, and writes a
CRC in every Parquet page. Each test copies the session's finished run, changes one record or one byte, and expects
``verify_output`` to name it; before, every one of these copies validated.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from pyarrow import fs

from fruitjob.identity import PARQUET_METADATA_KEY
from tasks.identity_checks import SPARK_SCHEMA_KEY
from tasks.validation import OutputInvalid, verify_output
from tests.fake_emr_outputs import as_if_on_s3

S3_BUCKET = "fruitflow-identity"


@pytest.fixture
def output(job_output, tmp_path) -> Path:
    """A copy of the session's run that holds its own model: space.json names it relative to the output (as
    self-contained outputs do), so that a test can change the copy's model and not the session's."""
    target = tmp_path / "out"
    shutil.copytree(job_output, target)
    _edit_json(target / "space.json", pca_model="pca_model")
    return target


def _edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _problems(output: Path | str, filesystem=None, images: str | None = None) -> str:
    with pytest.raises(OutputInvalid) as caught:
        verify_output(str(output), filesystem or fs.LocalFileSystem(), images)
    return str(caught.value)


def _parts(output: Path, name: str) -> list[Path]:
    return sorted((output / name).glob("part-*.parquet"))


def _footer_record(part: Path, column: str) -> dict:
    schema = json.loads(pq.read_metadata(part).metadata[SPARK_SCHEMA_KEY])
    metadata = next(field["metadata"] for field in schema["fields"] if field["name"] == column)
    return json.loads(metadata[PARQUET_METADATA_KEY])


def flip_a_byte_of_page_data(part: Path, column: str) -> str:
    """Flip one bit inside the pages of ``column`` where a reader that skips checksums takes it silently: the file
    still reads, with one value changed and every value finite (so nothing but the checksum can tell). Returns the
    file's name as validation names it."""
    original = pq.read_table(part)[column].to_pylist()
    chunk = next(
        pq.read_metadata(part).row_group(0).column(i)
        for i in range(pq.read_metadata(part).num_columns)
        if pq.read_metadata(part).row_group(0).column(i).path_in_schema.startswith(column + ".")
    )
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data = bytearray(part.read_bytes())
    for offset in range(start + chunk.total_compressed_size // 2, start + chunk.total_compressed_size):
        data[offset] ^= 0x01
        part.write_bytes(bytes(data))
        try:
            changed = pq.read_table(part, page_checksum_verification=False)[column].to_pylist()
        except OSError:  # a compression header: not a silent change, try the next byte
            changed = None
        if changed is not None and changed != original and np.isfinite(np.concatenate(changed)).all():
            return f"{part.parent.name}/{part.name}"
        data[offset] ^= 0x01
    part.write_bytes(bytes(data))
    raise AssertionError(f"no byte of {part}'s {column} pages changes a value silently")


def test_the_untouched_copy_is_valid_and_every_file_records_the_space(output):
    verify_output(str(output), fs.LocalFileSystem())
    metrics = json.loads((output / "metrics.json").read_text())
    space = {key: metrics[key] for key in ("weights_sha256", "alpha", "featurizer", "calibration")}
    assert _parts(output, "features") and _parts(output, "pca")
    for part in _parts(output, "features"):
        assert {k: v for k, v in _footer_record(part, "features").items() if k in space} == space
    for part in _parts(output, "pca"):
        assert _footer_record(part, "pca") == {
            **_footer_record(_parts(output, "features")[0], "features"),
            "pca_model_id": metrics["pca_model_id"],
        }


@pytest.mark.slow
def test_files_rewritten_or_appended_by_an_incremental_run_record_the_space(spark, tmp_path):
    """An incremental run replaces the rows of a changed image (features/ and pca/ rewritten from what Spark reads
    back) and appends new ones: every file still records the space, and the output validates."""
    from fruitjob.job import run
    from fruitjob.options import parse_options
    from tasks.local.sample_images import make_sample_images
    from tests.conftest import JOB_DEFAULTS

    images = make_sample_images(tmp_path / "images", per_class=2, size=48)
    argv = ["--images", str(images), "--output", str(tmp_path / "out"), *JOB_DEFAULTS, "--pca-components", "3"]
    run(spark, parse_options(argv))
    changed, added = sorted(images.glob("*/*.jpg"))[:2]
    changed.write_bytes(changed.read_bytes() + b"\0" * 7)  # another size: featurized again, its old rows replaced
    shutil.copyfile(added, added.with_name("added.jpg"))
    metrics = run(spark, parse_options([*argv, "--incremental"]))
    assert (metrics.images_changed, metrics.images_ok) == (1, 2)
    space = _footer_record(_parts(tmp_path / "out", "features")[0], "features")
    for part in _parts(tmp_path / "out", "features"):
        assert _footer_record(part, "features") == space
    for part in _parts(tmp_path / "out", "pca"):
        assert _footer_record(part, "pca") == {**space, "pca_model_id": metrics.pca_model_id}
    verify_output(str(tmp_path / "out"), fs.LocalFileSystem())


def test_the_job_writes_page_checksums_where_a_cluster_default_turns_them_off(spark, tmp_path):
    from pyspark.sql import functions as F

    from fruitjob.options import parse_options
    from fruitjob.tuning import PAGE_CHECKSUMS, configure

    spark.conf.set(PAGE_CHECKSUMS, "false")  # as a spark-defaults.conf could say
    configure(spark, parse_options(["--images", str(tmp_path), "--output", str(tmp_path / "out")]), 1)
    frame = spark.range(8).select(F.array(*[F.rand(i).cast("float") for i in range(64)]).alias("features"))
    frame.coalesce(1).write.parquet(str(tmp_path / "written"))
    part = _parts(tmp_path, "written")[0]
    flip_a_byte_of_page_data(part, "features")
    with pytest.raises(OSError, match="CRC checksum verification failed"):
        pq.read_table(part, page_checksum_verification=True)


@pytest.mark.parametrize(
    "key, value",
    [
        ("weights", "imagenet"),
        ("weights_sha256", "0" * 64),
        ("alpha", 1.0),
        ("featurizer", "keras"),
    ],
)
def test_an_identity_field_edited_in_metrics_is_named(output, key, value):
    _edit_json(output / "metrics.json", **{key: value})
    message = _problems(output)
    assert f"{key} differs between the records of the output's space: {value!r} in metrics.json;" in message


def test_explained_variance_edited_in_metrics_is_checked_against_the_model(output):
    """Scaled, it still passes every check of its own (length, range, order): only the model can tell."""
    metrics = json.loads((output / "metrics.json").read_text())
    _edit_json(output / "metrics.json", explained_variance=[v * 0.9 for v in metrics["explained_variance"]])
    assert "explained_variance in metrics.json is [" in _problems(output)
    assert "the PCA model pca_model has [" in _problems(output)


def test_the_identity_edited_in_space_json_is_named(output):
    space = json.loads((output / "space.json").read_text())
    _edit_json(output / "space.json", identity={**space["identity"], "weights_sha256": "f" * 64})
    message = _problems(output)
    assert "weights_sha256 differs between the records of the output's space: " in message
    assert f"{'f' * 64!r} in space.json" in message


def test_a_features_file_from_another_space_is_named_by_its_footer(output):
    """A file whose rows carry no sign of their space (the same columns, 1,280 floats) but whose footer records it."""
    part = _parts(output, "features")[0]
    table = pq.read_table(part)
    schema = json.loads(table.schema.metadata[SPARK_SCHEMA_KEY])
    for field in schema["fields"]:
        if field["name"] == "features":
            other = {**json.loads(field["metadata"][PARQUET_METADATA_KEY]), "alpha": 0.5}
            field["metadata"][PARQUET_METADATA_KEY] = json.dumps(other)
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, SPARK_SCHEMA_KEY: json.dumps(schema)}), part)
    assert "alpha differs between the records of the output's space: 0.35 in metrics.json" in _problems(output)
    assert f"0.5 in 1 of {len(_parts(output, 'features'))} files of features/ (features/{part.name})" in (
        _problems(output)
    )


def test_a_replaced_model_is_named_by_its_id_computed_again(output):
    saved = dict(np.load(output / "pca_model" / "pca_model.npz"))
    saved["components"] = saved["components"][:, ::-1].copy()  # the same axes in another order: another space
    np.savez(output / "pca_model" / "pca_model.npz", **saved)
    message = _problems(output)
    assert "pca_model_id differs between the records of the output's space" in message
    assert "in pca_model/pca_model.npz (its mean and components)" in message


def test_the_models_identity_file_is_checked(output):
    _edit_json(output / "pca_model" / "identity.json", featurizer="tflite-int8")
    assert "'tflite-int8' in pca_model/identity.json" in _problems(output)


@pytest.mark.parametrize("dataset, column", [("features", "features"), ("pca", "pca")])
def test_a_flipped_byte_in_page_data_fails_validation_naming_the_file(output, dataset, column):
    name = flip_a_byte_of_page_data(_parts(output, dataset)[0], column)
    message = _problems(output)
    assert f"{name} cannot be read (a page fails its checksum: the file changed after it was written)" in message


# The same checks on S3 (moto), through the pyarrow file system the EMR engines validate with.


@dataclass
class S3Copy:
    """The copy rewritten as an EMR run writes it (``rewrite``), then uploaded to moto (``upload``)."""

    s3: object
    filesystem: fs.S3FileSystem
    output: Path
    prefixes: dict[str, str]  # local -> S3, the run's recorded paths among them
    uri: str  # where the copy goes

    def rewrite(self) -> None:
        as_if_on_s3(self.output, self.prefixes)

    def upload(self) -> str:
        from tests.emr_fixtures import _upload

        _upload(self.s3, self.output, self.uri)
        return self.uri


@pytest.fixture
def on_s3(moto_endpoint, fruit_images, job_output, output) -> S3Copy:
    """The images in a moto bucket (once), and the copy ready to be rewritten and uploaded beside them."""
    import boto3
    from prefect_aws import AwsCredentials
    from prefect_aws.client_parameters import AwsClientParameters

    from tasks.aws.clients import s3_filesystem
    from tests.emr_fixtures import REGION, _upload

    keys = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": REGION}
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, **keys)
    images = f"s3://{S3_BUCKET}/images"
    if S3_BUCKET not in [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=S3_BUCKET)
        _upload(s3, fruit_images, images)
    credentials = AwsCredentials(**keys, aws_client_parameters=AwsClientParameters(endpoint_url=moto_endpoint))
    uri = f"s3://{S3_BUCKET}/{output.parent.name}"  # one prefix per test
    return S3Copy(s3, s3_filesystem(credentials), output, {str(fruit_images): images, str(job_output): uri}, uri)


def test_on_s3_the_untouched_copy_is_valid(on_s3):
    on_s3.rewrite()
    verify_output(on_s3.upload(), on_s3.filesystem)


def test_on_s3_an_identity_field_edited_in_metrics_is_named(on_s3, output):
    on_s3.rewrite()
    _edit_json(output / "metrics.json", weights_sha256="0" * 64)
    message = _problems(on_s3.upload(), on_s3.filesystem)
    assert f"weights_sha256 differs between the records of the output's space: {'0' * 64!r} in metrics.json" in message


def test_on_s3_a_flipped_byte_in_page_data_fails_validation_naming_the_file(on_s3, output):
    on_s3.rewrite()  # the files as an EMR run leaves them, checksums included; then one byte changes
    name = flip_a_byte_of_page_data(_parts(output, "features")[0], "features")
    message = _problems(on_s3.upload(), on_s3.filesystem)
    assert f"{name} cannot be read (a page fails its checksum" in message
