"""The EMR configuration pieces, without a cluster: block defaults, cost, the run_job_flow request, the step."""

from __future__ import annotations

import pytest
from prefect_aws import AwsCredentials, S3Bucket
from pydantic import ValidationError

from blocks.create_blocks import build_blocks, create_blocks
from blocks.emr_cluster_config import EmrClusterConfig
from blocks.emr_serverless_config import EmrServerlessConfig
from fruitjob.options import JobOptions, job_arguments
from tasks.aws.preflight import PreflightError, check_uris
from tasks.aws.remote import run_max_age_hours
from tasks.aws.run_names import run_token
from tasks.aws.tags import TAG_CREATED_BY, TAG_FLOW_RUN, TAG_KEEP, TAG_MAX_AGE
from tasks.emr.cluster import cluster_request
from tasks.emr.pricing import estimate_cost, hourly_usd
from tasks.emr.steps import step_definition
from tests.emr_fixtures import moto_clients


def test_block_defaults_are_the_seed_shape_and_every_field_is_described():
    config = EmrClusterConfig()
    assert config.release_label.startswith("emr-7.")
    assert (config.master_instance_count, config.core_instance_count) == (1, 2)
    assert config.service_role == "EMR_DefaultRole" and config.instance_profile == "fruitflow-emr-ec2"
    assert all(field.description for field in EmrClusterConfig.model_fields.values())


@pytest.mark.parametrize("block", [EmrClusterConfig, EmrServerlessConfig])
def test_poll_seconds_takes_fractions_and_a_block_saved_with_whole_seconds_still_loads(block, prefect_harness):
    assert block(poll_seconds=0.1).poll_seconds == 0.1  # what tests use: the fakes change states in-process
    with pytest.raises(ValidationError, match="poll_seconds"):
        block(poll_seconds=0)
    block(poll_seconds=2).save("whole-seconds", overwrite=True)  # as every block saved before took an int
    assert block.load("whole-seconds").poll_seconds == 2


def test_cost_estimate_is_instance_hours_times_the_price_table():
    estimate = estimate_cost(EmrClusterConfig(), 2.0)
    assert estimate.instance_hours == 6.0
    assert estimate.usd == pytest.approx(2 * 3 * (0.192 + 0.048))
    assert estimate.usd_per_hour == pytest.approx(3 * (0.192 + 0.048))
    assert "estimate" in estimate.label and estimate.text.startswith(f"~${estimate.usd:.2f} (6 instance-hours")
    spot = hourly_usd(EmrClusterConfig(market="SPOT"))
    assert spot == pytest.approx(3 * (0.192 * 0.4 + 0.048))
    unknown = estimate_cost(EmrClusterConfig(core_instance_type="x9.mega"), 1.0)
    lacking = ("the EC2 price of x9.mega (ec2_hourly_usd)", "the EMR surcharge of x9.mega (emr_hourly_usd)")
    assert unknown.usd is None and unknown.missing_prices == lacking
    assert "no price: the block's price table lacks the EC2 price of x9.mega" in unknown.text


def test_cluster_request_carries_tags_idle_policy_and_no_public_ssh():
    config = EmrClusterConfig(tags={"team": "fruit"}, spark_configuration={"spark.executor.memory": "6g"})
    request = cluster_request(
        config,
        name="fruitflow run",
        log_uri="s3://b/logs/",
        flow_run_id="run-1",
    )
    tags = {tag["Key"]: tag["Value"] for tag in request["Tags"]}
    assert tags == {"team": "fruit", TAG_FLOW_RUN: "run-1", TAG_CREATED_BY: "fruitflow"}
    assert request["AutoTerminationPolicy"] == {"IdleTimeout": 30 * 60}
    assert request["LogUri"] == "s3://b/logs/"
    assert "BootstrapActions" not in request, "nodes install nothing: the packages ship with the step"
    groups = {group["InstanceRole"]: group for group in request["Instances"]["InstanceGroups"]}
    assert groups["CORE"]["InstanceCount"] == 2 and groups["MASTER"]["InstanceType"] == "m5.xlarge"
    # We never open security groups: EMR-managed groups (and EMR block public access) stay as they are.
    assert not any("SecurityGroup" in key for key in request["Instances"])
    assert "Ec2KeyName" not in request["Instances"]
    assert request["Configurations"] == [
        {"Classification": "spark-defaults", "Properties": {"spark.executor.memory": "6g"}},
        # The job's output is written through EMRFS: SSE-S3 on every object, whatever the bucket's default.
        {"Classification": "emrfs-site", "Properties": {"fs.s3.enableServerSideEncryption": "true"}},
    ]
    assert TAG_KEEP not in tags


def test_every_cluster_request_has_the_idle_policy_whatever_the_block_says():
    """SIGKILL runs no hook: the idle auto-termination policy must be on every cluster we create."""
    for config in (EmrClusterConfig(), EmrClusterConfig(idle_timeout_minutes=1), EmrClusterConfig(market="SPOT")):
        for keep in (False, True):
            request = cluster_request(config, name="n", log_uri="s3://b/l/", flow_run_id="r", keep=keep)
            assert request["AutoTerminationPolicy"] == {"IdleTimeout": config.idle_timeout_minutes * 60}
            assert ({"Key": TAG_KEEP, "Value": "true"} in request["Tags"]) is keep
    with pytest.raises(ValueError):
        EmrClusterConfig(idle_timeout_minutes=0)  # no way to switch the net off


