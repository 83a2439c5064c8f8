"""The command line's temporary Prefect server, started before the flow's own imports so that the two overlap.

With no ``PREFECT_API_URL``, Prefect starts a temporary server on the first API call: it imports the whole server
package in this process (~3 s here) only to launch it, then waits for it (~4 s) with nothing else to do. Started
here first, the server boots on another core while this process imports the flow, the tasks and boto3, and the
server package is never imported here. It is the command Prefect runs (``SubprocessASGIServer``, Prefect 3.9),
and it is stopped when the command ends. A configured API (a ``prefect server``, Prefect Cloud, a test harness)
is used as it is.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TemporaryServer", "start_if_needed"]


@dataclass
class TemporaryServer:
    process: subprocess.Popen
    api_url: str

    def wait_until_healthy(self, timeout_s: float) -> None:
        """Until ``/health`` answers (boto3-style waiters do the same for AWS resources); raises on a dead server."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError("the temporary Prefect server exited with code %s" % self.process.returncode)
            try:
                with urllib.request.urlopen(self.api_url + "/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the temporary Prefect server did not start within %.0f s" % timeout_s)
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_if_needed() -> TemporaryServer | None:
    """A temporary server starting in the background, or None where an API is configured (or ephemeral mode off)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED, get_current_settings

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return None
    import prefect

    port = _free_port()
    environment = {
        # offline, the server would log an ERROR for every telemetry send it cannot make
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        **os.environ,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
        **get_current_settings().to_environment_variables(exclude_unset=True),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(Path(prefect.__file__).parent.parent),
            "--factory",
            "prefect.server.api.server:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "error",
            "--lifespan",
            "on",
        ],
        env=environment,
        # Its own process group: a terminal's SIGHUP or Ctrl-C reaches the flow, which must still report its end here.
        process_group=0,
    )
    server = TemporaryServer(process=process, api_url="http://127.0.0.1:%d/api" % port)
    atexit.register(server.stop)  # after the flow's log and event workers have flushed (atexit runs last-in first)
    return server
