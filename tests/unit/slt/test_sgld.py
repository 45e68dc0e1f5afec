"""The sampler core's SGLD step is devinterp's to the bit, and the core's traces are devinterp's; the
underdamped sampler against the closed form of a Gaussian posterior and its own damping."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from devinterp.optim import SGMCMC
from torch import nn

from pipeline.slt import sgld
from pipeline.slt.settings import Chains


def _walk(optimizer_class, sampler: str, model: nn.Module, steps: int, **kwargs) -> list[torch.Tensor]:
    """`steps` updates of `model`'s copy on fixed random batches, seeded as devinterp seeds a chain."""
    model = copy.deepcopy(model)
    opt = getattr(optimizer_class, sampler)(model.parameters(), **kwargs)
    data = torch.Generator().manual_seed(1)
    x, y = torch.randn(steps, 32, 6, generator=data), torch.randint(0, 3, (steps, 32), generator=data)
    torch.manual_seed(123)
    for i in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[i]), y[i]).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize(
    "sampler, kwargs",
    [
        ("sgld", {"lr": 1e-3, "localization": 10.0, "nbeta": 12.5}),
        ("sgld", {"lr": 1e-2, "localization": 0.0, "nbeta": 3.0}),
        ("sgld", {"lr": 1e-3, "localization": 1.0, "nbeta": 5.0, "weight_decay": 0.1}),  # devinterp's
        ("rmsprop_sgld", {"lr": 1e-4, "localization": 100.0, "nbeta": 12.5}),  # devinterp's step
    ],
)
def test_the_step_is_devinterps_to_the_bit(sampler: str, kwargs: dict) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    ours = _walk(sgld._sgld_class(), sampler, model, 25, **kwargs)
    reference = _walk(SGMCMC, sampler, model, 25, **kwargs)
    moved = [not torch.equal(a, b) for a, b in zip(ours, model.parameters())]
    assert all(moved)
    for a, b in zip(ours, reference):
        assert torch.equal(a, b)


