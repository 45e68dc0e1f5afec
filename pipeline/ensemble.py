"""Batched ensembles: many copies of one model, defined by seeds, trained at once.

Each member is built exactly as the train stage builds a run's model (`build.model` with the
member's seed) and sees the data order of a one-by-one run with that seed (a
`torch.Generator().manual_seed(seed)` permutation per epoch, as `Data.epoch` draws it). The
members' parameters are stacked along a new leading axis and the forward pass is
`torch.func.functional_call` under `vmap`, so one optimizer step updates every member.

Why one optimizer on the stacked tensors is each member's own optimizer: the loss is the sum of
the members' mean losses, so the gradient of a member's slice is that member's gradient, and the
torch optimizers the configs name (SGD with momentum and weight decay, Adam, AdamW) act elementwise.
An optimizer that couples coordinates across a tensor (LBFGS, gradient-norm clipping inside the
step) would couple the members and is refused. Buffers (batch norm's running statistics) are
stacked too and updated per member, so batch-norm models match their one-by-one twins as well.

Plain torch plus the config; no MLflow. The posterior experiment and seed sweeps both use it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn
from torch.func import functional_call, stack_module_state

from pipeline import build, config
from pipeline.data import Data
from pipeline.displacement import record_schedule
from pipeline.errors import UserError
from pipeline.progress import bar

# Optimizers whose update is elementwise (or per-tensor only through elementwise state).
ELEMENTWISE = ("torch.optim.SGD", "torch.optim.Adam", "torch.optim.AdamW", "torch.optim.RMSprop")


def with_seed(cfg: DictConfig, seed: int) -> DictConfig:
    """A copy of the config for one member: the run config a one-by-one job with `seed` has."""
    member = copy.deepcopy(cfg)
    with open_dict(member):
        member.seed = int(seed)
    return member


@dataclass
class Ensemble:
    """Stacked members: `params[name]` has shape (members, *shape of the tensor)."""

    base: nn.Module
    seeds: list[int]
    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]

    @classmethod
    def build(cls, cfg: DictConfig, data: Data, seeds: Sequence[int]) -> Ensemble:
        """One member per seed, each initialised as `build.model` does for a run with that seed."""
        members = [build.model(with_seed(cfg, s), data) for s in seeds]
        params, buffers = stack_module_state(members)
        base = copy.deepcopy(members[0])
        return cls(base=base, seeds=[int(s) for s in seeds], params=params, buffers=buffers)

    def __len__(self) -> int:
        return len(self.seeds)

    def forward(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        """Outputs of every member: x is (members, batch, ...), or (batch, ...) with `shared`."""

        def one(p: dict, b: dict, xb: torch.Tensor) -> torch.Tensor:
            return functional_call(self.base, (p, b), (xb,))

        in_x = None if shared else 0
        return torch.vmap(one, in_dims=(0, 0, in_x), randomness="different")(self.params, self.buffers, x)

    def state_dict(self, i: int) -> dict[str, torch.Tensor]:
        """Member i's weights in the form `nn.Module.load_state_dict` takes."""
        out = {k: v[i].detach().clone() for k, v in self.params.items()}
        out.update({k: v[i].detach().clone() for k, v in self.buffers.items()})
        return out

    def member(self, i: int) -> nn.Module:
        """Member i as a stand-alone module (a copy; changing it leaves the ensemble alone)."""
        m = copy.deepcopy(self.base)
        m.load_state_dict(self.state_dict(i))
        return m

    def select(self, idx: Sequence[int]) -> Ensemble:
        """A new ensemble of the chosen members (copies: training it leaves this one unchanged)."""
        t = torch.as_tensor(np.array(idx), dtype=torch.long)
        params = {k: v.detach()[t].clone().requires_grad_() for k, v in self.params.items()}
        buffers = {k: v[t].clone() for k, v in self.buffers.items()}
        return Ensemble(base=self.base, seeds=[self.seeds[i] for i in idx], params=params, buffers=buffers)

    def flat(self) -> torch.Tensor:
        """All members' parameters as one (members, num_params) matrix."""
        return torch.cat([p.detach().flatten(1) for p in self.params.values()], dim=1)


@dataclass
class Trained:
    """What training an ensemble produced."""

    ensemble: Ensemble
    trajectory: pd.DataFrame  # member, seed, step, displacement, train_batch_loss, displacement/<name>
    evals: pd.DataFrame  # member, seed, step, train/test loss and accuracy
    steps: int


def check_optimizer(cfg: DictConfig) -> None:
    target = str(cfg.optimizer._target_)
    if target not in ELEMENTWISE:
        raise UserError(
            f"optimizer {target} is not known to act elementwise, so stacked members would be "
            f"coupled: use one of {', '.join(ELEMENTWISE)}"
        )


def member_losses(ens: Ensemble, xb: torch.Tensor, yb: torch.Tensor, loss: Callable) -> torch.Tensor:
    """Each member's mean loss on its own batch: xb (members, batch, ...), yb (members, batch)."""
    out = ens.forward(xb)
    return loss(out.flatten(0, 1), yb.flatten(), reduction="none").view(len(ens), -1).mean(1)


