"""Sweeps through the Slurm preset (hydra/launcher=slurm) on a real single-node Slurm cluster.

The cluster (tests/slurm_cluster.py) is started once for the module and stopped by PID at the end.
Without Slurm installed the tests skip, naming the apt-get command; with AB_REQUIRE_SLURM=1 (CI)
they fail instead.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.tracking import Tracker
from pipeline.tracking.names import SUMMARY_METRICS
from tests.helpers import slurm_cluster
from tests.helpers.cli import launch, start
from tests.helpers.config import TINY

# TINY without threads=1: a job's threads must come from Slurm's CPUs per task.
TINY_SLURM = [a for a in TINY if not a.startswith("threads=")]
# One CPU per job, so two jobs share the 2-core test node; memory the node can give four times.
SLURM = ["hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.cpus_per_task=1"]
SLURM += ["hydra.launcher.mem_gb=1"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    reason = slurm_cluster.missing()
    if reason:
        if os.environ.get("AB_REQUIRE_SLURM") == "1":
            pytest.fail(f"AB_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)
    c = slurm_cluster.SlurmCluster(tmp_path_factory.mktemp("slurm"))
    c.start()
    try:
        yield c
    finally:
        c.stop()


def fresh_store(store: str, experiment: str) -> Tracker:
    """The experiment, created before the jobs: several jobs initialising one new SQLite file at
    once is tracking's concern (its own tests), not the launcher's."""
    return Tracker(store, experiment)


def submitit_logs(cwd: Path) -> dict[str, str]:
    """Each Slurm job's submitit stdout (<sweep dir>/.submitit/<job>/<job>_0_log.out) by job id."""
    return {p.parent.name: p.read_text() for p in cwd.glob("multirun/*/*/.submitit/*/*_0_log.out")}


def count(log: str, message: str) -> int:
    """Lines of submitit's own logger with the message (Hydra's logging repeats some of them)."""
    return sum(message in line for line in log.splitlines() if line.startswith("submitit "))


def submission_script(cwd: Path) -> str:
    (script,) = cwd.glob("multirun/*/*/.submitit/*/*_submission.sh")
    return script.read_text()


def reasons(run) -> str:
    """Why a run did not finish, from whichever tag recorded it."""
    return " ".join(v for k, v in run.tags.items() if k in ("failure_reason", "interrupted"))


def resumed_after_interruption(log: str, run_id: str) -> bool:
    """Whether the job took `run_id` back as an interrupted run: KILLED, or still RUNNING and
    owned by this same Slurm job."""
    return any(
        f"resuming run {run_id} ({why})" in log
        for why in ("interrupted", "interrupted; requeued as the same Slurm job")
    )


def test_without_slurm_the_reason_names_the_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no slurmctld, no munged
    reason = slurm_cluster.missing()
    assert reason.startswith("Slurm/munge not installed (munged, mungekey, slurmctld")
    assert reason.endswith(": apt-get update && apt-get install -y slurm-wlm munge")


def test_the_test_cluster_runs_batch_jobs(cluster, tmp_path: Path) -> None:
    out, cpus = tmp_path / "job.out", slurm_cluster.node_cpus()
    script = "srun echo $SLURM_CPUS_PER_TASK $SLURM_JOB_PARTITION"
    job = cluster.run("sbatch", "--parsable", f"-c{cpus}", f"--output={out}", "--wrap", script).strip()
    deadline = time.monotonic() + 30
    while job in cluster.jobs():
        assert time.monotonic() < deadline, cluster.logs()
        time.sleep(0.5)
    assert out.read_text().split() == [str(cpus), "debug"]
    assert cluster.run("sinfo", "-h", "-o", "%P %a %T").split() == ["debug*", "up", "idle"]


@pytest.mark.slow
def test_four_point_sweep_on_slurm(cluster, tmp_path: Path, store: str) -> None:
    tracker = fresh_store(store, "slurm")
    t0 = time.perf_counter()
    res = launch(
        ["-m", *SLURM, "hydra.launcher.array_parallelism=2", "seed=0,1,2,3", *TINY_SLURM]
        + [f"tracking.uri={store}", "tracking.experiment=slurm"],
        cwd=tmp_path,
        env=cluster.env,
    )
    seconds = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr[-3000:]
    print(f"4-point Slurm sweep: {seconds:.1f} s")

    runs = tracker.find_runs({})
    assert sorted(r.params["seed"] for r in runs) == ["0", "1", "2", "3"]
    logs = submitit_logs(tmp_path)
    assert len(logs) == 4 and all("Job completed successfully" in log for log in logs.values())
    for r in runs:
        assert r.status == "FINISHED", (r.name, reasons(r))
        for key in SUMMARY_METRICS:
            assert math.isfinite(r.metrics[key]), (r.name, key)
        # What the fit stage reads back: R(t) at every step, λ at every llc.every steps, the config.
        run_id = r.run_id
        assert tracker.load_table(run_id, "trajectory")["step"].max() == 90
        assert list(tracker.load_table(run_id, "llc")["step"]) == [30, 60, 90]
        assert "llc:" in tracker.load_text(run_id, "config.yaml")
        # Threads from Slurm's CPUs per task; the job named as squeue and submitit name it.
        assert r.tags["torch_threads"] == "1"
        assert r.tags["slurm_job"] in logs
        assert r.tags["slurm_job"] in logs[r.tags["slurm_job"]]  # its own log says so
        assert "Lemma 3.4" in logs[r.tags["slurm_job"]]  # the job's report went to its log
    assert len({r.tags["slurm_job"] for r in runs}) == 4
    assert len({r.tags["sweep"] for r in runs}) == 1

    # The preset's keys reach sbatch.
    script = submission_script(tmp_path)
    for flag in ("--array=0-3%2", "--cpus-per-task=1", "--mem=1GB", "--partition=debug", "--signal=USR2@120"):
        assert f"#SBATCH {flag}" in script.splitlines(), flag
    assert "#SBATCH --time=240" in script.splitlines()
    assert f"source {sys.prefix}/bin/activate" in script