def test_the_core_samples_as_devinterps_sampler() -> None:
    """The core's trace with its step equals the same call with devinterp's own step."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    x, y = torch.randn(96, 6), torch.randint(0, 3, (96,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    chains = Chains(lr=1e-3, localization=10.0, nbeta=12.0, chains=2, draws=15, burnin=5, every=2)

    def losses(m, batch):
        return nn.functional.cross_entropy(m(batch[0]), batch[1]).reshape(1)

    ours = sgld.sample(model, loader, losses, 1, chains, 7, "cpu")
    reference = sgld.sample(model, loader, losses, 1, chains, 7, "cpu", reference=True)
    assert ours.shape == (1, 2, 15) and torch.equal(ours, reference)


KAPPA = torch.ones(2)  # the two members' curvatures (module-level: devinterp pickles `evaluate`,
CALLS: list[int] = []  # and a module's own function and globals travel by reference)


def two_members(m: nn.Module, batch) -> torch.Tensor:
    """L = ½κw² for each of two members (one weight each), counting the calls."""
    CALLS.append(1)
    return 0.5 * KAPPA * m.weight.reshape(2) ** 2


def test_the_core_stops_once_every_member_has_diverged() -> None:
    """Members of a stack are independent: one diverging leaves the others sampling; once all have
    (a diverged chain stays so) the run stops, the draws it did not take NaN from there on (not
    when a caller watches every draw: `on_draw` gets them all)."""
    x = torch.randn(64, 1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x), batch_size=64)
    chains = Chains(lr=1e-3, localization=1.0, nbeta=10.0, chains=2, draws=50, burnin=10)

    def run(curvature: list[float], watch: bool = False) -> tuple[torch.Tensor, int]:
        KAPPA.copy_(torch.tensor(curvature))
        CALLS.clear()
        model = nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            model.weight.fill_(1.0)
        on_draw = (lambda *_: None) if watch else None
        trace = sgld.sample(model, loader, two_members, 2, chains, 0, "cpu", on_draw=on_draw)
        return trace, len(CALLS)

    # ε·nβ·κ = 1e4 ≫ 4: a member with κ = 1e6 diverges within a few steps; κ = 1 samples on
    trace, calls = run([1.0, 1e6])
    assert torch.isfinite(trace[0]).all() and not torch.isfinite(trace[1]).any()
    assert calls == 2 * (10 + 50)  # one member still finite: every step of both chains
    trace, calls = run([1e6, 1e6])
    assert calls < 10 and torch.isnan(trace).all()  # stopped in the first chain's burn-in
    trace, calls = run([1e6, 1e6], watch=True)
    assert calls == 2 * (10 + 50) and not torch.isfinite(trace).any()


class Quadratic(nn.Module):
    """L(w) = ½ Σ κ_i w_i² (its output, no data), with w starting at 0."""

    def __init__(self, curvatures: torch.Tensor):
        super().__init__()
        self.register_buffer("curvatures", curvatures)
        self.w = nn.Parameter(torch.zeros(4, len(curvatures)))  # 4 independent chains' worth

    def forward(self) -> torch.Tensor:
        return 0.5 * (self.curvatures * self.w**2).sum(1)


@pytest.mark.parametrize("lr", [1e-3, 6e-3])
def test_the_underdamped_sampler_samples_the_localized_posterior(lr: float) -> None:
    """On a quadratic loss the localized tempered posterior exp(−nβL − γ/2‖w‖²) is Gaussian: each
    coordinate contributes nβκ/(2(nβκ + γ)) to E[nβL], exactly; BAOAB's positions sample a quadratic
    potential without bias at any stable step (Leimkuhler & Matthews 2013), so the mean of nβL over
    the draws must match within its Monte-Carlo error, at ε·nβ·κ_max = 0.5 and 3 (both samplers are
    stable below 4, as h = √ε). Its curvatures span 10⁴, the localization holds the
    flattest; the chains start at w₀ = 0, and a burn-in of a few 1/√(εγ) takes them to equilibrium."""
    torch.manual_seed(0)
    nbeta, gamma = 50.0, 2.0
    curvatures = torch.logspace(-3, 1, 40)
    model = Quadratic(curvatures)
    opt = sgld.Underdamped(model.parameters(), lr=lr, localization=gamma, nbeta=nbeta, metrics=[])
    burnin, draws = int(20 / (lr * gamma) ** 0.5), 4000
    values = []
    for t in range(burnin + draws):
        opt.zero_grad()
        loss = model()
        loss.sum().backward()
        opt.step()
        if t >= burnin:
            values.append(nbeta * loss.detach())
    trace = torch.stack(values)  # draws x chains
    exact = float((nbeta * curvatures / (2 * (nbeta * curvatures + gamma))).sum())
    batch = trace.reshape(40, -1, 4).mean(1)  # 40 batch means per chain: their spread is the MCSE
    mcse = float(batch.std() / (batch.numel() ** 0.5))
    assert abs(float(trace.mean()) - exact) <= 4 * mcse + 0.01 * exact
    assert model.w.abs().max() < 10  # and no chain ran away


def test_the_underdamped_sampler_is_critically_damped_where_only_the_localization_holds() -> None:
    """Its friction 2√γ damps a direction the loss does not curve critically: at equilibrium the
    position's autocorrelation at lag t is (1 + √γ·t)·e^(−√γ·t) (2/e at √γ·t = 1, 3/e² at 2; SGLD's
    would be e^(−γt/2)), which is what the search's clock 2/√(εγ) rests on. A friction or noise off
    by √2 moves these by more than the 0.03 allowed."""
    torch.manual_seed(0)
    gamma, lr = 4.0, 2.5e-5  # √γ = 2, h = 0.005: √γ·t = 1 every 100 steps
    model = Quadratic(torch.zeros(500))  # L = 0: only the localization holds w
    opt = sgld.Underdamped(model.parameters(), lr=lr, localization=gamma, nbeta=10.0, metrics=[])
    positions = []
    for t in range(1000 + 4000):
        opt.zero_grad()
        model().sum().backward()
        opt.step()
        if t >= 1000:
            positions.append(model.w.detach().clone().flatten())
    w = torch.stack(positions)  # steps x coordinates, centred at 0 (w₀)
    variance = float((w * w).mean())
    assert variance == pytest.approx(1 / gamma, rel=0.05)  # the localization's own spread
    for lag, expected in ((100, 2 / math.e), (200, 3 / math.e**2)):
        correlation = float((w[lag:] * w[:-lag]).mean()) / variance
        assert correlation == pytest.approx(expected, abs=0.03)


def test_the_underdamped_sampler_refuses_what_it_does_not_do() -> None:
    """A localization of 0 (no friction), devinterp's optimizer metrics, masked coordinates and a
    closure: each a ValueError, not silently ignored."""
    params = list(nn.Linear(2, 2).parameters())
    with pytest.raises(ValueError, match="localization"):
        sgld.Underdamped(params, lr=1e-3, localization=0.0, nbeta=10.0)
    with pytest.raises(ValueError, match="metrics"):
        sgld.Underdamped(params, lr=1e-3, localization=1.0, nbeta=10.0, metrics=["noise_norm"])
    with pytest.raises(ValueError, match="optimize_over"):
        sgld.Underdamped([{"params": params, "optimize_over": None}], lr=1e-3, localization=1.0, nbeta=10.0)
    with pytest.raises(ValueError, match="closure"):
        sgld.Underdamped(params, lr=1e-3, localization=1.0, nbeta=10.0).step(lambda: 0.0)
