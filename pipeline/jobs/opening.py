"""Opening a job's runs: a new run, the point's interrupted run taken over, or an existing run
reopened for a stage re-run, by the re-launch rules (`pipeline.jobs.relaunch`).

A job that trains looks up its point (tag `config_hash`) under the store's point lock and creates or
claims a run there; on a server store (no lock across hosts) the newer of two runs created at once
for a point deletes itself and stands back. A job that only re-runs stages reopens `run_id`, or the
newest run trained with the same training config (tag `train_hash`).
"""

from __future__ import annotations

import platform
import subprocess
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

from omegaconf import DictConfig

from pipeline.config import checks, hashes
from pipeline.config.members import is_batched, seeds_of, with_seed
from pipeline.errors import UserError
from pipeline.jobs import placement, relaunch
from pipeline.stages.context import Member
from pipeline.tracking import Tracker, names

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("torch", "devinterp", "mlflow", "hydra-core", "numpy", "scikit-learn", "transformers")


@dataclass
class JobInfo:
    """What Hydra knows about the job: sweep id, run name, and whether it is one of many."""

    sweep: str
    name: str
    multirun: bool = False


def provenance() -> dict[str, str]:
    """Git commit and package versions, as tags."""
    tags = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            tags[f"version.{pkg}"] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    try:
        git = ["git", "-C", str(ROOT)]
        tags["git_commit"] = subprocess.run(
            [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True)
        tags["git_dirty"] = str(bool(dirty.stdout.strip()))
    except (OSError, subprocess.CalledProcessError):
        tags["git_commit"] = "unknown"
    return tags


def open_members(cfg: DictConfig, tracker: Tracker, job: JobInfo) -> list[Member]:
    """The job's runs: one, or one per seed of a batched job (`seeds=...`, each the run a one-by-one
    job with that seed has: its config, hashes and run name `<name>,seed=<s>`)."""
    origin = provenance() if checks.first_stage(cfg.stages) in cfg.stages else {}  # one for the job
    if not is_batched(cfg):
        return [open_run(cfg, tracker, job, int(cfg.seed), origin)]
    members = []
    for s, member_cfg in member_configs(cfg):
        name = f"seed={s}" if job.name == "default" else f"{job.name},seed={s}"
        m = open_run(member_cfg, tracker, replace(job, name=name), s, origin)
        m.note = m.note and f"seed {s}: {m.note}"
        members.append(m)
    return members


def member_configs(cfg: DictConfig) -> list[tuple[int, DictConfig]]:
    """(seed, config) of every run the job works on: its own, or one per seed of a batched job."""
    if not is_batched(cfg):
        return [(int(cfg.seed), cfg)]
    return [(s, with_seed(cfg, s)) for s in seeds_of(cfg)]


def _threads() -> int:
    """Torch's threads, for the run's placement tags (a job that trains has torch imported already)."""
    import torch

    return torch.get_num_threads()


def may_skip(cfg: DictConfig) -> bool:
    """Whether the job's points may be finished runs to skip: a job that trains, resume on (a stage
    re-run always runs)."""
    return bool(cfg.resume.enabled) and "train" in cfg.stages


def finished(cfg: DictConfig, tracker: Tracker) -> list[Member] | None:
    """The job's members when every one is a finished point (`relaunch.decide` says skip), else
    None: the job then opens its runs with `open_members`, under the point lock."""
    if not may_skip(cfg):
        return None
    members = []
    for s, m in member_configs(cfg):
        runs = tracker.point_runs(hashes.config_hash(m))
        d = relaunch.decide(runs, m.stages, float(m.resume.stale_after_s))
        if d.action != "skip":
            return None
        note = f"seed {s}: {d.note}" if is_batched(cfg) else d.note
        members.append(Member(s, m, d.run.run_id, "skip", tuple(d.done), note))
    return members


def run_tags(cfg: DictConfig, sweep: str | None, multirun: bool, origin: dict[str, str]) -> dict[str, str]:
    """The tags a new run starts with: its sweep, the config's hashes, where it runs, `origin` (the
    job's `provenance()`)."""
    return {
        names.SWEEP: sweep,
        names.CONFIG_HASH: hashes.config_hash(cfg),
        names.TRAIN_HASH: hashes.train_hash(cfg),
        names.MULTIRUN: str(multirun),
        **placement.tags(_threads()),
        **origin,
    }


def open_run(cfg: DictConfig, tracker: Tracker, job: JobInfo, seed: int, origin: dict[str, str]) -> Member:
    """A new run, or the point's interrupted run, when training (`relaunch.decide`); else the given
    run_id or the newest run of the same training, reopened. `origin`: the job's `provenance()`."""
    first = checks.first_stage(cfg.stages)
    if first in cfg.stages:
        tags = run_tags(cfg, job.sweep, job.multirun, origin)
        if first != "train" or not cfg.resume.enabled:
            return Member(seed, cfg, tracker.start_run(job.name, {**tags, **relaunch.owner_tags()}))
        return _open_point(cfg, tracker, job, tags, seed)
    if cfg.run_id:
        run = tracker.get_run(str(cfg.run_id))
    else:
        found = tracker.find_runs({names.TRAIN_HASH: hashes.train_hash(cfg), names.stage_tag(first): "done"})
        if not found:
            raise UserError(
                f"no trained run with this training config in experiment "
                f"'{cfg.tracking.experiment}': pass run_id=<id> or include train in stages"
            )
        run = found[0]
    tracker.reopen(run.run_id)
    return Member(seed, cfg, run.run_id, "rerun", previous_status=run.status)


def _open_point(cfg: DictConfig, tracker: Tracker, job: JobInfo, tags: dict, seed: int) -> Member:
    """Look up the point's runs and create or claim one, under the store's point lock."""
    point = tags[names.CONFIG_HASH]
    owner = relaunch.owner_tags()
    with tracker.point_lock():
        d = relaunch.decide(tracker.point_runs(point), cfg.stages, float(cfg.resume.stale_after_s))
        if d.action in ("skip", "busy"):
            return Member(seed, cfg, d.run.run_id, d.action, tuple(d.done), d.note)
        if d.action == "claim":
            run = d.run
            tracker.claim(run.run_id, {**owner, **placement.tags(_threads())})
            previous = "FINISHED" if run.status == "FINISHED" else None
            return Member(seed, cfg, run.run_id, "claim", tuple(d.done), d.note, previous)
        run_id = tracker.start_run(job.name, {**tags, **owner})
        tracker.supersede(d.superseded, run_id)
    if not tracker.uri.startswith("sqlite:"):  # no lock across hosts: the newer of two duplicates yields
        older = tracker.newest_duplicate(run_id, point)
        if older is not None:
            tracker.delete_run(run_id)
            return Member(
                seed, cfg, older, "busy", note=f"skipped: another job created run {older} for this point"
            )
    return Member(seed, cfg, run_id, note=d.note)
