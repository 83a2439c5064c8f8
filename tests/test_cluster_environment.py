"""The job's Python environment shipped with the step: what the archive holds, how it is cached and staged, and the
job run from it on the cluster's stack (Python 3.9 + Spark 3.5.6, nothing installed: tests/fake_cluster_stack.py).

The happy path on that stack is tests/test_emr_flow.py's (marked ``cluster_stack`` too); here a failing step and an
incremental run.
"""

from __future__ import annotations

import json
import random
import tarfile
import time

import pytest

from blocks.emr_cluster_config import EmrClusterConfig
from tasks.aws.environment import MANIFEST, build_environment, file_sha256, platform_tags, upload_environment
from tasks.aws.job_pins import job_requirements
from tasks.aws.staging import environments_prefix
from tasks.local.sample_images import draw_fruit
from tests.emr_fixtures import moto_clients
from tests.emr_flow import emr_test_flow


def _manifest(archive) -> dict:
    with tarfile.open(archive) as tar:
        first = tar.next()  # written first, so that it is found without reading the rest
        assert first is not None and first.name == MANIFEST
        return json.load(tar.extractfile(first))


def test_the_archive_holds_the_cluster_pins_for_python_3_9_and_nothing_of_this_machine(shipped_environment):
    manifest = _manifest(shipped_environment)
    assert (manifest["python"], manifest["arch"]) == ("3.9", "x86_64")
    assert manifest["platforms"] == platform_tags("x86_64") and manifest["platforms"][0] == "manylinux_2_34_x86_64"
    for pin in job_requirements("3.9", "x86_64"):
        name, version = pin.split("==")
        assert manifest["installed"][name] == version
    # The flow ships the converted model (tasks/aws/model_export.py): no TensorFlow or Keras on the cluster.
    assert not {"tensorflow", "tensorflow-cpu", "keras", "h5py"} & set(manifest["installed"])


def test_the_archive_is_cached_by_its_pins_and_named_by_its_bytes(shipped_environment):
    tensorflow = "keras" in _manifest(shipped_environment)["installed"]
    started = time.monotonic()
    again = build_environment("3.9", "x86_64", with_tensorflow=tensorflow)
    assert again == shipped_environment and time.monotonic() - started < 10, "found in the cache, not rebuilt"
    assert shipped_environment.name.endswith(f"-{file_sha256(shipped_environment)[:16]}.tar.gz")
    assert shipped_environment.parent.parent.name == "environments"


def test_the_step_brings_the_archive_to_the_driver_and_the_executors():
    from tasks.emr.steps import step_definition

    uri = "s3://b/fruitflow/fruitflow-environments/fruitflow-env-py39-x86_64-0123456789abcdef.tar.gz"
    step = step_definition(
        cluster_id="j-1",
        script_uri="s3://b/job.py",
        py_files_uri="s3://b/fruitjob.zip",
        environment_sha256=64 * "0",
        timeout_minutes=10,
        environment_uri=uri,
        job_args=["--images", "s3://b/i"],
        token="t",
        flow_run_id="r",
    )
    args = step["HadoopJarStep"]["Args"]
    wrapper, submit = args[2], args[args.index("spark-submit") :]
    # the wrapper's own arguments: cluster id, archive, its sha256, the deadline in minutes, the flow run id
    assert args[3:9] == ["fruitflow-step", "j-1", uri, 64 * "0", "10", "r"]
    assert 'aws s3 cp --quiet "$environment" environment.tar.gz' in wrapper  # the driver's copy, checked, unpacked
    assert "sha256sum --check" in wrapper and "tar -xzf environment.tar.gz -C environment" in wrapper
    assert 'export PYTHONPATH="$PWD/environment' in wrapper and "set -euo pipefail" in wrapper
    assert submit[submit.index("--archives") + 1] == f"{uri}#environment"  # the executors' copy, from YARN
    assert "spark.executorEnv.PYTHONPATH=./environment" in submit
    assert submit.index("--archives") < submit.index("s3://b/job.py"), "spark-submit options before the script"


def test_graviton_clusters_get_an_aarch64_archive_and_mixed_architectures_are_refused():
    for master, core in (("m7g.xlarge", "c7g.2xlarge"), ("m8g.xlarge", "m8g.2xlarge")):
        assert EmrClusterConfig(master_instance_type=master, core_instance_type=core).architecture == "aarch64"
    assert EmrClusterConfig().architecture == "x86_64"
    with pytest.raises(ValueError, match=r"must share an architecture: master m5.xlarge \(x86_64\), core m7g"):
        EmrClusterConfig(core_instance_type="m7g.xlarge")
    for kind in ("m7g.xlarge", "c7g.xlarge", "m8g.xlarge"):
        assert kind in EmrClusterConfig().ec2_hourly_usd and kind in EmrClusterConfig().vcpus


