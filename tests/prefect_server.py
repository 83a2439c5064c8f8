"""A real Prefect server, work pool, deployments and process worker for the deployment tests (module-scoped).

``prefect server start`` on a free port with its own PREFECT_HOME (SQLite), readiness by polling /api/health,
``prefect work-pool create``, ``prefect --no-prompt deploy --all`` from the repo root, ``prefect worker start``:
the README's path, run as subprocesses. Each subprocess gets its own session so that teardown can stop it and
everything it started (flow-run processes, spark-submit) by its process group id.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import NO_HEALTH_PARAMETER, TEST_ALPHA

REPO = Path(__file__).resolve().parent.parent
PREFECT = str(REPO / ".venv" / "bin" / "prefect")
POOL = "fruitflow"
# A small run of the deployments: the tests' model width, few components.
# No pca_components: the job fits what 24 images allow and says so in a note (worded for the UI in a UI run).
NEW_BATCH = {"weights": "random", "alpha": TEST_ALPHA, "batch_size": 8, **NO_HEALTH_PARAMETER}
DEPLOYED_RUN_TIMEOUT_S = 300


@dataclass
class PrefectServer:
    """A running server: its API URL, the environment its CLI calls need, and where its logs go."""

    api_url: str
    env: dict[str, str]
    logs: Path

    def cli(self, *args: str, timeout: float = 120) -> str:
        """Run ``prefect --no-prompt ARGS`` from the repo root against this server; its output, or a failure."""
        done = subprocess.run(
            [PREFECT, "--no-prompt", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def log_tail(self, name: str, lines: int = 60) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_process(
    name: str, args: list[str], server: PrefectServer, program: list[str] | None = None
) -> subprocess.Popen:
    """``prefect <args>`` (or ``program + args``) against the server, in a session of its own, logged to ``name``."""
    log = (server.logs / f"{name}.log").open("w")
    return subprocess.Popen(
        [*(program or [PREFECT]), *args],
        cwd=REPO,
        env=server.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def deploy_all(server: PrefectServer, *args: str) -> str:
    """``prefect --no-prompt deploy --all [ARGS]`` from the repo root; its whole output (stdout and stderr)."""
    done = subprocess.run(
        [PREFECT, "--no-prompt", "deploy", "--all", *args],
        cwd=REPO,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@contextmanager
def bare_server(home: Path, **env: str) -> Iterator[PrefectServer]:
    """A Prefect server of its own (no pool, no deployments), ``env`` added to its CLI environment; stopped on exit.

    ``PWD`` is the repo root: what `{{ $PWD }}` in prefect.yaml reads, as if deployed from a shell there.
    """
    port = free_port()
    server = server_environment(home, port)
    server.env.update(PWD=str(REPO), **env)
    process = start_process("server", ["server", "start", "--host", "127.0.0.1", "--port", str(port)], server)
    try:
        wait_healthy(server, process)
        yield server
    finally:
        stop_process(process)


@contextmanager
def serving(server: PrefectServer) -> Iterator[subprocess.Popen]:
    """``python -m flows.serve`` against the server, logged to serve.log; stopped (SIGTERM) on exit. It looks for runs
    to start every second (Prefect's default: every 10 s), as the tests' worker does."""
    polling = PrefectServer(server.api_url, {**server.env, "PREFECT_RUNNER_POLL_FREQUENCY": "1"}, server.logs)
    process = start_process("serve", ["-m", "flows.serve"], polling, program=[sys.executable])
    try:
        yield process
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen, grace_seconds: float = 20) -> None:
    """SIGTERM the process group this fixture started, SIGKILL what is left after the grace period."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=grace_seconds)


def wait_healthy(server: PrefectServer, process: subprocess.Popen, timeout_s: float = 120) -> None:
    """Poll /api/health until it answers (readiness), the server dies, or the time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"prefect server exited ({process.returncode}):\n{server.log_tail('server')}")
        try:
            with urllib.request.urlopen(f"{server.api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"prefect server not healthy after {timeout_s}s:\n{server.log_tail('server')}")


def server_environment(home: Path, port: int) -> PrefectServer:
    """A server's API URL and the environment of every CLI call against it (its own PREFECT_HOME, no telemetry)."""
    api_url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_ENABLED="false",
    )
    return PrefectServer(api_url=api_url, env=env, logs=home)


