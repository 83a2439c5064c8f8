"""One run, described once: every field of JobSpec survives spec -> job argv -> the job's parsed options, and the
flow's parameters carry the same defaults."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from flows.fruit_features import fruit_features
from tasks.job_spec import JobSpec, job_arguments

# A value other than the default for every field, as the job must read it back.
CHANGED = {
    "images": "s3://fruit/in",
    "output": "s3://fruit/out/run-1",
    "pca_components": 7,
    "weights": "s3://fruit/w/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.5_224_no_top.h5",
    "alpha": 0.5,
    "batch_size": 2,
    "featurizer": "keras",
    "partitions": 9,
    "pca_model": "s3://fruit/out/run-0",
    "incremental": True,
    "overwrite": False,  # excludes incremental: checked on its own below
}


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(JobSpec)])
def test_every_option_round_trips_to_the_job(field):
    from fruitjob.options import parse_options

    assert set(CHANGED) == {f.name for f in dataclasses.fields(JobSpec)}, "a new JobSpec field needs a value here"
    spec = JobSpec(**CHANGED)
    options = parse_options(job_arguments(spec))
    assert getattr(options, field) == getattr(spec, field)


def test_overwrite_round_trips_and_the_defaults_are_the_jobs():
    from fruitjob.options import JobOptions, parse_options

    spec = JobSpec(images="s3://fruit/in", output="s3://fruit/out", overwrite=True)
    options = parse_options(job_arguments(spec))
    assert options.overwrite is True and options.incremental is False
    for field in dataclasses.fields(JobSpec):
        if field.name not in ("images", "output", "alpha"):
            assert field.default == getattr(JobOptions, field.name), field.name  # the job's own default
    assert options.alpha == 1.0  # alpha: None in the spec means "from the weights name, else 1.0"


def test_the_flow_parameters_have_the_specs_defaults():
    parameters = inspect.signature(fruit_features.fn).parameters
    for field in dataclasses.fields(JobSpec):
        if field.name in ("images", "output"):
            assert parameters[field.name].default is None  # empty: sample images, ./output/<run>
            continue
        assert parameters[field.name].default == field.default, field.name
    schema = fruit_features.parameters.properties
    assert all(schema[f.name].get("description") for f in dataclasses.fields(JobSpec))
