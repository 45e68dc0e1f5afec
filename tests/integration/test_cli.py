"""The real command line, as a user types it: a multirun into a temporary SQLite store."""

import math
from pathlib import Path

from pipeline.tracking import Tracker
from pipeline.tracking.names import SUMMARY_METRICS
from tests.helpers.cli import launch
from tests.helpers.config import TINY


def test_multirun_end_to_end_then_refit_alone(tmp_path: Path, store: str) -> None:
    res = launch(
        [
            "-m",
            "optimizer=sgd,adam",
            "lr=0.01,0.05",
            *TINY,
            f"tracking.uri={store}",
            "tracking.experiment=e2e",
        ],
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    tracker = Tracker(store, "e2e")
    runs = tracker.find_runs({})
    assert len(runs) == 4
    assert len({r.tags["sweep"] for r in runs}) == 1  # one -m invocation, one sweep tag
    assert {(r.params["optimizer._target_"], r.params["lr"]) for r in runs} == {
        (o, lr) for o in ("torch.optim.SGD", "torch.optim.Adam") for lr in ("0.01", "0.05")
    }
    for r in runs:
        assert r.status == "FINISHED"
        for key in SUMMARY_METRICS:
            assert math.isfinite(r.metrics[key]), (r.name, key)
    assert res.stdout.count("Lemma 3.4") == 4 and "mlflow ui --backend-store-uri" in res.stdout

    run = runs[0]
    refit = launch(
        [
            "stages=[fit]",
            f"run_id={run.run_id}",
            f"tracking.uri={store}",
            "tracking.experiment=e2e",
        ],
        cwd=tmp_path,
    )
    assert refit.returncode == 0, refit.stderr[-3000:]
    after = tracker.get_run(run.run_id)
    assert after.metrics["alpha"] == run.metrics["alpha"]
    assert len(tracker.client.get_metric_history(run.run_id, "alpha")) == 2  # refit logged
    assert len(tracker.find_runs({})) == 4  # no new run


def test_diverging_point_does_not_stop_the_sweep(tmp_path: Path, store: str) -> None:
    res = launch(
        ["-m", "lr=1e6,0.05", *TINY, f"tracking.uri={store}", "tracking.experiment=div"],
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    runs = {r.params["lr"]: r for r in Tracker(store, "div").find_runs({})}
    assert runs["1000000.0"].status == "FAILED"
    assert "not finite" in runs["1000000.0"].tags["failure_reason"]
    assert runs["0.05"].status == "FINISHED"


# Bad input (one line, nothing lost): tests/test_bad_input.py, the README table "Bad input".