# How often a condition on the server is asked again: a request to a local server costs milliseconds, and a 1 s step
# left ~0.5 s idle at the end of each wait.
POLL_S = 0.2


def poll(predicate, timeout_s: float, what: str, server: PrefectServer, log: str = "serve"):
    """``predicate()``'s first true value, asked every POLL_S; past ``timeout_s``, fail with ``what`` and the tail of
    the server's ``log`` (serve.log, server.log, worker.log)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(POLL_S)
    pytest.fail(f"{what} after {timeout_s}s; {log} log:\n{server.log_tail(log)}")


def wait_final(client, server: PrefectServer, flow_run_id, timeout_s: float):
    """Poll a flow run's state until it is final, with a deadline; fail with the worker's log tail."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = client.read_flow_run(flow_run_id)
        if run.state is not None and run.state.is_final():
            return run
        time.sleep(POLL_S)
    pytest.fail(f"flow run {flow_run_id} not finished after {timeout_s}s; worker log:\n{server.log_tail('worker')}")


@contextmanager
def running_prefect(home: Path) -> Iterator[PrefectServer]:
    """Server + work pool + ``deploy --all`` + worker; all stopped on exit (the worker and its flow runs first)."""
    with bare_server(home, PREFECT_WORKER_QUERY_SECONDS="1") as server:
        server.cli("work-pool", "create", POOL, "--type", "process")
        server.cli("deploy", "--all")
        worker = start_process("worker", ["worker", "start", "--pool", POOL, "--limit", "2"], server)
        try:
            yield server
        finally:
            stop_process(worker)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory) -> Iterator[PrefectServer]:
    """One real server + deployments + process worker for every test module that needs them (started once)."""
    with running_prefect(tmp_path_factory.mktemp("prefect-home")) as running:
        yield running


@pytest.fixture(scope="session")
def spare_server(tmp_path_factory) -> Iterator[PrefectServer]:
    """One more server for the tests that fill a server themselves (a deploy, serve, last month's deployments), its
    scheduler and workers polling every second. Started once (a server's start is most of such a test's setup): take
    it through ``emptied``."""
    home = tmp_path_factory.mktemp("spare-prefect-home")
    with bare_server(
        home, PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="1", PREFECT_WORKER_QUERY_SECONDS="1"
    ) as server:
        yield server


def emptied(server: PrefectServer) -> PrefectServer:
    """``server`` as a fresh one: no deployment, flow run or work pool that an earlier test left."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: server.api_url}), get_client(sync_client=True) as client:
        for deployment in client.read_deployments():
            client.delete_deployment(deployment.id)
        for run in client.read_flow_runs():
            client.delete_flow_run(run.id)
        for pool in client.read_work_pools():
            client.delete_work_pool(pool.name)
        assert not (client.read_deployments() or client.read_flow_runs() or client.read_work_pools())
    return server


@pytest.fixture(scope="session")
def deployed_run(prefect_server, fruit_images, tmp_path_factory):
    """One finished run of fruit-features/local started from the API (as the UI and `prefect deployment run` start it)
    on the session's 25 images, one of them broken, into ``.../2026-w49``: (its flow run, its output). Made once for
    the modules that read what a deployed run shows (tests/test_deployments.py, tests/test_run_in_the_ui.py)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    output = str(tmp_path_factory.mktemp("deployed") / "2026-w49")
    with temporary_settings({PREFECT_API_URL: prefect_server.api_url}), get_client(sync_client=True) as client:
        flow_run_id = start_deployment_run(
            client, "fruit-features/local", images=str(fruit_images), output=output, **NEW_BATCH
        )
        return wait_final(client, prefect_server, flow_run_id, DEPLOYED_RUN_TIMEOUT_S), output


def start_deployment_run(client, deployment: str, **parameters: object):
    """A run of ``deployment`` (``flow/deployment``) with these parameters, as `prefect deployment run` starts it.

    fruit-features' parameters may be given flat (``images=...``, ``cluster_block=...``): they are sent in the models'
    shape, over the deployment's engine, as the UI's form sends them (Prefect refuses names its signature lacks).
    """
    from flows.parameters import nested

    found = client.read_deployment_by_name(deployment)
    if found.entrypoint.endswith(":fruit_features"):
        parameters = nested({"engine": found.parameters.get("engine"), **parameters})
    return client.create_flow_run_from_deployment(found.id, parameters=parameters).id
