"""A run's recorded files read back by a later stage, with one line for a file that is unreadable.

A corrupted checkpoint or config.yaml (a disk error, a copy cut short, a file overwritten by hand)
then ends the re-run with a UserError naming the file and the fix; `run.execute` puts the run back
to the status it had, so nothing it recorded is lost. Tables, JSON and text read through
`Tracker.load_*` get the same treatment there.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from pipeline.errors import UserError
from pipeline.tracking import Tracker, unreadable_artifact

# What every train (or ensemble) stage writes into config.yaml and the later stages read.
CONFIG_KEYS = ("model", "dataset", "llc")


def trained_config(tracker: Tracker, run_id: str) -> DictConfig:
    """The config the run was trained with (artifact config.yaml; empty if the run has none)."""
    text = tracker.load_text(run_id, "config.yaml")
    if text is None:
        return OmegaConf.create({})
    try:
        cfg = OmegaConf.create(text)
    except Exception as e:
        raise UserError(unreadable_artifact(run_id, "config.yaml", e)) from None
    missing = [k for k in CONFIG_KEYS if not isinstance(cfg, DictConfig) or k not in cfg]
    if missing:
        why = ValueError(f"not a training config, no {', '.join(missing)}")
        raise UserError(unreadable_artifact(run_id, "config.yaml", why))
    return cfg


def check_checkpoints(run_id: str, files: list[Path]) -> None:
    """Every checkpoint file opens as a torch archive, checked before the model and data are built
    (memory-mapped: the tensors are not read, so this costs little even for large models)."""
    for f in files:
        if not zipfile.is_zipfile(f):  # torch.save writes a zip archive; mmap's own error misleads
            why = ValueError("not a torch.save archive")
            raise UserError(unreadable_artifact(run_id, f"checkpoints/{f.name}", why))
        load_checkpoint(run_id, f, "cpu", mmap=True)


def load_checkpoint(run_id: str, path: Path, device: str, mmap: bool = False) -> dict:
    """A kept state dict (artifact checkpoints/<name>)."""
    try:
        return torch.load(path, map_location=device, mmap=mmap)
    except Exception as e:
        raise UserError(unreadable_artifact(run_id, f"checkpoints/{path.name}", e)) from None
