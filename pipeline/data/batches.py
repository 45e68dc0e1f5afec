"""Per-member shuffled minibatches from tensors in memory: one stream of batches per member.

`MemberBatches` yields, for every member, exactly the batches that member's own shuffled stream
yields, sliced from tensors already in memory. Two streams:
- `dataloader=True`: those of `DataLoader(TensorDataset(x, y), batch_size, shuffle=True,
  generator=torch.Generator().manual_seed(seed))`, draw for draw on the same generator (one int64
  for the iterator's base seed, then a permutation per pass, and the extra permutation torch's
  `RandomSampler` draws when a pass is used up): what devinterp's sampler is handed;
- `dataloader=False`: one permutation per pass and nothing else, as `Data.epoch` draws it: the
  train stage's data order, so stacked members see their one-by-one runs' batches.
Plain torch; no MLflow, no config.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, TensorDataset


class MemberBatches(DataLoader):
    """Per-member shuffled minibatches from in-memory tensors; iterating gives one pass over the data.

    A DataLoader only in type (devinterp computes its default nβ only for DataLoaders, from
    `batch_size`, and evaluates that default even when nβ is given): no dataset, sampler or workers.

    Each item is `(x, y)` with x of shape (M, batch, ...) (or (batch, ...) for a single stream, an
    int `seeds`) and y likewise. Member i's batches are those of its stream seeded `seeds[i]`, pass
    after pass, as devinterp's `cycle(loader)` consumes it; an abandoned pass draws no more.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        seeds: Sequence[int] | int,
        dataloader: bool = True,
    ) -> None:
        # DataLoader.__init__ is not called: nothing of its machinery is used.
        self.single = isinstance(seeds, int)
        self.x, self.y = x, y
        # devinterp re-reads the data through `dataset` when a loss at w_t of exactly 0 is passed.
        self.dataset = TensorDataset(x, y)
        self.batch_size = int(batch_size)
        self.n = len(y)
        self.dataloader = bool(dataloader)
        self.generators = [torch.Generator().manual_seed(int(s)) for s in ([seeds] if self.single else seeds)]

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)  # the last, smaller batch is kept, as DataLoader does

    def _permutations(self) -> torch.Tensor:
        return torch.stack([torch.randperm(self.n, generator=g) for g in self.generators])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.dataloader:
            for g in self.generators:  # the DataLoader iterator's base seed, drawn when the pass starts
                torch.empty((), dtype=torch.int64).random_(generator=g)
        order = self._permutations().to(self.y.device)
        partial = self.n % self.batch_size != 0
        for start in range(0, self.n, self.batch_size):
            if self.dataloader and partial and start + self.batch_size >= self.n:
                self._permutations()  # RandomSampler's extra draw, made before the short last batch
            idx = order[:, start : start + self.batch_size]
            idx = idx[0] if self.single else idx
            yield self.x[idx], self.y[idx]
        if self.dataloader and not partial:
            self._permutations()  # ... or when the next batch is asked for after a full last one


def endless(loader: MemberBatches) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Pass after pass over `loader` (each pass drawing its own permutation), without end."""
    while True:
        yield from loader
