"""Training in phases, each with its own optimizer and stopping rule (the Tiny ImageNet protocol).

Appendix G.2: fit the new head with Adam (lr 1e-3, weight decay 1e-4) for at most 20 epochs,
stopping early when the loss does not decrease by more than 1e-4 over 3 epochs; then SGD (lr 1e-5,
no weight decay) for 2000 steps. A `PhaseSchedule` owns the optimizer the training loop steps and
swaps it at phase boundaries; the loop only reports each step's loss. Plain torch, no Hydra/MLflow.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.errors import UserError

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


@dataclass
class Phase:
    """One phase: an optimizer and how long it runs.

    It runs `steps` steps, or else whole epochs up to `max_epochs`, ending early when the epoch's
    mean training loss has not fallen below the best so far by more than `min_delta` for
    `patience` epochs in a row (`min_delta` null: no early stopping).
    """

    name: str
    optimizer: OptimizerFactory
    steps: int | None = None
    max_epochs: int | None = None
    min_delta: float | None = None
    patience: int = 3

    def max_steps(self, steps_per_epoch: int) -> int:
        return int(self.steps) if self.steps is not None else int(self.max_epochs) * steps_per_epoch


def check(phases: Mapping[str, Mapping]) -> None:
    """One-line errors for a phase table that cannot run (before any data or run exists)."""
    if not phases:
        raise UserError("train.phases is empty: give at least one phase, or leave train.phases out")
    for name, p in phases.items():
        where = f"train.phases.{name}"
        if "optimizer" not in p:
            raise UserError(f"{where} has no optimizer: add {where}.optimizer with a _target_")
        if (p.get("steps") is None) == (p.get("max_epochs") is None):
            raise UserError(f"{where}: set exactly one of steps and max_epochs")
        length = p.get("steps") if p.get("steps") is not None else p.get("max_epochs")
        if int(length) < 1:
            raise UserError(f"{where}: steps / max_epochs must be ≥ 1, got {length}")
        if p.get("min_delta") is not None and p.get("steps") is not None:
            raise UserError(f"{where}: early stopping (min_delta) needs max_epochs, not steps")
        if int(p.get("patience", 3)) < 1:
            raise UserError(f"{where}.patience={p.get('patience')} must be ≥ 1")


def max_steps(phases: Mapping[str, Mapping], steps_per_epoch: int) -> int:
    """The run's length when no phase stops early (an upper bound for the training loop)."""
    check(phases)
    return sum(
        int(p["steps"]) if p.get("steps") is not None else int(p["max_epochs"]) * steps_per_epoch
        for p in phases.values()
    )


class PhaseSchedule:
    """Runs the phases in order; `optimizer` is the current phase's, over the trainable parameters.

    Epochs are counted from each phase's first step in units of `steps_per_epoch` optimizer steps
    (the training loop's batches), so early stopping sees whole passes over the data.
    """

    def __init__(self, phases: list[Phase], model: nn.Module, steps_per_epoch: int) -> None:
        self.phases, self.model, self.steps_per_epoch = phases, model, int(steps_per_epoch)
        self.index = 0
        self.records: list[dict] = []
        self._begin(start_step=1)

    def _begin(self, start_step: int) -> None:
        phase = self.phases[self.index]
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = phase.optimizer(params)
        self._start, self._epoch_losses, self._sum, self._count = start_step, [], 0.0, 0
        self._best, self._stale = math.inf, 0

    @property
    def phase(self) -> Phase:
        return self.phases[self.index]

    @property
    def done(self) -> bool:
        return self.index >= len(self.phases)

    def after_step(self, step: int, loss: float) -> bool:
        """Account for optimizer step `step` (1-based, counted over the run) with batch loss `loss`;
        switch to the next phase when this one ends. Returns True once the last phase has ended."""
        phase = self.phase
        self._sum, self._count = self._sum + float(loss), self._count + 1
        in_phase = step - self._start + 1
        reason = None
        if phase.steps is not None:
            reason = "steps" if in_phase >= phase.steps else None
        elif in_phase % self.steps_per_epoch == 0:
            reason = self._end_of_epoch(phase)
        if reason is None:
            return False
        self.records.append(
            {
                "phase": phase.name,
                "start_step": self._start,
                "end_step": step,
                "epochs": in_phase / self.steps_per_epoch,
                "stopped_by": reason,
            }
        )
        self.index += 1
        if not self.done:
            self._begin(start_step=step + 1)
        return self.done

    def _end_of_epoch(self, phase: Phase) -> str | None:
        mean = self._sum / self._count
        self._epoch_losses.append(mean)
        self._sum, self._count = 0.0, 0
        if phase.min_delta is not None:
            if mean < self._best - float(phase.min_delta):
                self._best, self._stale = mean, 0
            else:
                self._stale += 1
            if self._stale >= int(phase.patience):
                return "early_stop"
        return "max_epochs" if len(self._epoch_losses) >= int(phase.max_epochs) else None

    def state_dict(self) -> dict:
        """Where the schedule stands (the phase, its optimizer, the early-stopping counters)."""
        keys = ("index", "records", "_start", "_epoch_losses", "_sum", "_count", "_best", "_stale")
        return copy.deepcopy(
            {"optimizer": self.optimizer.state_dict(), **{k: getattr(self, k) for k in keys}}
        )

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state_dict()`: the current phase's optimizer is rebuilt, then restored."""
        self.index = int(state["index"])
        if not self.done:
            self._begin(start_step=int(state["_start"]))
            self.optimizer.load_state_dict(state["optimizer"])
        for k in ("records", "_start", "_epoch_losses", "_sum", "_count", "_best", "_stale"):
            setattr(self, k, copy.deepcopy(state[k]))

    def summary(self) -> dict[str, float]:
        """Summary metrics `phase/<name>/start_step`, `.../end_step`, `.../epochs` of ended phases."""
        out: dict[str, float] = {}
        for r in self.records:
            for key in ("start_step", "end_step", "epochs"):
                out[f"phase/{r['phase']}/{key}"] = float(r[key])
        return out

    def tags(self) -> dict[str, str]:
        """Tag `phase.<name>` per ended phase: its steps and why it ended."""
        return {
            f"phase.{r['phase']}": f"steps {r['start_step']}-{r['end_step']}, {r['stopped_by']}"
            for r in self.records
        }
