"""Each stage on a tiny config against a real SQLite store, and each re-run alone."""

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import Diverged, UserError
from pipeline.jobs import lifecycle
from pipeline.slt import fit
from pipeline.tracking import Tracker
from pipeline.tracking.names import SUMMARY_METRICS
from tests.helpers.jobs import JOB, execute

# The tiny job's numbers (one torch thread; the same as before the redesign): α reproduces to
# ~1e-8 on other thread counts, λ to ~1e-4.
TINY_KNOWN = {
    "lambda_final": 0.25570840,
    "lambda_bar": 0.16956604,
    "alpha": 1.32181280,
    "r2": 0.99033120,
    "d_s": 0.67599728,
    "test_acc": 0.37819800,
}


def metric_history(tracker, run_id, key):
    return tracker.client.get_metric_history(run_id, key)


def test_full_run_records_the_contract(tiny_cfg) -> None:
    tracker, run_id, metrics = execute(tiny_cfg(), JOB)
    r = tracker.get_run(run_id)
    assert r.status == "FINISHED"
    for key in SUMMARY_METRICS:
        assert math.isfinite(metrics[key]), key
    tags = r.tags
    assert tags["sweep"] == "test-sweep" and len(tags["config_hash"]) == 16
    assert all(tags[f"stage.{s}"] == "done" for s in ("train", "llc", "fit"))
    assert tags["git_commit"] and tags["version.devinterp"].startswith("1.3")
    assert r.params["llc.lr"] == "1e-05" and r.params["lr"] == "0.1"

    traj = tracker.load_table(run_id, "trajectory")
    assert traj["step"].tolist() == list(range(1, 91))  # every step of a short run
    tensors = [c for c in traj if c.startswith("displacement/")]
    assert len(tensors) == 6  # 3 linear layers: weight and bias
    assert np.allclose(np.sqrt((traj[tensors] ** 2).sum(axis=1)), traj["displacement"])
    assert len(metric_history(tracker, run_id, "displacement")) == 90

    evals = tracker.load_table(run_id, "evals")
    assert evals["step"].tolist() == [30, 60, 90]
    assert metrics["test_acc"] == evals["test_acc"].iloc[-1]
    assert len(metric_history(tracker, run_id, "test/acc")) == 3

    llc = tracker.load_table(run_id, "llc")
    assert llc["step"].tolist() == [30, 60, 90] and (llc["status"] == "ok").all()
    assert np.allclose(llc["nbeta"], 64 / np.log(64))  # devinterp's default_nbeta
    assert metrics["lambda_final"] == pytest.approx(llc["llc"].tail(2).mean())
    assert metrics["lambda_final_std"] == pytest.approx(llc["llc"].tail(2).std(ddof=1))
    assert metrics["lambda_bar"] == pytest.approx(llc["llc"].mean())
    traces = tracker.load_table(run_id, "llc_traces")
    assert len(traces) == 3 * 20 and set(traces["draw"]) == set(range(20))

    result = tracker.load_json(run_id, "fit")
    assert (result["t_start"], result["t_end"], result["n_points"]) == (30, 90, 3)
    for key in ("alpha", "r2"):
        assert metrics[key] == pytest.approx(TINY_KNOWN[key], rel=1e-6), key
    for key in ("lambda_final", "lambda_bar", "d_s"):
        assert metrics[key] == pytest.approx(TINY_KNOWN[key], rel=1e-3), key
    assert metrics["test_acc"] == pytest.approx(TINY_KNOWN["test_acc"], abs=1e-6)
    assert metrics["d_s"] == pytest.approx(2 * metrics["lambda_final"] * metrics["alpha"])
    assert metrics["d_walk"] == pytest.approx(1 / metrics["alpha"])
    assert tags["verdict.lemma_3_4"] == fit.verdict(metrics["d_s"], metrics["lambda_final"])
    files = {f.path for f in tracker.client.list_artifacts(run_id, "checkpoints")}
    assert files == {f"checkpoints/step_{s:08d}.pt" for s in (0, 30, 60, 90)}


def test_refit_alone_does_not_retrain_and_reproduces_alpha(tiny_cfg) -> None:
    cfg = tiny_cfg("train.steps=150", "fit.points=all")
    tracker, run_id, first = execute(cfg, JOB)
    traj_before = tracker.load_table(run_id, "trajectory")
    n_disp = len(metric_history(tracker, run_id, "displacement"))

    _, same_id, later = execute(
        tiny_cfg("train.steps=150", "fit.points=all", "stages=[fit]", "fit.start_step=60"), JOB
    )
    assert same_id == run_id  # found by its training hash
    assert later["alpha"] != first["alpha"]
    assert tracker.load_json(run_id, "fit")["t_start"] == 60
    assert len(metric_history(tracker, run_id, "displacement")) == n_disp  # no retraining
    assert tracker.load_table(run_id, "trajectory").equals(traj_before)
    assert tracker.get_run(run_id).tags["override.fit.start_step"] == "60"

    # The same config as the finished run's: a stage re-run runs (it is not a finished point to skip).
    same = ("train.steps=150", "fit.points=all", "stages=[fit]", f"run_id={run_id}")
    _, _, again = execute(tiny_cfg(*same), JOB)
    assert again["alpha"] == first["alpha"]
    assert len(metric_history(tracker, run_id, "alpha")) == 3  # fitted three times
    assert tracker.get_run(run_id).status == "FINISHED"


