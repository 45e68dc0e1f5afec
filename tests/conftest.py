"""Shared fixtures: the real config, shrunk to seconds, pointed at a temporary SQLite store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parent.parent
CONF = str(ROOT / "conf")

# A few seconds per run: 90 SGD steps, λ every 30 steps with 20 SGLD draws.
TINY = [
    "train.steps=90",
    "llc.every=30",
    "llc.num_draws=20",
    "llc.last=2",
    "progress=false",
    "threads=1",
]


def compose_cfg(overrides: list[str] = ()) -> DictConfig:
    """The real config as launch.py composes it (without Hydra's runtime section)."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def tiny_cfg(store: str):
    """Factory: the tiny config with extra overrides, tracking into the temporary store."""

    def make(*overrides: str) -> DictConfig:
        cfg = compose_cfg([*TINY, f"tracking.uri={store}", *overrides])
        with open_dict(cfg):
            cfg.tracking.experiment = "test"
        return cfg

    return make


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
