"""One pin set, written once (pyproject.toml's ``job`` and ``job-tensorflow`` groups), for this machine and the cluster.

The cluster's set resolves to wheels for its Python (3.9) and each platform it runs (x86_64, Graviton aarch64), asking
the package index only (pip's dry run); a cluster pin differs from the local one only with its reason beside it; this
machine's pins are what .ci/constraints.txt and the virtualenv hold; tests/parity_env.py reads the same set.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata

import pytest
from packaging.utils import canonicalize_name

from tasks.aws.environment import CLUSTER_PYTHON, EnvironmentBuildError, resolve_environment
from tasks.aws.job_pins import ARCHITECTURES, PYPROJECT, PinError, job_requirements
from tests.conftest import REPO


def _versions(pins: list[str]) -> dict[str, str]:
    return {canonicalize_name(pin.split("==")[0]): pin.split("==")[1] for pin in pins}


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_the_cluster_pins_have_wheels_for_its_python_and_platform(arch):
    pins = job_requirements(CLUSTER_PYTHON, arch, with_tensorflow=True)  # the largest set: TensorFlow included
    try:
        resolved = resolve_environment(pins, CLUSTER_PYTHON, arch)
    except EnvironmentBuildError as exc:
        if exc.offline:
            pytest.skip(f"the package index is out of reach: {str(exc).splitlines()[0]}")
        raise
    got = {canonicalize_name(name): version for name, version in resolved.items()}
    assert {name: got.get(name) for name in _versions(pins)} == _versions(pins)


def test_each_supported_python_gets_one_pin_per_package_and_others_are_refused():
    for python in (CLUSTER_PYTHON, "3.11", "3.12"):
        for arch in ARCHITECTURES:
            pins = _versions(job_requirements(python, arch, with_tensorflow=True))
            assert {"numpy", "pandas", "pyarrow", "pillow", "ai-edge-litert", "keras", "h5py"} <= set(pins)
            assert len({"tensorflow", "tensorflow-cpu"} & set(pins)) == 1
    assert "tensorflow" in _versions(job_requirements(CLUSTER_PYTHON, "aarch64", with_tensorflow=True))
    assert not {"tensorflow", "tensorflow-cpu", "keras"} & set(_versions(job_requirements(CLUSTER_PYTHON, "x86_64")))
    with pytest.raises(PinError, match="numpy: no pin for this Python"):
        job_requirements("3.10", "x86_64")


def test_a_cluster_pin_differs_from_the_local_one_only_with_its_reason_written_beside_it():
    lines = PYPROJECT.read_text().splitlines()
    local = _versions(job_requirements("3.11", "x86_64", with_tensorflow=True))
    cluster = _versions(job_requirements(CLUSTER_PYTHON, "x86_64", with_tensorflow=True))
    differing = sorted(name for name in cluster if cluster[name] != local.get(name))
    assert "numpy" in differing
    for name in differing:
        (at,) = [i for i, line in enumerate(lines) if f'"{name}=={cluster[name]}' in line.lower()]
        reason = "#" in lines[at] or lines[at - 1].strip().startswith("#")
        assert reason, f"pyproject.toml: the cluster pin {name}=={cluster[name]} says nothing of why it differs"


def test_this_machines_pins_are_the_constraints_and_the_installed_versions():
    arch = {"arm64": "aarch64"}.get(platform.machine(), platform.machine())
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    pins = _versions(job_requirements(python, arch, with_tensorflow=True))
    constraints = _versions(
        [line for line in (REPO / ".ci" / "constraints.txt").read_text().splitlines() if "==" in line]
    )
    assert {name: constraints.get(name) for name in pins} == pins, ".ci/constraints.txt and pyproject.toml disagree"
    assert {name: metadata.version(name) for name in pins} == pins, "the virtualenv is behind: bash .ci/setup.sh"


def test_the_parity_environment_reads_the_same_pins():
    from tests.parity_env import EMR_SPARK, pins

    # The cluster's pins of the TFLite featurizers (the flow ships the converted model): no TensorFlow.
    assert pins() == [f"pyspark=={EMR_SPARK['emr-7.13.0']}", *job_requirements(CLUSTER_PYTHON, "x86_64")]
