"""λ diagnostics (negative, non-stationary), the d_s bootstrap and its verdicts, the calibrate stage."""

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from pipeline.config import checks
from pipeline.errors import UserError
from pipeline.slt import fit, llc
from pipeline.slt.exponent import bootstrap_spectral_dimension
from pipeline.stages import calibrate
from tests.helpers.jobs import execute


def test_flat_trace_is_stationary_and_a_rising_one_is_not() -> None:
    rng = np.random.default_rng(0)
    flat = 1.0 + 0.01 * rng.normal(size=(2, 400))
    drift, z = llc.stationarity(flat, nbeta=100.0)
    assert abs(z) < 3
    rising = flat + np.linspace(0, 0.05, 400)  # a chain still climbing out of w_t's basin
    drift, z = llc.stationarity(rising, nbeta=100.0)
    # Second-half mean minus first-half mean of the ramp is 0.025 (up to the noise), times nβ.
    assert drift == pytest.approx(100 * 0.025, abs=0.1)
    assert z > 3


def test_diagnose_flags_negative_and_trending_estimates() -> None:
    rng = np.random.default_rng(1)
    trace = 1.0 + 0.01 * rng.normal(size=(1, 400))
    base = {"nbeta": 50.0, "trace": trace}
    ok = llc.diagnose({**base, "llc": 1.0}, None)
    assert not ok["negative"] and not ok["nonstationary"]
    assert llc.diagnose({**base, "llc": -0.3}, None)["negative"]
    falling = {**base, "trace": trace - np.linspace(0, 0.1, 400), "llc": -2.0}
    flags = llc.diagnose(falling, OmegaConf.create({"batches": 20, "max_z": 3.0, "max_drift": 0.1}))
    assert flags["negative"] and flags["nonstationary"] and flags["trace_drift"] < 0
    # A significant but tiny drift (under max_drift·|λ̂|) does not flag: it cannot move λ̂.
    small = {**base, "trace": 1.0 + np.linspace(0, 1e-3, 400)[None], "llc": 10.0}
    assert not llc.diagnose(small, None)["nonstationary"]
    failed = llc.diagnose({"nbeta": 50.0, "trace": None, "llc": np.nan}, None)
    assert not failed["negative"] and not failed["nonstationary"]


@pytest.mark.parametrize(
    "d_s, bound, margin_low, expected",
    [
        (0.5, 1.0, -0.7, "holds"),
        (1.2, 1.0, -0.1, "within_error"),
        (1.2, 1.0, 0.05, "violated"),
        (1.2, 1.0, float("nan"), "violated"),
        (float("nan"), 1.0, 0.1, "n/a"),
        (0.5, float("nan"), 0.1, "n/a"),
    ],
)
def test_verdicts(d_s: float, bound: float, margin_low: float, expected: str) -> None:
    assert fit.verdict(d_s, bound, margin_low) == expected


def test_lemma_margin_is_alphas_uncertainty() -> None:
    """α clearly above 1/2 with noisy λ: d_s's own interval reaches below λ_final, but
    d_s − λ_final = λ_final(2α − 1) stays positive, so the violation is not within error; with α
    near 1/2 it is."""
    rng = np.random.default_rng(1)
    t = np.arange(100, 5001, 100, dtype=float)
    r = t**0.7 * np.exp(rng.normal(0, 0.005, t.size))
    lambdas = np.array([0.2, 0.8, 0.3, 0.7, 0.5])
    ci = bootstrap_spectral_dimension(t, r, lambdas, seed=0)
    lam, d_s = lambdas.mean(), 2 * lambdas.mean() * 0.7
    assert ci.d_s_low < lam < d_s and ci.alpha_low > 0.5
    assert ci.lemma_margin_low == pytest.approx(lam * (2 * ci.alpha_low - 1))
    assert ci.lemma_margin_low > 0 and fit.verdict(d_s, lam, ci.lemma_margin_low) == "violated"
    near = bootstrap_spectral_dimension(t, t**0.505 * np.exp(rng.normal(0, 0.05, t.size)), lambdas, seed=0)
    assert near.alpha_low < 0.5 < near.alpha_high and near.lemma_margin_low < 0


def test_bootstrap_is_seeded_and_carries_lambda_spread() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(100, 5001, 100, dtype=float)
    r = t**0.3 * np.exp(rng.normal(0, 0.02, t.size))
    lambdas = np.array([1.8, 2.2, 2.0, 1.9, 2.1])
    a = bootstrap_spectral_dimension(t, r, lambdas, seed=7)
    assert a == bootstrap_spectral_dimension(t, r, lambdas, seed=7)
    assert a != bootstrap_spectral_dimension(t, r, lambdas, seed=8)
    assert a.d_s_low < 2 * 2.0 * 0.3 < a.d_s_high
    assert a.block == round(len(t) ** (1 / 3)) and a.n_lambdas == 5 and a.samples == 1000
    fixed = bootstrap_spectral_dimension(t, r, np.array([2.0]), seed=7)
    # λ's spread widens d_s's interval beyond what α's alone gives.
    assert a.d_s_high - a.d_s_low > fixed.d_s_high - fixed.d_s_low
    assert (fixed.d_s_low, fixed.d_s_high) == pytest.approx((4 * fixed.alpha_low, 4 * fixed.alpha_high))


