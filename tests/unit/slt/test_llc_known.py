"""Known answers for λ: the llc stage's own estimator on models whose learning coefficient is exact.

Every case calls `pipeline.slt.llc.estimate` (devinterp 1.3.2 SGLD, the stage's serial function) with the
stage's defaults (conf/llc/paper.yaml) except what the case needs, listed per case: a full batch
of n = 1000 so that nβ = devinterp's default batch/log batch is the n/log n of eq. (25); enough
chains and draws to equilibrate; a step size that mixes at that nβ; no localization, or γ = 1
where the potential has flat directions (a Gaussian prior positive at w*, which does not change λ:
Watanabe 2009, Thm 6.1 and §7). Regression losses are the Gaussian negative log-likelihood
½‖y − f(x)‖² (unit noise), the loss whose λ the formulas give. Models sit at the empirical
minimizer of L_n, where the estimator is defined (Lau et al. 2024, §3): at the data-generating
parameter instead, λ̂ is biased down by nβ·(L_n(w_0) − min L_n) ≈ d/(2 log n) in a regular model.
The deep-linear-network cases (`test_llc_known_dln.py`, which uses these helpers) run the sampler
core instead (`estimate_many`, the stage's batched path), at n = 10⁵ through the data's sufficient
statistic.

Tolerance: |λ̂ − λ| ≤ 3.5 × the spread of λ̂ over chains (devinterp's own sampler accuracy tests
use the chains' spread; 3.5 std is the band the lead measured to hold for these estimators), and
for the regular and reduced-rank cases also ≤ 10 % of λ (measured 1-10 %).

References: Watanabe (2009), Algebraic Geometry and Statistical Learning Theory, ch. 2 and 7
(normal crossing: K = Π w_i^(2k_i) has λ = min_i (1 + h_i)/(2k_i) over coordinates with k_i > 0,
h_i = 0 for a flat prior, i.e. 1/(2·max k_i); ties in the maximum change only the multiplicity m,
the order of the log log n term, not λ); Aoyagi & Watanabe (2005), Stochastic complexities of
reduced rank regression in Bayesian estimation, Neural Networks 18(7), Main Theorem (the formula
in `aoyagi`), used as ground truth by Lau et al. (2024), Quantifying degeneracy in singular models
via the learning coefficient, §5 and Furman & Lau (2024), Estimating the local learning
coefficient at scale (deep linear networks, whose two-layer case is this formula).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from pipeline.data import Data
from pipeline.models.tasks import Task
from pipeline.slt.llc import estimate, estimate_many
from tests.helpers.config import ROOT

N_SAMPLES = 1000


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as the pipeline runs with threads=1 (faster on a shared machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def llc_cfg(**changes) -> DictConfig:
    """The stage's defaults (conf/llc/paper.yaml) with the case's changes."""
    cfg = OmegaConf.load(ROOT / "conf" / "llc" / "paper.yaml")
    cfg.seed = 0
    return OmegaConf.merge(cfg, changes)


def full_batch(x: torch.Tensor, y: torch.Tensor) -> Data:
    """`Data` holding regression targets, one batch of all n samples (nβ = n / log n)."""
    return Data("known-answer", x, y, x[:1], y[:1], num_classes=y.shape[1], batch_size=len(x))


def gaussian_nll(model: torch.nn.Module, batch) -> tuple[torch.Tensor, dict]:
    """½‖y − f(x)‖², averaged over samples: the unit-variance Gaussian regression loss."""
    x, y = batch
    out = model(x)
    return GaussianRegression().loss(out, y), {"output": out}


def potential(model: torch.nn.Module, batch) -> tuple[torch.Tensor, dict]:
    """The model's output is K(w) itself (no data): L_n = K."""
    out = model(batch[0])
    return out.mean(), {"output": out}


