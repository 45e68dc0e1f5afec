"""Small data sets that need no files: scikit-learn's digits and two moons, and a synthetic stand-in
of any shape for the CPU variants. Each returns a `Data` with a seeded, stratified train/test split."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.data.container import Data
from pipeline.errors import UserError


def split(
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
    return split("digits", x, bunch.target, test_fraction, split_seed, batch_size, 10)


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
    return split("moons", x.astype(np.float32), y, test_fraction, split_seed, batch_size, 2)


def synthetic(
    batch_size: int,
    shape: tuple[int, ...] = (1, 28, 28),
    num_classes: int = 10,
    n_samples: int = 1000,
    noise: float = 1.0,
    test_fraction: float = 0.5,
    split_seed: int = 0,
) -> Data:
    """A stand-in of any input shape for CPU variants: one random Gaussian template per class plus
    Gaussian noise of std `noise` (needs no files; learnable, but not perfectly at noise ~ 1)."""
    rng = np.random.default_rng(split_seed)
    shape = tuple(int(s) for s in shape)
    templates = rng.normal(size=(num_classes, *shape)).astype(np.float32)
    y = np.arange(n_samples) % num_classes
    x = templates[y] + np.float32(noise) * rng.normal(size=(n_samples, *shape)).astype(np.float32)
    return split("synthetic", x, y, test_fraction, split_seed, batch_size, num_classes)
