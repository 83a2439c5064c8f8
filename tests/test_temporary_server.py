"""The command line's own temporary Prefect server (flows/temporary_server.py): started only where Prefect would
start one, healthy before the flow runs, gone when stopped. The whole command runs on it in test_cli_errors.py."""

from __future__ import annotations

import json
import urllib.request

import pytest
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    get_current_settings,
    temporary_settings,
)

from flows.fruit_features_cli import _run_flow
from flows.temporary_server import TemporaryServer, start_if_needed


def test_a_configured_api_is_used_as_it_is():
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        assert start_if_needed() is None


@pytest.mark.slow
def test_the_server_answers_before_the_flow_runs_and_is_gone_after_stop():
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        server = start_if_needed()
    assert server is not None
    try:
        server.wait_until_healthy(120)
        with urllib.request.urlopen(server.api_url + "/admin/version", timeout=10) as answer:
            assert json.loads(answer.read())  # a Prefect API, not just a port that answers
    finally:
        server.stop()
    assert server.process.poll() is not None


class _HealthyServer(TemporaryServer):
    def wait_until_healthy(self, timeout_s: float) -> None:
        pass


def test_a_run_on_the_temporary_server_sends_no_heartbeats():
    """The server ends with the command, so nobody is left to tell a crashed run by its missing heartbeats; the
    heartbeat thread's 1 s sleeps only delayed the flow's end."""

    def flow(return_state: bool):
        return PREFECT_API_URL.value(), get_current_settings().flows.heartbeat_frequency

    server = _HealthyServer(process=None, api_url="http://127.0.0.1:9/api")
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 180}):  # Prefect's default (the suite's: off)
        assert _run_flow(flow, {}, server) == ("http://127.0.0.1:9/api", None)
