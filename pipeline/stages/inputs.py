"""A run's recorded inputs read back by a later stage: its config and its checkpoints, with one line
for a file that is unreadable (a disk error, a copy cut short, a file overwritten by hand). The re-run
then ends with a UserError naming the file and the fix; the job puts the run back to the status it
had, so nothing it recorded is lost."""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from pipeline.errors import UserError
from pipeline.tracking import Tracker, names, unreadable_artifact

# What the job writes into a training run's config.yaml and the later stages read back.
CONFIG_KEYS = ("model", "dataset", "llc")


def trained_config(tracker: Tracker, run_id: str) -> DictConfig:
    """The config the run was trained with (artifact config.yaml; empty if the run has none)."""
    text = tracker.load_text(run_id, names.CONFIG)
    if text is None:
        return OmegaConf.create({})
    try:
        cfg = OmegaConf.create(text)
    except Exception as e:
        raise UserError(unreadable_artifact(run_id, names.CONFIG, e)) from None
    missing = [k for k in CONFIG_KEYS if not isinstance(cfg, DictConfig) or k not in cfg]
    if missing:
        why = ValueError(f"not a training config, no {', '.join(missing)}")
        raise UserError(unreadable_artifact(run_id, names.CONFIG, why))
    return cfg


def checkpoints(tracker: Tracker, run_id: str, dst: Path) -> list[tuple[int, Path]]:
    """The run's checkpoints downloaded into `dst`, as (step, file), by step."""
    folder = tracker.download_dir(run_id, names.CHECKPOINTS, dst)
    return [(names.checkpoint_step(f.name), f) for f in names.checkpoint_files(folder)] if folder else []


def kept_checkpoints(tracker: Tracker, run_id: str) -> dict[int, str]:
    """The artifact paths of the run's checkpoints by step, without downloading them."""
    paths = tracker.artifact_paths(run_id, names.CHECKPOINTS)
    return {step: p for p in paths if (step := names.checkpoint_step(p)) is not None}


def check_checkpoints(run_id: str, files: list[Path]) -> None:
    """Every checkpoint file opens as a torch archive, checked before the model and data are built
    (memory-mapped: the tensors are not read, so this costs little even for large models)."""
    for f in files:
        if not zipfile.is_zipfile(f):  # torch.save writes a zip archive; mmap's own error misleads
            why = ValueError("not a torch.save archive")
            raise UserError(unreadable_artifact(run_id, f"{names.CHECKPOINTS}/{f.name}", why))
        load_checkpoint(run_id, f, "cpu", mmap=True)


def load_checkpoint(run_id: str, path: Path, device: str, mmap: bool = False) -> dict:
    """A kept state dict (artifact checkpoints/<name>)."""
    try:
        return torch.load(path, map_location=device, mmap=mmap)
    except Exception as e:
        raise UserError(unreadable_artifact(run_id, f"{names.CHECKPOINTS}/{path.name}", e)) from None
