"""Known answers for the displacement-exponent fitter: walks whose α is known exactly.

R(t) is computed as the pipeline does, ‖X(t) − X(0)‖₂ over every coordinate, here of N
independent copies of a walk (see tests/helpers/known_processes.py), sampled at log-spaced t as the train
stage records long runs, and fitted by `fit_exponent` (OLS of log R on log t). Tolerances on α,
from three seeds each while writing these tests (worst error in brackets):
- Brownian motion, fBm: ±0.02 (0.008); exact Gaussian processes, the only error is sampling.
- CTRW: ±0.03 (0.019); heavy-tailed waiting times make the copies' clocks very unequal, and the
  jump count converges to t^β slowly.
- Sierpinski gasket: ±0.015 (0.004); the displacement oscillates log-periodically around the
  power law, and a fit over 2.5 decades averages that out.
- Planted crossover: t_c within 15 %, α of each regime ±0.02.
The OLS standard error `alpha_se` is much smaller than these errors: successive R(t) of one
trajectory are strongly correlated, so it understates α's uncertainty (the d_s interval uses a
block bootstrap for that reason).
"""

from math import gamma, log

import numpy as np
import pytest

from pipeline.slt.exponent import bootstrap_spectral_dimension, detect_crossover, fit_exponent, window_points
from tests.helpers.known_processes import (
    brownian,
    ctrw,
    displacement,
    fractional_brownian,
    gasket_walk,
    time_changed_brownian,
)


def log_times(hi: float, n: int = 100) -> np.ndarray:
    return np.unique(np.geomspace(1, hi, n).round())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_brownian_motion_alpha_is_one_half(seed: int) -> None:
    t = log_times(10_000)
    r = displacement(brownian(t, copies=200, rng=np.random.default_rng(seed)))
    fit = fit_exponent(t, r, t_start=10)
    assert fit.alpha == pytest.approx(0.5, abs=0.02)
    assert fit.r2 > 0.99


@pytest.mark.parametrize("hurst", [0.25, 0.5, 0.75])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fractional_brownian_motion_alpha_is_hurst(hurst: float, seed: int) -> None:
    t = log_times(100_000)
    r = displacement(fractional_brownian(t, hurst, copies=200, rng=np.random.default_rng(seed)))
    assert fit_exponent(t, r).alpha == pytest.approx(hurst, abs=0.02)


@pytest.mark.parametrize("beta", [0.4, 0.6])
def test_ctrw_alpha_is_half_the_waiting_time_exponent(beta: float) -> None:
    horizon = 1e6
    t = log_times(horizon)
    mean_jumps = horizon**beta / (gamma(1 - beta) * gamma(1 + beta))  # renewal theory, E n(T)
    x = ctrw(t, beta, copies=300, rng=np.random.default_rng(0), jumps=int(8 * mean_jumps) + 100)
    fit = fit_exponent(t, displacement(x), t_start=1000)
    assert fit.alpha == pytest.approx(beta / 2, abs=0.03)


def test_sierpinski_gasket_alpha_is_one_over_walk_dimension() -> None:
    d_walk = log(5) / log(2)
    t = log_times(50_000)
    x = gasket_walk(t, level=10, copies=1000, rng=np.random.default_rng(0))
    # The walk stays far from the far corners of the gasket (side 1024): no finite-size cut-off.
    assert np.sqrt((x[:, -1] ** 2).sum(1)).max() < 2**10 / 2
    fit = fit_exponent(t, displacement(x), t_start=100)
    assert fit.alpha == pytest.approx(1 / d_walk, abs=0.015)
    assert fit.alpha < 0.5  # sub-diffusive, unlike any Euclidean lattice walk


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crossover_between_super_and_sub_diffusion_is_found(seed: int) -> None:
    # Brownian motion on the clock τ = t² (R ∝ t, super-diffusive) up to t_c = 1000, then
    # τ = t_c²·(t/t_c)^0.5 (R ∝ t^0.25, sub-diffusive): a learning-rate schedule's effect on SGD noise.
    t_c = 1000.0
    t = log_times(1e6, 300)
    clock = np.where(t < t_c, t**2, t_c**2 * (t / t_c) ** 0.5)
    r = displacement(time_changed_brownian(t, clock, copies=500, rng=np.random.default_rng(seed)))
    found = detect_crossover(t, r)
    assert found == pytest.approx(t_c, rel=0.15)
    early = fit_exponent(t, r, t_start=10, t_end=found)
    late = fit_exponent(t, r, t_c=found)
    assert early.alpha == pytest.approx(1.0, abs=0.02)
    assert late.alpha == pytest.approx(0.25, abs=0.02)
    assert fit_exponent(t, r).alpha > 0.4  # a whole-run fit mixes the regimes


def test_block_bootstrap_interval_is_wider_than_ols_and_covers_brownian_truth() -> None:
    # One realisation: OLS treats correlated points as independent; the moving-block bootstrap
    # of the fit points gives a wider interval for α, and d_s = 2λα scales with it (λ fixed).
    t = log_times(10_000)
    r = displacement(brownian(t, copies=20, rng=np.random.default_rng(3)))
    fit = fit_exponent(t, r, t_start=10)
    ci = bootstrap_spectral_dimension(*window_points(t, r, t_start=10), np.array([2.0]), seed=0)
    assert ci.alpha_low <= 0.5 <= ci.alpha_high
    assert ci.alpha_high - ci.alpha_low > 2 * 1.96 * fit.alpha_se
    assert (ci.d_s_low, ci.d_s_high) == pytest.approx((4 * ci.alpha_low, 4 * ci.alpha_high), rel=1e-9)
