"""The flow's command line is made from its parameter models: every field has its --option, with the same default."""

from __future__ import annotations

import pytest

from flows.fruit_features_cli import build_parser, parse_run
from flows.parameters import JobParameters
from tasks.engine_settings import EmrServerlessSettings, EmrSettings, LocalSettings


def test_an_option_not_given_takes_the_models_default():
    assert parse_run([]) == {"job": JobParameters(), "engine": LocalSettings(), "dry_run": False}
    assert parse_run(["--engine", "emr"])["engine"] == EmrSettings()
    assert parse_run(["--engine", "emr-serverless"])["engine"] == EmrServerlessSettings()


def test_options_parse_to_typed_flow_parameters():
    run = parse_run(
        ["--images", "/data", "--pca-components", "7", "--alpha", "0.35", "--featurizer", "keras"]
        + ["--incremental", "--engine", "emr", "--cluster-id", "j-1", "--step-timeout-minutes", "5"]
    )
    job, engine = run["job"], run["engine"]
    assert (job.images, job.pca_components, job.alpha, job.featurizer) == ("/data", 7, 0.35, "keras")
    assert (job.incremental, job.overwrite, engine.kind, engine.cluster_id) == (True, False, "emr", "j-1")
    assert engine.step_timeout_minutes == 5


def test_choices_are_enforced_and_help_shows_descriptions(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--featurizer", "onnx"])
    assert exit_.value.code == 2
    assert "invalid choice: 'onnx'" in capsys.readouterr().err
    text = " ".join(parser.format_help().split())
    assert "Checks and a cost estimate only; nothing is created" in text
    assert "Run on this existing cluster; it is left running. (default: None)" in text