def test_failed_refit_leaves_the_run_finished(tiny_cfg) -> None:
    tracker, run_id, first = execute(tiny_cfg(), JOB)
    with pytest.raises(UserError, match="usable points"):
        execute(tiny_cfg("stages=[fit]", "fit.start_step=80", f"run_id={run_id}"), JOB)
    r = tracker.get_run(run_id)
    assert r.status == "FINISHED" and "usable points" in r.tags["rerun_failure"]
    assert r.metrics["alpha"] == first["alpha"]


def test_llc_rerun_with_other_settings(tiny_cfg) -> None:
    tracker, run_id, first = execute(tiny_cfg(), JOB)
    _, _, later = execute(tiny_cfg("stages=[llc,fit]", "llc.lr=1e-4", f"run_id={run_id}"), JOB)
    assert later["lambda_final"] != first["lambda_final"]
    assert later["alpha"] == first["alpha"]
    assert tracker.get_run(run_id).tags["override.llc.lr"] == "0.0001"


def test_online_llc_keeps_no_intermediate_checkpoints(tiny_cfg) -> None:
    tracker, run_id, metrics = execute(tiny_cfg("llc.online=true", "train.keep_checkpoints=false"), JOB)
    files = {f.path for f in tracker.client.list_artifacts(run_id, "checkpoints")}
    assert files == {"checkpoints/step_00000000.pt", "checkpoints/step_00000090.pt"}
    assert tracker.load_table(run_id, "llc")["step"].tolist() == [30, 60, 90]
    assert math.isfinite(metrics["lambda_final"]) and math.isfinite(metrics["d_s"])


def test_diverging_run_is_failed_with_reason_and_keeps_its_records(tiny_cfg) -> None:
    cfg = tiny_cfg("lr=1e6")
    with pytest.raises(Diverged):
        execute(cfg, JOB)
    from pipeline.tracking import Tracker

    tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment)
    (r,) = tracker.find_runs({"sweep": "test-sweep"})
    assert r.status == "FAILED"
    assert "not finite at step 30" in r.tags["failure_reason"]
    traj = tracker.load_table(r.run_id, "trajectory")
    assert traj["step"].max() == 30  # what was recorded before the check is kept


def test_diverging_sgld_chains_are_recorded_and_all_failing_fails_the_run(tiny_cfg) -> None:
    """Each diverging chain's estimate is a row with its status; when every one failed, λ is nan and
    the run ends FAILED (a UserError naming llc.lr) with the table kept, not fitted as if all went well."""
    cfg = tiny_cfg("llc.lr=1e3")
    with pytest.raises(UserError, match=r"all 3 λ estimates failed .*llc\.lr=1000: lower it"):
        execute(cfg, JOB)
    tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment)
    [run] = tracker.find_runs({})
    llc = tracker.load_table(run.run_id, "llc")
    assert llc["status"].str.startswith("failed: NaN detected").all()
    assert run.status == "FAILED" and run.tags["llc.failed_estimates"] == "3" and "alpha" not in run.metrics


def test_bad_config_creates_no_run(tiny_cfg, capsys) -> None:
    status = lifecycle.main(tiny_cfg("batch=100000"), JOB)
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: batch=100000 is larger") and "\n" not in err
    from pipeline.tracking import Tracker

    cfg = tiny_cfg()
    assert Tracker(cfg.tracking.uri, cfg.tracking.experiment).find_runs({}) == []


def test_the_fit_stage_logs_the_runs_own_figures(tiny_cfg) -> None:
    """`figures/displacement.png` and `figures/llc.png`, PNG files the MLflow UI previews; none with
    fit.figures=false (the tests' tiny config)."""
    tracker, run_id, _ = execute(tiny_cfg("fit.figures=true"), JOB)
    with tempfile.TemporaryDirectory() as d:
        folder = tracker.download_dir(run_id, "figures", Path(d))
        files = sorted(p.name for p in folder.iterdir())
        assert files == ["displacement.png", "llc.png"]
        assert all((folder / f).read_bytes().startswith(b"\x89PNG") for f in files)
    tracker, run_id, _ = execute(tiny_cfg("seed=1"), JOB)
    assert tracker.artifact_paths(run_id, "figures") == []
