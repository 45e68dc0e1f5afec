"""Many weight vectors of one architecture as one module, and the minibatches devinterp draws for each.

`Stacked` holds M copies of a model's parameters stacked along a new leading axis and runs them with
`torch.func.functional_call` under `vmap`, so one forward and one backward serve every member.
devinterp's SGLD update is elementwise, so handed a `Stacked` module it runs M independent chains in
one pass: each member's slice gets its own gradient (the loss is the sum of the members' own mean
losses) and its own Gaussian noise.

`MemberBatches` is the in-memory stand-in for `DataLoader(TensorDataset(x, y), batch_size,
shuffle=True, generator=torch.Generator().manual_seed(seed))`: it yields, for every member, exactly
the batches such a DataLoader with that member's seed yields (the same draws on the same generator:
one int64 for the iterator's base seed, then a permutation per pass, and the extra permutation torch's
`RandomSampler` draws when a pass is used up), sliced from tensors already in memory instead of
collated sample by sample. With one member it serves the single-model path too.

Plain torch; no MLflow, no config.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.data import DataLoader, TensorDataset


class Stacked(nn.Module):
    """M members of `base`'s architecture: `forward(x)` gives outputs of shape (M, batch, ...).

    x is (M, batch, ...) (each member its own batch) or, with `shared=True`, (batch, ...) for all.
    Trainable tensors become stacked parameters; frozen ones (requires_grad=False in `base`) are
    stacked too but stay frozen, so a sampler moves exactly the coordinates training moved.
    Buffers (batch norm's running statistics) are stacked and updated per member.
    """

    def __init__(
        self,
        base: nn.Module,
        params: Mapping[str, torch.Tensor],
        buffers: Mapping[str, torch.Tensor],
        shared: bool = False,
    ) -> None:
        """From tensors stacked already (an `Ensemble`'s `params` and `buffers`); they are copied."""
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

    def __len__(self) -> int:
        return int(self.stacked[0].shape[0])

    def _apply(self, fn, recurse=True):  # .to(device) moves the stacked buffers as well
        self.extra = {k: fn(v) for k, v in self.extra.items()}
        return super()._apply(fn, recurse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def one(ps, bs, xb):
            return functional_call(self.member, (dict(zip(self.names, ps)), bs), (xb,))

        in_x = None if self.shared else 0
        vmapped = torch.vmap(one, in_dims=(0, 0, in_x), randomness="different")
        return vmapped(list(self.stacked), self.extra, x)

    def state_dict_of(self, i: int) -> dict[str, torch.Tensor]:
        """Member i's weights, in the form the base model's `load_state_dict` takes."""
        out = {n: p[i].detach().clone() for n, p in zip(self.names, self.stacked)}
        return out | {k: v[i].clone() for k, v in self.extra.items()}


class MemberBatches(DataLoader):
    """Per-member shuffled minibatches from in-memory tensors; iterating gives one pass over the data.

    A DataLoader only in type (devinterp computes its default nβ only for DataLoaders, from
    `batch_size`, and evaluates that default even when nβ is given): no dataset, sampler or workers.

    Each item is `(x, y)` with x of shape (M, batch, ...) (or (batch, ...) for a single stream, `M=None`)
    and y likewise. Member i's batches are those of a shuffled torch DataLoader seeded `seeds[i]`, pass
    after pass, as devinterp's `cycle(loader)` consumes it; an abandoned pass draws no more, as there.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seeds: Sequence[int] | int) -> None:
        # DataLoader.__init__ is not called: nothing of its machinery is used.
        self.single = isinstance(seeds, int)
        self.x, self.y = x, y
        # devinterp re-reads the data through `dataset` when a loss at w_t of exactly 0 is passed.
        self.dataset = TensorDataset(x, y)
        self.batch_size = int(batch_size)
        self.n = len(y)
        self.generators = [torch.Generator().manual_seed(int(s)) for s in ([seeds] if self.single else seeds)]

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)  # the last, smaller batch is kept, as DataLoader does

    def _permutations(self) -> torch.Tensor:
        return torch.stack([torch.randperm(self.n, generator=g) for g in self.generators])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for g in self.generators:  # the DataLoader iterator's base seed, drawn when the pass starts
            torch.empty((), dtype=torch.int64).random_(generator=g)
        order = self._permutations().to(self.y.device)
        partial = self.n % self.batch_size != 0
        for start in range(0, self.n, self.batch_size):
            if partial and start + self.batch_size >= self.n:
                self._permutations()  # RandomSampler's extra draw, made before the short last batch
            idx = order[:, start : start + self.batch_size]
            idx = idx[0] if self.single else idx
            yield self.x[idx], self.y[idx]
        if not partial:
            self._permutations()  # ... or when the next batch is asked for after a full last one
