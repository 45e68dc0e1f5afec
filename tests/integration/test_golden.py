"""The default job, `python launch.py`, and its Table 3 twin, `llc=paper`, print the numbers the
README promises.

Measured on the project's 2-core machines with 2 torch threads (the default there): the training
trajectory, and so α, reproduces to ~1e-8 on another thread count or CPU (AMD EPYC and Intel Xeon
agree); Table 3's λ (a sum over SGLD draws) moves in the fourth digit, hence the relative 1e-3 on λ
and d_s. The calibrated job sizes its draws from a pilot chain's ESS, so its draw count and λ
depend on the CPU's rounding: 501 draws and λ_final 53.73 on AMD EPYC, 616 draws and 54.48 on
Intel Xeon (λ_final's MCSE 0.58); those are checked to what the estimator promises, not to digits."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.tracking import Tracker, names
from tests.helpers.cli import launch

# `python launch.py llc=paper`: Table 3's SGLD settings, the numbers the paper's settings give.
GOLDEN = {
    "lambda_final": 0.42364865,
    "lambda_bar": 0.39300527,
    "alpha": 0.30291887,
    "r2": 0.86406893,
    "d_s": 0.25666234,
    "d_walk": 3.30121400,
    "test_acc": 0.96106785,
    "num_params": 17226,
}
PRINTED = [
    "  α = 0.3029 ± 0.0203   r² = 0.8641   fit window: steps 100-3700 (37 points, llc)",
    "  λ diagnostics: 4 negative, 29 non-stationary, 36 R-hat high, 35 ESS low, 0 failed of 37 estimates",
    "  Lemma 3.4      d_s ≤ λ_final: holds",
    "  Corollary 3.3  d_s ≤ λ̄:       holds",
]
# `python launch.py`: the calibrated preset, the search's choice and what it gives.
CALIBRATED = {"lambda_final": 53.73070946, "lambda_bar": 52.29461134, "d_s": 32.55209114}
SETTINGS = re.compile(r"ε=0.01 γ=1 nβ=batch/log batch chains=4 burn-in=600 draws=(\d+) every=1")


def _launch(tmp_path: Path, store: str, *extra: str):
    # The default threads: 2 alone on these machines, 1 beside the other worker of `make test`.
    # 70 s quiet for the calibrated job; a machine shared with a sweep took over 300 s.
    res = launch([f"tracking.uri={store}", *extra], cwd=tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    (run,) = Tracker(store, "almost-bayesian").find_runs({})
    m = run.metrics
    # Training and the fit do not depend on the preset.
    assert m["alpha"] == pytest.approx(GOLDEN["alpha"], rel=1e-6)
    assert m["r2"] == pytest.approx(GOLDEN["r2"], rel=1e-6)
    assert m["d_walk"] == pytest.approx(GOLDEN["d_walk"], rel=1e-6)
    assert m["test_acc"] == pytest.approx(GOLDEN["test_acc"], abs=1e-6)
    assert m["num_params"] == GOLDEN["num_params"]
    assert run.tags[names.LEMMA_3_4] == run.tags[names.COROLLARY_3_3] == "holds"
    return res, run


def test_the_paper_preset_prints_table_3s_numbers(tmp_path: Path, store: str) -> None:
    res, run = _launch(tmp_path, store, "llc=paper")
    lines = res.stdout.splitlines()
    for line in PRINTED:
        assert line in lines, (line, res.stdout)
    lam = re.search(r"λ_final = (\S+)", res.stdout).group(1)
    d_s = re.search(r"d_s = 2·λ_final·α = (\S+)", res.stdout).group(1)
    assert float(lam) == pytest.approx(GOLDEN["lambda_final"], rel=1e-3)
    assert float(d_s) == pytest.approx(GOLDEN["d_s"], rel=1e-3)
    for key in ("lambda_final", "lambda_bar", "d_s"):
        assert run.metrics[key] == pytest.approx(GOLDEN[key], rel=1e-3), key
    assert (
        run.tags[names.LLC_SETTINGS]
        == "ε=1e-05 γ=100 nβ=batch/log batch chains=1 burn-in=0 draws=400 every=1"
    )


@pytest.mark.slow  # about 70 s
def test_the_default_job_is_calibrated_and_its_estimates_pass_their_diagnostics(
    tmp_path: Path, store: str
) -> None:
    res, run = _launch(tmp_path, store)
    tags = run.tags
    settings = SETTINGS.fullmatch(tags[names.LLC_SETTINGS])
    assert settings and tags[names.LLC_CALIBRATED_FROM] == run.run_id, tags[names.LLC_SETTINGS]
    assert 400 <= int(settings.group(1)) <= 1000  # sized for an ESS of 100 per estimate
    for key, value in CALIBRATED.items():  # 3 % ≈ 3 MCSE of λ_final: the CPUs differ by 1.4 %
        assert run.metrics[key] == pytest.approx(value, rel=0.03), key
    # The bar: at least 90 % of the estimates stationary, none negative, R-hat and ESS kept.
    estimates = int(tags[names.LLC_ESTIMATES])
    assert estimates == 37 and tags[names.LLC_NEGATIVE] == tags[names.LLC_FAILED] == "0"
    for flag in (names.LLC_NONSTATIONARY, names.LLC_RHAT_HIGH, names.LLC_ESS_LOW):
        assert int(tags[flag]) <= 0.1 * estimates, (flag, tags[flag])
    line = re.search(
        r"  λ diagnostics: 0 negative, (\d+) non-stationary, (\d+) R-hat high, (\d+) ESS low, "
        r"0 failed of 37 estimates",
        res.stdout,
    )
    assert line and line.groups() == tuple(
        tags[f] for f in (names.LLC_NONSTATIONARY, names.LLC_RHAT_HIGH, names.LLC_ESS_LOW)
    ), res.stdout
