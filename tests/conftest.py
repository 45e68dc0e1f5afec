"""Shared fixtures: the real config, shrunk to seconds, pointed at a temporary SQLite store; a
tracking server started (and stopped) by the test that asks for one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, open_dict

from tests.helpers.config import TINY, compose_cfg
from tests.helpers.servers import tracking_servers

if os.environ.get("PYTEST_XDIST_WORKER"):
    # The workers of `make test` share the cores: torch threads split between them, here and in the
    # jobs a test starts (AB_PARALLEL_JOBS, as the parallel launcher tells its jobs). Two workers of
    # two spinning threads each on two cores stalled a 50 s job for over 7 minutes.
    from pipeline.jobs.placement import cores

    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, cores() // _workers))
    os.environ.setdefault("AB_PARALLEL_JOBS", str(_workers))

# Files whose tests take minutes, longest first: they start first, so that `--dist loadfile`'s
# workers end together instead of one waiting on the last long file.
LONG_FILES = (
    "test_bench_agreement.py",
    "test_experiments.py",
    "test_llc_known.py",
    "test_concurrency.py",
    "test_own_code.py",
    "test_slurm.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))


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


@pytest.fixture
def tracking_server(tmp_path: Path):
    """Factory: `mlflow server` on 127.0.0.1 on a backend store (see `helpers.servers`)."""
    yield from tracking_servers(tmp_path)
