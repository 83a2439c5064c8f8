"""A Spark standalone cluster on loopback: one master and two workers, each its own JVM, as on a real cluster.

pip's pyspark has no ``sbin`` start scripts; ``spark-class`` runs the daemons directly. Executors then run in the
workers' JVMs with their own Python workers, in the workers' own directories: what the job does not ship (its
package, its model) is not there, as on EMR.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.prefect_server import free_port

START_TIMEOUT_S = 120


@dataclass
class StandaloneCluster:
    master_url: str
    ui_url: str

    def state(self) -> dict:
        """The master's own view (its web UI's JSON): workers, running and completed applications."""
        with urllib.request.urlopen(f"{self.ui_url}/json/", timeout=5) as reply:
            return json.loads(reply.read())


def _wait_for_workers(cluster: StandaloneCluster, processes: list[subprocess.Popen], count: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        dead = [p.args for p in processes if p.poll() is not None]
        if dead:
            raise RuntimeError(f"a Spark daemon exited while starting: {dead}")
        try:
            alive = [w for w in cluster.state().get("workers", []) if w.get("state") == "ALIVE"]
        except OSError:
            alive = []
        if len(alive) >= count:
            return
        time.sleep(0.5)  # polling the master's UI for a condition, with a deadline
    raise TimeoutError(f"{count} workers did not register with {cluster.master_url} in {START_TIMEOUT_S} s")


@contextmanager
def standalone_cluster(
    spark_home: Path, environment: dict[str, str], workdir: Path, workers: int = 2, worker_memory: str = "1500m"
) -> Iterator[StandaloneCluster]:
    """Start a master and ``workers`` one-core workers with ``spark_home``'s ``spark-class``; stop them after."""
    spark_class = str(spark_home / "bin" / "spark-class")
    port, ui_port = free_port(), free_port()
    cluster = StandaloneCluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}")
    env = dict(environment, SPARK_LOCAL_IP="127.0.0.1", SPARK_WORKER_DIR=str(workdir / "work"))
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> None:
        log = (logs / f"{name}.log").open("w")
        processes.append(subprocess.Popen([spark_class, *args], env=env, stdout=log, stderr=subprocess.STDOUT))

    try:
        start(
            "master",
            "org.apache.spark.deploy.master.Master",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--webui-port",
            str(ui_port),
        )
        for index in range(workers):
            start(
                f"worker-{index}",
                "org.apache.spark.deploy.worker.Worker",
                "--host",
                "127.0.0.1",
                "--cores",
                "1",
                "--memory",
                worker_memory,
                "--webui-port",
                str(free_port()),
                cluster.master_url,
            )
        _wait_for_workers(cluster, processes, workers)
        yield cluster
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
