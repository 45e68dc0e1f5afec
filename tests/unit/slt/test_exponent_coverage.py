"""Coverage of α's interval on processes whose exponent is known: how often the fit stage's 95 %
interval (`bootstrap_spectral_dimension` with the coordinate groups the train stage records) holds
the true α, over 40 seeds per process, and how wide it is against the seed-to-seed spread.

Sampled as the default job's fit sees R(t): 37 points, t = 100, 200, ..., 3700 (the LLC steps), R
the norm over 200 coordinates (`tests/helpers/known_processes.py`), those split round-robin into 32
groups as `pipeline.slt.displacement` groups a network's weights. Measured while writing this test
(seeds 0-39): coverage 0.90, 0.90, 0.95, 0.93 and 0.975 for fBm H = 0.25, 0.5, 0.75, Brownian motion
and the CTRW β = 0.6 with Mittag-Leffler waits, half-widths 1.6-1.9 times the seed-to-seed standard
deviation of α̂; the moving-block bootstrap of the fit points it replaces covered 0.45-0.75. The CTRW
with Pareto waits covers 0.88 (35 of 40): not the interval's fault but the process's, whose mean
number of jumps reaches t^β only asymptotically, so that R(t) at t = 100-3700 is not a power law
(α̂ 0.308 for 0.3, a quarter of its spread too high); the Mittag-Leffler walk, whose R(t) is an
exact power law at every t, has α̂ 0.3006.
"""

from __future__ import annotations

from math import gamma

import numpy as np
import pytest

from pipeline.slt.exponent import bootstrap_spectral_dimension, crossover_test, detect_crossover, fit_exponent
from tests.helpers.known_processes import brownian, ctrw, fractional_brownian, time_changed_brownian

SEEDS = 40
T = np.arange(100, 3701, 100).astype(float)
COPIES, GROUPS = 200, 32


def positions(kind: str, seed: int) -> tuple[float, np.ndarray]:
    """(true α, positions (copies, len(T), dim)) of one process."""
    rng = np.random.default_rng(seed)
    if kind.startswith("fbm"):
        hurst = float(kind[3:])
        return hurst, fractional_brownian(T, hurst, COPIES, rng)
    if kind == "brownian":
        return 0.5, brownian(T, COPIES, rng)
    beta = 0.6
    if kind == "ctrw-ml":  # Mittag-Leffler waits: E n(t) = t^β / Γ(1 + β) exactly
        mean_jumps = T.max() ** beta / gamma(1 + beta)
        return beta / 2, ctrw(T, beta, COPIES, rng, jumps=int(8 * mean_jumps) + 100, waits="mittag-leffler")
    mean_jumps = T.max() ** beta / (gamma(1 - beta) * gamma(1 + beta))
    return beta / 2, ctrw(T, beta, COPIES, rng, jumps=int(8 * mean_jumps) + 100)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "coverage"),
    [
        ("fbm0.25", 0.9),
        ("fbm0.5", 0.9),
        ("fbm0.75", 0.9),
        ("brownian", 0.9),
        ("ctrw-ml", 0.9),
        ("ctrw", 0.85),  # Pareto waits: R(t) itself bends at these times (module docstring)
    ],
)
def test_alpha_interval_covers_the_true_exponent(kind: str, coverage: float) -> None:
    hits, widths, alphas = [], [], []
    for seed in range(SEEDS):
        truth, x = positions(kind, seed)
        sq = (x**2).sum(axis=2)  # copies x times
        groups = np.stack([sq[g::GROUPS].sum(0) for g in range(GROUPS)])  # round-robin, as recorded
        r = np.sqrt(groups.sum(0))
        alpha = fit_exponent(T, r).alpha
        ci = bootstrap_spectral_dimension(T, r, np.array([1.0]), samples=1000, seed=seed, groups=groups)
        assert ci.groups == GROUPS
        hits.append(ci.alpha_low <= truth <= ci.alpha_high)
        widths.append((ci.alpha_high - ci.alpha_low) / 2)
        alphas.append(alpha)
    spread = np.std(alphas, ddof=1)
    print(
        f"\n{kind}: α = {truth}, α̂ {np.mean(alphas):.4f} ± {spread:.4f} over {SEEDS} seeds; "
        f"95 % interval covers {np.mean(hits):.2f}, half-width {np.mean(widths) / spread:.2f} × spread"
    )
    assert np.mean(hits) >= coverage
    assert np.mean(widths) <= 2.5 * spread


def groups_of(x: np.ndarray) -> np.ndarray:
    """The 32 round-robin groups' squared displacements of positions (copies, times, dim)."""
    sq = (x**2).sum(axis=2)
    return np.stack([sq[g::GROUPS].sum(0) for g in range(GROUPS)])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fbm0.25", "fbm0.5", "fbm0.75", "brownian"])
def test_no_crossover_is_reported_where_there_is_none(kind: str) -> None:
    """A single power law: the best breakpoint's two exponents agree within the groups' bootstrap
    in at least 90 % of the seeds (before, every series got a crossover). Measured: a crossover in
    0.05, 0.03, 0.05 and 0.03 of the 40 seeds (at a 95 % level instead of 99.9 %: 0.10-0.25, the
    breakpoint being the one of ~30 that splits the exponents most)."""
    supported = []
    for seed in range(SEEDS):
        _, x = positions(kind, seed)
        groups = groups_of(x)
        r = np.sqrt(groups.sum(0))
        supported.append(crossover_test(T, groups, detect_crossover(T, r), seed=seed)["supported"])
    print(f"\n{kind}: a crossover supported in {np.mean(supported):.2f} of {SEEDS} seeds")
    assert np.mean(supported) <= 0.1


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_planted_crossover_is_supported(seed: int) -> None:
    """Brownian motion on the clock t² up to t_c = 1000, then t_c²·(t/t_c)^0.5: α = 1, then 0.25."""
    t_c = 1000.0
    clock = np.where(T < t_c, T**2, t_c**2 * (T / t_c) ** 0.5)
    groups = groups_of(time_changed_brownian(T, clock, COPIES, np.random.default_rng(seed)))
    found = detect_crossover(T, np.sqrt(groups.sum(0)))
    test = crossover_test(T, groups, found, seed=seed)
    assert test["supported"] and found == pytest.approx(t_c, rel=0.15)
    assert test["alpha_early"] == pytest.approx(1.0, abs=0.1) and test["alpha_late"] == pytest.approx(
        0.25, abs=0.05
    )