def test_the_environment_is_staged_once_per_content(aws, shipped_environment, caplog):
    from prefect import flow

    @flow
    def stage_twice() -> list[str]:
        s3 = moto_clients()("s3")
        return [upload_environment(s3, aws.bucket, environments_prefix("fruitflow"), shipped_environment) for _ in "12"]

    with caplog.at_level("INFO"):
        first, second = stage_twice()
    assert first == second == f"s3://{aws.bucket}/fruitflow/fruitflow-environments/{shipped_environment.name}"
    assert any("already staged" in message for message in caplog.messages)
    head = aws.client("s3").head_object(Bucket=aws.bucket, Key=first.split("/", 3)[3])
    assert head["Metadata"]["sha256"] == file_sha256(shipped_environment) and head["ServerSideEncryption"] == "AES256"


@pytest.mark.slow
@pytest.mark.cluster_stack
def test_a_job_failing_on_the_cluster_stack_fails_the_step_with_its_own_error(aws, fake_cluster, tmp_path):
    from tasks.aws.remote_wait import RemoteRunFailed

    # One decodable image and one that is not: preflight sees two images; only the job, on the cluster's stack,
    # finds that PCA has one to fit on (a corrupt weights file would now fail earlier, where the flow converts).
    s3, images = aws.client("s3"), f"s3://{aws.bucket}/too-few-images"
    draw_fruit(random.Random(0), (200, 30, 30), 64).save(tmp_path / "one.jpg")
    s3.upload_file(str(tmp_path / "one.jpg"), aws.bucket, "too-few-images/Apple/one.jpg")
    s3.put_object(Bucket=aws.bucket, Key="too-few-images/Apple/two.jpg", Body=b"not a JPEG")
    with pytest.raises(RemoteRunFailed) as caught:
        emr_test_flow(images=images, output=f"s3://{aws.bucket}/out/stack-failing")
    message = str(caught.value)
    assert "FAILED: Step failed with exitCode 2" in message  # the job's exit code for a refused run
    assert "fruitflow ERROR PCA needs at least 2 decodable images; 1 decoded" in message


@pytest.mark.slow
@pytest.mark.cluster_stack
def test_an_incremental_run_on_the_cluster_stack(aws, fake_cluster, cluster_stack, fruit_images):
    from tests.emr_fixtures import _upload

    images, output = f"s3://{aws.bucket}/grown-images", f"s3://{aws.bucket}/out/stack-grown"
    _upload(aws.client("s3"), fruit_images, images)
    first = emr_test_flow(images=images, output=output).validation.metrics
    assert (first.images_ok, first.versions["python"][:4], first.versions["spark"]) == (24, "3.9.", "3.5.6")
    assert first.versions["numpy"].startswith("1.26"), "numpy from the archive (the cluster's pin), not this machine's"
    unpacked = cluster_stack.root / "steps" / first.step_id / "environment"  # where the step's wrapper unpacked it
    assert (unpacked / "numpy" / "__init__.py").is_file() and not (unpacked / "pyspark").exists()  # Spark's own
    files = [path.name for path in unpacked.rglob("*")]
    assert not [name for name in files if "cpython-311" in name] and not (unpacked / "bin").exists()
    assert [name for name in files if name.endswith(".cpython-39-x86_64-linux-gnu.so")], "cp39 extension modules"

    for index in range(2):
        path = fruit_images.parent / f"kiwi-{index}.jpg"
        draw_fruit(random.Random(index), (150, 140, 40), 64).save(path)
        aws.client("s3").upload_file(str(path), aws.bucket, f"grown-images/Kiwi Gold/k{index}.jpg")
    grown = emr_test_flow(images=images, output=output, incremental=True).validation.metrics
    assert (grown.images_ok, grown.images_already_done) == (2, 24)
    assert [run["cluster_stack"] for run in fake_cluster.runs[-2:]] == [True, True]


def test_weights_that_do_not_convert_fail_on_this_machine_before_any_cluster(aws, fake_cluster, tmp_path):
    from fruitjob.weights import WeightsError

    weights = tmp_path / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
    weights.write_bytes(b"not an HDF5 file")
    emr = aws.client("emr")
    before = len(emr.list_clusters()["Clusters"])
    with pytest.raises(WeightsError, match="do not fit MobileNetV2 alpha=0.35"):
        emr_test_flow(images=aws.images, output=f"s3://{aws.bucket}/out/bad-weights", weights=str(weights))
    assert len(emr.list_clusters()["Clusters"]) == before, "converted here first: no cluster created, nothing billed"
