"""Many seeds of one run config in one job: `python launch.py seeds=8` (or `seeds=[0,3,7]`).

The seeds train at once as a batched ensemble (`pipeline.ensemble`: each member is the twin of a
one-by-one run with its seed, tested), λ is estimated at every member's checkpoints in batched
devinterp passes (`llc.estimate_many`: each estimate the one the llc stage makes, up to the sampler's
Gaussian noise), and α is fitted per member by the fit stage itself. The job writes ONE MLflow run per
seed, with what a one-by-one job with that seed writes: the same config hash, params, artifacts and
metrics (see `pipeline/train.py`, `llc.py`, `fit.py`), plus tags `batched_seeds` (the job's seeds) and
`llc.method=batched`. The analysis, re-runs of a stage (`stages=[fit] run_id=...`) and re-launches
treat them as ordinary runs.

Reads: the config. Writes, per seed: the train, llc and fit stages' artifacts and metrics; the stage
times `time/<stage>_s` and `time/tracking_s` are the job's divided by the number of seeds (amortised),
`tracking_share` is the job's.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from pipeline import build, config, ensemble, fit, llc, resume, train
from pipeline.errors import UserError
from pipeline.models import num_params, num_weights
from pipeline.progress import bar
from pipeline.tasks import Classification
from pipeline.tracking import Tracker, ui_command


def seeds_of(cfg: DictConfig) -> list[int]:
    """`seeds=N`: N seeds from `seed` on; `seeds=[...]`: those, distinct."""
    value = cfg.seeds
    if OmegaConf.is_list(value):
        seeds = [int(s) for s in value]
        if not seeds or len(set(seeds)) != len(seeds):
            raise UserError(f"seeds={list(value)}: give distinct seeds, e.g. seeds=[0,1,2] or seeds=8")
        return seeds
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"seeds={value}: give a number of seeds ≥ 1 (seeds=8) or a list (seeds=[0,1,2])")
    return list(range(int(cfg.seed), int(cfg.seed) + int(value)))


def check(cfg: DictConfig) -> None:
    """What one batched job can do: the train, llc and fit stages of a classifier, one optimizer."""
    if "train" not in cfg.stages or any(s not in ("train", "llc", "fit") for s in cfg.stages):
        raise UserError(
            f"seeds=... with stages={list(cfg.stages)}: it trains, so use stages among [train,llc,fit]; "
            "re-run a stage on one seed's run with run_id=<id> instead"
        )
    if cfg.train.get("phases"):
        raise UserError(
            "seeds=... trains with one optimizer: train.phases needs one job per seed (-m seed=0,1,...)"
        )
    task = cfg.dataset.get("task")
    if task is not None and not str(task.get("_target_", "")).endswith("Classification"):
        raise UserError(
            f"seeds=... stacks classifiers only: dataset.task={task._target_} needs -m seed=0,1,..."
        )
    if cfg.llc.online:
        raise UserError("seeds=... estimates λ from the kept checkpoints: set llc.online=false")
    ensemble.check_optimizer(cfg)
    seeds_of(cfg)


def member_config(cfg: DictConfig, seed: int) -> DictConfig:
    """The config a one-by-one job with `seed` has (so the run's params and hashes are its)."""
    member = ensemble.with_seed(cfg, seed)
    with open_dict(member):
        member.seeds = None
    return member


@dataclass
class Member:
    """One seed's run and where it stands."""

    seed: int
    cfg: DictConfig
    run_id: str
    failed: str | None = None
    done: tuple[str, ...] = ()  # stages a resumed run had done (then it goes on one by one)


def execute(cfg: DictConfig, job) -> tuple[Tracker, list[Member]]:
    """Train, estimate and fit every seed; returns the tracker and the members (failed ones say why)."""
    from pipeline import run  # run imports this module

    start = time.perf_counter()  # the job's wall time, for the share of it spent tracking
    config.check(cfg)
    check(cfg)
    torch.set_num_threads(config.threads(cfg.threads))
    tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.max_wait_s)
    data = build.data(cfg)  # data problems surface before any run exists
    config.check_with_data(cfg, data.n_train, data.steps_per_epoch)
    seeds = seeds_of(cfg)
    # Re-launch rules per seed (pipeline/resume.py): a finished or busy seed is left alone; an
    # interrupted run that had not finished training trains again from scratch in the ensemble; one
    # that had goes on through the stages it lacks, one by one, as a one-seed job would.
    members, continuing, finished = [], [], []
    for s in seeds:
        m_cfg = member_config(cfg, s)
        name = f"seed={s}" if job.name == "default" else f"{job.name},seed={s}"
        opened = run._open_run(m_cfg, tracker, replace(job, name=name))
        if opened.note:
            print(f"seed {s}: {opened.note}", flush=True)
        member = Member(s, m_cfg, opened.run_id, done=opened.done)
        if opened.action == "skip":
            finished.append(member)
        elif opened.action in ("new", "claim"):
            (continuing if "train" in opened.done else members).append(member)
    owned = members + continuing
    tag = f"{len(seeds)} seeds {seeds[0]}..{seeds[-1]} in one job"
    heartbeat = resume.Heartbeat(lambda: [tracker.beat(m.run_id) for m in owned]).start()
    try:
        with resume.INTERRUPTS.installed():
            for m in owned:
                tracker.log_params(m.run_id, config.flatten(config.as_dict(m.cfg)))
                tracker.log_text(m.run_id, OmegaConf.to_yaml(m.cfg, resolve=True), "config.yaml")
                tracker.set_tags(m.run_id, {"batched_seeds": tag})
            if members:
                with tempfile.TemporaryDirectory(prefix="ab-seeds-") as tmp:
                    folders = [Path(tmp) / f"seed_{m.seed}" / "checkpoints" for m in members]
                    _stage(tracker, members, "train", lambda: _train(cfg, data, members, folders, tracker))
                    if "llc" in cfg.stages:
                        _stage(tracker, members, "llc", lambda: _llc(cfg, data, members, folders, tracker))
                if "fit" in cfg.stages:
                    _stage(tracker, members, "fit", lambda: _fit(members, tracker))
            for m in continuing:
                _go_on(cfg, tracker, m)
    except BaseException as e:
        interrupted = resume.interruption(e)
        reason = f"{type(e).__name__}: {e}" if interrupted is None else f"interrupted ({interrupted})"
        for m in owned:
            if m.failed is None:
                if interrupted is not None:  # resumable: the next launch takes these runs over
                    tracker.kill(m.run_id, interrupted)
                    continue
                tracker.fail(m.run_id, reason)
                if not isinstance(e, UserError):
                    tracker.log_text(m.run_id, traceback.format_exc(), "error.txt")
        raise
    finally:
        heartbeat.stop()
    members = sorted(owned + finished, key=lambda m: seeds.index(m.seed))
    if not owned:
        return tracker, members
    tracking = {  # the job's, shared by its seeds as the stage times are
        "time/tracking_s": tracker.seconds / len(members),
        "tracking_share": tracker.seconds / (time.perf_counter() - start),
        "tracking_retries": tracker.retries,
    }
    for m in owned:
        if m.failed is None:
            tracker.log_summary(m.run_id, tracking)
            tracker.finish(m.run_id)
    return tracker, members


