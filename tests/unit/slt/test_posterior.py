"""The batched SGLD sampler against a posterior with a known answer, and the grid representation."""

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.data import Data
from pipeline.models.tasks import Task
from pipeline.slt.posterior import GridPredictions, Weights, sample
from pipeline.slt.settings import Chains
from pipeline.slt.stacked import Stacked


class HalfSquare(Task):
    """L(w) = w²/2 for the one-weight model below, whose input is 1 (targets unused)."""

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (0.5 * output.squeeze(-1) ** 2).mean()

    def member_losses(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (0.5 * output.squeeze(-1) ** 2).mean(1)


def scalar_ensemble(chains: int, w0: float) -> tuple[Stacked, Data]:
    members = [nn.Linear(1, 1, bias=False) for _ in range(chains)]
    for m in members:
        nn.init.constant_(m.weight, w0)
    ens = Stacked.from_models(members)
    x = torch.ones(64, 1)
    y = torch.zeros(64, dtype=torch.long)
    return ens, Data("ones", x, y, x, y, num_classes=1, batch_size=16)


@pytest.mark.parametrize("localization", [0.0, 100.0])
def test_sgld_samples_the_known_gaussian(localization: float) -> None:
    """exp(-nβ w²/2 - γ (w - 1)²/2): mean γ/(nβ + γ), variance 1/(nβ + γ)."""
    nbeta, lr = 100.0, 1e-3
    ens, data = scalar_ensemble(chains=64, w0=1.0)
    chains = Chains(lr=lr, localization=localization, nbeta=nbeta, chains=1, draws=300, burnin=200, every=10)
    out = sample(ens, data, Weights(data), HalfSquare(), chains, seed=0)
    w = out["representation"][..., 0]
    assert w.shape == (64, 300) and out["loss"].shape == (64, 300)
    k = nbeta + localization
    # Euler-Maruyama's stationary variance is 1/(k (1 - εk/4)); 19 200 draws, tolerance ~4 s.e.
    assert w.mean() == pytest.approx(localization / k, abs=0.01)
    assert w.var() == pytest.approx(1 / (k * (1 - lr * k / 4)), rel=0.08)
    np.testing.assert_allclose(out["distance"], np.abs(w - 1.0), rtol=1e-5, atol=1e-6)


def test_grid_predictions_ignore_hidden_unit_permutations() -> None:
    """Permuting hidden units changes the weights, not the representation."""
    from pipeline.models import MLP

    torch.manual_seed(0)
    a = MLP(2, 2, hidden=[6], batch_norm=False)
    b = MLP(2, 2, hidden=[6], batch_norm=False)
    perm = torch.randperm(6)
    with torch.no_grad():
        b.net[0].weight.copy_(a.net[0].weight[perm])
        b.net[0].bias.copy_(a.net[0].bias[perm])
        b.net[2].weight.copy_(a.net[2].weight[:, perm])
        b.net[2].bias.copy_(a.net[2].bias)
    ens = Stacked.from_models([a, b])
    x = torch.randn(20, 2)
    data = Data("r", x, torch.zeros(20, dtype=torch.long), x, torch.zeros(20), num_classes=2, batch_size=4)
    rep_grid, rep_w = GridPredictions(data, points=7)(ens), Weights(data)(ens)
    assert torch.allclose(rep_grid[0], rep_grid[1], atol=1e-6)
    assert not torch.allclose(rep_w[0], rep_w[1])


def test_grid_predictions_cover_the_inputs() -> None:
    x = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    data = Data("two", x, torch.tensor([0, 1]), x, torch.tensor([0, 1]), num_classes=2, batch_size=2)
    rep = GridPredictions(data, points=5, margin=0.5)
    assert rep.grid.shape == (25, 2)
    np.testing.assert_allclose(rep.grid.min(0).values, [-0.5, -0.5])
    np.testing.assert_allclose(rep.grid.max(0).values, [1.5, 2.5])
    members = [nn.Linear(2, 2) for _ in range(3)]
    ens = Stacked.from_models(members)
    p = rep(ens)
    expected = torch.softmax(members[2](rep.grid), -1)[:, 1]
    assert p.shape == (3, 25) and torch.allclose(p[2], expected, atol=1e-6)
    with pytest.raises(ValueError, match="2-d inputs"):
        GridPredictions(
            Data("3d", torch.zeros(2, 3), torch.zeros(2), torch.zeros(2, 3), torch.zeros(2), 2, 2)
        )
