"""Data sets held in memory as tensors, with the batching the train and llc stages share.

Every loader returns a `Data` with a fixed train/test split (seeded by `split_seed`, independent of
the run's seed so that seeds vary the initialisation and data order, not the data).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from pipeline.errors import UserError


@dataclass
class Data:
    """A classification data set split into train and test tensors."""

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
        """Sizes a model may take from its data (`build.model` passes those it names)."""
        return {
            "in_features": self.in_features,
            "in_shape": tuple(self.x_train.shape[1:]),
            "num_classes": self.num_classes,
            "out_features": self.num_classes,
        }

    @property
    def steps_per_epoch(self) -> int:
        # The last, smaller batch is kept, as torch's DataLoader does by default.
        return -(-self.n_train // self.batch_size)

    def epoch(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One shuffled pass over the training set, sliced from memory (no DataLoader overhead)."""
        order = torch.randperm(self.n_train, generator=generator)
        for start in range(0, self.n_train, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.x_train[idx], self.y_train[idx]

    def loader(self, seed: int) -> DataLoader:
        """Shuffled DataLoader over the training set, the form devinterp's sampler consumes."""
        g = torch.Generator().manual_seed(seed)
        return DataLoader(
            TensorDataset(self.x_train, self.y_train),
            batch_size=self.batch_size,
            shuffle=True,
            generator=g,
        )


def _split(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    test_fraction: float,
    split_seed: int,
    batch_size: int,
    num_classes: int,
) -> Data:
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise UserError(f"dataset.test_fraction={test_fraction} must lie in (0, 1), e.g. 0.5")
    # Stratify where every class can be split (tiny test files may hold a class once).
    _, counts = np.unique(y, return_counts=True)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x,
        y,
        test_size=test_fraction,
        random_state=split_seed,
        stratify=y if counts.min() >= 2 else None,
    )
    return Data(
        name=name,
        x_train=torch.as_tensor(x_tr, dtype=torch.float32),
        y_train=torch.as_tensor(y_tr, dtype=torch.long),
        x_test=torch.as_tensor(x_te, dtype=torch.float32),
        y_test=torch.as_tensor(y_te, dtype=torch.long),
        num_classes=num_classes,
        batch_size=int(batch_size),
    )


def digits(batch_size: int, test_fraction: float = 0.5, split_seed: int = 0) -> Data:
    """scikit-learn's 8x8 handwritten digits (1797 images, ships with scikit-learn), scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.data.astype(np.float32) / 16.0
    return _split("digits", x, bunch.target, test_fraction, split_seed, batch_size, 10)


def moons(
    batch_size: int,
    n_samples: int = 512,
    noise: float = 0.2,
    test_fraction: float = 0.5,
    split_seed: int = 0,
) -> Data:
    """scikit-learn's two moons (the posterior-concentration data set of appendix G.4)."""
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=n_samples, noise=noise, random_state=split_seed)
    return _split("moons", x.astype(np.float32), y, test_fraction, split_seed, batch_size, 2)


def mnist(
    batch_size: int,
    root: str = "data",
    subset: int = 10_000,
    test_fraction: float = 0.5,
    split_seed: int = 0,
    download: bool = False,
) -> Data:
    """A `subset` of MNIST's training images, split train/test (appendix G.1: 10 000, 50/50).

    Reads torchvision's on-disk layout, `<root>/MNIST/raw/train-images-idx3-ubyte` and
    `train-labels-idx1-ubyte` (plain or .gz); `download=True` fetches them where there is network.
    """
    from torchvision.datasets import MNIST

    root_path = Path(root).expanduser().resolve()
    try:
        ds = MNIST(str(root_path), train=True, download=download)
    except RuntimeError as e:
        raise UserError(
            f"MNIST not found under {root_path / 'MNIST' / 'raw'} (expects train-images-idx3-ubyte "
            "and train-labels-idx1-ubyte): set dataset.root=<folder holding MNIST/raw> or "
            "dataset.download=true on a machine with network"
        ) from e
    images = ds.data.numpy().astype(np.float32) / 255.0
    labels = ds.targets.numpy()
    if subset and subset < len(labels):
        keep = np.random.default_rng(split_seed).permutation(len(labels))[:subset]
        images, labels = images[keep], labels[keep]
    # Standardise with MNIST's usual mean and std, as torchvision tutorials do.
    images = (images - 0.1307) / 0.3081
    return _split("mnist", images, labels, test_fraction, split_seed, batch_size, 10)
