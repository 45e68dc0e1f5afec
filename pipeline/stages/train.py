"""Stage 1, train: SGD (or any torch optimizer) on in-memory data, recording R(t).

Reads: the config. Writes to each run: `trajectory.parquet` (step, R(t) total and per tensor, batch
loss), `evals.parquet` (train/test loss and accuracy every `train.eval_every` steps),
`checkpoints/step_*.pt` (w_0, w at every LLC step, w_final; only w_0 and w_final when
`train.keep_checkpoints=false`), step metrics `train/loss`, `train/acc`, `test/loss`, `test/acc`,
`displacement`, and summary `test_acc`, `gen_error`, `num_params`, `num_weights`, `total_steps`,
`avg_lr` (the learning rate averaged over the steps, phases included). With `llc.online=true` it
also estimates λ at every LLC step and writes what the llc stage would. A phased run
(`train.phases`, see `pipeline.training.phases`) also writes `phase/<name>/start_step`, `end_step`,
`epochs` and tags `phase.<name>`. While it trains, `resume/train.pt` (`pipeline.training.state`),
removed when the stage completes; metrics are logged once, when the stage ends.

A batched job's members (`seeds=...`) train at once as one stacked ensemble
(`pipeline.training.ensemble`: each member the twin of its one-by-one run); each member's run gets
what a one-by-one train stage writes, and a member whose loss diverges fails alone.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline.config import build, checks
from pipeline.data import Data
from pipeline.errors import Diverged
from pipeline.interrupts import INTERRUPTS, interruption
from pipeline.models import num_params, num_weights
from pipeline.slt import llc
from pipeline.slt.settings import Settings
from pipeline.slt.stacked import Stacked
from pipeline.stages import llc as llc_stage
from pipeline.stages.context import Context, Member
from pipeline.tracking import Tracker, names
from pipeline.training import ensemble, state
from pipeline.training.loop import Hooks, Loop


def run(ctx: Context, members: list[Member]) -> None:
    """Train every member: one run alone, or a batched job's members at once."""
    if ctx.batched:
        train_batched(ctx, members)
    else:
        (member,) = members
        train_one(ctx, member)


# -- the resume state -----------------------------------------------------------------------------
class Saver:
    """Saves the resume state at most every `every_s` seconds (`due`), uploading new checkpoints
    first (so the state never names a checkpoint the run lacks)."""

    def __init__(self, tracker: Tracker, run_id: str, ckpt_dir: Path, every_s: float) -> None:
        self.tracker, self.run_id, self.ckpt_dir = tracker, run_id, ckpt_dir
        self.every_s = float(every_s)
        self.last = time.monotonic()
        self.uploaded: set[str] = set()  # checkpoint files the run holds already
        self.uploaded_state = False

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.every_s

    def upload_checkpoints(self) -> None:
        new = [f for f in names.checkpoint_files(self.ckpt_dir) if f.name not in self.uploaded]
        if not new:
            return
        if self.uploaded:
            self.tracker.log_files(self.run_id, new, names.CHECKPOINTS)
        else:  # one upload for the lot, as a run that was never interrupted does it
            self.tracker.log_dir(self.run_id, self.ckpt_dir, names.CHECKPOINTS)
        self.uploaded |= {f.name for f in new}

    def save(self, snapshot: dict) -> None:
        self.upload_checkpoints()
        with tempfile.TemporaryDirectory(prefix="ab-resume-") as d:
            path = Path(d) / Path(names.RESUME_STATE).name
            state.write(path, snapshot, sorted(self.uploaded))
            self.tracker.log_files(self.run_id, [path], names.RESUME)
        self.uploaded_state = True
        self.last = time.monotonic()


def load_state(tracker: Tracker, run_id: str) -> dict | None:
    """The run's resume state, None when it has none (interrupted before the first save)."""
    with tempfile.TemporaryDirectory(prefix="ab-resume-") as d:
        path = tracker.download_file(run_id, names.RESUME_STATE, Path(d))
        return None if path is None else state.read(path, f"{names.RESUME_STATE} of run {run_id}")