def _go_on(cfg: DictConfig, tracker: Tracker, m: Member) -> None:
    """The stages a resumed seed's run lacks (its training is done), as a one-seed job runs them."""
    stages = {
        "llc": lambda: llc.run(m.cfg, tracker, m.run_id, cfg.progress),
        "fit": lambda: fit.run(m.cfg, tracker, m.run_id),
    }
    for name in cfg.stages:
        if name in m.done:
            continue
        t0 = time.perf_counter()
        stages[name]()
        tracker.log_summary(m.run_id, {f"time/{name}_s": time.perf_counter() - t0})
        tracker.set_tags(m.run_id, {f"stage.{name}": "done"})
        resume.INTERRUPTS.fire()


def _stage(tracker: Tracker, members: list[Member], name: str, work) -> None:
    """Run one stage for every member; log its amortised time and mark it done where it worked."""
    t0 = time.perf_counter()
    work()
    alive = [m for m in members if m.failed is None]
    with resume.INTERRUPTS.deferred():
        for m in alive:
            tracker.log_summary(m.run_id, {f"time/{name}_s": (time.perf_counter() - t0) / len(members)})
            tracker.set_tags(m.run_id, {f"stage.{name}": "done"})
    resume.INTERRUPTS.fire()  # a signal that came while the members' records were written


def _fail(tracker: Tracker, m: Member, reason: str) -> None:
    m.failed = reason
    tracker.fail(m.run_id, reason)


def _train(cfg: DictConfig, data, members: list[Member], folders: list[Path], tracker: Tracker) -> None:
    """The ensemble, then each member's train-stage records in its own run."""
    for f in folders:
        f.mkdir(parents=True)

    def snapshot(step: int, ens: ensemble.Ensemble) -> None:
        for i, folder in enumerate(folders):
            torch.save(ens.state_dict(i), folder / f"step_{step:08d}.pt")

    seeds = [m.seed for m in members]
    trained = ensemble.train(cfg, data, seeds, cfg.progress, snapshot=snapshot)
    # From here the members' records are written: a signal waits until all are (see _stage).
    resume.INTERRUPTS.deferring = True
    base = trained.ensemble.base
    sizes = {"num_params": num_params(base), "num_weights": num_weights(base), "total_steps": trained.steps}
    for i, (m, folder) in enumerate(zip(members, folders)):
        traj = trained.trajectory[trained.trajectory["member"] == i].drop(columns=["member", "seed"])
        evals = trained.evals[trained.evals["member"] == i].drop(columns=["member", "seed"])
        diverged = _divergence(traj, evals)
        if diverged is not None:  # what the train stage keeps of a diverging run, and its reason
            step, loss = diverged
            traj, evals = traj[traj["step"] <= step], evals[evals["step"] < step]
            for f in folder.glob("step_*.pt"):
                if int(f.stem.removeprefix("step_")) >= step:
                    f.unlink()
        tracker.log_summary(m.run_id, sizes)
        train.log_records(tracker, m.run_id, traj.reset_index(drop=True), evals.to_dict("records"))
        tracker.log_summary(m.run_id, {"avg_lr": float(cfg.lr)})  # one optimizer, a constant rate
        tracker.log_dir(m.run_id, folder, "checkpoints")
        if diverged is not None:
            _fail(
                tracker,
                m,
                f"Diverged: training loss is not finite at step {step} (train loss {loss}): lower lr",
            )
            continue
        tracker.log_summary(m.run_id, train.summarize_evals(evals, int(cfg.llc.last)))


