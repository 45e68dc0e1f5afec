"""The calibrated preset end to end on the tiny job: the search, its record, one setting for every
estimate, the chains and their diagnostics, and the calibration shared by the seeds of a point."""

from __future__ import annotations

import json

import pytest

from pipeline.config import checks
from pipeline.errors import UserError
from pipeline.jobs import report
from pipeline.stages.context import Member
from tests.helpers.jobs import execute

# The calibrated preset with a short ladder and short chains: seconds on the tiny job.
CALIBRATED = [
    "llc=calibrated",
    "llc.calibration.lr=[1e-5,1e-4,1e-3,1e-2]",
    "llc.calibration.localization=[100.0]",
    "llc.calibration.draws=40",
    "llc.calibration.max_draws=200",
    "llc.num_burnin_steps=20",
]


def test_calibrated_job_records_its_search_and_uses_one_setting(tiny_cfg) -> None:
    tracker, run_id, summary = execute(tiny_cfg(*CALIBRATED))
    tags = tracker.get_run(run_id).tags
    choice = json.loads(tags["llc.calibration"])
    assert tags["llc.calibrated_from"] == run_id and tags["llc.calibration_key"]
    assert choice["step"] == 90 and choice["chains"] == 4 and choice["burnin"] >= 20
    assert 20 <= choice["num_draws"] <= 200
    tried = tracker.load_table(run_id, "llc_calibration")
    assert tried["lr"].tolist() == sorted(tried["lr"], reverse=True)  # walked down from the largest
    assert set(tried["localization"]) == {100.0}
    if choice["plateau"]:
        assert tried["chosen"].sum() == 1
        chosen = tried[tried["chosen"]].iloc[0]
        assert (chosen["lr"], chosen["usable"]) == (choice["lr"], True)
    record = tracker.load_json(run_id, "llc_calibration")
    assert record["choice"] == choice and record["tried"] == len(tried)
    assert "llc_calibration/traces_nbeta_x1.png" in tracker.artifact_paths(run_id, "llc_calibration")
    # Every estimate with the chosen setting: 4 chains of the sized draws each, diagnosed.
    expected = (
        f"ε={choice['lr']:g} γ={choice['localization']:g} nβ=batch/log batch chains=4 "
        f"burn-in={choice['burnin']} draws={choice['num_draws']}"
    )
    assert tags["llc.settings_used"].startswith(expected)
    table = tracker.load_table(run_id, "llc")
    for column in ("rhat", "ess_bulk", "ess_tail", "llc_mcse", "rhat_high", "ess_low"):
        assert column in table, column
    traces = tracker.load_table(run_id, "llc_traces")
    assert len(traces) == 3 * 4 * choice["num_draws"] and sorted(traces["chain"].unique()) == [0, 1, 2, 3]
    assert summary["lambda_final_mcse"] > 0
    assert int(tags["llc.rhat_high_estimates"]) + int(tags["llc.ess_low_estimates"]) >= 0
    printed = report.run(tracker, run_id)
    assert "R-hat high" in printed and "(MCSE)" in printed and "median bulk ESS" in printed
    line = f"  SGLD: {tags['llc.settings_used']}; calibrated on this run ({choice['reason']})"
    assert line in printed.splitlines()  # the reason says whether two steps agreed (a plateau)


def test_a_later_seed_of_the_point_reuses_the_calibration(tiny_cfg) -> None:
    tracker, first, _ = execute(tiny_cfg(*CALIBRATED))
    _, second, _ = execute(tiny_cfg(*CALIBRATED, "seed=1"))
    a, b = tracker.get_run(first).tags, tracker.get_run(second).tags
    assert b["llc.calibrated_from"] == first and b["llc.calibration"] == a["llc.calibration"]
    assert b["llc.settings_used"] == a["llc.settings_used"]
    assert tracker.load_table(second, "llc_calibration") is None  # no search of its own
    assert f"; calibration of run {first}" in report.run(tracker, second)
    # Another training config (another learning rate) calibrates for itself.
    _, third, _ = execute(tiny_cfg(*CALIBRATED, "lr=0.05"))
    assert tracker.get_run(third).tags["llc.calibrated_from"] == third


def test_batched_seeds_share_the_first_seeds_calibration(tiny_cfg) -> None:
    cfg = tiny_cfg(*CALIBRATED, "seeds=2")
    from pipeline.jobs import lifecycle
    from tests.helpers.jobs import JOB

    outcome = lifecycle.execute(cfg, JOB)
    runs = [m.run_id for m in outcome.members]
    tags = [outcome.tracker.get_run(r).tags for r in runs]
    assert {t["llc.calibrated_from"] for t in tags} == {runs[0]}
    assert tags[0]["llc.settings_used"] == tags[1]["llc.settings_used"]
    assert isinstance(outcome.members[0], Member)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["llc.online=true"], "llc.online=true estimates during training"),
        (["llc.calibration.lr=[1e-3,1e-4]"], "smallest first"),
        (["llc.calibration.lr=[]"], "must be a non-empty list"),
        (["llc.calibration.draws=2"], "must be ≥ 4"),
        (["llc.calibration.localization=[0,10]"], "every value must be > 0"),
        (["llc.calibration.max_prior=0"], "max_prior=0 must be a number > 0"),
        (["llc.calibration.max_prior=a"], "max_prior=a must be a number > 0"),
        (["llc.calibration.momentum.sampler=hmc"], "momentum.sampler=hmc: choose underdamped"),
        (["llc.calibration.momentum.lr=[1e-6,1e-7]"], "momentum.lr=.*smallest first"),
        (["llc.calibration.momentum.max_steps=2"], "momentum.max_steps=2 must be ≥ 4"),
        (["llc.calibration.momentum.max_rhat=0.9"], "momentum.max_rhat=0.9 must be ≥ 1"),
    ],
)
def test_calibration_settings_are_checked(tiny_cfg, extra: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        checks.check(tiny_cfg(*CALIBRATED, *extra))
