"""One model's training loop: SGD (or any torch optimizer, or a phase schedule) on in-memory data.

The loop is flat: take a batch, step, record R(t), evaluate, checkpoint. What it does when is a
`Plan`; what happens to checkpoints, online λ estimates and the resume state is the caller's
(`Hooks`), so the loop knows nothing of MLflow. Interruptions (SIGTERM, Slurm's USR2) wait for the
end of the step (`pipeline.interrupts`): the state the loop hands `Hooks.save` then is consistent,
and a resumed loop continues bit for bit (same machine and threads).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from pipeline.data import Data
from pipeline.errors import Diverged
from pipeline.interrupts import INTERRUPTS
from pipeline.models.tasks import Task
from pipeline.progress import bar
from pipeline.slt.displacement import DisplacementRecorder, record_schedule
from pipeline.training.phases import PhaseSchedule


@dataclass(frozen=True)
class Plan:
    """When the loop records, evaluates and keeps checkpoints (steps are 1-based; checkpoint 0 is w_0).

    λ steps every `llc_every`; evaluations every `eval_every` and at the end; R(t) at every step up to
    `record_every_step_up_to` steps, else at `record_log_points` log-spaced ones (plus those steps);
    checkpoints at w_0, every λ step (`keep_checkpoints`) and the last step."""

    steps: int
    llc_every: int
    eval_every: int
    record_every_step_up_to: int = 20_000
    record_log_points: int = 500
    keep_checkpoints: bool = True

    @property
    def llc_steps(self) -> list[int]:
        return list(range(self.llc_every, self.steps + 1, self.llc_every))

    @property
    def eval_steps(self) -> set[int]:
        return set(range(self.eval_every, self.steps + 1, self.eval_every)) | {self.steps}

    @property
    def checkpoint_steps(self) -> set[int]:
        return ({0, *self.llc_steps} if self.keep_checkpoints else {0}) | {self.steps}

    def record_steps(self) -> np.ndarray:
        return record_schedule(
            self.steps,
            self.record_every_step_up_to,
            self.record_log_points,
            extra=[*self.llc_steps, *self.eval_steps],
        )


@dataclass
class Hooks:
    """What the caller does with the loop's products: `checkpoint(step, model)` at the plan's
    checkpoint steps (w_0 when the loop starts at step 0); `estimate(step, model)` (online λ, a
    row) at λ steps when set; `save(state)` the resume state, at λ steps when `save_due()` says so
    and when an interruption arrives."""

    checkpoint: Callable[[int, nn.Module], None]
    save: Callable[[dict], None]
    save_due: Callable[[], bool] = lambda: False
    estimate: Callable[[int, nn.Module], dict] | None = None


def evaluate(task: Task, model: nn.Module, data: Data, step: int, batch_loss: torch.Tensor) -> dict:
    """Train and test loss and accuracy at `step`; Diverged when the training loss is not finite."""
    train_loss, train_acc = task.evaluate(model, data.x_train, data.y_train)
    test_loss, test_acc = task.evaluate(model, data.x_test, data.y_test)
    if not (math.isfinite(train_loss) and math.isfinite(batch_loss.item())):
        raise Diverged.at(step, train_loss)
    return {
        "step": step,
        "train_loss": train_loss,
        "train_acc": train_acc,
        "test_loss": test_loss,
        "test_acc": test_acc,
    }


@dataclass
class Loop:
    """A model's training and everything it carries from step to step (its resume state)."""

    model: nn.Module
    task: Task
    data: Data
    plan: Plan
    seed: int
    optimizer: torch.optim.Optimizer | None = None  # one optimizer, or ...
    schedule: PhaseSchedule | None = None  # ... phases, each with its own (train.phases)
    step: int = 0
    lr_sum: float = 0.0  # Σ of the learning rate over the steps: Fig. 2b's average learning rate
    skip: int = 0  # batches of the current epoch a resumed loop took before it was interrupted
    evals: list[dict] = field(default_factory=list)
    llc_rows: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.recorder = DisplacementRecorder(self.model, self.plan.record_steps())
        self.generator = torch.Generator().manual_seed(int(self.seed))  # `Data.epoch` draws from it
        if self.schedule is not None:
            self.optimizer = self.schedule.optimizer

    @property
    def done(self) -> bool:
        return self.step == self.plan.steps or (self.schedule is not None and self.schedule.done)

    def state_dict(self, epoch_generator: torch.Tensor, batch_in_epoch: int) -> dict:
        """The resume state (see `pipeline.training.state`)."""
        return {
            "step": self.step,
            "lr_sum": self.lr_sum,
            "batch_in_epoch": batch_in_epoch,
            "epoch_generator": epoch_generator,
            "torch_rng": torch.get_rng_state(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.schedule is None else None,
            "schedule": self.schedule.state_dict() if self.schedule is not None else None,
            "recorder": self.recorder.state_dict(),
            "evals": self.evals,
            "llc_rows": self.llc_rows,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from a resume state: at its step, with its weights, optimizer and data order."""
        self.step, self.lr_sum, self.skip = state["step"], state["lr_sum"], state["batch_in_epoch"]
        self.evals, self.llc_rows = state["evals"], state["llc_rows"]
        self.model.load_state_dict(state["model"])
        if self.schedule is not None:
            self.schedule.load_state_dict(state["schedule"])
            self.optimizer = self.schedule.optimizer
        else:
            self.optimizer.load_state_dict(state["optimizer"])
        self.recorder.load_state_dict(state["recorder"])
        self.generator.set_state(state["epoch_generator"])
        torch.set_rng_state(state["torch_rng"])

    def run(self, hooks: Hooks, progress: bool | None = None) -> None:
        """Train to the plan's last step (or until the phases end), from where the loop stands."""
        model, task, data, plan = self.model, self.task, self.data, self.plan
        every, eval_steps, ckpt_steps = plan.llc_every, plan.eval_steps, plan.checkpoint_steps
        if self.step == 0:  # w_0, before the first step (a resumed loop has it already)
            hooks.checkpoint(0, model)
        with INTERRUPTS.deferred(), bar(progress, total=plan.steps, initial=self.step, desc="train") as pbar:
            last = self.done
            while not last:
                epoch_generator = self.generator.get_state()  # Data.epoch draws its permutation from here
                for b, (xb, yb) in enumerate(data.epoch(self.generator)):
                    if b < self.skip:  # batches a resumed run took before it was interrupted
                        continue
                    self.step += 1
                    step = self.step
                    self.optimizer.zero_grad(set_to_none=True)
                    loss = task.loss(model(xb), yb)
                    loss.backward()
                    self.optimizer.step()
                    self.lr_sum += self.optimizer.param_groups[0]["lr"]
                    last = step == plan.steps
                    if self.schedule is not None:
                        last = self.schedule.after_step(step, loss.item()) or last
                        self.optimizer = self.schedule.optimizer
                    if self.recorder.wants(step) or last:  # a phase may end the run early
                        self.recorder.record(step, loss)
                    if step in eval_steps or last:
                        self.evals.append(evaluate(task, model, data, step, loss))
                        pbar.set_postfix(loss=f"{self.evals[-1]['train_loss']:.4f}", refresh=False)
                    if hooks.estimate is not None and step % every == 0:
                        self.llc_rows.append({"step": step, **hooks.estimate(step, model)})
                    if step in ckpt_steps or last:
                        hooks.checkpoint(step, model)
                    # At λ steps only (checkpoints, or online λ): the hot loop pays nothing.
                    if step % every == 0 and not last and hooks.save_due():
                        hooks.save(self.state_dict(epoch_generator, b + 1))
                    pbar.update(1)
                    if INTERRUPTS.pending:  # SIGTERM, SIGINT, Slurm's USR2
                        hooks.save(self.state_dict(epoch_generator, b + 1))
                        INTERRUPTS.fire()
                    if last:
                        break
                self.skip = 0
