"""The flow's parameters as models (issue 21, explicit parameters): declared once against the job's options, the
command line made from the same models, misuse refused by the models, blocks chosen as blocks, the flat form of
deployments made before kept working."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from prefect_aws import S3Bucket

from flows.fruit_features import fruit_features
from flows.fruit_features_cli import build_parser, parse_run
from flows.parameters import JobParameters, engine_settings, nested
from fruitjob.options import JobOptions
from tasks.engine_settings import EmrServerlessSettings, EmrSettings, LocalSettings
from tasks.registry import ENGINES

FLOW_FIELDS = [item for item in dataclasses.fields(JobOptions) if item.metadata["flow"]]


@pytest.mark.parametrize("item", FLOW_FIELDS, ids=lambda item: item.name)
def test_every_job_option_is_a_parameter_with_its_default_help_and_option(item):
    """Declared once, as a test: a new JobOptions field without a parameter (and an option) fails here."""
    field = JobParameters.model_fields.get(item.name)
    assert field is not None, f"JobOptions.{item.name} is no field of flows.parameters.JobParameters"
    job_default = item.default_factory() if item.default is dataclasses.MISSING else item.default
    assert field.get_default(call_default_factory=True) == job_default
    assert field.description == item.metadata["flow_help"]
    if item.metadata["choices"]:
        assert typing.get_args(field.annotation) == item.metadata["choices"]
    option = "--" + item.name.replace("_", "-")
    assert option in build_parser()._option_string_actions, f"no {option} on the command line"


def test_the_job_model_has_nothing_the_job_lacks_and_the_flow_shows_the_models():
    assert list(JobParameters.model_fields) == [item.name for item in FLOW_FIELDS]
    schema = fruit_features.parameters
    assert list(schema.properties) == ["job", "engine", "dry_run"]
    definitions = schema.definitions
    assert {"JobParameters", "LocalSettings", "EmrSettings", "EmrServerlessSettings"} <= set(definitions)
    # the blocks are blocks (the UI's picker): their definitions carry Prefect's block type
    cluster = definitions["EmrSettings"]["properties"]["cluster_block"]["anyOf"][0]["$ref"].rsplit("/", 1)[-1]
    assert definitions[cluster]["block_type_slug"] == "emr-cluster-config"


def test_every_engine_setting_is_an_option_and_every_engine_has_settings():
    options = build_parser()._option_string_actions
    for model in (LocalSettings, EmrSettings, EmrServerlessSettings):
        assert model.model_fields["kind"].default in ENGINES
        for name in set(model.model_fields) - {"kind"}:
            assert "--" + name.replace("_", "-") in options
    assert {"--engine", "--dry-run"} <= set(options)


def test_the_command_line_parses_to_the_models():
    run = parse_run(
        ["--images", "/in", "--pca-components", "7", "--incremental", "--featurizer", "keras"]
        + ["--engine", "emr", "--cluster-id", "j-1", "--keep-cluster", "--step-timeout-minutes", "5"]
        + ["--cluster-block", "big", "--dry-run"]
    )
    assert run["job"] == JobParameters(images="/in", pca_components=7, incremental=True, featurizer="keras")
    wanted = EmrSettings(cluster_id="j-1", keep_cluster=True, step_timeout_minutes=5, cluster_block="big")
    assert run["engine"] == wanted
    assert run["dry_run"] is True
    assert parse_run([]) == {"job": JobParameters(), "engine": LocalSettings(), "dry_run": False}
    served = parse_run(["--engine", "emr-serverless", "--serverless-block", "s", "--aws-credentials-block", "a"])
    assert served["engine"] == EmrServerlessSettings(serverless_block="s", aws_credentials_block="a")
    assert parse_run(["--master", "spark://h:7077"])["engine"] == LocalSettings(master="spark://h:7077")


@pytest.mark.parametrize(
    "argv, reason",
    [
        (["--cluster-id", "j-1"], "--cluster-id is for --engine emr, not --engine local"),
        (["--engine", "emr", "--master", "local[2]"], "--master is for --engine local, not --engine emr"),
        (["--engine", "emr-serverless", "--keep-cluster"], "--keep-cluster is for --engine emr, not --engine emr-se"),
        (["--engine", "local", "--serverless-block", "x"], "--serverless-block is for --engine emr-serverless, not"),
    ],
)
def test_a_misuse_is_refused_by_the_models_in_one_line(argv, reason, capsys):
    with pytest.raises(SystemExit) as refused:
        parse_run(argv)
    assert refused.value.code == 2
    said = capsys.readouterr().err.strip()
    assert "\n" not in said, said  # the reason alone, no usage block above it
    assert reason in said and said.startswith("python -m flows.fruit_features: error:")


def test_flat_parameters_of_former_deployments_are_moved_into_the_models():
    flat = {"engine": "emr", "cluster_block": "big", "images": "s3://b/in", "master": None, "keep_cluster": False}
    moved = {"kind": "emr", "cluster_block": "big", "keep_cluster": False}  # an EMR setting stays, master goes
    assert nested(flat) == {"job": {"images": "s3://b/in"}, "engine": moved}
    assert nested({"engine": "local"}) == {"engine": {"kind": "local"}}
    assert nested({"weights": "random", "dry_run": True}) == {"dry_run": True, "job": {"weights": "random"}}
    # what asks for something the engine lacks is kept, so that the models refuse it
    assert nested({"engine": "local", "cluster_id": "j-1"})["engine"] == {"kind": "local", "cluster_id": "j-1"}
    validated = fruit_features.validate_parameters(flat)
    assert validated["engine"] == EmrSettings(cluster_block="big") and validated["job"].images == "s3://b/in"
    run = type("Run", (), {"parameters": {"engine": "emr-serverless", "serverless_block": "x"}})()
    assert engine_settings(run) == EmrServerlessSettings(serverless_block="x")


def test_a_block_chosen_in_the_ui_is_kept_by_its_name(prefect_harness):
    S3Bucket(bucket_name="fruit").save("chosen", overwrite=True)
    loaded = S3Bucket.load("chosen")
    assert EmrSettings(s3_bucket_block=loaded).s3_bucket_block == "chosen"
    reference = {"$ref": {"block_document_id": str(loaded._block_document_id)}}
    assert EmrServerlessSettings(s3_bucket_block=reference).s3_bucket_block == "chosen"
    with pytest.raises(ValueError, match="give a saved block"):
        EmrSettings(s3_bucket_block=S3Bucket(bucket_name="unsaved"))
    assert EmrSettings().s3_bucket_block == "fruitflow"  # nothing chosen: the block named fruitflow


def test_the_flow_module_shows_its_parameters_and_starts_no_server():
    """The flow's own file holds its signature (the models by name) and no module-level server start: the command
    line's entry (flows/fruit_features_cli.py) starts the temporary server."""
    import inspect

    import flows.fruit_features as module

    source = inspect.getsource(module)
    assert "noqa: E402" not in source and "start_if_needed" not in source
    assert "job: JobParameters = JOB_DEFAULTS" in source and "engine: EngineSettings = LOCAL_ENGINE" in source
    assert list(inspect.signature(fruit_features.fn).parameters) == ["job", "engine", "dry_run"]


def test_a_list_option_takes_several_values_and_defaults_to_none_given():
    """``--health-against A B`` on the command line is the job's list; without it the list is empty."""
    given = parse_run(["--images", "/in", "--health-against", "s3://b/w48", "s3://b/w47"])
    assert given["job"].health_against == ["s3://b/w48", "s3://b/w47"]
    assert parse_run(["--images", "/in"])["job"].health_against == []
