"""Parameter counts: every trainable coordinate, and the weights-only count the paper's tables give."""

from __future__ import annotations

from torch import nn


def num_params(model: nn.Module) -> int:
    """Number of trainable parameters (the coordinates R(t) and λ live on)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def num_weights(model: nn.Module) -> int:
    """Entries of the trainable weight matrices and kernels (biases and norm shifts/scales left out).

    This is the count the paper's tables report: Tables 5, 7 and 8 equal it exactly.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad and p.dim() >= 2)