def test_run_records_flags_interval_verdicts_then_calibrates(tiny_cfg, tmp_path) -> None:
    tracker, run_id, metrics = execute(tiny_cfg())
    table = tracker.load_table(run_id, "llc")
    assert table["negative"].dtype == bool and table["nonstationary"].dtype == bool
    assert (table["negative"] == (table["llc"] < 0)).all()
    tags = tracker.get_run(run_id).tags
    assert int(tags["llc.negative_estimates"]) == table["negative"].sum()
    assert int(tags["llc.nonstationary_estimates"]) == table["nonstationary"].sum()
    traces = tracker.load_table(run_id, "llc_traces")
    for _, row in table.iterrows():  # the flags are reproducible from the saved traces
        trace = traces[traces["step"] == row["step"]].pivot(index="chain", columns="draw", values="loss")
        assert llc.stationarity(trace.to_numpy(), row["nbeta"]) == pytest.approx(
            (row["trace_drift"], row["trace_drift_z"]), nan_ok=True
        )
    assert metrics["d_s_ci_low"] <= metrics["d_s"] <= metrics["d_s_ci_high"]
    result = tracker.load_json(run_id, "fit")
    assert result["bootstrap"]["n_lambdas"] == 2  # llc.last=2 estimates resampled
    lam, low = metrics["lambda_final"], metrics["margin_lemma_3_4_low"]
    assert metrics["fit_lambda_final"] == lam and metrics["fit_lambda_bar"] == metrics["lambda_bar"]
    assert tags["verdict.lemma_3_4"] == fit.verdict(metrics["d_s"], lam, low)
    # Re-fitting with the same seed reproduces the interval exactly (and resamples the 2 estimates
    # λ_final averaged, whatever llc.last the refit's own config says).
    _, _, again = execute(tiny_cfg("stages=[fit]", f"run_id={run_id}", "llc.last=10"))
    assert (again["d_s_ci_low"], again["d_s_ci_high"]) == (metrics["d_s_ci_low"], metrics["d_s_ci_high"])
    assert tracker.load_json(run_id, "fit")["bootstrap"]["n_lambdas"] == 2

    # The calibrate stage on the same run's last checkpoint (one test: one tiny training).
    grid = [
        "calibrate.lr=[1e-5,1e-3]",
        "calibrate.localization=[100]",
        "calibrate.nbeta_factor=[1,10]",
        "calibrate.num_draws=40",
        "calibrate.num_chains=2",
    ]
    cfg = tiny_cfg("stages=[calibrate]", f"run_id={run_id}", *grid)
    _, same, _ = execute(cfg)
    assert same == run_id
    table = tracker.load_table(run_id, "calibration")
    assert len(table) == 4 and set(table["lr"]) == {1e-5, 1e-3} and (table["step"] == 90).all()
    base = 64 / np.log(64)  # batch / log batch
    assert np.allclose(sorted(table["nbeta"].unique()), [base, 10 * base])
    best = calibrate.recommend(table)
    tags = tracker.get_run(run_id).tags
    assert tags["calibrate.recommended"] == calibrate.overrides(best, True)
    assert table["recommended"].sum() == (best is not None)
    usable = table[(table["status"] == "ok") & ~table["negative"] & ~table["nonstationary"]]
    if best is not None:
        assert best["lr"] == usable["lr"].max()
    traces = tracker.load_table(run_id, "calibration_traces")
    assert len(traces) == (table["status"] == "ok").sum() * 2 * 40
    # Each setting's λ̂ is the llc stage's own estimator at that checkpoint with those settings.
    row = table.iloc[0]
    assert row["llc"] == pytest.approx(
        traces[traces["setting"] == 0].groupby("chain")["loss"].mean().sub(row["init_loss"]).mean()
        * row["nbeta"],
        rel=1e-4,
    )
    from PIL import Image

    for factor in (1, 10):
        png = tracker.download_file(run_id, f"calibration/traces_nbeta_x{factor}.png", tmp_path)
        assert png is not None
        with Image.open(png) as im:  # a 1 x 2 grid of panels (one γ, two step sizes)
            assert im.size[0] > im.size[1]


def test_calibrate_recommendation_rule() -> None:
    table = pd.DataFrame(
        {
            "setting": range(4),
            "lr": [1e-5, 1e-4, 1e-3, 1e-4],
            "localization": [100.0, 100.0, 100.0, 10.0],
            "nbeta_factor": [1.0, 1.0, 1.0, 1.0],
            "nbeta": [10.0] * 4,
            "status": ["ok", "ok", "failed: NaN", "ok"],
            "negative": [False, False, False, False],
            "nonstationary": [True, False, False, False],
        }
    )
    best = calibrate.recommend(table)
    assert best["setting"] == 3  # largest usable step, then the smaller localization
    assert calibrate.overrides(best, True) == "llc.lr=0.0001 llc.localization=10 llc.nbeta=null"
    assert calibrate.recommend(table.assign(negative=True)) is None
    assert calibrate.overrides(None, True) == "none"


def test_bad_calibration_grid_is_a_one_line_error() -> None:
    from tests.helpers.config import compose_cfg

    with pytest.raises(UserError, match="calibrate.lr"):
        checks.check(compose_cfg(["stages=[calibrate]", "calibrate.lr=[0.0]"]))
    with pytest.raises(UserError, match="non-empty list"):
        checks.check(compose_cfg(["stages=[calibrate]", "calibrate.localization=[]"]))
    with pytest.raises(UserError, match="fit.bootstrap"):
        checks.check(compose_cfg(["fit.bootstrap.level=1.5"]))
