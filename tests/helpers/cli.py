"""The real command line in a subprocess, as a user types it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.config import ROOT


def launch(
    args: list[str],
    cwd: Path,
    timeout: int = 300,
    env: dict[str, str] | None = None,
    prefix: list[str] = (),
) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess, as a user would (`env`: variables to add, e.g. SLURM_CONF;
    `prefix`: a command it runs under, e.g. setpriv with fewer privileges)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [*prefix, sys.executable, str(ROOT / "launch.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