def sweep_in_background(cluster, cwd: Path, store: str, experiment: str, *args: str) -> subprocess.Popen:
    args = ["-m", *SLURM, *args, f"tracking.uri={store}", f"tracking.experiment={experiment}"]
    with open(cwd / "launch.out", "w") as out:
        return start(args, cwd, cluster.env, stdout=out, stderr=subprocess.STDOUT)


def wait_for_run(tracker: Tracker, proc: subprocess.Popen, cwd: Path, timeout_s: float = 120):
    """The point's run, once its job has created it (the train stage starts right after)."""
    deadline = time.monotonic() + timeout_s
    while not (runs := tracker.find_runs({})):
        assert proc.poll() is None, (cwd / "launch.out").read_text()[-3000:]
        assert time.monotonic() < deadline, "no run appeared"
        time.sleep(0.5)
    return runs[0]


@pytest.mark.slow
def test_preempted_point_is_requeued_and_finishes(cluster, tmp_path: Path, store: str) -> None:
    tracker = fresh_store(store, "preempt")
    # About 10 s of training on one thread: the signal arrives while it trains.
    long = ["seed=0", "train.steps=10000", "llc.every=2500", "llc.num_draws=20", "llc.last=2"]
    long += ["progress=false"]
    t0 = time.perf_counter()
    proc = sweep_in_background(cluster, tmp_path, store, "preempt", *long)
    try:
        run = wait_for_run(tracker, proc, tmp_path)
        job = run.tags["slurm_job"]
        time.sleep(1)
        # Preemption as Slurm delivers it to a submitit job (submitit's SlurmJob._interrupt): SIGTERM,
        # which submitit ignores, then USR2, on which it checkpoints the call and requeues the job.
        cluster.run("scancel", job, "--signal", "SIGTERM")
        cluster.run("scancel", job, "--signal", "USR2")
        assert "stage.train" not in tracker.get_run(run.run_id).tags  # it was still training
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"preempted point, requeued and finished: {time.perf_counter() - t0:.1f} s")
    assert proc.returncode == 0, (tmp_path / "launch.out").read_text()[-3000:]

    (log,) = submitit_logs(tmp_path).values()
    assert "Bypassing signal SIGTERM" in log
    assert "this job is preempted" in log and f"Requeued job {job} (3 remaining timeouts)" in log
    assert count(log, "Starting with JobEnvironment") == 2  # the same job ran twice
    assert count(log, "Job completed successfully") == 1

    runs = tracker.find_runs({"config_hash": run.tags["config_hash"]})
    finished = [r for r in runs if r.status == "FINISHED"]
    assert len(finished) == 1, [(r.status, reasons(r)) for r in runs]
    assert finished[0].tags["slurm_job"] == job
    assert all(math.isfinite(finished[0].metrics[k]) for k in SUMMARY_METRICS)
    assert len(runs) == 1, [(r.status, reasons(r)) for r in runs]
    # The requeued job took the run over and went on from the state saved when USR2 came. The run
    # reads KILLED, or RUNNING where Slurm's requeue killed the job before it could say so.
    assert resumed_after_interruption(log, run.run_id), log[-3000:]
    assert "train: resuming at step " in log and "train: resuming at step 0 " not in log


@pytest.mark.slow
def test_timed_out_point_is_requeued_max_num_timeout_times(cluster, tmp_path: Path, store: str) -> None:
    tracker = fresh_store(store, "timeout")
    # A two-minute limit and a point that needs far longer: Slurm itself sends USR2 45 s before the
    # limit, submitit sees a time-out, requeues once (max_num_timeout=1), and after the second
    # time-out gives up. Slurm checks its limits every 30 s and may signal up to 60 s early (sbatch
    # --signal): with a one-minute limit the first USR2 once came 3 s into the job, before it had a
    # run to resume. Two minutes put the earliest signal at 15 s (here it came at 50 and 63 s).
    limits = ["hydra.launcher.timeout_min=2", "hydra.launcher.signal_delay_s=45"]
    limits += ["hydra.launcher.max_num_timeout=1"]
    endless = ["seed=0", "train.steps=1000000", "llc.every=100000", "progress=false"]
    t0 = time.perf_counter()
    proc = sweep_in_background(cluster, tmp_path, store, "timeout", *limits, *endless)
    try:
        proc.wait(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"timed-out point, requeued once, then given up: {time.perf_counter() - t0:.1f} s")
    assert proc.returncode == 0, (tmp_path / "launch.out").read_text()[-3000:]

    (log,) = submitit_logs(tmp_path).values()
    assert "#SBATCH --signal=USR2@45" in submission_script(tmp_path).splitlines()
    assert count(log, "Starting with JobEnvironment") == 2
    assert count(log, "this job is timed-out") == 2
    assert "(0 remaining timeouts)" in log  # the first time-out requeued it
    assert "Job not requeued because: timed-out too many times" in log

    runs = tracker.find_runs({})
    assert all(r.status != "FINISHED" for r in runs)
    last = max(runs, key=lambda r: r.start_time)
    assert "timed-out too many times" in reasons(last), last.tags
    assert len(runs) == 1, [(r.status, reasons(r)) for r in runs]
    assert resumed_after_interruption(log, last.run_id), log[-3000:]
    assert last.status == "KILLED"  # a re-launch with a longer time limit resumes it