@torch.no_grad()
def evaluate(
    ens: Ensemble, x: torch.Tensor, y: torch.Tensor, loss: Callable = F.cross_entropy
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every member's mean loss and accuracy on (x, y), in eval mode; two (members,) tensors."""
    was_training = ens.base.training
    ens.base.eval()
    total = torch.zeros(len(ens), device=y.device)
    correct = torch.zeros(len(ens), device=y.device)
    for i in range(0, len(y), 8192):
        out = ens.forward(x[i : i + 8192], shared=True)  # (members, batch, classes)
        yb = y[i : i + 8192]
        per = loss(out.flatten(0, 1), yb.repeat(len(ens)), reduction="none").view(len(ens), -1)
        total += per.sum(1)
        correct += (out.argmax(-1) == yb).sum(1)
    ens.base.train(was_training)
    return total / len(y), correct / len(y)


def batches(seeds: Sequence[int], data: Data, device: str) -> Iterator[torch.Tensor]:
    """Endless (members, batch) index tensors: member i's batches are exactly those `Data.epoch`
    yields a one-by-one run seeded `seeds[i]` (one generator per member, a permutation per epoch)."""
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    while True:
        order = torch.stack([torch.randperm(data.n_train, generator=g) for g in gens]).to(device)
        for start in range(0, data.n_train, data.batch_size):
            yield order[:, start : start + data.batch_size]


def train(
    cfg: DictConfig,
    data: Data,
    seeds: Sequence[int],
    progress: bool | None = None,
    loss: Callable = F.cross_entropy,
    snapshot: Callable[[int, Ensemble], None] | None = None,
) -> Trained:
    """Train one member per seed with `cfg`'s model, optimizer and schedule, all at once.

    Records R(t) = ||w_t - w_0|| per member (total and per tensor) on the train stage's schedule,
    and every member's train/test loss and accuracy every `train.eval_every` steps. `snapshot(step,
    ensemble)` is called where the train stage keeps checkpoints: at step 0, every `llc.every` steps
    and at the last step.
    """
    check_optimizer(cfg)
    device = cfg.device
    steps = config.check_with_data(cfg, data.n_train, data.steps_per_epoch)
    ens = Ensemble.build(cfg, data, seeds)
    ens.base.train()
    opt = instantiate(cfg.optimizer)(list(ens.params.values()))
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)

    every, eval_every = int(cfg.llc.every), int(cfg.train.eval_every)
    eval_steps = set(range(eval_every, steps + 1, eval_every)) | {steps}
    schedule = record_schedule(
        steps,
        int(cfg.train.record_every_step_up_to),
        int(cfg.train.record_log_points),
        extra=[*range(every, steps + 1, every), *eval_steps],
    )
    row_of = {int(s): i for i, s in enumerate(schedule)}
    names = list(ens.params)
    w0 = [p.detach().clone() for p in ens.params.values()]
    m = len(ens)
    sq = torch.full((len(schedule), m, len(names)), float("nan"), device=device)
    batch_loss = torch.full((len(schedule), m), float("nan"), device=device)
    evals: list[pd.DataFrame] = []
    kept = {0, *range(every, steps + 1, every), steps}
    if snapshot is not None:
        snapshot(0, ens)
    with bar(progress, total=steps, desc=f"ensemble ({m} members)") as pbar:
        for step, idx in zip(range(1, steps + 1), batches(seeds, data, device)):
            xb, yb = x_train[idx], y_train[idx]
            opt.zero_grad(set_to_none=True)
            per = member_losses(ens, xb, yb, loss)
            per.sum().backward()  # each member's slice gets that member's own gradient
            opt.step()
            if step in row_of:
                with torch.no_grad():
                    diffs = [(p - p0).flatten(1) for p, p0 in zip(ens.params.values(), w0)]
                    sq[row_of[step]] = torch.stack([d.square().sum(1) for d in diffs], dim=1)
                    batch_loss[row_of[step]] = per.detach()
            if step in eval_steps:
                evals.append(_eval_frame(ens, step, x_train, y_train, x_test, y_test, loss))
                pbar.set_postfix(loss=f"{evals[-1]['train_loss'].median():.4f}", refresh=False)
            if snapshot is not None and step in kept:
                snapshot(step, ens)
            pbar.update(1)
    traj = _trajectory(
        schedule, sq.cpu().double().numpy(), batch_loss.cpu().double().numpy(), names, ens.seeds
    )
    return Trained(ensemble=ens, trajectory=traj, evals=pd.concat(evals, ignore_index=True), steps=steps)


def _eval_frame(ens, step, x_train, y_train, x_test, y_test, loss) -> pd.DataFrame:
    train_loss, train_acc = evaluate(ens, x_train, y_train, loss)
    test_loss, test_acc = evaluate(ens, x_test, y_test, loss)
    return pd.DataFrame(
        {
            "member": np.arange(len(ens)),
            "seed": ens.seeds,
            "step": step,
            "train_loss": train_loss.cpu().double().numpy(),
            "train_acc": train_acc.cpu().double().numpy(),
            "test_loss": test_loss.cpu().double().numpy(),
            "test_acc": test_acc.cpu().double().numpy(),
        }
    )


def _trajectory(
    schedule: np.ndarray, sq: np.ndarray, batch_loss: np.ndarray, names: list[str], seeds: list[int]
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
    return pd.DataFrame(data)


def seeds_of(cfg: DictConfig) -> list[int]:
    """The members' seeds: `ensemble.seeds` when given, else `members` seeds from `first_seed`."""
    e = cfg.ensemble
    if e.get("seeds"):
        seeds = [int(s) for s in OmegaConf.to_container(e.seeds)]
    else:
        seeds = list(range(int(e.first_seed), int(e.first_seed) + int(e.members)))
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"ensemble seeds {seeds[:5]}...: give ≥ 1 distinct seeds (ensemble.members=500)")
    return seeds
