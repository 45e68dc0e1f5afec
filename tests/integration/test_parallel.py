"""The local parallel launcher (hydra/launcher=parallel): N jobs at once, the cores split between them."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.jobs import placement
from pipeline.tracking import Tracker
from tests.helpers.cli import launch
from tests.helpers.config import TINY

# TINY without threads=1: a job's threads must come from the launcher's N.
TINY_PARALLEL = [a for a in TINY if not a.startswith("threads=")]


def overlapping(runs) -> int:
    """The most runs that were open at the same moment (from MLflow's start and end times)."""
    events = sorted([(r.start_time, 1) for r in runs] + [(r.end_time, -1) for r in runs])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def test_threads_split_the_cores_between_parallel_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.setenv("AB_PARALLEL_JOBS", "2")
    assert placement.threads(None) == max(1, placement.cores() // 2)
    assert placement.threads(3) == 3  # threads=N wins
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "5")
    assert placement.threads(None) == 5  # Slurm's CPUs per task are this job's alone
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "41")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert placement.tags(1) == {"torch_threads": "1", "parallel_jobs": "2", "slurm_job": "41_3"}


# Each seed's numbers (one torch thread per job on the 2-core machines; α reproduces to ~1e-8 on
# other thread counts, λ to ~1e-4).
KNOWN = {
    "0": {"alpha": 1.3218128, "lambda_final": 0.2557084},
    "1": {"alpha": 1.30308194, "lambda_final": 0.22567609},
    "2": {"alpha": 1.32292182, "lambda_final": -0.05168837},
    "3": {"alpha": 1.3171902, "lambda_final": -0.3580046},
}


def test_four_points_two_at_a_time(tmp_path: Path, store: str) -> None:
    # The experiment first: N jobs initialising one new SQLite file at once is tracking's concern.
    tracker = Tracker(store, "par")
    res = launch(
        ["-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "seed=0,1,2,3", *TINY_PARALLEL]
        + [f"tracking.uri={store}", "tracking.experiment=par"],
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    runs = tracker.find_runs({})
    assert sorted(r.params["seed"] for r in runs) == ["0", "1", "2", "3"]
    assert all(r.status == "FINISHED" for r in runs)
    for r in runs:  # each job computes what it computes alone
        known = KNOWN[r.params["seed"]]
        assert r.metrics["alpha"] == pytest.approx(known["alpha"], rel=1e-6)
        assert r.metrics["lambda_final"] == pytest.approx(known["lambda_final"], rel=1e-3, abs=1e-4)
    threads = str(max(1, placement.cores() // 2))
    assert {(r.tags["parallel_jobs"], r.tags["torch_threads"]) for r in runs} == {("2", threads)}
    assert overlapping(runs) == 2  # two at a time, never more
    assert res.stdout.count("Lemma 3.4") == 4  # each job's report


def test_a_diverging_point_fails_alone_one_job_per_core(tmp_path: Path, store: str) -> None:
    tracker = Tracker(store, "pardiv")
    res = launch(
        ["-m", "hydra/launcher=parallel", "lr=1e6,0.05", *TINY_PARALLEL]
        + [f"tracking.uri={store}", "tracking.experiment=pardiv"],
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    runs = {r.params["lr"]: r for r in tracker.find_runs({})}
    assert runs["1000000.0"].status == "FAILED"
    assert "not finite" in runs["1000000.0"].tags["failure_reason"]
    assert runs["0.05"].status == "FINISHED"
    # The default N: one job per core (joblib's n_jobs=-1), so one thread each.
    assert {(r.tags["parallel_jobs"], r.tags["torch_threads"]) for r in runs.values()} == {
        (str(placement.cores()), "1")
    }


def test_unknown_launcher_is_one_line(tmp_path: Path) -> None:
    res = launch(["-m", "hydra/launcher=slurn", "seed=0,1"], cwd=tmp_path)
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines == [
        "error: unknown hydra/launcher 'slurn': choose from "
        "basic, joblib, parallel, slurm, submitit_local, submitit_slurm"
    ]
