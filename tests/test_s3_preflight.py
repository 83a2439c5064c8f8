"""S3 preflight (issue 19, case 11), on both AWS engines against moto: a ``--pca-model`` or ``--weights s3://...`` that
is missing, in a missing bucket, or from another feature space, and an output holding another run's fresh lease, are
each a listed problem before anything is created or billed; what fits passes (a dry run)."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from tasks.aws.preflight import PreflightError
from tests.emr_flow import emr_test_flow
from tests.serverless_fixtures import serverless_flow

WEIGHTS_NAME = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
WEIGHTS_BYTES = b"stands for an h5 file of weights"


@pytest.fixture(params=["emr", "emr-serverless"])
def dry_run(request, aws):
    """The flow's dry run (preflight and estimate only) on each AWS engine; also asserts nothing was created."""
    engine = request.param
    if engine == "emr-serverless":
        request.getfixturevalue("serverless")
    run = emr_test_flow if engine == "emr" else serverless_flow
    before = aws.clusters(), set(_applications(aws))

    def _dry_run(output: str, **parameters):
        return run(aws.images, output, dry_run=True, **parameters)

    yield _dry_run
    assert (aws.clusters(), set(_applications(aws))) == before, "preflight created nothing"


def _applications(aws) -> list[str]:
    return [app["id"] for app in aws.client("emr-serverless").list_applications()["applications"]]


def _refused(dry_run, output: str, **parameters) -> list[str]:
    with pytest.raises(PreflightError) as caught:
        dry_run(output, **parameters)
    assert "Traceback" not in str(caught.value)
    return str(caught.value).splitlines()[1:]


def _put(aws, key: str, body: bytes, **extra) -> None:
    aws.client("s3").put_object(Bucket=aws.bucket, Key=key, Body=body, **extra)


def _model(aws, prefix: str, **identity) -> str:
    """A run's output holding a PCA model (its metadata and identity.json) under ``prefix``; its s3:// URI."""
    _put(aws, f"{prefix}/pca_model/metadata/part-00000", b'{"class": "org.apache.spark.ml.PipelineModel"}')
    fields = {"weights": "random", "weights_sha256": "0" * 64, "alpha": 0.35, "featurizer": "tflite", **identity}
    _put(aws, f"{prefix}/pca_model/identity.json", json.dumps(fields).encode())
    return f"s3://{aws.bucket}/{prefix}"


def _lease(aws, output_prefix: str, flow_run_id: str, renewed_s_ago: float) -> None:
    holder = {"flow_run_id": flow_run_id, "taken_by": "flow", "host": "another-machine", "pid": 42, "token": "tok"}
    holder["renewed_at"] = time.time() - renewed_s_ago
    _put(aws, f"{output_prefix}/_fruitflow.lock", json.dumps(holder).encode())


def test_a_pca_model_in_a_bucket_that_does_not_exist_is_refused(aws, dry_run):
    lines = _refused(dry_run, f"s3://{aws.bucket}/out/pf-nobucket", pca_model="s3://no-such-model-bucket/runs/w1")
    assert any("bucket no-such-model-bucket does not exist" in line for line in lines), lines


def test_missing_weights_an_empty_pca_model_and_a_leased_output_are_all_listed(aws, dry_run):
    _lease(aws, "out/pf-leased", "the-other-run", renewed_s_ago=30)
    lines = _refused(
        dry_run,
        f"s3://{aws.bucket}/out/pf-leased",
        weights=f"s3://{aws.bucket}/weights/missing/{WEIGHTS_NAME}",
        pca_model=f"s3://{aws.bucket}/runs/never-written",
    )
    assert any(f"--weights s3://{aws.bucket}/weights/missing/{WEIGHTS_NAME} does not exist" in ln for ln in lines)
    assert any(f"--pca-model s3://{aws.bucket}/runs/never-written holds no PCA model" in ln for ln in lines), lines
    assert any("is being written by another run (flow run the-other-run" in line for line in lines), lines
    assert len(lines) == 3, lines


def test_a_pca_model_from_another_feature_space_is_refused(aws, dry_run):
    sha256 = hashlib.sha256(WEIGHTS_BYTES).digest()  # what preflight reads from S3's own checksum of the file
    _put(aws, f"weights/w/{WEIGHTS_NAME}", WEIGHTS_BYTES, ChecksumAlgorithm="SHA256")
    other = _model(aws, "runs/other-weights", weights_sha256=hashlib.sha256(b"other weights").hexdigest())
    wider = _model(aws, "runs/wider", weights_sha256=sha256.hex(), alpha=1.0, featurizer="keras")
    weights = f"s3://{aws.bucket}/weights/w/{WEIGHTS_NAME}"
    lines = _refused(dry_run, f"s3://{aws.bucket}/out/pf-other", weights=weights, pca_model=other)
    assert any("weights_sha256" in line and "comes from another feature space" in line for line in lines), lines
    lines = _refused(dry_run, f"s3://{aws.bucket}/out/pf-wider", weights=weights, pca_model=wider)
    assert any("alpha: PCA model" in line and "featurizer: PCA model" in line for line in lines), lines


def test_a_fitting_pca_model_and_a_stale_lease_pass_preflight(aws, dry_run):
    sha256 = hashlib.sha256(WEIGHTS_BYTES).hexdigest()
    _put(aws, f"weights/ok/{WEIGHTS_NAME}", WEIGHTS_BYTES, ChecksumAlgorithm="SHA256")
    model = _model(aws, "runs/fits", weights_sha256=sha256)
    _lease(aws, "out/pf-stale", "crashed-run", renewed_s_ago=3600)
    weights = f"s3://{aws.bucket}/weights/ok/{WEIGHTS_NAME}"
    result = dry_run(f"s3://{aws.bucket}/out/pf-stale", weights=weights, pca_model=model)
    assert result.dry_run