# -- one run ----------------------------------------------------------------------------------------
def train_one(ctx: Context, member: Member) -> dict:
    """Train the run's model, then log the trajectory, evaluations and checkpoints to the run.

    A taken-over run (`member.action == "claim"`) continues from its resume state where it has one.
    Metrics are logged once, when the stage ends (or fails for real): an interrupted stage logs
    none and saves its resume state instead, so a resumed run holds the points of an
    uninterrupted one."""
    cfg, tracker, run_id = member.cfg, ctx.tracker, member.run_id
    device = cfg.device
    data = ctx.data or build.data(cfg)
    steps = checks.check_with_data(cfg, data.n_train, data.steps_per_epoch)
    data.to(device)
    model = (ctx.model if ctx.model is not None else build.model(cfg, data)).to(device)
    model.train()
    task = build.task(cfg)
    # A phased run (train.phases, e.g. the Tiny ImageNet protocol) swaps optimizers and may stop early.
    schedule = build.schedule(cfg, model, data.steps_per_epoch)
    optimizer = None if schedule else build.optimizer(cfg, build.trainable(model))
    sizes = {"num_params": num_params(model), "num_weights": num_weights(model), "total_steps": steps}
    record_data(tracker, run_id, cfg, data)
    loop = Loop(model, task, data, build.plan(cfg, steps), int(cfg.seed), optimizer, schedule)
    resuming = member.action == "claim"
    saved = load_state(tracker, run_id) if resuming else None
    settings = Settings.of(cfg.llc)
    online = bool(cfg.llc.online)

    with tempfile.TemporaryDirectory(prefix="ab-ckpt-") as tmp:
        ckpt_dir = Path(tmp) / names.CHECKPOINTS
        ckpt_dir.mkdir()
        saver = Saver(tracker, run_id, ckpt_dir, float(cfg.resume.every_s))
        if saved is not None:
            loop.load_state_dict(saved)
            saver.uploaded = set(saved["checkpoints"])
            print(f"train: resuming at step {loop.step} of {steps} from the run's resume state", flush=True)
        hooks = Hooks(
            checkpoint=lambda step, m: torch.save(m.state_dict(), ckpt_dir / names.checkpoint_name(step)),
            save=saver.save,
            save_due=saver.due,
            estimate=(lambda step, m: llc.estimate(m, data, settings, step, device, task.sgld_loss))
            if online
            else None,
        )
        # Signals wait for the end of the step (the loop defers them: the state saved then is
        # consistent) and, once the loop is over, until the job has marked the stage done.
        with INTERRUPTS.deferred():
            try:
                loop.run(hooks, cfg.progress)
            except BaseException as e:
                if interruption(e) is None:  # a real failure: what was recorded reaches the run
                    _record_loop(tracker, run_id, cfg, loop, sizes)
                    saver.upload_checkpoints()
                raise
            INTERRUPTS.hold()  # from here the stage's records are written: a signal waits for them all
            _record_loop(tracker, run_id, cfg, loop, sizes)
            saver.upload_checkpoints()
            summary = summarize_evals(pd.DataFrame(loop.evals), int(cfg.llc.last))
            tracker.log_summary(run_id, summary)
    if saver.uploaded_state or resuming:
        tracker.delete_artifacts(run_id, names.RESUME)
    return summary


def record_data(tracker: Tracker, run_id: str, cfg, data: Data, digest: str | None = None) -> None:
    """What the run trained on: tag `dataset` (the loader's name, a stand-in's included) and an
    MLflow dataset input (name, digest, the loader and its root as source, the sizes)."""
    tracker.set_tags(run_id, {names.DATASET: data.name})
    root = cfg.dataset.get("root")
    source = f"{cfg.dataset.get('_target_', 'data')}" + (
        f"({Path(str(root)).expanduser().resolve()})" if root else ""
    )
    tracker.log_dataset(run_id, data.name, digest or data.digest(), source, data.profile())


def _record_loop(tracker: Tracker, run_id: str, cfg, loop: Loop, sizes: dict) -> None:
    """What the train stage logs, once: tables, step metrics and summary (a phased run's
    `total_steps` is the steps it took: its phases may stop early)."""
    step, schedule = loop.step, loop.schedule
    if schedule is not None:
        sizes = {**sizes, "total_steps": step}
    log_records(tracker, run_id, loop.recorder.table(upto=step), loop.evals)
    summary = {**sizes, **({"avg_lr": loop.lr_sum / step} if step else {})}
    if schedule is not None:
        summary |= schedule.summary()
        tracker.set_tags(run_id, schedule.tags())
    tracker.log_summary(run_id, summary)
    if loop.llc_rows:
        llc_stage.record(tracker, run_id, loop.llc_rows, cfg)


