"""Stage 1, train: SGD (or any torch optimizer) on in-memory data, recording R(t).

Reads: the config. Writes to the run: `trajectory.parquet` (step, R(t) total and per tensor,
batch loss), `evals.parquet` (train/test loss and accuracy every `train.eval_every` steps),
`checkpoints/step_*.pt` (w_0, w at every LLC step, w_final; only w_0 and w_final when
`train.keep_checkpoints=false`), step metrics `train/loss`, `train/acc`, `test/loss`, `test/acc`,
`displacement`, and summary `test_acc`, `gen_error`, `num_params`, `num_weights`, `avg_lr` (the
learning rate averaged over the steps, phases included). With `llc.online=true`
it also estimates λ at every LLC step and writes what the llc stage would. A phased run
(`train.phases`, see `pipeline/schedule.py`) also writes `phase/<name>/start_step`, `end_step`, `epochs`
and tags `phase.<name>`.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig
from torch import nn

from pipeline import build, config, llc
from pipeline.data import Data
from pipeline.displacement import DisplacementRecorder, record_schedule
from pipeline.models import num_params, num_weights
from pipeline.progress import bar
from pipeline.tasks import Task
from pipeline.tracking import Tracker


class Diverged(RuntimeError):
    """The training loss became non-finite."""


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


def run(
    cfg: DictConfig,
    tracker: Tracker,
    run_id: str,
    progress: bool | None = None,
    data: Data | None = None,
    model: nn.Module | None = None,
) -> dict:
    """Train, then log the trajectory, evaluations and checkpoints to the run.

    `data` and `model` may come built already (the job builds them before opening the run, so
    a missing data folder or weights file fails before a run exists); `model` must be the
    freshly initialised `build.model(cfg, data)`, w_0 of the run."""
    device = cfg.device
    data = data or build.data(cfg)
    steps = config.check_with_data(cfg, data.n_train, data.steps_per_epoch)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        setattr(data, name, getattr(data, name).to(device))
    model = (model if model is not None else build.model(cfg, data)).to(device)
    model.train()
    task = build.task(cfg)
    # A phased run (train.phases, e.g. the Tiny ImageNet protocol) swaps optimizers and may stop early.
    schedule = build.schedule(cfg, model, data.steps_per_epoch)
    opt = schedule.optimizer if schedule else build.optimizer(cfg, model)
    sizes = {"num_params": num_params(model), "num_weights": num_weights(model)}
    tracker.log_summary(run_id, {**sizes, "total_steps": steps})

    every, eval_every = int(cfg.llc.every), int(cfg.train.eval_every)
    llc_steps = list(range(every, steps + 1, every))
    eval_steps = set(range(eval_every, steps + 1, eval_every)) | {steps}
    recorder = DisplacementRecorder(
        model,
        record_schedule(
            steps,
            int(cfg.train.record_every_step_up_to),
            int(cfg.train.record_log_points),
            extra=[*llc_steps, *eval_steps],
        ),
    )
    keep = bool(cfg.train.keep_checkpoints) and not cfg.llc.online
    ckpt_steps = ({0, *llc_steps} if keep else {0}) | {steps}
    evals: list[dict] = []
    llc_rows: list[dict] = []
    gen = torch.Generator().manual_seed(int(cfg.seed))
    step, lr_sum = 0, 0.0

    with tempfile.TemporaryDirectory(prefix="ab-ckpt-") as tmp:
        ckpt_dir = Path(tmp) / "checkpoints"
        ckpt_dir.mkdir()
        torch.save(model.state_dict(), ckpt_dir / "step_00000000.pt")
        try:
            with bar(progress, total=steps, desc="train") as pbar:
                last = False
                while not last:
                    for xb, yb in data.epoch(gen):
                        step += 1
                        opt.zero_grad(set_to_none=True)
                        loss = task.loss(model(xb), yb)
                        loss.backward()
                        opt.step()
                        lr_sum += opt.param_groups[0]["lr"]  # Fig. 2b's average learning rate
                        last = step == steps
                        if schedule is not None:
                            last = schedule.after_step(step, loss.item()) or last
                            opt = schedule.optimizer
                        if recorder.wants(step) or last:  # a phase may end the run early
                            recorder.record(step, loss)
                        if step in eval_steps or last:
                            evals.append(_eval_row(task, model, data, step, loss))
                            pbar.set_postfix(loss=f"{evals[-1]['train_loss']:.4f}", refresh=False)
                        if step in ckpt_steps or last:
                            torch.save(model.state_dict(), ckpt_dir / f"step_{step:08d}.pt")
                        if cfg.llc.online and step % every == 0:
                            row = llc.estimate(model, data, cfg.llc, step, device, task.sgld_loss)
                            llc_rows.append({"step": step, **row})
                        pbar.update(1)
                        if last:
                            break
        finally:
            # Whatever happened, what was recorded reaches the run.
            log_records(tracker, run_id, recorder.table(upto=step), evals)
            if step:
                tracker.log_summary(run_id, {"avg_lr": lr_sum / step})
            if schedule is not None:
                tracker.log_summary(run_id, {**schedule.summary(), "total_steps": step})
                tracker.set_tags(run_id, schedule.tags())
            tracker.log_dir(run_id, ckpt_dir, "checkpoints")
            if llc_rows:
                llc.record(tracker, run_id, llc_rows, cfg)
    summary = summarize_evals(pd.DataFrame(evals), int(cfg.llc.last))
    tracker.log_summary(run_id, summary)
    return summary


def _eval_row(task: Task, model: nn.Module, data: Data, step: int, batch_loss: torch.Tensor) -> dict:
    train_loss, train_acc = task.evaluate(model, data.x_train, data.y_train)
    test_loss, test_acc = task.evaluate(model, data.x_test, data.y_test)
    if not (math.isfinite(train_loss) and math.isfinite(batch_loss.item())):
        raise Diverged(f"training loss is not finite at step {step} (train loss {train_loss}): lower lr")
    return {
        "step": step,
        "train_loss": train_loss,
        "train_acc": train_acc,
        "test_loss": test_loss,
        "test_acc": test_acc,
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
    tracker.log_table(run_id, traj, "trajectory")
    ev = pd.DataFrame(evals)
    shown = traj[traj["step"].isin(metric_steps(traj["step"], ev["step"] if evals else []))]
    rows = [("displacement", int(s), float(v)) for s, v in zip(shown["step"], shown["displacement"])]
    if evals:
        tracker.log_table(run_id, ev, "evals")
        for col, name in [
            ("train_loss", "train/loss"),
            ("train_acc", "train/acc"),
            ("test_loss", "test/loss"),
            ("test_acc", "test/acc"),
        ]:
            rows += [(name, int(s), float(v)) for s, v in zip(ev["step"], ev[col])]
    tracker.log_metric_rows(run_id, [r for r in rows if np.isfinite(r[2])])
