"""Config checks that run before any expensive work, the flattened config, and its hashes."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipeline import schedule
from pipeline.errors import UserError

# Keys that say where and how a job runs, not what it computes: left out of the config hash.
RUNTIME_KEYS = ("stages", "run_id", "tracking", "sweep", "threads", "progress", "seeds", "resume")
# Keys that decide the training trajectory (and so the checkpoints): the train hash.
TRAIN_KEYS = ("model", "dataset", "optimizer", "lr", "batch", "seed", "train", "device")
STAGES = ("train", "llc", "fit", "calibrate", "ensemble", "posterior")
# Stages that create a run (the others re-open one); each family reads only its own artifacts.
FIRST_STAGES = {"train": ("train", "llc", "fit", "calibrate"), "ensemble": ("ensemble", "posterior")}


def first_stage(stages) -> str:
    """The stage whose run the given stages work on: train, or ensemble for the posterior family."""
    return "ensemble" if any(s in FIRST_STAGES["ensemble"] for s in stages) else "train"


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


# The type of each value a user sets (None: the key may be null), with an example for the fix.
TYPES: dict[str, tuple[type, bool, str]] = {
    "lr": (float, False, "1e-2"),
    "batch": (int, False, "64"),
    "seed": (int, False, "0"),
    "threads": (int, True, "1"),
    "progress": (bool, True, "false"),
    "device": (str, False, "cpu"),
    "train.epochs": (int, False, "250"),
    "train.steps": (int, True, "1000"),
    "train.eval_every": (int, False, "100"),
    "train.record_every_step_up_to": (int, False, "20000"),
    "train.record_log_points": (int, False, "500"),
    "train.keep_checkpoints": (bool, False, "true"),
    "llc.every": (int, False, "100"),
    "llc.lr": (float, False, "1e-5"),
    "llc.localization": (float, False, "100"),
    "llc.nbeta": (float, True, "10"),
    "llc.num_chains": (int, False, "1"),
    "llc.num_draws": (int, False, "400"),
    "llc.num_burnin_steps": (int, False, "0"),
    "llc.num_steps_bw_draws": (int, False, "1"),
    "llc.online": (bool, False, "false"),
    "llc.last": (int, False, "10"),
    "llc.seed": (int, False, "0"),
    "llc.max_stacked": (int, False, "20000000"),
    "llc.method": (str, False, "batched"),
    "fit.points": (str, False, "llc"),
    "fit.start_step": (int, True, "1000"),
    "fit.end_step": (int, True, "10000"),
    "fit.crossover": (bool, False, "true"),
    "fit.shift": (bool, False, "false"),
    "fit.bootstrap.samples": (int, False, "1000"),
    "fit.bootstrap.level": (float, False, "0.95"),
    "fit.bootstrap.block": (int, True, "4"),
    "tracking.max_wait_s": (float, False, "300"),
}
_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a name"}


def _has_type(value: Any, kind: type) -> bool:
    if isinstance(value, bool) or kind is bool:  # True is an int to Python, not to a user
        return isinstance(value, bool) and kind is bool
    if kind is int:  # 1e4 is read as a float: an integer still
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def check_types(cfg: DictConfig) -> None:
    """Every value in `TYPES` has its type (`lr=abc`, `batch=1.5`, `llc.online=yes` are refused)."""
    absent = object()
    for key, (kind, nullable, example) in TYPES.items():
        value = OmegaConf.select(cfg, key, default=absent)
        if value is absent or (value is None and nullable):
            continue
        if not _has_type(value, kind):
            shown = "null" if value is None else str(value).lower() if isinstance(value, bool) else value
            null = " or null" if nullable else ""
            raise UserError(f"{key}={shown} is not {_TYPE_NAMES[kind]}{null}: e.g. {key}={example}")


def check(cfg: DictConfig) -> None:
    """Checks that need no data: raise UserError with a one-line fix."""
    if isinstance(cfg.stages, str) or not OmegaConf.is_list(cfg.stages):
        raise UserError(
            f"stages={cfg.stages} is not a list: write stages=[{cfg.stages}], e.g. stages=[train,llc,fit]"
        )
    check_types(cfg)
    stages = list(cfg.stages)
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise UserError(f"stages={stages}: choose from {list(STAGES)}, e.g. stages=[train,llc,fit]")
    if [s for s in STAGES if s in stages] != stages:
        order = " (or ".join(", ".join(f) for f in FIRST_STAGES.values()) + ")"
        raise UserError(f"stages={stages} out of order: they run as {order}")
    family = FIRST_STAGES[first_stage(stages)]
    if any(s not in family for s in stages):
        raise UserError(f"stages={stages} mixes two pipelines: use [train,llc,fit] or [ensemble,posterior]")
    if family[0] == "ensemble":
        check_posterior(cfg, stages)
    if not float(cfg.lr) > 0:
        raise UserError(f"lr={cfg.lr} must be > 0, e.g. lr=1e-2")
    if int(cfg.batch) < 1:
        raise UserError(f"batch={cfg.batch} must be a positive integer, e.g. batch=64")
    if int(cfg.llc.every) < 1:  # before train.eval_every, which defaults to it
        raise UserError(f"llc.every={cfg.llc.every} must be ≥ 1, e.g. llc.every=100")
    t = cfg.train
    if t.steps is None and not int(t.epochs) >= 1:
        raise UserError(f"train.epochs={t.epochs} must be ≥ 1 (or set train.steps)")
    if t.steps is not None and int(t.steps) < 1:
        raise UserError(f"train.steps={t.steps} must be ≥ 1")
    if t.get("phases") is not None:
        schedule.check(t.phases)
    if int(t.eval_every) < 1:
        raise UserError(f"train.eval_every={t.eval_every} must be ≥ 1")
    llc = cfg.llc
    for key in ("lr", "localization"):
        if not float(llc[key]) >= 0 or (key == "lr" and float(llc.lr) == 0):
            raise UserError(f"llc.{key}={llc[key]} must be {'> 0' if key == 'lr' else '≥ 0'}")
    if llc.nbeta is not None and not float(llc.nbeta) > 0:
        raise UserError(f"llc.nbeta={llc.nbeta} must be > 0, or null for batch/log(batch)")
    for key in ("num_chains", "num_draws", "num_steps_bw_draws", "last"):
        if int(llc[key]) < 1:
            raise UserError(f"llc.{key}={llc[key]} must be ≥ 1")
    if not llc.online and not cfg.train.keep_checkpoints and "llc" in stages:
        raise UserError(
            "train.keep_checkpoints=false leaves the llc stage nothing to read: "
            "set llc.online=true to estimate during training"
        )
    if "calibrate" in stages:
        check_calibrate(cfg.calibrate)
    boot = cfg.fit.bootstrap
    if int(boot.samples) < 100 or not 0 < float(boot.level) < 1:
        raise UserError("fit.bootstrap needs samples ≥ 100 and 0 < level < 1, e.g. samples=1000 level=0.95")
    if boot.block is not None and int(boot.block) < 1:
        raise UserError(f"fit.bootstrap.block={boot.block} must be ≥ 1, or null for round(n^(1/3))")
    if cfg.fit.points not in ("llc", "all"):
        raise UserError(f"fit.points={cfg.fit.points}: choose llc or all")
    r = cfg.get("resume")
    if r is not None and not (float(r.every_s) >= 0 and float(r.stale_after_s) > 120):
        raise UserError(
            f"resume.every_s={r.every_s} must be ≥ 0 and resume.stale_after_s={r.stale_after_s} "
            "> 120 (two heartbeats), e.g. resume.every_s=120 resume.stale_after_s=900"
        )
    if cfg.llc.get("method", "batched") not in ("batched", "serial"):  # before training, not after
        raise UserError(f"llc.method={cfg.llc.method}: choose batched or serial")
    if cfg.threads is not None and int(cfg.threads) < 1:
        raise UserError(f"threads={cfg.threads} must be ≥ 1, or null for the cores available")
    if not str(cfg.tracking.experiment or "").strip():
        raise UserError(
            "tracking.experiment is empty: name the MLflow experiment, e.g. "
            "tracking.experiment=almost-bayesian"
        )
    if int(cfg.llc.num_burnin_steps) < 0:
        raise UserError(f"llc.num_burnin_steps={cfg.llc.num_burnin_steps} must be ≥ 0")
    from pipeline.build import check_optimizer  # instantiates: imported when checked

    check_optimizer(cfg)
    if str(cfg.device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"device={cfg.device} but torch sees no CUDA device: use device=cpu")


def check_calibrate(c: DictConfig) -> None:
    """The calibration grid: non-empty lists of step sizes > 0, localizations ≥ 0, nβ factors > 0."""
    for key in ("lr", "localization", "nbeta_factor"):
        values = c[key]
        if not OmegaConf.is_list(values) or len(values) == 0:
            raise UserError(f"calibrate.{key}={values} must be a non-empty list, e.g. calibrate.{key}=[1,10]")
    if any(not float(v) > 0 for v in c.lr):
        raise UserError(f"calibrate.lr={list(c.lr)}: every step size must be > 0")
    if any(not float(v) >= 0 for v in c.localization):
        raise UserError(f"calibrate.localization={list(c.localization)}: every value must be ≥ 0")
    if any(not float(v) > 0 for v in c.nbeta_factor):
        raise UserError(f"calibrate.nbeta_factor={list(c.nbeta_factor)}: every factor must be > 0")
    for key in ("num_draws", "num_chains"):
        if c[key] is not None and int(c[key]) < 1:
            raise UserError(f"calibrate.{key}={c[key]} must be ≥ 1, or null for the llc setting")


def check_posterior(cfg: DictConfig, stages: list[str]) -> None:
    """Checks of the ensemble and posterior settings (section 4.2 experiment)."""
    if "ensemble" not in cfg or "posterior" not in cfg:
        raise UserError(f"stages={stages} need the ensemble settings: add +experiment=moons_posterior")
    task = cfg.dataset.get("task")
    if task is not None and not str(task.get("_target_", "")).endswith("Classification"):
        raise UserError(
            f"the ensemble trains classifiers only: dataset.task={task._target_} needs stages=[train,...]"
        )
    if cfg.train.get("phases"):
        raise UserError("the ensemble trains with one optimizer: train.phases needs stages=[train,...]")
    if cfg.ensemble.get("llc", "serial") not in ("serial", "batched"):
        raise UserError(f"ensemble.llc={cfg.ensemble.llc}: choose serial or batched")
    if not cfg.ensemble.get("seeds") and int(cfg.ensemble.members) < 1:
        raise UserError(f"ensemble.members={cfg.ensemble.members} must be ≥ 1, e.g. 500")
    p, s = cfg.posterior, cfg.posterior.sgld
    if int(p.chains) < 1:
        raise UserError(f"posterior.chains={p.chains} must be ≥ 1, e.g. 10")
    for key in ("num_samples", "num_steps_bw_samples"):
        if int(s[key]) < 1:
            raise UserError(f"posterior.sgld.{key}={s[key]} must be ≥ 1")
    if int(s.num_burnin_steps) < 0 or not float(s.lr) > 0 or not float(s.localization) >= 0:
        raise UserError(
            "posterior.sgld: num_burnin_steps ≥ 0, lr > 0 and localization ≥ 0, e.g. 200, 1e-5, 100"
        )
    if s.nbeta is not None and not float(s.nbeta) > 0:
        raise UserError(f"posterior.sgld.nbeta={s.nbeta} must be > 0, or null for n_train")
    if p.cluster_on not in ("sgd", "all"):
        raise UserError(f"posterior.cluster_on={p.cluster_on}: choose sgd or all")
    xi = list(p.tempering.xi)
    if not xi or min(float(v) for v in xi) <= 0 or not float(p.tempering.m) > 0:
        raise UserError(f"posterior.tempering.xi={xi} needs values > 0 (and tempering.m > 0)")


def total_steps(cfg: DictConfig, steps_per_epoch: int) -> int:
    """Training steps; for a phased run (`train.phases`) the most it can take (phases may stop early)."""
    if cfg.train.get("phases"):
        return schedule.max_steps(cfg.train.phases, steps_per_epoch)
    return int(cfg.train.steps) if cfg.train.steps is not None else int(cfg.train.epochs) * steps_per_epoch


def check_with_data(cfg: DictConfig, n_train: int, steps_per_epoch: int) -> int:
    """Checks that need the data set's size; returns the number of training steps."""
    if int(cfg.batch) > n_train:
        raise UserError(
            f"batch={cfg.batch} is larger than the training set ({n_train} samples): use batch ≤ {n_train}"
        )
    steps = total_steps(cfg, steps_per_epoch)
    if int(cfg.llc.every) > steps:
        raise UserError(
            f"llc.every={cfg.llc.every} is longer than the run ({steps} steps): "
            f"lower llc.every or train longer (train.epochs / train.steps)"
        )
    return steps


