"""The real config, composed as launch.py composes it, and the sizes that shrink a job to seconds."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import pipeline.config  # noqa: F401  (the config's schema, registered with Hydra)

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"

# A few seconds per run: 90 SGD steps, λ every 30 steps with 20 SGLD draws.
TINY = [
    "llc=paper",  # Table 3: one short chain (the calibrated default has its own tests)
    "train.steps=90",
    "llc.every=30",
    "llc.num_draws=20",
    "llc.last=2",
    "progress=false",
    "threads=1",
    "fit.figures=false",  # drawing the run's figures costs every job: tested where they are the point
]


def compose_cfg(overrides: list[str] = (), hydra: bool = False) -> DictConfig:
    """The real config as launch.py composes it (with `hydra`, Hydra's section too: sweep axes,
    run names)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra)
