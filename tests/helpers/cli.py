"""The real command line in a subprocess, as a user types it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.config import ROOT


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A user's shell for the CLI: unbuffered output, no MLFLOW_TRACKING_URI of this machine's,
    plus `extra` (e.g. SLURM_CONF)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra or {})}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def command(args: list[str], prefix: list[str] = ()) -> list[str]:
    """`python launch.py args...` (under `prefix`, e.g. setpriv with fewer privileges)."""
    return [*prefix, sys.executable, str(ROOT / "launch.py"), *args]


def launch(
    args: list[str],
    cwd: Path,
    timeout: int = 300,
    env: dict[str, str] | None = None,
    prefix: list[str] = (),
) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess, as a user would (`env`: variables to add, e.g. SLURM_CONF;
    `prefix`: a command it runs under, e.g. setpriv with fewer privileges)."""
    return subprocess.run(
        command(args, prefix), cwd=cwd, env=environment(env), capture_output=True, text=True, timeout=timeout
    )


def start(args: list[str], cwd: Path, env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    """The real CLI in the background (`popen`: where its output goes, as subprocess.Popen takes it)."""
    return subprocess.Popen(command(args), cwd=cwd, env=environment(env), **popen)


def launch_together(
    arg_lists: list[list[str]], cwd: Path, timeout: int = 300
) -> list[subprocess.CompletedProcess]:
    """Several CLIs started at the same moment, each to its end; their results in order."""
    procs = [start(a, cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for a in arg_lists]
    outputs = [p.communicate(timeout=timeout) for p in procs]
    return [subprocess.CompletedProcess(p.args, p.returncode, *out) for p, out in zip(procs, outputs)]


def one_line(res: subprocess.CompletedProcess, fragment: str) -> str:
    """The exit status is 2 and stderr is exactly one line, `error: ...`, holding `fragment`."""
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2, (res.returncode, res.stderr[-3000:])
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    return lines[0]
