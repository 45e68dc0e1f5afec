"""Modular division: every equation a / b = c mod p, a fixed split, and the embedding MLP."""

import numpy as np
import pytest
import torch

from pipeline.data.modular import division_table, modular_division
from pipeline.errors import UserError
from pipeline.models.embedding import EmbeddingMLP


def test_division_table_holds_every_equation_once() -> None:
    p = 53
    x, y = division_table(p)
    assert x.shape == (p * (p - 1), 2) and len({tuple(r) for r in x.tolist()}) == p * (p - 1)
    assert x[:, 1].min() == 1  # no division by zero
    assert ((y * x[:, 1]) % p == x[:, 0]).all()  # c · b ≡ a
    assert set(y.tolist()) == set(range(p))
    assert y[(x[:, 0] == 1) & (x[:, 1] == 2)].item() == 27  # 2 · 27 = 54 ≡ 1 (mod 53)


def test_split_is_half_fixed_and_disjoint() -> None:
    d = modular_division(batch_size=64)
    assert (d.n_train, len(d.y_test), d.num_classes) == (1378, 1378, 53)
    assert d.x_train.dtype == torch.long and d.steps_per_epoch == 22
    train = {tuple(r) for r in d.x_train.tolist()}
    assert not train & {tuple(r) for r in d.x_test.tolist()}
    again = modular_division(batch_size=64)
    assert torch.equal(d.x_train, again.x_train)
    other = modular_division(batch_size=64, split_seed=1)
    assert not torch.equal(d.x_train, other.x_train)
    assert modular_division(batch_size=8, p=7, train_fraction=0.3).n_train == round(0.3 * 42)


@pytest.mark.parametrize(
    ("kwargs", "fix"),
    [({"p": 51}, "must be prime"), ({"train_fraction": 1.0}, "must lie in (0, 1)")],
)
def test_bad_settings_are_one_line(kwargs: dict, fix: str) -> None:
    with pytest.raises(UserError) as e:
        modular_division(batch_size=8, **kwargs)
    assert fix in str(e.value) and "\n" not in str(e.value)


def test_embedding_mlp_shapes_and_parameters() -> None:
    p, e, hidden = 53, 16, [32, 24]
    model = EmbeddingMLP(num_classes=p, embed_dim=e, hidden=hidden)
    x = torch.tensor([[3, 5], [0, 1]])
    assert model(x).shape == (2, p)
    expected = 2 * p * e + (2 * e * 32 + 32) + (32 * 24 + 24) + (24 * p + p)
    assert sum(q.numel() for q in model.parameters()) == expected
    shared = EmbeddingMLP(num_classes=p, embed_dim=e, hidden=hidden, shared_embedding=True)
    assert sum(q.numel() for q in shared.parameters()) == expected - p * e
    # Each operand has its own table: swapping the operands changes the prediction.
    assert not torch.allclose(model(x[:, [1, 0]]), model(x))
    # Only the embedding rows of the symbols used receive gradient.
    model(torch.tensor([[3, 5]])).sum().backward()
    rows = model.embeddings[0].weight.grad.abs().sum(1)
    assert np.flatnonzero(rows.numpy()).tolist() == [3]
