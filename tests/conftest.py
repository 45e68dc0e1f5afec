"""Shared fixtures: the real config, shrunk to seconds, pointed at a temporary SQLite store; a
tracking server started (and stopped) by the test that asks for one."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import DictConfig, open_dict

from tests.helpers.config import TINY, compose_cfg
from tests.helpers.servers import tracking_servers


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
