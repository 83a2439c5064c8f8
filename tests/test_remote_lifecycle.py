"""The remote-run lifecycle every AWS engine shares (tasks/aws/remote.py, tasks/aws/teardown.py).

The lifecycle's promises are checked on a backend that keeps its places in memory (what a backend does is each
engine's own test against moto: test_emr_*.py, test_emr_serverless_*.py); every registered AWS backend is walked
for what the shared wait needs from it.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from botocore.exceptions import ClientError

from blocks.emr_cluster_config import EmrClusterConfig
from flows.parameters import ENGINE
from tasks.aws.backend import ConfigBlock, Place, Staged, Words
from tasks.aws.remote import RemoteEngine
from tasks.aws.remote_wait import RemoteRunFailed, RunWatch, WaitTimedOut
from tasks.contract import Preflight, RunOutcome
from tasks.engine_settings import EmrSettings
from tasks.registry import ENGINES
from tests.emr_fixtures import POLL_SECONDS

RUN = "0f1e2d3c-run"
# Teardown runs as a task outside a flow here: its logs cannot reach the API (nothing else is wrong).
pytestmark = pytest.mark.filterwarnings("ignore:Logger 'prefect.task_runs' attempted to send logs")


class InMemoryBackend(RemoteEngine):
    """Places and their work in dicts; ``fail_end`` makes ending a place fail."""

    name = "in-memory"
    words = Words(label="In memory", place="box", run="task", console="boxes")
    config_block = ConfigBlock(EmrClusterConfig, setting="cluster_block")

    def __init__(self, reused: str | None = None, keep: bool = False, fail_end: bool = False) -> None:
        super().__init__(EmrSettings(), aws=object())
        self.__dict__["config"] = EmrClusterConfig(poll_seconds=POLL_SECONDS)
        self.reused, self.keep, self.fail_end = reused, keep, fail_end
        self.places: dict[str, dict[str, Any]] = {}  # id -> {"tags": run id, "ended": bool, "work": [...]}
        self.kept_noted: list[str] = []

    @property
    def reused_id(self) -> str | None:
        return self.reused

    @property
    def keeps(self) -> bool:
        return self.keep

    def add(self, place_id: str, run: str | None, work: list[str] | None = None) -> None:
        self.places[place_id] = {"run": run, "ended": False, "work": list(work or [])}

    def find_run_places(self, flow_run_id: str) -> list[str]:
        return [pid for pid, p in self.places.items() if p["run"] == flow_run_id and not p["ended"]]

    def end_place(self, place_id: str, logger: Any) -> None:
        if self.fail_end:
            raise ClientError({"Error": {"Code": "InternalError", "Message": "no"}}, "Terminate")
        self.places[place_id]["ended"] = True

    def cancel_run_work(self, place_id: str, flow_run_id: str) -> list[str]:
        cancelled, self.places[place_id]["work"] = self.places[place_id]["work"], []
        return cancelled

    def cost(self, place: Place, run_id: str | None, started: float) -> Any:
        raise RuntimeError("no price for a box")  # the lifecycle must survive a failing estimate

    def note_kept(self, place_id: str) -> None:
        self.kept_noted.append(place_id)

    # not reached by these tests: the lifecycle's stage, submit and wait need AWS (each engine's own tests)
    def check(self, job: Any) -> Preflight: ...
    def expected_cost(self, images: int) -> Any: ...
    def pip_architecture(self) -> str: ...
    def ready_timeout_minutes(self) -> float: ...
    def create_place(self, flow_run_id: str, name: str, max_age_hours: float) -> str: ...
    def wait_until_ready(self, place_id: str) -> None: ...
    def not_ready(self, place_id: str) -> Any: ...
    def submit(self, place: Place, staged: Staged, flow_run_id: str, checked: Preflight) -> str: ...
    def watch(self, place_id: str, run_id: str) -> RunWatch: ...
    def log_hint(self, place_id: str, run_id: str) -> str: ...


def _result() -> RunOutcome:
    return RunOutcome()


def _hold(engine: InMemoryBackend, place_id: str | None, error: BaseException | None = None) -> RunOutcome:
    """Hold a place as run() does: provisioning gives ``place_id`` (with this run's tags); then ``error`` is raised."""
    result = _result()
    with engine._held(RUN, result) as held:
        if held.place.created and place_id:
            engine.add(place_id, RUN, ["t-1"])
            held.place.id = place_id
        held.run_id = "t-1"
        if error is not None:
            raise error
    return result


def test_a_created_place_and_a_stray_of_the_same_run_are_ended_and_a_failing_estimate_is_only_logged(
    prefect_harness, caplog
):
    engine = InMemoryBackend()
    engine.add("box-stray", RUN)  # a create request resent after a lost reply made a second one
    engine.add("box-other-run", "another run")
    result = _hold(engine, "box-1")
    assert engine.places["box-1"]["ended"] and engine.places["box-stray"]["ended"]
    assert not engine.places["box-other-run"]["ended"]
    assert result.cost is None and "no cost estimate" in caplog.text


@pytest.mark.parametrize("error", [RemoteRunFailed("step failed"), KeyboardInterrupt(), WaitTimedOut("too long")])
def test_every_failure_reaches_the_teardown_and_goes_on_unchanged(prefect_harness, error):
    """A failure, a timeout or an interrupt (a BaseException: what a signal raises) ends the place and propagates."""
    engine = InMemoryBackend()
    with pytest.raises(type(error)) as raised:
        _hold(engine, "box-1", error)
    assert raised.value is error
    assert engine.places["box-1"]["ended"]


def test_a_teardown_failure_never_replaces_the_run_error_but_fails_a_run_that_succeeded(
    prefect_harness, caplog, monkeypatch
):
    from tasks.aws import teardown

    monkeypatch.setattr(teardown, "tear_down", teardown.tear_down.with_options(retries=0))  # fails at once here
    failing = InMemoryBackend(fail_end=True)
    with pytest.raises(RemoteRunFailed, match="step failed"), caplog.at_level(logging.ERROR):
        _hold(failing, "box-1", RemoteRunFailed("step failed"))
    assert "could not end box box-1" in caplog.text and "do it by hand" in caplog.text
    succeeded = InMemoryBackend(fail_end=True)
    with pytest.raises(ClientError, match="InternalError"):  # the run must not say "done" while the box bills
        _hold(succeeded, "box-2")


@pytest.mark.parametrize("error", [RemoteRunFailed("step failed"), KeyboardInterrupt()])
def test_on_a_reused_place_a_failing_run_cancels_its_own_work_and_leaves_the_place(prefect_harness, error):
    engine = InMemoryBackend(reused="shared-box")
    engine.add("shared-box", None, ["t-1"])
    with pytest.raises(type(error)):
        _hold(engine, None, error)
    assert engine.places["shared-box"] == {"run": None, "ended": False, "work": []}
    engine.places["shared-box"]["work"] = ["t-2"]
    _hold(engine, None)  # a run that succeeded leaves the place and its work alone
    assert engine.places["shared-box"]["work"] == ["t-2"]


def test_a_kept_place_is_left_running_and_said_so(prefect_harness):
    engine = InMemoryBackend(keep=True)
    _hold(engine, "box-1")
    assert not engine.places["box-1"]["ended"] and engine.kept_noted == ["box-1"]


def test_the_hook_ends_the_runs_places_and_cancels_its_work_on_a_reused_one_without_raising(caplog):
    engine = InMemoryBackend(reused="shared-box")
    engine.add("shared-box", None, ["t-1"])
    engine.add("box-1", RUN)
    engine.add("box-other-run", "another run")
    engine.cleanup(RUN, "Crashed", logging.getLogger("hook"))
    assert engine.places["box-1"]["ended"] and not engine.places["box-other-run"]["ended"]
    assert engine.places["shared-box"]["work"] == [] and not engine.places["shared-box"]["ended"]
    engine.fail_end = True
    engine.add("box-2", RUN)
    engine.cleanup(RUN, "Crashed", logging.getLogger("hook"))  # never raises: logged with what to do
    assert "could not end box box-2" in caplog.text


REMOTE_ENGINES = [engine for engine in ENGINES.values() if issubclass(engine, RemoteEngine)]


def test_every_aws_engine_of_the_registry_is_a_backend_of_the_one_lifecycle():
    assert {engine.name for engine in REMOTE_ENGINES} == {"emr", "emr-serverless"}
    for engine in REMOTE_ENGINES:
        assert engine.run is RemoteEngine.run and engine.cleanup is RemoteEngine.cleanup, engine.name


@pytest.mark.parametrize("engine_class", REMOTE_ENGINES, ids=lambda engine: engine.name)
def test_every_backends_watch_names_an_operation_and_states_of_its_service(aws, engine_class):
    """The wait is driven by the backend's data: its describe call must exist, and its states be the service's."""
    from tests.emr_fixtures import moto_clients

    engine = engine_class(ENGINE.validate_python({"kind": engine_class.name}), aws=moto_clients())
    engine.__dict__["config"] = engine.config_block.block_type(log_uri=f"s3://{aws.bucket}/logs/")
    watch = engine.watch("place-1", "run-1")
    model = watch.client.meta.service_model
    assert watch.operation in model.operation_names
    shape = model.operation_model(watch.operation).output_shape
    for part in watch.state_path.split("."):
        shape = shape.members[part]
    states = set(shape.enum)
    assert {*watch.running, *watch.succeeded, *watch.failed} <= states, engine_class.name
    assert not set(watch.succeeded) & set(watch.failed)
