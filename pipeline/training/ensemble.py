"""Batched ensembles: many seeds of one model trained at once, each the twin of its one-by-one run.

Each member is built as the train stage builds a run's model (the caller passes one model per seed)
and sees the data order of a one-by-one run with that seed (`Data.member_batches`: a permutation per
epoch from `torch.Generator().manual_seed(seed)`, as `Data.epoch` draws it). The members are one
`Stacked` module, so one optimizer step updates every member.

Why one optimizer on the stacked tensors is each member's own optimizer: the loss is the sum of the
members' mean losses, so the gradient of a member's slice is that member's gradient, and the torch
optimizers the configs name (SGD with momentum and weight decay, Adam, AdamW, RMSprop) act
elementwise. An optimizer that couples coordinates across a tensor (LBFGS, gradient-norm clipping
inside the step) would couple the members; the config check refuses those. Buffers (batch norm's
running statistics) are stacked too and updated per member, so batch-norm models match their
one-by-one twins as well. Plain torch; the posterior experiment and seed sweeps both use it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from pipeline.data import Data
from pipeline.data.batches import endless
from pipeline.models.tasks import Task
from pipeline.progress import bar
from pipeline.slt.displacement import GROUPS, group_columns
from pipeline.slt.stacked import Stacked
from pipeline.training.loop import Plan


@dataclass
class Trained:
    """What training an ensemble produced."""

    stacked: Stacked
    trajectory: pd.DataFrame  # member, seed, step, displacement, train_batch_loss, displacement/<name>
    evals: pd.DataFrame  # member, seed, step, train/test loss and accuracy
    steps: int


def evaluate(
    stacked: Stacked, task: Task, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every member's mean loss and accuracy on (x, y), in eval mode; two (members,) tensors."""
    was_training = stacked.training
    stacked.eval()
    out = task.evaluate_members(lambda xc: stacked(xc, shared=True), len(stacked), x, y)
    stacked.train(was_training)
    return out


def train(
    stacked: Stacked,
    optimizer: torch.optim.Optimizer,
    task: Task,
    data: Data,
    seeds: Sequence[int],
    plan: Plan,
    device: str,
    progress: bool | None = None,
    snapshot: Callable[[int, Stacked], None] | None = None,
) -> Trained:
    """Train the members of `stacked` (one per seed, at w_0) with `optimizer` (built on
    `stacked.trainable()`) for `plan.steps` steps, all at once.

    Records R(t) = ||w_t - w_0|| per member (total and per tensor) at the plan's recording steps,
    and every member's train/test loss and accuracy at its evaluation steps. `snapshot(step,
    stacked)` is called at the plan's checkpoint steps (w_0, every λ step, the last step)."""
    stacked.train()
    data.to(device)  # once: the members' batches and the evaluations slice the same tensors
    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    schedule = plan.record_steps()
    row_of = {int(s): i for i, s in enumerate(schedule)}
    eval_steps, kept = plan.eval_steps, plan.checkpoint_steps
    w0 = [p.detach().clone() for p in stacked.stacked]
    m = len(stacked)
    sq = torch.full((len(schedule), m, len(stacked.names)), float("nan"), device=device)
    gsq = torch.full((len(schedule), m, GROUPS), float("nan"), device=device)
    batch_loss = torch.full((len(schedule), m), float("nan"), device=device)
    evals: list[pd.DataFrame] = []
    if snapshot is not None:
        snapshot(0, stacked)
    batches = endless(data.member_batches(list(seeds), device))
    with bar(progress, total=plan.steps, desc=f"ensemble ({m} members)") as pbar:
        for step, (xb, yb) in zip(range(1, plan.steps + 1), batches):
            optimizer.zero_grad(set_to_none=True)
            per = task.member_losses(stacked(xb), yb)
            per.sum().backward()  # each member's slice gets that member's own gradient
            optimizer.step()
            if step in row_of:
                sq[row_of[step]], gsq[row_of[step]] = stacked.displacements(w0, GROUPS)
                batch_loss[row_of[step]] = per.detach()
            if step in eval_steps:
                evals.append(_eval_frame(stacked, task, seeds, step, x_train, y_train, x_test, y_test))
                pbar.set_postfix(loss=f"{evals[-1]['train_loss'].median():.4f}", refresh=False)
            if snapshot is not None and step in kept:
                snapshot(step, stacked)
            pbar.update(1)
    traj = _trajectory(
        schedule,
        sq.cpu().double().numpy(),
        batch_loss.cpu().double().numpy(),
        stacked.names,
        seeds,
        gsq.cpu().double().numpy(),
    )
    return Trained(
        stacked=stacked, trajectory=traj, evals=pd.concat(evals, ignore_index=True), steps=plan.steps
    )


def _eval_frame(stacked, task, seeds, step, x_train, y_train, x_test, y_test) -> pd.DataFrame:
    train_loss, train_acc = evaluate(stacked, task, x_train, y_train)
    test_loss, test_acc = evaluate(stacked, task, x_test, y_test)
    return pd.DataFrame(
        {
            "member": np.arange(len(stacked)),
            "seed": list(seeds),
            "step": step,
            "train_loss": train_loss.cpu().double().numpy(),
            "train_acc": train_acc.cpu().double().numpy(),
            "test_loss": test_loss.cpu().double().numpy(),
            "test_acc": test_acc.cpu().double().numpy(),
        }
    )


def _trajectory(
    schedule: np.ndarray,
    sq: np.ndarray,
    batch_loss: np.ndarray,
    names: list[str],
    seeds: Sequence[int],
    gsq: np.ndarray,
) -> pd.DataFrame:
    """Long table, one row per (member, recorded step), with the train stage's columns."""
    s, m, _ = sq.shape
    data = {
        "member": np.repeat(np.arange(m), s),
        "seed": np.repeat(np.asarray(seeds), s),
        "step": np.tile(schedule, m),
        "displacement": np.sqrt(sq.sum(axis=2)).T.ravel(),
        "train_batch_loss": batch_loss.T.ravel(),
    }
    for j, name in enumerate(names):
        data[f"displacement/{name}"] = np.sqrt(sq[:, :, j]).T.ravel()
    for g, column in enumerate(group_columns()):
        data[column] = gsq[:, :, g].T.ravel()
    return pd.DataFrame(data)