def test_the_step_runs_spark_submit_with_the_job_arguments_built_in_one_place():
    options = JobOptions(images="s3://b/in", output="s3://b/out", weights="/tmp/w_0.35_224_no_top.h5", alpha=0.35)
    args = job_arguments(options, weights="s3://b/run/weights/w_0.35_224_no_top.h5")
    step = step_definition(
        cluster_id="j-1",
        script_uri="s3://b/job.py",
        py_files_uri="s3://b/fruitjob.zip",
        environment_sha256=64 * "0",
        timeout_minutes=10,
        environment_uri="s3://b/env/fruitflow-env-py39-x86_64-0123.tar.gz",
        job_args=args,
        token="t",
        flow_run_id="5f0c8a4e-1b2d-4c3e-9f80-0123456789ab",
    )
    # The full flow run id in the name: the hooks find this run's steps on a reused or kept cluster by it.
    assert step["Name"] == "fruitflow extract-features 5f0c8a4e-1b2d-4c3e-9f80-0123456789ab t"
    command = step["HadoopJarStep"]["Args"]
    assert step["HadoopJarStep"]["Jar"] == "command-runner.jar"
    submit = command[command.index("spark-submit") :]
    assert submit[-len(args) - 1 :] == ["s3://b/job.py", *args]
    assert submit[submit.index("--py-files") + 1] == "s3://b/fruitjob.zip"
    assert run_token("r", args) == run_token("r", list(args)) != run_token("other", args)


def test_an_output_inside_the_input_is_refused():
    """The job would write into the folder it reads; the next run would take the output's files for images."""
    for images, output in (
        ("s3://fruit/images", "s3://fruit/images"),
        ("s3://fruit/images/", "s3://fruit/images/run-1"),
        ("s3://fruit", "s3://fruit/out"),
        ("s3://fruit/fruitflow", "s3://fruit/fruitflow/fruitflow-output/run-20261201-120000"),  # the EMR default output
    ):
        with pytest.raises(PreflightError, match="lies inside --images .*choose an output outside the input folder"):
            check_uris(JobOptions(images=images, output=output))
    with pytest.raises(PreflightError, match="the default output"):
        check_uris(JobOptions(images="s3://fruit/fruitflow", output="s3://fruit/fruitflow/fruitflow-output/run-1"))
    for images, output in (
        ("s3://fruit/images", "s3://fruit/images2"),
        ("s3://fruit/images", "s3://other-fruit/images"),
        ("s3://fruit/data/images", "s3://fruit/data/out"),
    ):
        check_uris(JobOptions(images=images, output=output))  # siblings and other buckets are fine


def test_created_clusters_carry_the_run_age_limit_and_the_reaper_honours_it():
    """The reaper never ends a cluster younger than its run's step timeout + provisioning (+ teardown slack)."""
    from prefect.client.schemas.objects import StateType

    from tasks.aws.reaping import stale_reason

    config = EmrClusterConfig(cluster_ready_timeout_minutes=30)
    limit = run_max_age_hours(config.cluster_ready_timeout_minutes, 480)
    assert limit == (30 + 480 + 30) / 60
    request = cluster_request(config, name="n", log_uri="s3://b/l/", flow_run_id="r", max_age_hours=limit)
    tags = {tag["Key"]: tag["Value"] for tag in request["Tags"]}
    assert float(tags[TAG_MAX_AGE]) == limit
    assert stale_reason(tags, 7.0, 6.0, StateType.RUNNING) is None, "an 8-hour step timeout: 7 hours is legitimate"
    assert stale_reason(tags, 9.5, 6.0, StateType.RUNNING) == f"older than {limit:g} h (9.5 h)"
    assert stale_reason({**tags, TAG_MAX_AGE: "junk"}, 7.0, 6.0, StateType.RUNNING) == "older than 6 h (7.0 h)"


def test_local_images_are_refused_with_the_sync_command():
    with pytest.raises(PreflightError, match=r"aws s3 sync '/data/fruits' s3://"):
        check_uris(JobOptions(images="/data/fruits", output="s3://b/out"))


def test_create_blocks_from_the_environment(prefect_harness):
    env = {
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "not-printed",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
        "FRUITFLOW_BUCKET": "my-fruit",
        "FRUITFLOW_KEY_PAIR": "me",
    }
    saved = create_blocks(env, name="from-env")
    assert "not-printed" not in repr(saved)
    credentials = AwsCredentials.load("from-env")
    assert credentials.region_name == "eu-west-1"
    assert credentials.aws_client_parameters.endpoint_url == "http://127.0.0.1:5000"
    assert S3Bucket.load("from-env").bucket_name == "my-fruit"
    assert EmrClusterConfig.load("from-env").key_pair_name == "me"
    with pytest.raises(SystemExit, match="FRUITFLOW_BUCKET"):
        build_blocks({})


def test_stage_job_uploads_the_job_and_a_local_weights_file(aws, tmp_path):
    from prefect import flow

    from tasks.aws.staging import stage_job

    weights = tmp_path / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
    weights.write_bytes(b"not really weights")

    @flow
    def stage() -> dict:
        return stage_job(moto_clients(), aws.bucket, "fruitflow/fruitflow-runs/stage-test", str(weights))

    staged = stage()
    prefix = f"s3://{aws.bucket}/fruitflow/fruitflow-runs/stage-test/"
    assert staged["script"] == prefix + "job/extract_features.py"
    assert staged["py_files"].startswith(prefix + "job/fruitjob-") and staged["py_files"].endswith(".zip")
    assert staged["environment"] is None, "no archive given: none staged"
    assert staged["weights"] == prefix + "weights/" + weights.name
    listed = aws.client("s3").list_objects_v2(Bucket=aws.bucket, Prefix="fruitflow/fruitflow-runs/stage-test/")
    assert len(listed["Contents"]) == 3
