"""The MLP on learned operand embeddings that the modular-division (grokking) experiment trains."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class EmbeddingMLP(nn.Module):
    """Fully connected ReLU network on learned operand embeddings (the paper's first version, appendix E).

    Each of the `in_features` operand positions has its own embedding table over the p symbols
    of Z_p (one shared table with `shared_embedding=true`); the embeddings are concatenated and
    passed through the hidden layers to logits over the p possible results. Operands and results
    both live in Z_p, so the vocabulary is the data set's `num_classes`.
    """

    def __init__(
        self,
        num_classes: int,
        in_features: int = 2,
        embed_dim: int = 128,
        hidden: Sequence[int] = (256, 256),
        shared_embedding: bool = False,
    ) -> None:
        super().__init__()
        tables = 1 if shared_embedding else int(in_features)
        self.embeddings = nn.ModuleList(nn.Embedding(num_classes, embed_dim) for _ in range(tables))
        layers: list[nn.Module] = []
        width = int(in_features) * int(embed_dim)
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            width = int(h)
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tables = self.embeddings if len(self.embeddings) > 1 else [self.embeddings[0]] * x.shape[1]
        return self.net(torch.cat([emb(x[:, i]) for i, emb in enumerate(tables)], dim=1))
