"""Re-launching points: finished ones are skipped, interrupted ones resume to the numbers of an
uninterrupted run, orphaned RUNNING runs are taken over, never duplicated (real CLI, real SQLite)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.config import hashes
from pipeline.jobs import relaunch
from pipeline.tracking import RunRecord, Tracker
from tests.helpers.cli import launch, launch_together
from tests.helpers.cli import start as cli_start
from tests.helpers.config import TINY, compose_cfg

# 300 steps, a checkpoint (and a resume state, resume.every_s=0) every 30 steps, 10 λ estimates in
# groups of one checkpoint (llc.max_stacked below one model's 17226 parameters x 2): a few seconds
# of training and of λ, time to kill each in the middle.
POINT = [a for a in TINY if not a.startswith(("train.steps", "llc.num_draws"))]
POINT += ["train.steps=300", "llc.num_draws=60", "llc.max_stacked=20000", "resume.every_s=0"]


def cli(store: str, experiment: str, *extra: str) -> list[str]:
    return [*POINT, f"tracking.uri={store}", f"tracking.experiment={experiment}", *extra]


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    """The CLI in the background (its output in cwd/launch.out)."""
    with open(cwd / "launch.out", "w") as out:
        return cli_start(args, cwd, stdout=out, stderr=out)


def wait_for_artifact(cwd: Path, name: str, proc: subprocess.Popen, timeout_s: float = 120) -> Path:
    """The first artifact `name` (e.g. resume/train.pt) any run of the store under cwd has."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = list(cwd.glob(f"mlartifacts/*/artifacts/{name}"))
        if found:
            return found[0]
        assert proc.poll() is None, (cwd / "launch.out").read_text()[-3000:]
        assert time.monotonic() < deadline, f"no {name} appeared"
        time.sleep(0.05)


def kill(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> int:
    os.kill(proc.pid, sig)
    return proc.wait(timeout=60)


def metric_counts(tracker: Tracker, run) -> dict[str, int]:
    """Points per metric key of a run (every key: step metrics and summary metrics)."""
    return {k: len(tracker.client.get_metric_history(run.run_id, k)) for k in run.metrics}


def only_run(tracker: Tracker):
    (run,) = tracker.find_runs({})
    return run


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory):
    """An uninterrupted run of POINT: its store, tracker and run."""
    cwd = tmp_path_factory.mktemp("reference")
    store = f"sqlite:///{cwd / 'mlflow.db'}"
    res = launch(cli(store, "reference"), cwd=cwd)
    assert res.returncode == 0, res.stderr[-3000:]
    tracker = Tracker(store, "reference")
    return tracker, only_run(tracker)


def assert_same_as_reference(tracker: Tracker, run, reference) -> None:
    """Exactly the metric points, R(t), evaluations, λ(t), final weights and numbers of the
    uninterrupted run; no resume state left behind."""
    ref_tracker, ref = reference
    assert run.status == "FINISHED"
    counts = metric_counts(tracker, run)
    assert counts == metric_counts(ref_tracker, ref)
    steps = {k: n for k, n in counts.items() if n > 1}
    print(
        f"metric points: {sum(counts.values())} in {len(counts)} keys, as uninterrupted; step metrics {steps}"
    )
    for table in ("trajectory", "evals"):
        pd.testing.assert_frame_equal(
            tracker.load_table(run.run_id, table), ref_tracker.load_table(ref.run_id, table)
        )
    mine, theirs = tracker.load_table(run.run_id, "llc"), ref_tracker.load_table(ref.run_id, "llc")
    pd.testing.assert_frame_equal(mine, theirs)
    for key in ("lambda_final", "lambda_bar", "alpha", "d_s", "test_acc", "num_params", "total_steps"):
        assert run.metrics[key] == ref.metrics[key], key
    assert tracker.artifact_paths(run.run_id, "checkpoints") == ref_tracker.artifact_paths(
        ref.run_id, "checkpoints"
    )
    final = "checkpoints/step_00000300.pt"
    with tempfile.TemporaryDirectory() as d:
        a = torch.load(tracker.download_file(run.run_id, final, Path(d) / "a"))
        b = torch.load(ref_tracker.download_file(ref.run_id, final, Path(d) / "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert tracker.artifact_paths(run.run_id, "resume") == []
    assert tracker.load_table(run.run_id, "llc_partial") is None


def test_a_finished_point_prints_its_report_without_torch_or_its_data(tmp_path: Path, reference) -> None:
    """A relaunched finished point reads the store and prints the report: it imports neither torch
    nor scikit-learn (the digits' loader), builds nothing and creates no run."""
    ref_tracker, ref = reference
    res = launch(cli(ref_tracker.uri, "reference"), cwd=tmp_path, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"skipped: point already finished as run {ref.run_id}" in res.stdout
    assert "λ_final = " in res.stdout and "Lemma 3.4" in res.stdout  # the run's report
    imported = {
        line.rpartition("|")[2].strip() for line in res.stderr.splitlines() if line.startswith("import time:")
    }
    assert "mlflow" in imported  # the import log was read
    assert not {"torch", "sklearn"} & imported
    assert [r.run_id for r in ref_tracker.find_runs({})] == [ref.run_id]


def test_sigkill_mid_training_resumes_to_the_uninterrupted_run(tmp_path: Path, store: str, reference) -> None:
    proc = start(cli(store, "e"), tmp_path)
    wait_for_artifact(tmp_path, "resume/train.pt", proc)
    kill(proc)
    tracker = Tracker(store, "e")
    killed = only_run(tracker)
    assert killed.status == "RUNNING" and "stage.train" not in killed.tags  # mid-training
    assert "num_params" not in killed.metrics  # nothing logged before the stage ends

    t0 = time.perf_counter()
    res = launch(cli(store, "e"), cwd=tmp_path)
    print(f"resume after SIGKILL mid-training: {time.perf_counter() - t0:.1f} s")
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"resuming run {killed.run_id} (left RUNNING by a process that is gone)" in res.stdout
    assert_same_as_reference(tracker, only_run(tracker), reference)


def test_sigkill_mid_llc_resumes_to_the_uninterrupted_run(tmp_path: Path, store: str, reference) -> None:
    proc = start(cli(store, "e"), tmp_path)
    partial = wait_for_artifact(tmp_path, "llc_partial.parquet", proc)
    kill(proc)
    tracker = Tracker(store, "e")
    killed = only_run(tracker)
    assert killed.tags.get("stage.train") == "done" and "stage.llc" not in killed.tags
    done = len(pd.read_parquet(partial))
    assert 1 <= done < 10  # some estimates persisted, not all

    t0 = time.perf_counter()
    res = launch(cli(store, "e"), cwd=tmp_path)
    print(f"resume after SIGKILL mid-LLC ({done} of 10 estimates kept): {time.perf_counter() - t0:.1f} s")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "done already: train" in res.stdout
    assert_same_as_reference(tracker, only_run(tracker), reference)


@pytest.mark.slow  # 30-60 s each; the SIGKILL resumes stay in make test
def test_sigterm_marks_killed_with_resume_state_then_resumes(tmp_path: Path, store: str, reference) -> None:
    # Only SIGTERM saves the state here (every_s is long): the one the resumed run goes on from.
    args = cli(store, "e", "resume.every_s=3600")
    proc = start([*args, "progress=true"], tmp_path)  # the progress bar says when training started
    tracker = Tracker(store, "e")
    deadline = time.monotonic() + 120
    while "train:" not in (tmp_path / "launch.out").read_text():
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "launch.out").read_text()
        time.sleep(0.01)
    assert kill(proc, signal.SIGTERM) == 143
    assert "interrupted (SIGTERM): the run is marked KILLED" in (tmp_path / "launch.out").read_text()
    killed = only_run(tracker)
    assert killed.status == "KILLED" and killed.tags["interrupted"] == "SIGTERM"
    assert "stage.train" not in killed.tags and killed.metrics == {}
    state = torch.load(
        tracker.download_file(killed.run_id, "resume/train.pt", tmp_path / "dl"), weights_only=False
    )
    assert 0 < state["step"] < 300

    res = launch(args, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"resuming run {killed.run_id} (interrupted)" in res.stdout
    assert_same_as_reference(tracker, only_run(tracker), reference)


def point_hash(*overrides: str) -> str:
    return hashes.config_hash(compose_cfg([*POINT, *overrides]))


@pytest.mark.slow  # 30-60 s each; the SIGKILL resumes stay in make test
def test_orphaned_running_run_is_resumed_and_a_live_one_skipped(tmp_path: Path, store: str) -> None:
    tracker = Tracker(store, "e")
    gone = subprocess.Popen(["true"])
    gone.wait()
    tags = {**relaunch.owner_tags(), "owner.pid": str(gone.pid), "config_hash": point_hash()}
    orphan = tracker.start_run("orphan", tags)  # RUNNING, its owner's pid gone

    res = launch(cli(store, "e"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"resuming run {orphan} (left RUNNING by a process that is gone)" in res.stdout
    runs = tracker.point_runs(point_hash())
    assert [(r.run_id, r.status) for r in runs] == [(orphan, "FINISHED")]
    assert runs[0].tags["owner.pid"] != str(gone.pid)

    alive = subprocess.Popen(["sleep", "60"])
    try:
        busy = tracker.start_run(
            "busy",
            {
                **relaunch.owner_tags(),
                "owner.pid": str(alive.pid),
                "owner.started": relaunch.process_start(alive.pid),
                "config_hash": point_hash("seed=5"),
            },
        )
        res = launch(cli(store, "e", "seed=5"), cwd=tmp_path)
        assert res.returncode == 0, res.stderr[-3000:]
        host = relaunch.owner_tags()["owner.host"]
        assert f"skipped: point is being run as run {busy} by {host} pid {alive.pid}" in res.stdout
        assert [r.run_id for r in tracker.point_runs(point_hash("seed=5"))] == [busy]
        assert tracker.get_run(busy).status == "RUNNING"
    finally:
        alive.kill()
        alive.wait()


@pytest.mark.slow  # 30-60 s each; the SIGKILL resumes stay in make test
def test_finished_sweep_is_skipped_and_resume_disabled_makes_new_runs(tmp_path: Path, store: str) -> None:
    sweep = ["-m", "seed=0,1", *TINY, f"tracking.uri={store}", "tracking.experiment=e"]
    assert launch(sweep, cwd=tmp_path).returncode == 0
    tracker = Tracker(store, "e")
    first = {r.run_id for r in tracker.find_runs({})}
    assert len(first) == 2
    res = launch(sweep, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert sorted(re.findall(r"skipped: point already finished as run (\w+) ", res.stdout)) == sorted(first)
    assert res.stdout.count("Lemma 3.4") == 2  # each point's report still printed
    assert {r.run_id for r in tracker.find_runs({})} == first

    res = launch([*sweep, "resume.enabled=false"], cwd=tmp_path)
    assert res.returncode == 0 and "skipped:" not in res.stdout
    assert len(tracker.find_runs({"config_hash": tracker.get_run(min(first)).tags["config_hash"]})) == 2
    assert len(tracker.find_runs({})) == 4


@pytest.mark.slow  # 30-60 s each; the SIGKILL resumes stay in make test
def test_failed_point_gets_a_new_run_and_the_old_is_superseded(tmp_path: Path, store: str) -> None:
    args = ["lr=1e6", *TINY, f"tracking.uri={store}", "tracking.experiment=e"]
    assert launch(args, cwd=tmp_path).returncode == 1
    tracker = Tracker(store, "e")
    (old,) = tracker.find_runs({})
    assert old.status == "FAILED"
    res = launch(args, cwd=tmp_path)
    assert res.returncode == 1
    assert f"new run: the point's run {old.run_id} failed (tagged superseded_by)" in res.stdout
    new, again = tracker.find_runs({})
    assert again.run_id == old.run_id and again.tags["superseded_by"] == new.run_id
    assert new.status == "FAILED" and "superseded_by" not in new.tags


@pytest.mark.slow  # 30-60 s each; the SIGKILL resumes stay in make test
def test_unreadable_resume_state_is_one_line_and_the_run_stays(tmp_path: Path, store: str) -> None:
    proc = start(cli(store, "e"), tmp_path)
    state = wait_for_artifact(tmp_path, "resume/train.pt", proc)
    kill(proc)
    state.write_bytes(b"not a torch file")
    res = launch(cli(store, "e"), cwd=tmp_path)
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "is unreadable" in lines[0] and "resume.enabled=false" in lines[0], lines
    run = only_run(Tracker(store, "e"))
    assert run.status == "KILLED" and run.metrics == {}


def test_decide_rules_on_owners() -> None:
    """The alive test without processes: another host's heartbeat, and a run without owner tags."""
    now = time.time()
    other = {"owner.host": "elsewhere", "owner.pid": "1", "heartbeat": f"{now - 100:.0f}"}
    assert relaunch.owner_alive(other, 0, stale_after_s=900, now=now)
    assert not relaunch.owner_alive(other, 0, stale_after_s=60, now=now)
    assert relaunch.owner_alive({}, int((now - 10) * 1000), stale_after_s=900, now=now)  # young, no tags
    me = relaunch.owner_tags()
    assert relaunch.owner_alive(me, 0, 900, now)
    assert not relaunch.owner_alive({**me, "owner.started": "1"}, 0, 900, now)  # the pid was reused
    assert np.isfinite(float(me["heartbeat"]))


@pytest.mark.slow
def test_sigkill_mid_training_of_a_seeds_job_resumes_every_seed(tmp_path: Path, store: str) -> None:
    args = [*POINT, "seeds=3", f"tracking.uri={store}"]
    assert launch([*args, "tracking.experiment=ref"], cwd=tmp_path).returncode == 0
    ref_tracker = Tracker(store, "ref")
    reference = {r.params["seed"]: metric_counts(ref_tracker, r) for r in ref_tracker.find_runs({})}
    assert len(reference) == 3

    proc = start([*args, "tracking.experiment=e", "progress=true"], tmp_path)
    deadline = time.monotonic() + 120
    while "ensemble (3 members)" not in (tmp_path / "launch.out").read_text():
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "launch.out").read_text()
        time.sleep(0.01)
    kill(proc)
    tracker = Tracker(store, "e")
    assert sorted(r.status for r in tracker.find_runs({})) == ["RUNNING"] * 3

    res = launch([*args, "tracking.experiment=e"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("resuming run") == 3
    runs = tracker.find_runs({})
    assert sorted(r.status for r in runs) == ["FINISHED"] * 3
    assert {r.params["seed"]: metric_counts(tracker, r) for r in runs} == reference
    res = launch([*args, "tracking.experiment=e"], cwd=tmp_path)  # and now all three are skipped
    assert res.stdout.count("skipped: point already finished") == 3 and len(tracker.find_runs({})) == 3


def two_at_once(args: list[str], cwd: Path) -> list[subprocess.CompletedProcess]:
    """The same point launched twice at the same moment."""
    return launch_together([[*args, f"hydra.run.dir={cwd / 'outputs' / str(i)}"] for i in range(2)], cwd)


def test_two_jobs_of_one_point_started_together_make_one_run(tmp_path: Path, store: str) -> None:
    Tracker(store, "e")  # the store exists: opening a fresh file at once is tracking's own test
    results = two_at_once([*TINY, f"tracking.uri={store}", "tracking.experiment=e"], tmp_path)
    assert all(r.returncode == 0 for r in results), [(r.returncode, r.stdout[-2000:]) for r in results]
    assert sum("skipped: point" in r.stdout for r in results) == 1
    (run,) = Tracker(store, "e").find_runs({})
    assert run.status == "FINISHED"


@pytest.mark.slow
def test_on_a_tracking_server_the_newer_duplicate_yields(tmp_path: Path, tracking_server) -> None:  # noqa: F811
    """No lock across hosts: two jobs may both create a run; the newer deletes its own. The resume
    state saved through the server (mlflow-artifacts:) is removed when the stage ends."""
    url, _ = tracking_server(f"sqlite:///{tmp_path / 'server.db'}")
    Tracker(url, "e")
    results = two_at_once(
        [*TINY, "resume.every_s=0", f"tracking.uri={url}", "tracking.experiment=e"], tmp_path
    )
    assert all(r.returncode == 0 for r in results), [(r.returncode, r.stdout[-2000:]) for r in results]
    assert sum("skipped:" in r.stdout for r in results) == 1
    tracker = Tracker(url, "e")
    (run,) = tracker.find_runs({})
    assert run.status == "FINISHED" and tracker.artifact_paths(run.run_id, "resume") == []
    assert len(tracker.artifact_paths(run.run_id, "checkpoints")) == 4


def test_a_requeued_slurm_job_takes_its_own_run_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slurm's requeue can kill a job before it marks its run KILLED; the run still reads RUNNING
    with a fresh heartbeat, and only the same Slurm job (array job and task) may take it back."""
    now = time.time()
    tags = {"owner.host": "node7", "owner.pid": "1", "heartbeat": f"{now:.0f}", "owner.slurm_job": "42_3"}
    run = RunRecord("r1", "r1", "RUNNING", "0", int(now * 1000), None, tags={**tags, "stage.train": "done"})
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "42")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    d = relaunch.decide([run], ["train", "llc", "fit"], stale_after_s=900, now=now)
    assert (d.action, d.run, d.done) == ("claim", run, ["train"])
    assert d.note == "resuming run r1 (interrupted; requeued as the same Slurm job); done already: train"
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")  # another task of the array waits for its owner
    d = relaunch.decide([run], ["train", "llc", "fit"], stale_after_s=900, now=now)
    assert d.action == "busy" and "Slurm job 42_3 (still alive)" in d.note
