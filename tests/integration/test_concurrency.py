"""Many jobs at once on one store: N real `launch.py` processes started together write to a fresh
SQLite file, to `mlflow server` on a SQLite file, and to `mlflow server` on PostgreSQL. Every job
finishes, none prints "database is locked", and the store holds exactly the metric points each job
wrote, per run and key, counted against what the job's config says it writes.

Slow (each backend takes 1-2 minutes on a loaded 2-core machine): `pytest -m slow
tests/integration/test_concurrency.py -s` prints "points written vs found" per backend. The PostgreSQL test
needs the server binaries (`apt-get install -y postgresql`); without them it skips, unless
AB_REQUIRE_POSTGRES=1 (`.ci/run` sets it), where it fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipeline.tracking.concurrency import use_wal
from pipeline.tracking.names import SUMMARY_METRICS
from pipeline.tracking.queries import record
from tests.helpers.cli import launch_together
from tests.helpers.config import TINY
from tests.helpers.servers import free_port, stop

pytestmark = pytest.mark.slow

JOBS = 8
EXPERIMENT = "parallel"
STEP_METRICS = ("displacement", "train/loss", "train/acc", "test/loss", "test/acc", "llc")


def written(overrides: list[str]) -> dict[str, int]:
    """The step-metric points a job with these overrides writes, from its config alone: R(t) at
    every step (runs up to train.record_every_step_up_to steps), an evaluation every
    train.eval_every (= llc.every) steps and at the last, a λ estimate every llc.every steps."""
    value = {k: int(v) for k, v in (o.split("=", 1) for o in overrides) if k in ("train.steps", "llc.every")}
    steps, every = value["train.steps"], value["llc.every"]
    evals = len(set(range(every, steps + 1, every)) | {steps})
    return {
        "displacement": steps,
        **{k: evals for k in ("train/loss", "train/acc", "test/loss", "test/acc")},
        "llc": steps // every,
    }


def run_jobs(uri: str, cwd: Path, n: int = JOBS) -> tuple[list[subprocess.CompletedProcess], float]:
    """n tiny jobs (seeds 0..n-1) started at once against `uri`; their results and the wall time."""
    point = [*TINY, f"tracking.uri={uri}", f"tracking.experiment={EXPERIMENT}", "sweep=parallel"]
    start = time.perf_counter()
    jobs = [[*point, f"seed={seed}", f"hydra.run.dir={cwd / 'outputs' / str(seed)}"] for seed in range(n)]
    results = launch_together(jobs, cwd, timeout=600)  # one Hydra folder per job
    return results, time.perf_counter() - start


def check_jobs(uri: str, results: list[subprocess.CompletedProcess], wall: float, label: str) -> None:
    for r in results:
        assert r.returncode == 0, r.stderr[-3000:]
        assert "database is locked" not in r.stderr and "Traceback" not in r.stderr, r.stderr[-3000:]
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = [record(r) for r in client.search_runs([exp.experiment_id])]
    assert len(runs) == len(results)
    assert sorted(int(r.params["seed"]) for r in runs) == list(range(len(results)))
    expected_steps = written(TINY)
    total_written = total_found = 0
    for run in runs:
        assert run.status == "FINISHED", run.tags.get("failure_reason")
        found = {k: len(client.get_metric_history(run.run_id, k)) for k in run.metrics}
        summaries = {k for k in found if k not in STEP_METRICS}
        # Each summary metric is logged once by a fresh job; these must be among them.
        assert {*SUMMARY_METRICS, "time/train_s", "time/tracking_s", "tracking_share"} <= summaries
        expected = {**expected_steps, **dict.fromkeys(summaries, 1)}
        # Exactly the points written, even where a write was retried: a retry never duplicates.
        assert found == expected, run.name
        total_written += sum(expected.values())
        total_found += sum(found.values())
    assert total_found == total_written
    shares = sorted(r.metrics["tracking_share"] for r in runs)
    # A server on a loaded machine may answer a busy backend with an error now and then; the job
    # retries (tracking_retries counts them) and must still finish with every point once.
    retries = sum(int(r.metrics["tracking_retries"]) for r in runs)
    print(
        f"\n{label}: {len(runs)} jobs at once, {len(runs)} FINISHED, metric points written "
        f"{total_written} vs found {total_found}, wall {wall:.0f} s, tracking share "
        f"{shares[0]:.1%}-{shares[-1]:.1%}, retries {retries}"
    )


def test_parallel_jobs_on_a_fresh_sqlite_store(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    results, wall = run_jobs(uri, tmp_path)
    check_jobs(uri, results, wall, "SQLite file")


def test_parallel_jobs_on_a_tracking_server_with_sqlite(tmp_path: Path, tracking_server) -> None:
    db = tmp_path / "server.db"
    assert use_wal(db) == "wal"  # what docs/tracking.md's set-up does before starting the server
    url, _ = tracking_server(f"sqlite:///{db}")
    results, wall = run_jobs(url, tmp_path)
    check_jobs(url, results, wall, "mlflow server, SQLite backend")
    assert any((tmp_path / "mlartifacts").rglob("trajectory.parquet"))  # artifacts went via the server


def postgres_bin() -> Path | None:
    """The folder of PostgreSQL's server binaries (Debian: /usr/lib/postgresql/<version>/bin)."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    if versions:
        return versions[-1].parent
    found = shutil.which("postgres")
    return Path(found).parent if found and shutil.which("initdb") else None


