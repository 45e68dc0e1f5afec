"""The flattened config a run logs as params, and the two hashes that identify what a run computes.

`config_hash` (tag `config_hash`) is the point: every value except the runtime keys
(`names.RUNTIME_KEYS`: where and how the job runs); re-launching a point finds its runs by it.
`train_hash` (tag `train_hash`) is what decides the training trajectory and the checkpoints kept;
a stage re-run without `run_id` finds the newest run trained that way by it. `calibration_hash`
(tag `llc.calibration_key`) is what one automatic SGLD calibration is shared by.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipeline.tracking.names import RUNTIME_KEYS

# Keys that decide the training trajectory (and so the checkpoints): the train hash.
TRAIN_KEYS = ("model", "dataset", "optimizer", "lr", "batch", "seed", "train", "device")


def as_dict(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists stay values."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def params(cfg: DictConfig) -> dict[str, Any]:
    """What a run logs as params: the resolved config, flattened."""
    return flatten(as_dict(cfg))


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def config_hash(cfg: DictConfig) -> str:
    """Hash of everything that decides the run's numbers (runtime keys excluded)."""
    d = as_dict(cfg)
    return _digest({k: v for k, v in d.items() if k not in RUNTIME_KEYS})


def train_hash(cfg: DictConfig) -> str:
    """Hash of what decides the training trajectory and the checkpoints kept."""
    d = as_dict(cfg)
    keep = {k: d.get(k) for k in TRAIN_KEYS}
    keep["llc"] = {"every": d["llc"]["every"], "online": d["llc"]["online"]}
    if "ensemble" in d:  # only ensemble runs carry it, so other runs keep their hashes
        keep["ensemble"] = d["ensemble"]
    return _digest(keep)


def calibration_hash(cfg: DictConfig) -> str:
    """Hash of what one automatic SGLD calibration holds for: the training config but its seed (the
    seeds of a point share it, so their λ are comparable) and the llc settings but their seed."""
    d = as_dict(cfg)
    keep = {k: d.get(k) for k in TRAIN_KEYS if k != "seed"}
    keep["llc"] = {k: v for k, v in d["llc"].items() if k != "seed"}
    return _digest(keep)