# -- a batched job's members ----------------------------------------------------------------------
def train_batched(ctx: Context, members: list[Member]) -> None:
    """The members' ensemble, then each member's train-stage records in its own run."""
    cfg, tracker = ctx.cfg, ctx.tracker
    data = ctx.data or build.data(cfg)
    steps = checks.check_with_data(cfg, data.n_train, data.steps_per_epoch)
    seeds = [m.seed for m in members]
    with tempfile.TemporaryDirectory(prefix="ab-seeds-") as tmp:
        folders = [Path(tmp) / f"seed_{s}" / names.CHECKPOINTS for s in seeds]
        for f in folders:
            f.mkdir(parents=True)

        def snapshot(step: int, stacked: Stacked) -> None:
            for i, folder in enumerate(folders):
                torch.save(stacked.state_dict_of(i), folder / names.checkpoint_name(step))

        stacked, optimizer, plan = build.ensemble(cfg, data, seeds, steps)
        trained = ensemble.train(
            stacked, optimizer, build.task(cfg), data, seeds, plan, cfg.device, cfg.progress, snapshot
        )
        INTERRUPTS.hold()  # from here the members' records are written: a signal waits for them all
        base = stacked.member
        digest = data.digest()
        sizes = {"num_params": num_params(base), "num_weights": num_weights(base), "total_steps": steps}
        for i, (m, folder) in enumerate(zip(members, folders)):
            traj = trained.trajectory[trained.trajectory["member"] == i].drop(columns=["member", "seed"])
            evals = trained.evals[trained.evals["member"] == i].drop(columns=["member", "seed"])
            diverged = _divergence(traj, evals)
            if diverged is not None:  # what the train stage keeps of a diverging run, and its reason
                step, loss = diverged
                traj, evals = traj[traj["step"] <= step], evals[evals["step"] < step]
                for f in names.checkpoint_files(folder):
                    if names.checkpoint_step(f.name) >= step:
                        f.unlink()
            log_records(tracker, m.run_id, traj.reset_index(drop=True), evals.to_dict("records"))
            tracker.log_summary(m.run_id, {**sizes, "avg_lr": float(cfg.lr)})  # one optimizer, one rate
            record_data(tracker, m.run_id, cfg, data, digest)
            tracker.log_dir(m.run_id, folder, names.CHECKPOINTS)
            if diverged is not None:
                ctx.fail(m, f"Diverged: {Diverged.at(step, loss)}")
                continue
            tracker.log_summary(m.run_id, summarize_evals(evals, int(cfg.llc.last)))


def _divergence(traj: pd.DataFrame, evals: pd.DataFrame) -> tuple[int, float] | None:
    """The first evaluation step where the train stage would stop a run (non-finite train loss or
    batch loss), with the train loss there; None if the member never diverged."""
    batch = traj.set_index("step")["train_batch_loss"]
    for step, loss in zip(evals["step"], evals["train_loss"]):
        if not (math.isfinite(loss) and math.isfinite(batch.get(step, 0.0))):
            return int(step), float(loss)
    return None


# -- the records ----------------------------------------------------------------------------------
def summarize_evals(evals: pd.DataFrame, last: int) -> dict[str, float]:
    """Final test accuracy and the generalization gaps averaged over the last `last` evaluations."""
    tail = evals.tail(last)
    return {
        "test_acc": float(evals["test_acc"].iloc[-1]),
        "train_acc": float(evals["train_acc"].iloc[-1]),
        "test_loss": float(evals["test_loss"].iloc[-1]),
        "train_loss": float(evals["train_loss"].iloc[-1]),
        "gen_error": float((tail["test_loss"] - tail["train_loss"]).mean()),
        "gen_error_acc": float((tail["train_acc"] - tail["test_acc"]).mean()),
    }


# The `displacement` step metric is for browsing (MLflow's charts): the evaluation steps and about this
# many log-spaced ones. The complete R(t), every recorded step, is `trajectory.parquet`, which the fit
# reads; one metric row per step would be most of a run's tracking time (3750 rows on the default job).
DISPLACEMENT_METRIC_POINTS = 200


def metric_steps(
    steps: np.ndarray, keep: Iterable[int], points: int = DISPLACEMENT_METRIC_POINTS
) -> np.ndarray:
    """The recorded steps that get a `displacement` metric point: `keep`, the last step, and about
    `points` log-spaced ones (all of them when there are no more than that)."""
    steps = np.asarray(steps, dtype=np.int64)
    if len(steps) <= points:
        return steps
    targets = np.geomspace(steps[0], steps[-1], points)
    nearest = steps[np.clip(np.searchsorted(steps, targets), 0, len(steps) - 1)]
    wanted = np.union1d(nearest, np.fromiter(keep, dtype=np.int64))
    return steps[np.isin(steps, np.append(wanted, steps[-1]))]


def log_records(tracker: Tracker, run_id: str, traj: pd.DataFrame, evals: list[dict]) -> None:
    """The trajectory and evaluations as tables, and as step metrics (`displacement` at the
    evaluation steps and ~200 log-spaced steps, `train/loss`, `train/acc`, `test/loss`, `test/acc`)."""
    tracker.log_table(run_id, traj, names.TRAJECTORY)
    ev = pd.DataFrame(evals)
    shown = traj[traj["step"].isin(metric_steps(traj["step"], ev["step"] if evals else []))]
    rows = [("displacement", int(s), float(v)) for s, v in zip(shown["step"], shown["displacement"])]
    if evals:
        tracker.log_table(run_id, ev, names.EVALS)
        for col, name in [
            ("train_loss", "train/loss"),
            ("train_acc", "train/acc"),
            ("test_loss", "test/loss"),
            ("test_acc", "test/acc"),
        ]:
            rows += [(name, int(s), float(v)) for s, v in zip(ev["step"], ev[col])]
    tracker.log_metric_rows(run_id, [r for r in rows if np.isfinite(r[2])])