def cores() -> int:
    """CPU cores this process may use: its CPU affinity, capped by a container's CPU quota.

    joblib's count, so that the parallel launcher's `n_jobs=-1` (one job per core) means the same cores.
    """
    from joblib import cpu_count

    return max(1, cpu_count())


def threads(setting: int | None) -> int:
    """Torch threads for one job: the setting, else the cores this process may use divided by
    the jobs sharing them (Slurm's CPUs per task, or AB_PARALLEL_JOBS set by the parallel launcher)."""
    if setting:
        return max(1, int(setting))
    if os.environ.get("SLURM_CPUS_PER_TASK"):
        return max(1, int(os.environ["SLURM_CPUS_PER_TASK"]))
    return max(1, cores() // max(1, int(os.environ.get("AB_PARALLEL_JOBS", "1"))))


def slurm_job() -> str | None:
    """The Slurm job this process runs in, as squeue and submitit name it (`<array job>_<task>`)."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def placement_tags(torch_threads: int) -> dict[str, str]:
    """Run tags saying how the job ran: torch threads, jobs sharing the cores, the Slurm job."""
    tags = {"torch_threads": str(torch_threads)}
    if os.environ.get("AB_PARALLEL_JOBS"):
        tags["parallel_jobs"] = os.environ["AB_PARALLEL_JOBS"]
    if job := slurm_job():
        tags["slurm_job"] = job
    return tags
