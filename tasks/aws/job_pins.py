"""The Spark job's pins for one Python and platform, from the one place they are written: pyproject.toml.

``[project.optional-dependencies]`` holds the job's packages in two groups, ``job`` (always) and ``job-tensorflow``
(TensorFlow and Keras: the flow's machine, and a cluster only for ``--featurizer keras``), each pin with the
environment markers of the Pythons it is for. This machine installs them with the flow (``pip install -e .``); for a
cluster, :func:`job_requirements` evaluates the same markers for the cluster's Python and platform, which is what
the shipped archive is built from (:mod:`tasks.aws.environment`) and what tests/parity_env.py installs.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence

from packaging.markers import default_environment
from packaging.requirements import Requirement

from tasks.errors import FruitflowError
from tasks.job_files import REPO_ROOT

PYPROJECT = REPO_ROOT / "pyproject.toml"
JOB_GROUP = "job"
TENSORFLOW_GROUP = "job-tensorflow"
# pip's names for the two architectures EMR runs (x86_64: m5, c6i...; aarch64: Graviton m7g, c7g, m8g...).
ARCHITECTURES = ("x86_64", "aarch64")
# Where else the pins may be installed (the flow's machine), to tell a platform-only pin from a missing one.
_PLATFORMS = [("linux", arch) for arch in ARCHITECTURES] + [
    ("darwin", "arm64"),
    ("darwin", "x86_64"),
    ("win32", "AMD64"),
]


class PinError(FruitflowError, ValueError):
    """The job's pins do not give exactly one version of each package for this Python and platform."""


def marker_environment(python_version: str, arch: str, sys_platform: str = "linux") -> dict[str, str]:
    """What environment markers see on a node running CPython ``python_version`` on ``arch`` (Linux by default).

    Example:
        >>> marker_environment("3.9", "aarch64")["platform_machine"]
        'aarch64'
    """
    environment = dict(default_environment())
    environment.update(
        python_version=python_version,
        python_full_version=f"{python_version}.0",
        implementation_name="cpython",
        platform_python_implementation="CPython",
        sys_platform=sys_platform,
        platform_system={"linux": "Linux", "darwin": "Darwin", "win32": "Windows"}[sys_platform],
        os_name="nt" if sys_platform == "win32" else "posix",
        platform_machine=arch,
    )
    return environment


def _applies(requirement: Requirement, environment: dict[str, str]) -> bool:
    return requirement.marker is None or requirement.marker.evaluate(environment)


def declared(group: str) -> list[Requirement]:
    """The requirements of one group, as written (markers included)."""
    groups = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    if group not in groups:
        raise PinError(f"{PYPROJECT} has no optional-dependencies group {group!r}")
    return [Requirement(line) for line in groups[group]]


def job_requirements(
    python_version: str = "3.9", arch: str = "x86_64", *, with_tensorflow: bool = False, extra: Sequence[str] = ()
) -> list[str]:
    """``name==version`` of every job package for this Python and platform (markers evaluated), then ``extra``.

    Raises:
        PinError: a package has no pin, or more than one, for this Python (say, a new Python the markers miss).

    Example:
        >>> "numpy==1.26.4" in job_requirements("3.9", "x86_64")
        True
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"architecture {arch!r}: expected one of {', '.join(ARCHITECTURES)}")
    environment = marker_environment(python_version, arch)
    groups = [JOB_GROUP, TENSORFLOW_GROUP] if with_tensorflow else [JOB_GROUP]
    written = [requirement for group in groups for requirement in declared(group)]
    chosen: dict[str, list[Requirement]] = {}
    for requirement in written:
        if _applies(requirement, environment):
            chosen.setdefault(requirement.name.lower(), []).append(requirement)
    problems = [f"{name}: {len(pins)} pins apply" for name, pins in chosen.items() if len(pins) > 1]
    # Missing: no line of a package applies to this Python on any platform (written for 3.11+ and <3.10, asked for
    # 3.10). A package written for some platforms only (tensorflow-cpu: Linux x86-64) may be absent on the others.
    others = [marker_environment(python_version, machine, system) for system, machine in _PLATFORMS]
    problems += [
        f"{name}: no pin for this Python"
        for name in sorted({requirement.name.lower() for requirement in written} - set(chosen))
        if not any(_applies(r, env) for r in written if r.name.lower() == name for env in others)
    ]
    if problems:
        raise PinError(
            f"pyproject.toml's job pins for Python {python_version} on {arch}: {'; '.join(problems)}: give each "
            "package one pin whose markers cover this Python"
        )
    pins = []
    for pin in (pins_[0] for pins_ in chosen.values()):
        specifier = str(pin.specifier)
        if not specifier.startswith("=="):
            raise PinError(f"{pin}: the job's packages are pinned (==), so that the cluster runs what was tested")
        pins.append(f"{pin.name}{specifier}")
    return [*pins, *extra]
