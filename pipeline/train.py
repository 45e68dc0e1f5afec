"""Stage 1, train: SGD (or any torch optimizer) on in-memory data, recording R(t).

Reads: the config. Writes to the run: `trajectory.parquet` (step, R(t) total and per tensor,
batch loss), `evals.parquet` (train/test loss and accuracy every `train.eval_every` steps),
`checkpoints/step_*.pt` (w_0, w at every LLC step, w_final; only w_0 and w_final when
`train.keep_checkpoints=false`), step metrics `train/loss`, `train/acc`, `test/loss`, `test/acc`,
`displacement`, and summary `test_acc`, `gen_error`, `num_params`, `num_weights`, `avg_lr` (the
learning rate averaged over the steps, phases included). With `llc.online=true`
it also estimates λ at every LLC step and writes what the llc stage would. A phased run
(`train.phases`, see `pipeline/schedule.py`) also writes `phase/<name>/start_step`, `end_step`, `epochs`
and tags `phase.<name>`. While it trains, `resume/train.pt` (see `pipeline/train_state.py`), removed
when the stage completes; metrics are logged once, when the stage ends.
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

from pipeline import build, config, llc, resume, train_state
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
    resuming: bool = False,
) -> dict:
    """Train, then log the trajectory, evaluations and checkpoints to the run.

    `data` and `model` may come built already (the job builds them before opening the run, so
    a missing data folder or weights file fails before a run exists); `model` must be the
    freshly initialised `build.model(cfg, data)`, w_0 of the run. `resuming`: the run was
    interrupted; continue from its resume state (`resume/train.pt`) where it has one.

    Metrics are logged once, when the stage ends (or fails for real): an interrupted stage logs
    none and saves its resume state instead, so a resumed run holds the points of an uninterrupted one.
    """
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
    sizes = {"num_params": num_params(model), "num_weights": num_weights(model), "total_steps": steps}

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
    online = bool(cfg.llc.online)  # read once: an OmegaConf lookup per step cost ~8 % of training
    keep = bool(cfg.train.keep_checkpoints) and not online
    ckpt_steps = ({0, *llc_steps} if keep else {0}) | {steps}
    evals: list[dict] = []
    llc_rows: list[dict] = []
    gen = torch.Generator().manual_seed(int(cfg.seed))
    step, lr_sum, skip = 0, 0.0, 0
    _, every_s, _ = resume.settings(cfg)
    saved = train_state.Saver(every_s)
    state = train_state.load(tracker, run_id) if resuming else None
    if state is not None:
        step, lr_sum, skip = state["step"], state["lr_sum"], state["batch_in_epoch"]
        evals, llc_rows = state["evals"], state["llc_rows"]
        model.load_state_dict(state["model"])
        if schedule is not None:
            schedule.load_state_dict(state["schedule"])
            opt = schedule.optimizer
        else:
            opt.load_state_dict(state["optimizer"])
        recorder.load_state_dict(state["recorder"])
        gen.set_state(state["epoch_generator"])
        torch.set_rng_state(state["torch_rng"])
        saved.uploaded = set(state["checkpoints"])
        print(f"train: resuming at step {step} of {steps} from the run's resume state", flush=True)

    def save_state(epoch_generator: torch.Tensor, batch_in_epoch: int) -> None:
        snapshot = {
            "step": step,
            "lr_sum": lr_sum,
            "batch_in_epoch": batch_in_epoch,
            "epoch_generator": epoch_generator,
            "torch_rng": torch.get_rng_state(),
            "model": model.state_dict(),
            "optimizer": opt.state_dict() if schedule is None else None,
            "schedule": schedule.state_dict() if schedule is not None else None,
            "recorder": recorder.state_dict(),
            "evals": evals,
            "llc_rows": llc_rows,
        }
        saved.save(tracker, run_id, snapshot, ckpt_dir)

    with tempfile.TemporaryDirectory(prefix="ab-ckpt-") as tmp:
        ckpt_dir = Path(tmp) / "checkpoints"
        ckpt_dir.mkdir()
        if state is None:
            torch.save(model.state_dict(), ckpt_dir / "step_00000000.pt")
        # Signals wait for the end of the step (the state saved then is consistent) and, once the
        # loop is over, for the end of the stage (the job acts on them after marking it done).
        with resume.INTERRUPTS.deferred():
            try:
                with bar(progress, total=steps, initial=step, desc="train") as pbar:
                    last = step == steps or (schedule is not None and schedule.done)
                    while not last:
                        epoch_generator = gen.get_state()  # Data.epoch draws its permutation from here
                        for b, (xb, yb) in enumerate(data.epoch(gen)):
                            if b < skip:  # batches a resumed run took before it was interrupted
                                continue
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
                            if online and step % every == 0:
                                row = llc.estimate(model, data, cfg.llc, step, device, task.sgld_loss)
                                llc_rows.append({"step": step, **row})
                            if step in ckpt_steps or last:
                                torch.save(model.state_dict(), ckpt_dir / f"step_{step:08d}.pt")
                            # At LLC steps only (checkpoints, or online λ): the hot loop pays nothing.
                            if step % every == 0 and not last and saved.due():
                                save_state(epoch_generator, b + 1)
                            pbar.update(1)
                            if resume.INTERRUPTS.pending:  # SIGTERM, SIGINT, Slurm's USR2
                                save_state(epoch_generator, b + 1)
                                resume.INTERRUPTS.fire()
                            if last:
                                break
                        skip = 0
            except BaseException as e:
                if resume.interruption(e) is None:  # a real failure: what was recorded reaches the run
                    _log_stage(tracker, run_id, cfg, recorder, evals, llc_rows, step, lr_sum, sizes, schedule)
                    saved.upload_checkpoints(tracker, run_id, ckpt_dir)
                raise
            _log_stage(tracker, run_id, cfg, recorder, evals, llc_rows, step, lr_sum, sizes, schedule)
            saved.upload_checkpoints(tracker, run_id, ckpt_dir)
            summary = summarize_evals(pd.DataFrame(evals), int(cfg.llc.last))
            tracker.log_summary(run_id, summary)
    if saved.uploaded_state or resuming:
        tracker.delete_artifacts(run_id, train_state.FOLDER)
    return summary


def _log_stage(
    tracker: Tracker,
    run_id: str,
    cfg: DictConfig,
    recorder: DisplacementRecorder,
    evals: list[dict],
    llc_rows: list[dict],
    step: int,
    lr_sum: float,
    sizes: dict,
    schedule,
) -> None:
    """What the train stage logs, once: tables, step metrics and summary (a phased run's
    `total_steps` is the steps it took: its phases may stop early)."""
    if schedule is not None:
        sizes = {**sizes, "total_steps": step}
    log_records(tracker, run_id, recorder.table(upto=step), evals)
    tracker.log_summary(run_id, sizes)
    if step:
        tracker.log_summary(run_id, {"avg_lr": lr_sum / step})
    if schedule is not None:
        tracker.log_summary(run_id, schedule.summary())
        tracker.set_tags(run_id, schedule.tags())
    if llc_rows:
        llc.record(tracker, run_id, llc_rows, cfg)


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
