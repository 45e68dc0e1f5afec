"""The fitter recovers known exponents; crossover detection finds a planted t_c."""

import numpy as np
import pytest

from pipeline.slt.exponent import detect_crossover, fit_exponent, spectral_dimension, walk_dimension


@pytest.mark.parametrize("a", [0.1, 0.25, 0.5, 0.9])
def test_recovers_power_law_with_noise(a: float) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(100, 5001, 100)
    r = 3.0 * t**a * np.exp(rng.normal(0, 0.01, t.size))  # 1 % multiplicative noise
    fit = fit_exponent(t, r)
    assert fit.alpha == pytest.approx(a, abs=0.02)
    assert abs(fit.alpha - a) < 4 * fit.alpha_se  # the standard error is honest
    assert fit.intercept == pytest.approx(np.log(3.0), abs=0.15)
    assert fit.r2 > 0.97
    assert (fit.t_start, fit.t_end, fit.n_points) == (100, 5000, 50)


def test_exact_power_law_has_zero_error() -> None:
    t = np.arange(1, 200)
    fit = fit_exponent(t, 2.0 * t**0.3)
    assert fit.alpha == pytest.approx(0.3, abs=1e-12)
    assert fit.alpha_se == pytest.approx(0.0, abs=1e-10)
    assert fit.r2 == pytest.approx(1.0)


def test_window_limits_the_points() -> None:
    t = np.arange(1, 1001, dtype=float)
    r = np.where(t < 100, t, 100 * (t / 100) ** 0.2)  # ballistic, then sub-diffusive
    fit = fit_exponent(t, r, t_start=200, t_end=900)
    assert fit.alpha == pytest.approx(0.2, abs=1e-9)
    assert (fit.t_start, fit.t_end) == (200, 900)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crossover_detection_finds_planted_tc_and_late_exponent(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.unique(np.geomspace(1, 100_000, 400).round())
    t_c = 1000.0
    # Ballistic (α = 1) up to t_c, then sub-diffusive α = 0.25, continuous at t_c; 1 % noise.
    r = np.where(t < t_c, t, t_c**0.75 * t**0.25) * np.exp(rng.normal(0, 0.01, t.size))
    found = detect_crossover(t, r)
    assert found == pytest.approx(t_c, rel=0.1)
    whole = fit_exponent(t, r)
    late = fit_exponent(t, r, t_c=found)
    assert whole.alpha > 0.45  # the early regime drags a whole-run fit up
    assert late.alpha == pytest.approx(0.25, abs=0.01)
    assert late.t_start >= found and late.t_c == found and not late.shifted


def test_shifted_fit_is_exact_for_eq_32() -> None:
    t = np.arange(1.0, 20_001.0)
    t_c = 500.0
    # Appendix B.3, eq. (32): r(t) ~ t^1.5 before t_c, r(t_c) + (t - t_c)^0.3 after.
    r = np.where(t < t_c, (t / t_c) ** 1.5, 1.0 + np.clip(t - t_c, 0, None) ** 0.3)
    fit = fit_exponent(t, r, t_c=t_c, shift=True)
    assert fit.alpha == pytest.approx(0.3, abs=1e-9)
    assert fit.shifted and fit.t_start == 501


def test_too_few_points_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="usable points"):
        fit_exponent(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]), t_start=2.5)


def test_dimensions() -> None:
    # Table 1, TinyStories-1M: λ = 32, α = 0.335 -> d_s = 21.4; d_walk = 1/α.
    assert spectral_dimension(32, 0.3347) == pytest.approx(21.42, abs=0.01)
    assert walk_dimension(0.25) == 4.0


def test_the_fit_counts_the_points_it_drops_and_resamples_the_coordinate_groups() -> None:
    """Points with R = 0 inside the window are dropped from the log-log fit and counted (fit.json
    `points_dropped`, the printed window); with the recorded coordinate groups, α's interval comes
    from resampling them."""
    import pandas as pd

    from pipeline.slt import fit

    rng = np.random.default_rng(0)
    steps = np.arange(100, 1001, 100)
    groups = rng.uniform(0.5, 1.5, size=(32, 1)) * steps.astype(float)  # R² ∝ t: α = 1/2
    traj = pd.DataFrame({"step": steps, "displacement": np.sqrt(groups.sum(0))})
    traj.loc[2, "displacement"] = 0.0
    for g in range(32):
        traj[f"displacement_group/{g:02d}"] = groups[g]
    llc = pd.DataFrame({"step": steps, "llc": 1.0, "status": "ok"})
    out = fit.compute(traj, llc, {"lambda_final": 1.0, "lambda_bar": 1.0}, {}, every=100)
    assert out["points_dropped"] == 1 and out["n_points"] == 9
    assert out["bootstrap"]["groups"] == 32 and out["bootstrap"]["method"].startswith("coordinate-group")
    assert out["alpha"] == pytest.approx(0.5) and out["alpha_ci_low"] <= 0.5 <= out["alpha_ci_high"]
    assert "1 with R = 0 dropped" in fit.window_text(out)
    old = fit.compute(traj[["step", "displacement"]], llc, {"lambda_final": 1.0}, {}, every=100)
    assert old["bootstrap"]["groups"] == 0 and old["bootstrap"]["method"].startswith("moving-block")
