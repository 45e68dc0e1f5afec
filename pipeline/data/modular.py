"""Modular division, the grokking task of Power et al. (2022) that the first version of the paper
(appendix E, Fig. 11, 13, 14) trains with AdamW: every equation a / b = c (mod p), split in two."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.data.container import Data
from pipeline.errors import UserError


def _is_prime(p: int) -> bool:
    return p >= 2 and all(p % k for k in range(2, int(p**0.5) + 1))


def division_table(p: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (a, b) with a in Z_p and b ≠ 0, and c = a · b⁻¹ mod p (so c · b ≡ a)."""
    a, b = np.meshgrid(np.arange(p), np.arange(1, p), indexing="ij")
    a, b = a.ravel(), b.ravel()
    inverse = np.array([pow(int(v), -1, p) for v in range(1, p)])  # Fermat: b^(p-2)
    return np.stack([a, b], axis=1), (a * inverse[b - 1]) % p


def modular_division(batch_size: int, p: int = 53, train_fraction: float = 0.5, split_seed: int = 0) -> Data:
    """The p(p − 1) equations a / b = c mod p, a random `train_fraction` of them for training and the
    rest for testing (Power et al.'s Fig. 1 trains division on 50 %). Inputs are the operand indices
    [a, b] (long), targets c; a model embeds them itself (`EmbeddingMLP`)."""
    if not _is_prime(int(p)):
        raise UserError(f"dataset.p={p} must be prime for division mod p to be defined, e.g. 53 or 97")
    if not 0.0 < train_fraction < 1.0:
        raise UserError(f"dataset.train_fraction={train_fraction} must lie in (0, 1), e.g. 0.5")
    x, y = division_table(int(p))
    order = np.random.default_rng(split_seed).permutation(len(y))
    n_train = int(round(train_fraction * len(y)))
    train, test = order[:n_train], order[n_train:]
    if n_train < 1 or len(test) < 1:
        raise UserError(f"dataset.train_fraction={train_fraction} leaves an empty split of {len(y)} pairs")
    return Data(
        name=f"modular_division_{p}",
        x_train=torch.as_tensor(x[train], dtype=torch.long),
        y_train=torch.as_tensor(y[train], dtype=torch.long),
        x_test=torch.as_tensor(x[test], dtype=torch.long),
        y_test=torch.as_tensor(y[test], dtype=torch.long),
        num_classes=int(p),
        batch_size=int(batch_size),
    )
