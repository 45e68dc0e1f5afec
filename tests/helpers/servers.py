"""Servers the tests start and stop by PID: `mlflow server` on a free local port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Stop a process started in its own session, and its children, by the id we started."""
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_until_up(proc: subprocess.Popen, url: str, log: Path, limit_s: float = 180) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"mlflow server did not come up on {url} (exit {proc.poll()}):\n{log.read_text()[-2000:]}"
                )
            time.sleep(0.5)


def tracking_servers(tmp_path: Path):
    """A factory (yielded): `mlflow server` on 127.0.0.1 (a free port unless given) on a backend store,
    serving artifacts from a folder of its own machine (as on a cluster's head node); returns
    its URL and process. Every server it started is stopped at the end."""
    servers: list[subprocess.Popen] = []

    def start(backend: str, port: int | None = None) -> tuple[str, subprocess.Popen]:
        port, log = port or free_port(), tmp_path / f"server-{len(servers)}.log"
        command = [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            backend,
            "--serve-artifacts",
            "--artifacts-destination",
            (tmp_path / "mlartifacts").as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
        ]
        with log.open("w") as out:  # the server keeps its own copy of the file
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        servers.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_until_up(proc, f"{url}/health", log)
        return url, proc

    yield start
    for proc in servers:
        stop(proc)
