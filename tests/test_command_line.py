"""The flow's command line is made from its parameters: every one has its --option, with the same default."""

from __future__ import annotations

import inspect

import pytest

from flows.fruit_features import build_parser, fruit_features


def test_every_flow_parameter_is_an_option_with_its_default():
    parser = build_parser()
    defaults = vars(parser.parse_args([]))
    signature = inspect.signature(fruit_features.fn).parameters
    assert defaults == {name: parameter.default for name, parameter in signature.items()}


def test_options_parse_to_typed_flow_parameters():
    args = vars(
        build_parser().parse_args(
            ["--images", "/data", "--pca-components", "7", "--alpha", "0.35", "--featurizer", "keras"]
            + ["--incremental", "--engine", "emr", "--cluster-id", "j-1", "--step-timeout-minutes", "5"]
        )
    )
    assert (args["images"], args["pca_components"], args["alpha"], args["featurizer"]) == ("/data", 7, 0.35, "keras")
    assert (args["incremental"], args["overwrite"], args["engine"], args["cluster_id"]) == (True, False, "emr", "j-1")
    assert args["step_timeout_minutes"] == 5


def test_choices_are_enforced_and_help_shows_descriptions(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--featurizer", "onnx"])
    assert exit_.value.code == 2
    assert "invalid choice: 'onnx'" in capsys.readouterr().err
    assert "Checks and a cost estimate only; nothing is created" in " ".join(parser.format_help().split())