@pytest.fixture
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (free port) with an empty database `mlflow`;
    yields its SQLAlchemy URI. Run as user postgres when we are root (postgres refuses root)."""
    bindir = postgres_bin()
    if bindir is None:
        reason = "no PostgreSQL server binaries: apt-get install -y postgresql"
        if os.environ.get("AB_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason + " (AB_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)
    import psycopg  # the driver SQLAlchemy 2.1 uses for postgresql:// (pyproject's dev extra)

    # Not under pytest's tmp_path: its parents are private to root, and the server runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="ab-postgres-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = base / "data", free_port()
    proc = None
    try:
        subprocess.run(
            [*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"],
            check=True,
            capture_output=True,
        )
        server = [
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-k",
            str(base),
        ]
        with (base / "postgres.log").open("w") as out:
            proc = subprocess.Popen(
                [*as_user, *server], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                con = psycopg.connect(
                    host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True
                )
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"postgres did not start: {(base / 'postgres.log').read_text()[-2000:]}")
                time.sleep(0.3)
        with con:
            con.execute("CREATE DATABASE mlflow")
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        if proc is not None:
            stop(proc, signal.SIGINT)  # PostgreSQL's fast shutdown
        shutil.rmtree(base, ignore_errors=True)


def test_parallel_jobs_on_a_tracking_server_with_postgres(
    tmp_path: Path, postgres: str, tracking_server
) -> None:
    url, _ = tracking_server(postgres)
    results, wall = run_jobs(url, tmp_path)
    check_jobs(url, results, wall, "mlflow server, PostgreSQL backend")


def test_a_write_retried_after_sqlites_busy_timeout_succeeds(tmp_path: Path) -> None:
    """A lock held longer than SQLite's busy timeout (20 s): the first attempt fails with
    "database is locked", the Tracker retries, and the write lands once."""
    from pipeline.tracking import Tracker
    from tests.helpers.stores import hold_lock, points, series

    db = tmp_path / "mlflow.db"
    tracker = Tracker(f"sqlite:///{db}", "retry", max_wait_s=120)
    run_id = tracker.start_run("r", {"sweep": "t"})
    holder = hold_lock(db, 24)
    tracker.log_metric_rows(run_id, series(800))
    assert holder.wait(timeout=60) == 0
    assert tracker.retries >= 1
    assert points(db, run_id) == {"displacement": 800}


def test_a_write_rides_out_a_tracking_server_restart(tmp_path: Path, tracking_server, monkeypatch) -> None:
    """The server goes down between two writes and comes back on the same port 5 s later: the
    write is refused ("connection refused"), retried until the server answers, and lands once."""
    from pipeline.tracking import Tracker
    from tests.helpers.stores import series

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # what Tracker sets, undone after
    db = tmp_path / "server.db"
    use_wal(db)
    url, proc = tracking_server(f"sqlite:///{db}")
    tracker = Tracker(url, "restart", max_wait_s=180)
    run_id = tracker.start_run("r", {"sweep": "t"})
    tracker.log_metric_rows(run_id, series(1000))
    stop(proc)
    port = int(url.rsplit(":", 1)[1])
    restart = threading.Timer(5, tracking_server, args=(f"sqlite:///{db}", port))
    restart.start()
    try:
        tracker.log_metric_rows(run_id, series(1000, offset=1000))
        tracker.finish(run_id)
    finally:
        restart.join()
    assert tracker.retries >= 1
    assert len(tracker.client.get_metric_history(run_id, "displacement")) == 2000
    assert tracker.get_run(run_id).status == "FINISHED"