def _divergence(traj: pd.DataFrame, evals: pd.DataFrame) -> tuple[int, float] | None:
    """The first evaluation step where the train stage would stop a run (non-finite train loss or
    batch loss), with the train loss there; None if the member never diverged."""
    batch = traj.set_index("step")["train_batch_loss"]
    for step, loss in zip(evals["step"], evals["train_loss"]):
        if not (math.isfinite(loss) and math.isfinite(batch.get(step, 0.0))):
            return int(step), float(loss)
    return None


def _llc(cfg: DictConfig, data, members: list[Member], folders: list[Path], tracker: Tracker) -> None:
    """λ at every kept checkpoint of every member, in batched passes; recorded per member."""
    every = int(cfg.llc.every)
    pairs = [
        (i, int(f.stem.removeprefix("step_")), f)
        for i, (m, folder) in enumerate(zip(members, folders))
        if m.failed is None
        for f in sorted(folder.glob("step_*.pt"))
        if int(f.stem.removeprefix("step_")) > 0 and int(f.stem.removeprefix("step_")) % every == 0
    ]
    model = build.model(cfg, data).to(cfg.device)
    task = build.task(cfg)
    assert isinstance(task, Classification)  # check() refused the rest
    rows: dict[int, list[dict]] = {i: [] for i, m in enumerate(members) if m.failed is None}
    groups = llc.stacked_groups(len(pairs), num_params(model), int(cfg.llc.max_stacked))
    for group in bar(cfg.progress, iterable=groups, desc=f"llc ({len(pairs)} estimates, batched)"):
        part = [pairs[k] for k in group]
        states = [torch.load(f, map_location=cfg.device) for _, _, f in part]
        steps = [step for _, step, _ in part]
        seeds = [int(members[i].cfg.llc.seed) for i, _, _ in part]
        found = llc.estimate_many(model, states, data, cfg.llc, steps, cfg.device, task, seeds=seeds)
        for (i, step, _), row in zip(part, found):
            rows[i].append({"step": step, **row})
    resume.INTERRUPTS.deferring = True  # the members' records, all or none (see _stage)
    for i, member_rows in rows.items():
        tracker.set_tags(members[i].run_id, {"llc.method": "batched"})
        llc.record(tracker, members[i].run_id, member_rows, members[i].cfg)


def _fit(members: list[Member], tracker: Tracker) -> None:
    """The fit stage itself on each member's run (it reads the run's artifacts back)."""
    resume.INTERRUPTS.deferring = True  # quick: the members' records, all or none (see _stage)
    for m in members:
        if m.failed is not None:
            continue
        try:
            fit.run(m.cfg, tracker, m.run_id)
        except UserError as e:  # e.g. too few points in the window: this seed fails, the others go on
            _fail(tracker, m, f"UserError: {e}")


def report(tracker: Tracker, members: list[Member]) -> str:
    """One line per seed, then the spread over the seeds that finished."""
    lines = [f"{len(members)} seeds in one batched job, one run each:"]
    rows = []
    for m in members:
        run = tracker.client.get_run(m.run_id)
        if m.failed is not None:
            lines.append(f"  seed {m.seed:>4}  run {m.run_id}  FAILED: {m.failed}")
            continue
        x, tags = run.data.metrics, run.data.tags
        rows.append(x)
        lines.append(
            f"  seed {m.seed:>4}  run {m.run_id}  λ_final {x['lambda_final']:.4g}  α {x['alpha']:.4f}  "
            f"d_s {x['d_s']:.4g}  Lemma 3.4 {tags.get('verdict.lemma_3_4')}  "
            f"Corollary 3.3 {tags.get('verdict.corollary_3_3')}"
        )
    if rows:
        table = pd.DataFrame(rows)
        spread = ", ".join(
            f"{k} {table[k].mean():.4g} ± {table[k].std(ddof=1) if len(table) > 1 else np.nan:.2g}"
            for k in ("lambda_final", "alpha", "d_s", "test_acc")
        )
        lines.append(f"  mean ± sd over {len(rows)} seeds: {spread}")
    lines.append(f"browse: {ui_command(tracker.uri)}")
    return "\n".join(lines)


def main(cfg: DictConfig, job) -> int:
    """Entry point for a `seeds=...` job: 0 when every seed finished, 1 when some failed, 2 bad input."""
    try:
        tracker, members = execute(cfg, job)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report(tracker, members))
    return 1 if any(m.failed for m in members) else 0
