"""Many weight vectors of one architecture as one module: the stacked model every batched path uses.

`Stacked` holds M copies of a model's parameters stacked along a new leading axis and runs them with
`torch.func.functional_call` under `vmap`, so one forward and one backward serve every member: the
seeds of a batched ensemble, the checkpoints of a run in one λ pass, the chains of the posterior.
Because the loss is the sum of the members' own mean losses, each member's slice gets its own
gradient; an elementwise update (SGD, Adam, devinterp's SGLD) then treats the members independently.
Trainable tensors become stacked parameters; frozen ones (requires_grad=False in the base model)
are stacked too but stay frozen, so a sampler moves exactly the coordinates training moved. Buffers
(batch norm's running statistics) are stacked and updated per member.

Plain torch; no MLflow, no config.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state

from pipeline.slt.displacement import group_sums


class Stacked(nn.Module):
    """M members of `base`'s architecture: `forward(x)` gives outputs of shape (M, batch, ...).

    x is (M, batch, ...) (each member its own batch) or, with `shared`, (batch, ...) for all.
    `member` is the architecture (a copy of `base`; its mode, train or eval, is the members' mode).
    """

    def __init__(
        self,
        base: nn.Module,
        params: Mapping[str, torch.Tensor],
        buffers: Mapping[str, torch.Tensor],
        shared: bool = False,
    ) -> None:
        """From tensors stacked already (each of shape (M, *shape)); they are copied."""
        super().__init__()
        self.member = copy.deepcopy(base)
        self.shared = shared
        trainable = {n: p.requires_grad for n, p in base.named_parameters()}
        self.names = list(trainable)
        self.stacked = nn.ParameterList(
            [nn.Parameter(params[n].detach().clone(), requires_grad=trainable[n]) for n in self.names]
        )
        self.extra = {n: buffers[n].clone() for n, _ in base.named_buffers()}

    @classmethod
    def from_states(
        cls, base: nn.Module, states: Sequence[Mapping[str, torch.Tensor]], shared: bool = False
    ) -> Stacked:
        """From state dicts of `base`'s architecture (checkpoints), one member each."""
        names = [n for n, _ in base.named_parameters()] + [n for n, _ in base.named_buffers()]
        stacked = {n: torch.stack([s[n].detach() for s in states]) for n in names}
        return cls(base, stacked, stacked, shared)

    @classmethod
    def from_models(cls, models: Sequence[nn.Module], shared: bool = False) -> Stacked:
        """From models of one architecture (e.g. one per seed, each initialised as its run would be)."""
        params, buffers = stack_module_state(list(models))
        return cls(models[0], params, buffers, shared)

    def __len__(self) -> int:
        return int(self.stacked[0].shape[0])

    @property
    def params(self) -> dict[str, nn.Parameter]:
        """The stacked parameters by the base model's names, each (M, *shape)."""
        return dict(zip(self.names, self.stacked))

    def trainable(self) -> list[nn.Parameter]:
        """The stacked tensors an optimizer or sampler moves (frozen ones left out)."""
        return [p for p in self.stacked if p.requires_grad]

    def _apply(self, fn, recurse=True):  # .to(device) moves the stacked buffers as well
        self.extra = {k: fn(v) for k, v in self.extra.items()}
        return super()._apply(fn, recurse)

    def forward(self, x: torch.Tensor, shared: bool | None = None) -> torch.Tensor:
        def one(ps, bs, xb):
            return functional_call(self.member, (dict(zip(self.names, ps)), bs), (xb,))

        shared = self.shared if shared is None else shared
        vmapped = torch.vmap(one, in_dims=(0, 0, None if shared else 0), randomness="different")
        return vmapped(list(self.stacked), self.extra, x)

    def state_dict_of(self, i: int) -> dict[str, torch.Tensor]:
        """Member i's weights, in the form the base model's `load_state_dict` takes."""
        out = {n: p[i].detach().clone() for n, p in zip(self.names, self.stacked)}
        return out | {k: v[i].clone() for k, v in self.extra.items()}

    def member_model(self, i: int) -> nn.Module:
        """Member i as a stand-alone module (a copy: changing it leaves the stack alone)."""
        m = copy.deepcopy(self.member)
        m.load_state_dict(self.state_dict_of(i))
        return m

    def select(self, idx: Sequence[int]) -> Stacked:
        """A new stack of the chosen members (copies: sampling it leaves this one unchanged)."""
        t = torch.as_tensor(np.array(idx), dtype=torch.long)
        params = {n: p.detach()[t] for n, p in self.params.items()}
        buffers = {k: v[t] for k, v in self.extra.items()}
        return Stacked(self.member, params, buffers, self.shared)

    def flat(self) -> torch.Tensor:
        """All members' parameters as one (members, num_params) matrix."""
        return torch.cat([p.detach().flatten(1) for p in self.stacked], dim=1)

    def displacements(
        self, reference: Sequence[torch.Tensor], groups: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """‖w_m − reference_m‖² per member and stacked tensor, shape (members, tensors), and per
        member and coordinate group (`displacement.group_sums`, tensor by tensor, as the one-by-one
        recorder groups them), shape (members, groups): one pass over the weights for both."""
        with torch.no_grad():
            squares = [(p - p0).flatten(1).square() for p, p0 in zip(self.stacked, reference)]
            per_tensor = torch.stack([d2.sum(1) for d2 in squares], dim=1)
            return per_tensor, sum(group_sums(d2, groups) for d2 in squares)

    def squared_distances(self, reference: Sequence[torch.Tensor]) -> torch.Tensor:
        """‖w_m − reference_m‖² per member and stacked tensor: shape (members, tensors)."""
        with torch.no_grad():
            diffs = [(p - p0).flatten(1) for p, p0 in zip(self.stacked, reference)]
            return torch.stack([d.square().sum(1) for d in diffs], dim=1)
