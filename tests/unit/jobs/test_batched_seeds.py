"""`seeds=N`: one batched job writes, per seed, the run a one-by-one job with that seed writes."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.errors import UserError
from pipeline.jobs import lifecycle
from pipeline.jobs.opening import JobInfo
from pipeline.tracking import Tracker
from pipeline.tracking.names import SUMMARY_METRICS
from tests.helpers.cli import launch
from tests.helpers.config import TINY
from tests.helpers.jobs import execute

JOB = JobInfo(sweep="test-sweep", name="default")


def _by_seed(tracker: Tracker) -> dict[str, object]:
    return {r.params["seed"]: r for r in tracker.find_runs({})}


def test_each_seed_is_its_one_by_one_run(tiny_cfg, tmp_path: Path) -> None:
    cfg = tiny_cfg("seeds=[3,5]")
    outcome = lifecycle.execute(cfg, JOB)
    tracker, members = outcome.tracker, outcome.members
    assert [m.seed for m in members] == [3, 5] and all(m.failed is None for m in members)
    twin_tracker, twin_id, _ = execute(tiny_cfg("seed=5"), JobInfo(sweep="twin", name="seed=5"))
    runs = _by_seed(tracker)
    batched, twin = runs["5"], twin_tracker.get_run(twin_id)
    assert batched.status == "FINISHED" and batched.name == "seed=5"
    # The same point: config hash, training hash and every param (seeds is a runtime key).
    for key in ("config_hash", "train_hash"):
        assert batched.tags[key] == twin.tags[key]
    assert batched.params == twin.params
    assert batched.tags["batched_seeds"] == "2 seeds 3..5 in one job"
    assert batched.tags["llc.method"] == "batched"
    assert all(batched.tags[f"stage.{s}"] == "done" for s in ("train", "llc", "fit"))

    b_id = batched.run_id
    traj, twin_traj = tracker.load_table(b_id, "trajectory"), tracker.load_table(twin_id, "trajectory")
    assert list(traj.columns) == list(twin_traj.columns)
    np.testing.assert_allclose(traj.to_numpy(), twin_traj.to_numpy(), rtol=1e-5, atol=1e-7)
    ev, twin_ev = tracker.load_table(b_id, "evals"), tracker.load_table(twin_id, "evals")
    pd.testing.assert_frame_equal(ev.reset_index(drop=True), twin_ev, rtol=1e-4)
    assert tracker.artifact_paths(b_id, "checkpoints") == tracker.artifact_paths(twin_id, "checkpoints")
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    ours = torch.load(tracker.download_file(b_id, "checkpoints/step_00000090.pt", tmp_path / "a"))
    theirs = torch.load(tracker.download_file(twin_id, "checkpoints/step_00000090.pt", tmp_path / "b"))
    for k, v in theirs.items():
        assert torch.allclose(ours[k], v, atol=1e-6), k

    # λ at the same checkpoints on the same minibatches: the same loss at w_t; α from the same R(t).
    llc, twin_llc = tracker.load_table(b_id, "llc"), tracker.load_table(twin_id, "llc")
    assert llc["step"].tolist() == twin_llc["step"].tolist() == [30, 60, 90]
    np.testing.assert_allclose(llc["init_loss"], twin_llc["init_loss"], rtol=1e-4)
    assert list(llc.columns) == list(twin_llc.columns)
    m, twin_m = batched.metrics, twin.metrics
    assert m["alpha"] == pytest.approx(twin_m["alpha"], rel=1e-5)
    assert m["test_acc"] == pytest.approx(twin_m["test_acc"], abs=1e-6)
    assert set(twin_m) == set(m)
    for key in SUMMARY_METRICS:
        assert np.isfinite(m[key]), key


def test_a_diverging_batch_fails_every_seed_with_the_train_stage_reason(tiny_cfg) -> None:
    outcome = lifecycle.execute(tiny_cfg("seeds=2", "lr=1e6"), JOB)
    tracker, members = outcome.tracker, outcome.members
    assert all(m.failed and "not finite at step" in m.failed for m in members)
    for r in tracker.find_runs({}):
        assert r.status == "FAILED" and r.tags["failure_reason"].startswith("Diverged: training loss")
        assert tracker.load_table(r.run_id, "trajectory") is not None  # what was recorded stays


@pytest.mark.parametrize(
    "overrides,fragment",
    [
        (["seeds=0"], "seeds=0: give a number of seeds ≥ 1"),
        (["seeds=[1,1]"], "seeds=[1, 1]: give distinct seeds"),
        (["seeds=2", "stages=[fit]"], "seeds=... with stages=['fit']"),
        (["seeds=2", "llc.online=true", "train.keep_checkpoints=false"], "set llc.online=false"),
        (
            ["seeds=2", "optimizer=adam", "optimizer._target_=torch.optim.Adagrad"],
            "not known to act elementwise",
        ),
    ],
)
def test_bad_seed_settings_fail_before_any_run(tiny_cfg, overrides, fragment) -> None:
    cfg = tiny_cfg(*overrides)
    with pytest.raises(UserError) as e:
        lifecycle.execute(cfg, JOB)
    assert fragment in str(e.value)
    assert Tracker(cfg.tracking.uri, "test").find_runs({}) == []


def test_cli(tmp_path: Path, store: str) -> None:
    res = launch(["seeds=3", *TINY, f"tracking.uri={store}", "tracking.experiment=seeds"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("Lemma 3.4") == 3 and "mean ± sd over 3 seeds" in res.stdout
    runs = Tracker(store, "seeds").find_runs({})
    assert sorted(r.params["seed"] for r in runs) == ["0", "1", "2"]
    assert {r.status for r in runs} == {"FINISHED"} and len({r.tags["sweep"] for r in runs}) == 1
