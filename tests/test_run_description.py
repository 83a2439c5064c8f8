"""One run, declared once (JobOptions): every option survives options -> the job's argv -> the job's parsed options
(the flow's parameters match them: tests/test_parameters.py); prefect.yaml's deployments change only what they need."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from flows.fruit_features import fruit_features
from flows.parameters import nested
from fruitjob.options import JobOptions, job_arguments, parse_options

# A value other than the default for every field, as the job must read it back.
CHANGED = {
    "images": "s3://fruit/in",
    "output": "s3://fruit/out/run-1",
    "pca_components": 7,
    "weights": "s3://fruit/w/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.5_224_no_top.h5",
    "alpha": 0.75,
    "batch_size": 2,
    "featurizer": "tflite-int8",  # keras has no --tflite-model
    "partitions": 9,
    "pca_model": "s3://fruit/out/run-0",
    "incremental": True,
    "overwrite": False,  # excludes incremental: checked on its own below
    "seed": 3,
    "reader": "binaryfile",
    "tflite_model": "s3://fruit/staged/fruitflow-tflite-int8-0123.tflite",
    "engine": "emr",
    "flow_run_id": "0f1e2d3c-run",
    "cluster_id": "j-1ABC",
    "health": "off",
    "health_against": ["s3://fruit/out/run-0", "s3://fruit/out/run-00"],
    "near_duplicate_threshold": 0.9,
}
FIELDS = [item.name for item in dataclasses.fields(JobOptions)]


@pytest.mark.parametrize("name", FIELDS)
def test_every_option_round_trips_to_the_job(name):
    assert set(CHANGED) == set(FIELDS), "a new JobOptions field needs a value here"
    options = JobOptions(**CHANGED)
    parsed = parse_options(job_arguments(options))
    assert getattr(parsed, name) == getattr(options, name) == CHANGED[name]
    assert parsed == options


def test_defaults_round_trip_and_alpha_comes_from_the_weights_name():
    options = JobOptions(images="s3://fruit/in", output="s3://fruit/out", overwrite=True)
    assert parse_options(job_arguments(options)) == options
    assert options.alpha == 1.0  # not given: from the weights name, else 1.0
    named = JobOptions(images="/in", output="/out", weights="/w/mobilenet_v2_1.0_0.35_224_no_top.h5")
    assert named.alpha == 0.35 and parse_options(job_arguments(named)) == named


def test_a_relative_path_is_made_absolute_once_whoever_builds_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = JobOptions(images="in/", output="out", pca_model="old/run")
    assert options.images == str(tmp_path / "in") and options.pca_model == str(tmp_path / "old" / "run")
    assert parse_options(["--images", "in/", "--output", "out", "--pca-model", "old/run"]) == options


def test_an_impossible_run_is_refused_with_every_reason():
    with pytest.raises(ValueError) as refused:
        JobOptions(images="/in", output="/out", batch_size=0, featurizer="onnx", overwrite=True, incremental=True)
    message = str(refused.value)
    assert "batch_size" in message and "featurizer" in message and "exclude each other" in message
    with pytest.raises(ValueError, match="--tflite-model is for the TFLite featurizers, not 'keras'"):
        JobOptions(images="/in", output="/out", featurizer="keras", tflite_model="/m.tflite")
    with pytest.raises(SystemExit):
        parse_options(["--images", "/in", "--output", "/out", "--overwrite", "--incremental"])


def test_prefect_yaml_lists_only_what_a_deployment_changes():
    import yaml

    from flows.reap import reap_clusters

    flows = {"flows/fruit_features.py:fruit_features": fruit_features, "flows/reap.py:reap_clusters": reap_clusters}
    config = yaml.safe_load((Path(__file__).resolve().parent.parent / "prefect.yaml").read_text())
    checked = set()
    for deployment in config["deployments"]:
        flow = flows.get(deployment["entrypoint"])
        if flow is None:
            continue
        defaults = {name: schema.get("default") for name, schema in flow.parameters.properties.items()}
        parameters = deployment.get("parameters") or {}
        assert nested(parameters) == parameters, f"{deployment['name']}: parameters in the models' shape"
        flow.validate_parameters(parameters)
        for name, value in parameters.items():
            assert name in defaults, f"{deployment['name']}: {name} is no parameter of the flow"
            assert name == "engine" or value != defaults[name], f"{deployment['name']}: {name} repeats its default"
        checked.add(f"{flow.name}/{deployment['name']}")
    assert checked == {
        "fruit-features/local",
        "fruit-features/emr",
        "fruit-features/emr-serverless",
        "reap-clusters/reap-every-30-min",
        "reap-clusters/scheduled",
    }
