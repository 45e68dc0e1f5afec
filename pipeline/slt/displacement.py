"""Weight displacement R(t) = ||w_t - w_0||_2, in total, per parameter tensor, and per group of
coordinates.

The recorder keeps squared norms in a preallocated tensor on the model's device, so the training
loop never waits on the host; the table is built once, at the end. The groups: every tensor's
elements, flattened, go round-robin into `GROUPS` groups (element k of a tensor into group k mod
GROUPS), so each group holds a share of every tensor and of every neuron; R(t)² is the sum of the
groups' squared displacements. The fit resamples the groups to put an interval on α (`exponent`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch
from torch import nn

GROUPS = 32  # coordinate groups recorded beside R(t)


def group_sums(d2: torch.Tensor, groups: int = GROUPS) -> torch.Tensor:
    """Sums of `d2` (squared displacements, shape (..., n): leading dims kept) over its last
    dimension's elements k ≡ g (mod `groups`), for g = 0..groups−1: shape (..., groups). Views only:
    no copy of the parameters."""
    n = d2.shape[-1]
    full = n // groups * groups
    out = d2[..., :full].reshape(*d2.shape[:-1], -1, groups).sum(-2)
    rest = d2[..., full:]
    if rest.shape[-1]:
        out[..., : rest.shape[-1]] += rest
    return out


def group_columns(groups: int = GROUPS) -> list[str]:
    """The trajectory table's columns of squared group displacements."""
    return [f"displacement_group/{g:02d}" for g in range(groups)]


def record_schedule(
    total_steps: int, every_step_up_to: int, log_points: int, extra: Iterable[int] = ()
) -> np.ndarray:
    """Steps (1-based) at which R(t) is recorded.

    Every step for runs of at most `every_step_up_to` steps; otherwise `log_points` log-spaced
    steps. The steps in `extra` (LLC and evaluation steps, so the paper's fit at the LLC interval
    has its points) and the last step are always included.
    """
    if total_steps <= every_step_up_to:
        steps = np.arange(1, total_steps + 1)
    else:
        steps = np.unique(np.geomspace(1, total_steps, log_points).round().astype(np.int64))
    extra_arr = np.fromiter((s for s in extra if 1 <= s <= total_steps), dtype=np.int64)
    return np.unique(np.concatenate([steps, extra_arr, [total_steps]]))


class DisplacementRecorder:
    """Records ||w_t - w_0|| per trainable tensor at the scheduled steps."""

    def __init__(self, model: nn.Module, steps: np.ndarray) -> None:
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.w0 = [p.detach().clone() for p in self.params]
        self.steps = np.asarray(steps, dtype=np.int64)
        self._row = {int(s): i for i, s in enumerate(self.steps)}
        device = self.params[0].device
        self._sq = torch.full((len(self.steps), len(self.names)), float("nan"), device=device)
        self._gsq = torch.full((len(self.steps), GROUPS), float("nan"), device=device)
        self._loss = torch.full((len(self.steps),), float("nan"), device=device)

    def wants(self, step: int) -> bool:
        return step in self._row

    @torch.no_grad()
    def record(self, step: int, loss: torch.Tensor) -> None:
        """Store the squared displacement of every tensor and the batch loss at `step` (a step off
        the schedule, such as the last step of a run a phase ended early, gets a row of its own)."""
        if step not in self._row:
            self._row[step] = len(self.steps)
            self.steps = np.append(self.steps, step)
            self._sq = torch.cat([self._sq, torch.full_like(self._sq[:1], float("nan"))])
            self._gsq = torch.cat([self._gsq, torch.full_like(self._gsq[:1], float("nan"))])
            self._loss = torch.cat([self._loss, torch.full_like(self._loss[:1], float("nan"))])
        i = self._row[step]
        diffs = torch._foreach_sub(self.params, self.w0)
        self._sq[i] = torch.stack(torch._foreach_norm(diffs)).square()
        self._gsq[i] = sum(group_sums(d.flatten().square()) for d in diffs)
        self._loss[i] = loss.detach()

    def table(self, upto: int | None = None) -> pd.DataFrame:
        """Columns: step, displacement, train_batch_loss, displacement/<tensor name>...,
        displacement_group/<g> (squared)..."""
        order = np.argsort(self.steps, kind="stable")  # rows added off the schedule go in place
        steps = self.steps[order]
        sq = self._sq.cpu().double().numpy()[order]
        keep = steps <= (upto if upto is not None else steps[-1])
        data = {
            "step": steps[keep],
            "displacement": np.sqrt(sq[keep].sum(axis=1)),
            "train_batch_loss": self._loss.cpu().double().numpy()[order][keep],
        }
        for j, name in enumerate(self.names):
            data[f"displacement/{name}"] = np.sqrt(sq[keep, j])
        gsq = self._gsq.cpu().double().numpy()[order]
        for g, column in enumerate(group_columns()):
            data[column] = gsq[keep, g]
        return pd.DataFrame(data)

    def state_dict(self) -> dict:
        """What was recorded so far, to continue recording after a resume."""
        return {
            "steps": self.steps,
            "sq": self._sq.cpu(),
            "gsq": self._gsq.cpu(),
            "loss": self._loss.cpu(),
            "w0": [w.cpu() for w in self.w0],
        }

    def load_state_dict(self, state: dict) -> None:
        device = self.params[0].device
        self.steps = np.asarray(state["steps"], dtype=np.int64)
        self._row = {int(s): i for i, s in enumerate(self.steps)}
        self._sq, self._loss = state["sq"].to(device), state["loss"].to(device)
        # A state saved before the groups were recorded: their rows so far stay NaN (no group interval).
        self._gsq = (
            state["gsq"].to(device)
            if "gsq" in state
            else torch.full((len(self.steps), GROUPS), float("nan"), device=device)
        )
        self.w0 = [w.to(device) for w in state["w0"]]