class NormalCrossing(torch.nn.Module):
    """K(w) = Π w_i^(2 k_i), minimum 0 at w = 0."""

    def __init__(self, powers: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("k", torch.tensor(powers, dtype=torch.float32))
        self.w = torch.nn.Parameter(torch.zeros(len(powers)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.prod(self.w ** (2 * self.k)).expand(len(x))


def aoyagi(m: int, h: int, n: int, r: int) -> float:
    """λ of reduced-rank regression x ∈ R^m -> R^h -> R^n (no biases) at a true map of rank r
    (Aoyagi & Watanabe 2005, Main Theorem)."""
    if n + r <= m + h and m + r <= n + h and h + r <= m + n:
        s = 2 * (h + r) * (m + n) - (m - n) ** 2 - (h + r) ** 2
        return (s + (m + h + n + r) % 2) / 8
    if m + h < n + r:
        return (h * m - h * r + n * r) / 2
    if n + h < m + r:
        return (h * n - h * r + m * r) / 2
    return m * n / 2


def aoyagi_deep(widths: Sequence[int], r: int) -> float:
    """λ of the deep linear network x ∈ R^H_1 -> R^H_2 -> ... -> R^H_(M+1) (M layers, no biases) at
    a true map of rank r (Aoyagi 2024, Consideration on the learning efficiency of multiple-layered
    neural networks with linear units, Neural Networks 172, Thm 1; stated as Lau et al. 2025 give
    it). With Δ_i = H_i − r sorted ascending, S is the first ℓ + 1 of them (ℓ ≥ 1) such that
    Σ_S Δ ≥ ℓ·max_S Δ and Σ_S Δ < ℓ·min_(not S) Δ; then, with a = Σ_S Δ − ℓ⌊Σ_S Δ / ℓ⌋,
    λ = (−r² + r(H_1 + H_(M+1)))/2 + a(ℓ − a)/(4ℓ) − ℓ(ℓ − 1)/4·(Σ_S Δ / ℓ)² + ½ Σ_(i<j ∈ S) Δ_i Δ_j.
    Two layers: Aoyagi & Watanabe's formula (`aoyagi`), tested on every case up to width 8."""
    deltas = sorted(int(h) - int(r) for h in widths)
    for ell in range(1, len(deltas)):
        chosen = deltas[: ell + 1]
        total = sum(chosen)
        rest = deltas[ell + 1] if ell + 1 < len(deltas) else math.inf
        if total >= ell * chosen[-1] and total < ell * rest:
            a = total - ell * (total // ell)
            pairs = (total**2 - sum(d * d for d in chosen)) / 2
            return (
                (-(r**2) + r * (widths[0] + widths[-1])) / 2
                + a * (ell - a) / (4 * ell)
                - ell * (ell - 1) / 4 * (total / ell) ** 2
                + pairs / 2
            )
    raise ValueError(f"no set S for widths {list(widths)} and rank {r}")


def regression_data(
    m: int, n: int, rank: int, samples: int = N_SAMPLES, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """x ~ N(0, I_m), y = x B_0 + N(0, I_n) with a true map B_0 of the given rank, ‖B_0‖₂ = 1."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, m, generator=g)
    b0 = torch.randn(m, rank, generator=g) @ torch.randn(rank, n, generator=g)
    b0 = b0 / torch.linalg.matrix_norm(b0, 2)
    return x, x @ b0 + torch.randn(samples, n, generator=g)


def reduced_rank_minimizer(x: torch.Tensor, y: torch.Tensor, h: int) -> torch.Tensor:
    """argmin of ‖y − xB‖² over rank-h B: least squares projected on the top h right singular
    vectors of the fitted values (Eckart–Young in the metric of xᵀx)."""
    b_ols = torch.linalg.lstsq(x, y).solution
    _, _, vh = torch.linalg.svd(x @ b_ols, full_matrices=False)
    return b_ols @ vh[:h].T @ vh[:h]


def two_layer_linear(b: torch.Tensor, h: int) -> torch.nn.Module:
    """x -> x A -> x A C with A C = b (balanced factors from b's SVD)."""
    m, n = b.shape
    u, s, vh = torch.linalg.svd(b, full_matrices=False)
    net = torch.nn.Sequential(torch.nn.Linear(m, h, bias=False), torch.nn.Linear(h, n, bias=False))
    with torch.no_grad():
        net[0].weight.copy_((u[:, :h] * s[:h].sqrt()).T)
        net[1].weight.copy_((s[:h].sqrt()[:, None] * vh[:h]).T)
    return net


def check(row: dict, truth: float, rel: float | None, label: str) -> None:
    """Assert the tolerance and print the case's line for the record (pytest -s shows it)."""
    assert row["status"] == "ok", row["status"]
    err = row["llc"] - truth
    spread = f"{row['llc']:.4g} ± {row['llc_std']:.3g} (chains)"
    print(f"\n{label}: λ = {truth:.4g}, λ̂ = {spread}, error {err:+.3g}")
    assert abs(err) <= 3.5 * row["llc_std"], f"{label}: λ̂ {row['llc']:.4g} vs λ {truth:.4g}"
    if rel is not None:
        assert abs(err) <= rel * truth, f"{label}: λ̂ {row['llc']:.4g} vs λ {truth:.4g}"


def test_aoyagi_formula_limits() -> None:
    assert aoyagi(3, 3, 3, 3) == 9 / 2  # full rank, h = m = n: m²/2 (GL(h) removes h² of 2·m·h)
    assert aoyagi(1, 1, 1, 1) == 0.5  # y = a·c·x, true ac ≠ 0: one direction counts
    assert aoyagi(1, 1, 1, 0) == 0.5  # ac = 0: K = (ac)², normal crossing with k = (1, 1)
    assert aoyagi(3, 2, 3, 1) == 3.5 and aoyagi(5, 3, 4, 2) == 8.0


def test_aoyagi_deep_formula_is_the_two_layer_one_and_counts_the_symmetries() -> None:
    for m, h, n in itertools.product(range(1, 9), repeat=3):
        for r in range(min(m, h, n) + 1):
            assert aoyagi_deep([m, h, n], r) == aoyagi(m, h, n, r), (m, h, n, r)
    # Full rank through equal widths H: the map's H² coordinates count, the M − 1 hidden GL(H)
    # symmetries do not: λ = H²/2 at any depth.
    assert all(aoyagi_deep([5] * (depth + 1), 5) == 12.5 for depth in range(2, 7))
    assert aoyagi_deep([10, 20, 15, 10], 3) == 49.5  # by hand: Δ = 7, 7, 12, 17; ℓ = 2, a = 0


def test_regular_linear_regression_is_half_the_dimension() -> None:
    """3 inputs -> 2 outputs, full-rank design: d = 6 parameters, λ = 3. n = 200 (nβ = 37.7: at
    the minimizer of a Gaussian linear model λ̂ = d/2 exactly for every nβ, so a small n keeps
    this case fast); 4 chains x 1000 draws at ε = 2e-3 (mixing time ~ 2/(ε·nβ) ≈ 30 steps), γ = 0;
    about 5 s on one idle thread."""
    x, y = regression_data(3, 2, rank=2, samples=200)
    model = torch.nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.linalg.lstsq(x, y).solution.T)
    t0 = time.perf_counter()
    cfg = llc_cfg(lr=2e-3, localization=0.0, num_chains=4, num_draws=1000)
    row = estimate(model, full_batch(x, y), cfg, step=1, device="cpu", evaluate=gaussian_nll)
    assert row["nbeta"] == pytest.approx(200 / np.log(200))
    check(row, 3.0, 0.10, f"regular d=6 ({time.perf_counter() - t0:.0f} s)")
    assert not row["negative"] and not row["nonstationary"]


@pytest.mark.slow
@pytest.mark.parametrize("m, h, n, r", [(3, 2, 3, 1), (5, 3, 4, 2)])
def test_reduced_rank_regression_matches_aoyagi(m: int, h: int, n: int, r: int) -> None:
    """Two-layer linear network at the rank-h least-squares minimizer. Needs 4 chains x 2000
    draws at ε = 5e-4, γ = 0; about 40-60 s each on one thread (90-120 s on a loaded machine).
    Measured (seed 0): (3,2,3,1) 3.32 ± 0.10 for λ = 3.5; (5,3,4,2) 8.19 ± 0.36 for λ = 8."""
    x, y = regression_data(m, n, rank=r)
    model = two_layer_linear(reduced_rank_minimizer(x, y, h), h)
    t0 = time.perf_counter()
    cfg = llc_cfg(lr=5e-4, localization=0.0, num_chains=4, num_draws=2000)
    row = estimate(model, full_batch(x, y), cfg, step=1, device="cpu", evaluate=gaussian_nll)
    label = f"RRR m={m} h={h} n={n} r={r}, d/2={(m * h + h * n) / 2:g} ({time.perf_counter() - t0:.0f} s)"
    check(row, aoyagi(m, h, n, r), 0.10, label)


class GaussianRegression(Task):
    """`gaussian_nll`'s loss as a task, for the sampler core's stacked pass (a loss per member). The
    product stacks classifiers only (`llc.method_for`), whose targets have one dimension fewer than
    the outputs; regression targets here come per member, (members, batch, outputs), from the
    chains' batches, or shared, (batch, outputs), for L_n(w_t)."""

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((output - y) ** 2).sum(-1).mean()

    def member_losses(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.vmap(self.loss, in_dims=(0, 0 if y.dim() == output.dim() else None))(output, y)


@pytest.mark.slow
def test_the_sampler_core_matches_devinterp_on_a_known_answer() -> None:
    """The batched path (`estimate_many`: 16 seeds as 16 members of one stacked pass, the
    sampler core's SGLD step) against devinterp's own estimator (`estimate`, one call per seed) on
    reduced-rank regression m=3 h=2 n=3 r=1, λ = 3.5 (Aoyagi & Watanabe 2005). Full batch, so the
    two share their minibatches and differ only in the Gaussian noise: their means agree within 3
    standard errors of the paired differences, and each is within 10 % of the truth (a bound from
    the formula, not from the chains' own spread)."""
    x, y = regression_data(3, 3, rank=1)
    model = two_layer_linear(reduced_rank_minimizer(x, y, 2), 2)
    data = full_batch(x, y)
    cfg = llc_cfg(lr=5e-4, localization=0.0, num_chains=1, num_draws=2000)
    seeds = list(range(16))
    t0 = time.perf_counter()
    stacked = estimate_many(
        model, [model.state_dict()] * 16, data, cfg, [1] * 16, "cpu", GaussianRegression(), seeds
    )
    t1 = time.perf_counter()
    serial = []
    for s in seeds:
        cfg.seed = s
        serial.append(estimate(model, data, cfg, step=1, device="cpu", evaluate=gaussian_nll))
    t2 = time.perf_counter()
    a, b = np.array([r["llc"] for r in stacked]), np.array([r["llc"] for r in serial])
    d, truth = a - b, aoyagi(3, 2, 3, 1)
    print(
        f"\nλ = {truth}: sampler core {a.mean():.3f} ± {a.std(ddof=1) / 4:.3f} ({t1 - t0:.0f} s), "
        f"devinterp {b.mean():.3f} ± {b.std(ddof=1) / 4:.3f} ({t2 - t1:.0f} s), paired difference "
        f"{d.mean():+.3f} ± {d.std(ddof=1) / 4:.3f} (standard errors over 16 seeds)"
    )
    assert len(set(np.round(a, 6))) == 16  # every member its own noise
    assert abs(d.mean()) <= 3 * d.std(ddof=1) / np.sqrt(len(d))
    assert abs(a.mean() - truth) <= 0.10 * truth and abs(b.mean() - truth) <= 0.10 * truth


def exact_posterior_mean(powers: tuple[int, ...], nbeta: float, gamma: float) -> float:
    """nβ·E[K] under exp(−nβK − γ‖w‖²/2) by quadrature (two coordinates): what a perfect sampler
    returns at this finite nβ; it approaches λ only like λ − O(1/log nβ) (slower with ties)."""
    w = np.linspace(-8, 8, 4001)
    w1, w2 = np.meshgrid(w, w)
    k = w1 ** (2 * powers[0]) * w2 ** (2 * powers[1])
    p = np.exp(-nbeta * k - gamma * (w1**2 + w2**2) / 2)
    return float(nbeta * (k * p).sum() / p.sum())


@pytest.mark.slow
@pytest.mark.parametrize("powers", [(1, 2), (1, 1), (1, 3)])
def test_normal_crossing_potential(powers: tuple[int, int]) -> None:
    """K = w_1^(2k_1) w_2^(2k_2), λ = 1/(2·max k). Needs 4 chains x 4000 draws at ε = 3e-3 and
    γ = 1 (the potential is flat along the axes; without a prior a chain wanders off along them);
    about 60-90 s each on one thread (150-190 s on a loaded machine). The chains' spread is 20-30 %
    of λ here. Measured (seed 0): k = (1,2) 0.241 ± 0.049, (1,1) 0.461 ± 0.080, (1,3) 0.164 ± 0.037,
    each above the exact finite-nβ value (0.210, 0.361, 0.142): the step size biases SGLD up."""
    truth = 1 / (2 * max(powers))
    x = torch.zeros(N_SAMPLES, 1)
    t0 = time.perf_counter()
    cfg = llc_cfg(lr=3e-3, localization=1.0, num_chains=4, num_draws=4000)
    row = estimate(NormalCrossing(powers), full_batch(x, x), cfg, step=1, device="cpu", evaluate=potential)
    target = exact_posterior_mean(powers, row["nbeta"], 1.0)
    took = time.perf_counter() - t0
    check(row, truth, None, f"normal crossing k={powers} (exact at this nβ: {target:.3g}; {took:.0f} s)")
    # The sampler against the finite-nβ value it should converge to, with the same band.
    assert abs(row["llc"] - target) <= 3.5 * row["llc_std"]


def calibrated_estimate(
    model: torch.nn.Module,
    data: Data,
    evaluate=None,
    *,
    task: Task | None = None,
    nbeta: float | None = None,
) -> tuple[dict, dict, float]:
    """The calibrated preset (conf/llc/calibrated.yaml) as it is, end to end with the stage's
    estimator: its search on the model, then the estimate with the choice; (row, choice, seconds).
    Serial (devinterp's own estimator with `evaluate`), or, given a `task`, the sampler core as the
    llc stage's `method: batched` runs it (each estimate one stacked pass of its chains). `nbeta`:
    the nβ the preset gives the full batch the data stand for, when they come as a statistic."""
    from pipeline.slt import calibration, llc
    from pipeline.slt.settings import Search, Settings
    from pipeline.stages import calibrate

    cfg = OmegaConf.load(ROOT / "conf" / "llc" / "calibrated.yaml")
    cfg.seed = 0
    if nbeta is not None:
        cfg.nbeta = float(nbeta)
    base, search = Settings.of(cfg), Search.of(cfg.calibration)
    t0 = time.perf_counter()
    if task is not None:
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        at = calibrate.estimator(model, state, data, 1, "cpu", task, batched=True)
    else:

        def at(settings: Settings) -> dict:
            return estimate(model, data, settings, step=1, device="cpu", evaluate=evaluate)

    nb = llc.nbeta(base.nbeta, data.batch_size)
    _, choice = calibration.search(at, base, search, nb, exact=data.full_batch)
    row = at(calibration.apply(base, choice))
    return row, choice, time.perf_counter() - t0


@pytest.mark.slow
@pytest.mark.parametrize("m, h, n, r", [(3, 2, 3, 1), (5, 3, 4, 2), (6, 3, 6, 1), (8, 4, 6, 2)])
def test_the_calibrated_preset_finds_reduced_rank_regression_lambda(m: int, h: int, n: int, r: int) -> None:
    """The default preset end to end, no per-case setting: the automatic search on the model, then
    the estimate with its choice, within 10 % of Aoyagi's λ. The data (n = 1000) come as one batch,
    so the preset's nβ = batch/log batch is eq. (25)'s n/log n. Measured (seed 0, one thread,
    15-30 s each): 3.50 for 3.5, 7.62 for 8, 10.53 for 10, 16.13 for 16; the search chose γ = 10
    every time (γ = 100 caps them at 2.2, 4.8, 5.8: −38 to −42 %)."""
    x, y = regression_data(m, n, rank=r)
    model = two_layer_linear(reduced_rank_minimizer(x, y, h), h)
    row, choice, took = calibrated_estimate(model, full_batch(x, y), gaussian_nll)
    truth = aoyagi(m, h, n, r)
    print(
        f"\nRRR m={m} h={h} n={n} r={r}: λ = {truth:g}, λ̂ = {row['llc']:.4g} ± {row['llc_mcse']:.2g} (MCSE), "
        f"error {100 * (row['llc'] - truth) / truth:+.1f} %; "
        f"chose ε={choice['lr']:g} γ={choice['localization']:g} ({took:.0f} s)"
    )
    assert choice["plateau"] and row["status"] == "ok"
    assert abs(row["llc"] - truth) <= 0.10 * truth


class QuasiHomogeneous(torch.nn.Module):
    """K(w) = w_1^(2a) + w_2^(2b), minimum 0 at w = 0: λ = 1/(2a) + 1/(2b) (Watanabe 2009, §7.1:
    each term is a coordinate of degree 2a, 2b; blow-ups are not needed). A perfect sampler returns
    λ exactly at every nβ without localization (nβ·E[w^(2a)] = 1/(2a) under exp(−nβ w^(2a))), so
    the error below is the sampler's and the localization's alone."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__()
        self.a, self.b = int(a), int(b)
        self.w = torch.nn.Parameter(torch.zeros(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.w[0] ** (2 * self.a) + self.w[1] ** (2 * self.b)).expand(len(x))


# The six exact 2-D RLCTs of Sergeant-Perthuis, Tsigaridas & Tsukahara's Table 1 (0.75 ... 0.024,
# devinterp's SGLD 10-75 % low there at γ = 1, ε = 1e-5, 5 chains x 10 000 steps), on potentials of
# ours with those λ: (a, b) -> 1/(2a) + 1/(2b). `trust`: what docs/trustworthy-numbers.md says of
# the calibrated preset at that λ. Measured here (seed 0): +7.9 %, +2.9 %, −5.4 % (trusted: 10 %);
# then 0.107 −13.4 % (SGLD has no usable step at γ = 1, so the momentum walk: its bias reported,
# held to 25 %; before it, the one usable SGLD step diverged in the longer estimate), and 0.05 and
# 0.024 come out −100 %: no chain is usable at γ ≤ nβ/10, and a stronger γ holds them at w* = 0
# (the choice's reason says "γ above nβ·max_prior").
RLCT_2D = [
    ((1, 2), "trusted"),
    ((4, 4), "trusted"),
    ((4, 8), "trusted"),
    ((7, 14), "biased"),
    ((15, 30), "untrusted"),
    ((28, 84), "untrusted"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("powers", "trust"), RLCT_2D)
def test_the_calibrated_preset_on_exact_2d_rlcts(powers: tuple[int, int], trust: str) -> None:
    """The calibrated preset end to end (search, then the estimate) on K = w_1^(2a) + w_2^(2b),
    n = 1000 in one batch (nβ = 144.8). Where the docs trust it (λ ≥ 0.19), within 10 % of λ; at
    0.107 the bias the docs report, within 25 %; below, the docs say it cannot be trusted, and this
    test holds them to it (the estimate fails or is more than half low): an estimator that gets
    better there fails here, so that the docs' bound moves with it."""
    a, b = powers
    truth = 1 / (2 * a) + 1 / (2 * b)
    x = torch.zeros(N_SAMPLES, 1)
    row, choice, took = calibrated_estimate(QuasiHomogeneous(a, b), full_batch(x, x), potential)
    error = (row["llc"] - truth) / truth
    print(
        f"\nK = w1^{2 * a} + w2^{2 * b}: λ = {truth:.4g}, λ̂ = {row['llc']:.4g} ± {row['llc_mcse']:.2g} "
        f"(MCSE), error {100 * error:+.1f} %, {row['status']}; chose ε={choice['lr']:g} "
        f"γ={choice['localization']:g}: {choice['reason']} ({took:.0f} s)"
    )
    if trust == "trusted":
        assert row["status"] == "ok" and abs(error) <= 0.10
    elif trust == "biased":
        assert row["status"] == "ok" and abs(error) <= 0.25
    else:
        assert row["status"] != "ok" or error < -0.5


@pytest.mark.slow
@pytest.mark.parametrize("powers", [(1, 2), (1, 1), (1, 3)])
def test_the_calibrated_preset_on_normal_crossings(powers: tuple[int, int]) -> None:
    """K = w_1^(2k_1) w_2^(2k_2), λ = 1/(2·max k), the calibrated preset as it is: λ inside the
    reported 95 % interval λ̂ ± 1.96·MCSE, which is at most ±30 % of λ̂. Measured (seed 0, 12-24 s
    each): 0.266 ± 0.022 for 1/4, 0.595 ± 0.075 for 1/2, 0.186 ± 0.017 for 1/6 (± MCSE), γ = 1 each
    time; above the exact value at this nβ and γ (0.210, 0.361, 0.142: a perfect sampler is low by
    the 1/log nβ term), as the step's discretization lifts λ̂: the interval covers λ, not the
    finite-nβ value, and the docs say so."""
    truth = 1 / (2 * max(powers))
    x = torch.zeros(N_SAMPLES, 1)
    row, choice, took = calibrated_estimate(NormalCrossing(powers), full_batch(x, x), potential)
    half = 1.96 * row["llc_mcse"]
    print(
        f"\nnormal crossing k={powers}: λ = {truth:.4g}, λ̂ = {row['llc']:.4g} ± {half:.2g} (95 %), "
        f"error {100 * (row['llc'] - truth) / truth:+.1f} %; chose ε={choice['lr']:g} "
        f"γ={choice['localization']:g} ({took:.0f} s)"
    )
    assert row["status"] == "ok"
    assert abs(row["llc"] - truth) <= half
    assert half <= 0.30 * row["llc"]
