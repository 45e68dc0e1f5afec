"""The in-memory data set every loader returns, with the batching the train and llc stages share.

A loader returns a `Data` with a fixed train/test split (seeded by `split_seed`, independent of the
run's seed, so that seeds vary the initialisation and data order, not the data).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.data.batches import MemberBatches


@dataclass
class Data:
    """A data set split into train and test tensors (targets: class labels, or token ids)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    batch_size: int

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def in_features(self) -> int:
        return int(np.prod(self.x_train.shape[1:]))

    def model_inputs(self) -> dict[str, object]:
        """Sizes a model may take from its data (`config.build.model` passes those it names)."""
        return {
            "in_features": self.in_features,
            "in_shape": tuple(self.x_train.shape[1:]),
            "num_classes": self.num_classes,
            "out_features": self.num_classes,
        }

    @property
    def full_batch(self) -> bool:
        """One batch holds the whole training set: its gradients are exact, not minibatch estimates."""
        return self.batch_size >= self.n_train

    @property
    def steps_per_epoch(self) -> int:
        # The last, smaller batch is kept, as torch's DataLoader does by default.
        return -(-self.n_train // self.batch_size)

    def digest(self, max_rows: int = 20_000) -> str:
        """A short content hash of the split (train and test tensors, their shapes and dtypes): two
        runs with the same digest trained and were tested on the same numbers. Beyond `max_rows`
        rows a tensor is hashed on `max_rows` evenly spaced rows (as MLflow's own digests sample),
        so Tiny ImageNet's 4.9 GB cost what 20 000 images do."""
        import hashlib

        h = hashlib.sha256()
        for t in (self.x_train, self.y_train, self.x_test, self.y_test):
            h.update(f"{tuple(t.shape)}{t.dtype}".encode())
            if len(t) > max_rows:
                t = t[torch.linspace(0, len(t) - 1, max_rows, device=t.device).long()]
            if t.numel():  # (an empty split has no bytes to view: its shape and dtype say all)
                h.update(memoryview(t.detach().cpu().contiguous().numpy()).cast("B"))  # no copy of the bytes
        return h.hexdigest()[:16]

    def profile(self) -> dict[str, object]:
        """Sizes for the record: samples, input shape, classes, batch size."""
        return {
            "train_samples": self.n_train,
            "test_samples": len(self.y_test),
            "input_shape": list(self.x_train.shape[1:]),
            "num_classes": self.num_classes,
            "batch_size": self.batch_size,
        }

    def to(self, device: str) -> Data:
        """The split's tensors moved to `device` (in place; returns self)."""
        for name in ("x_train", "y_train", "x_test", "y_test"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def epoch(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One shuffled pass over the training set, sliced from memory (no DataLoader overhead)."""
        order = torch.randperm(self.n_train, generator=generator)
        for start in range(0, self.n_train, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.x_train[idx], self.y_train[idx]

    def loader(self, seed: int) -> MemberBatches:
        """The shuffled minibatches devinterp's sampler consumes: exactly those of
        `DataLoader(TensorDataset(x_train, y_train), batch_size, shuffle=True, generator=seeded)`,
        sliced from memory instead of collated sample by sample."""
        return MemberBatches(self.x_train, self.y_train, self.batch_size, int(seed))

    def member_batches(self, seeds: list[int], device: str = "cpu") -> MemberBatches:
        """Per-member passes in `Data.epoch`'s order (one permutation per pass from each member's
        own generator): member i sees the batches a one-by-one run seeded `seeds[i]` sees."""
        return MemberBatches(
            self.x_train.to(device), self.y_train.to(device), self.batch_size, seeds, dataloader=False
        )
