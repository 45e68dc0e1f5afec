"""The Tracker waits out a busy store: a real SQLite lock held by another process, a reply lost
after the store committed, a tracking server slow or overloaded at its /health; and a job's
tracking time.

The lock holder is a separate Python process that takes SQLite's write lock (BEGIN EXCLUSIVE) on
the store file, as a concurrent job's long write would. Every write MLflow makes waits up to
SQLite's busy timeout (20 s, set by MLflow) before it fails with "database is locked"; the Tracker
then retries until `max_wait_s` and gives up with one line.
"""

from __future__ import annotations

import http.server
import math
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipeline.errors import UserError
from pipeline.jobs import report
from pipeline.jobs.opening import JobInfo
from pipeline.tracking import Tracker, concurrency, store
from pipeline.tracking.names import RUN_TOKEN
from tests.helpers.jobs import execute
from tests.helpers.stores import hold_lock, points, series


@pytest.fixture
def tracked(tmp_path: Path):
    db = tmp_path / "mlflow.db"
    tracker = Tracker(f"sqlite:///{db}", "retry")
    run_id = tracker.start_run("r", {"sweep": "t"})
    tracker.log_metric_rows(run_id, series(1500))
    return db, tracker, run_id


def test_store_is_in_wal_mode(tracked) -> None:
    db, _, _ = tracked
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_write_waits_for_a_lock_held_a_few_seconds(tracked) -> None:
    db, tracker, run_id = tracked
    holder = hold_lock(db, 3)
    before = tracker.seconds
    t0 = time.perf_counter()
    tracker.log_metric_rows(run_id, series(500, offset=1500))
    waited = time.perf_counter() - t0
    assert holder.wait(timeout=30) == 0
    assert waited > 2.0  # it did wait for the lock ...
    assert tracker.seconds - before >= waited - 0.05  # ... and the wait counts as tracking time
    assert points(db, run_id) == {"displacement": 2000}


def test_a_lock_held_past_the_bounded_wait_is_one_line_and_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    tracker = Tracker(f"sqlite:///{db}", "retry", max_wait_s=1)
    run_id = tracker.start_run("r", {"sweep": "t"})
    tracker.log_metric_rows(run_id, series(1500))
    holder = hold_lock(db, 60)
    try:
        with pytest.raises(UserError) as err:
            tracker.log_metric_rows(run_id, series(500, offset=1500))
    finally:
        holder.kill()  # its transaction rolls back: nothing of it reaches the file
        holder.wait()
    message = str(err.value)
    assert "\n" not in message
    assert "database is locked" in message and "tracking.max_wait_s" in message
    assert "docs/tracking.md" in message
    assert points(db, run_id) == {"displacement": 1500}  # what was recorded is still there
    tracker.log_metric_rows(run_id, series(500, offset=1500))  # the store works again
    assert points(db, run_id) == {"displacement": 2000}


class LostReplies(MlflowClient):
    """A real client whose first reply to each of `methods` is lost after the store committed,
    as when a tracking server's connection resets between its commit and its answer."""

    def __init__(self, uri: str, methods: set[str]) -> None:
        super().__init__(tracking_uri=uri)
        self.to_lose = set(methods)
        for name in methods:
            setattr(self, name, self._losing(name, getattr(super(), name)))

    def _losing(self, name, method):
        def call(*args, **kwargs):
            result = method(*args, **kwargs)
            if name in self.to_lose:
                self.to_lose.discard(name)
                raise ConnectionResetError(104, "Connection reset by peer")
            return result

        return call


def test_retries_after_a_lost_reply_write_nothing_twice(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    tracker = Tracker(f"sqlite:///{db}", "lost")
    tracker._client = LostReplies(tracker.uri, {"create_run", "log_batch"})
    run_id = tracker.start_run("r", {"sweep": "t"})
    tracker.log_metric_rows(run_id, series(1200))  # two batches, the first one's reply lost
    assert tracker.retries == 2
    runs = tracker.find_runs({})
    assert [r.run_id for r in runs] == [run_id]  # one run, found again by its token
    assert runs[0].tags[RUN_TOKEN]
    assert points(db, run_id) == {"displacement": 1200}  # the resent batch did not double


def test_transient_errors_are_told_apart() -> None:
    locked = sqlite3.OperationalError("database is locked")
    wrapped = RuntimeError("API request to http://h/api failed")
    wrapped.__context__ = ConnectionRefusedError(111, "Connection refused")
    assert concurrency.transient(locked) == "database is locked"
    assert concurrency.transient(wrapped) == "[Errno 111] Connection refused"
    assert concurrency.transient(RuntimeError("failed with error code 503 != 200")) is not None
    assert concurrency.transient(sqlite3.OperationalError("no such table: runs")) is None
    assert concurrency.transient(ValueError("Changing param values is not allowed")) is None
    delays = [concurrency.delay(a) for a in range(12)]
    assert all(0 < d < 22.5 for d in delays) and max(delays) > 7


def test_two_jobs_logging_the_same_data_set_at_once_both_link_it(tracked, monkeypatch) -> None:
    """MLflow looks a data set's row up, then inserts it: on PostgreSQL the job that loses the
    race gets a unique violation (seen in CI, eight jobs of a sweep on the digits). Its retry
    finds the other job's row; both runs name the data set, and the store holds it once."""
    db, tracker, run_id = tracked
    sibling = Tracker(f"sqlite:///{db}", "retry")
    other = sibling.start_run("s", {"sweep": "t"})
    real = tracker.client._owner._client.log_inputs
    calls = []

    def loses_the_race(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:  # the sibling inserts between this job's look-up and its insert
            sibling.log_dataset(other, "digits", "48c7b3c4431f4b81", "pipeline.data.digits", {"n": 898})
            raise RuntimeError(
                "BAD_REQUEST: (psycopg.errors.UniqueViolation) duplicate key value violates unique "
                'constraint "dataset_pk"\nDETAIL:  Key (experiment_id, name, digest)=(1, digits, '
                "48c7b3c4431f4b81) already exists."
            )
        return real(*args, **kwargs)

    monkeypatch.setattr(tracker.client._owner._client, "log_inputs", loses_the_race)
    tracker.log_dataset(run_id, "digits", "48c7b3c4431f4b81", "pipeline.data.digits", {"n": 898})
    assert len(calls) == 2 and tracker.retries == 1
    for rid in (run_id, other):
        inputs = tracker.client.get_run(rid).inputs.dataset_inputs
        assert [(d.dataset.name, d.dataset.digest) for d in inputs] == [("digits", "48c7b3c4431f4b81")]
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM datasets").fetchone()[0] == 1
    assert (
        concurrency.transient(
            sqlite3.IntegrityError(
                "UNIQUE constraint failed: datasets.experiment_id, datasets.name, datasets.digest"
            )
        )
        is not None
    )
    mysql = "(1062, \"Duplicate entry '1-digits-48c7' for key 'PRIMARY'\")\n[SQL: INSERT INTO datasets (x)"
    assert concurrency.transient(RuntimeError(mysql)).startswith("Duplicate entry '1-digits-48c7' for key")
    # A unique violation elsewhere is not a race to wait out.
    assert concurrency.transient(RuntimeError(mysql.replace("datasets", "params"))) is None
    assert concurrency.transient(sqlite3.IntegrityError("UNIQUE constraint failed: params.key")) is None


def test_a_job_reports_its_tracking_time(tiny_cfg) -> None:
    tracker, run_id, metrics = execute(tiny_cfg(), JobInfo("t", "t"))
    assert metrics["time/tracking_s"] > 0
    assert 0 < metrics["tracking_share"] < 1
    assert metrics["tracking_retries"] == 0
    assert math.isclose(sum(tracker.call_seconds.values()), tracker.seconds, rel_tol=1e-6)
    assert tracker.calls["log_batch"] >= 5 and tracker.call_seconds["open_store"] > 0
    line = next(x for x in report.run(tracker, run_id).splitlines() if "stage times" in x)
    assert f"tracking {metrics['time/tracking_s']:.1f} s" in line and "of the job" in line


def test_bad_max_wait_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"tracking.max_wait_s=-1 must be ≥ 0"):
        Tracker(f"sqlite:///{tmp_path / 'm.db'}", "x", max_wait_s=-1)
    assert not (tmp_path / "m.db").exists()


class Health(http.server.BaseHTTPRequestHandler):
    """/health as a busy server gives it: the replies in `script` in turn ("slow", a status code),
    then 200 OK."""

    script: list = []

    def do_GET(self) -> None:  # noqa: N802 (the handler's name is http.server's)
        step = self.script.pop(0) if self.script else 200
        if step == "slow":
            time.sleep(1.0)
            step = 200
        self.send_response(step)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def health_server():
    """A local HTTP server answering /health per `Health.script`; yields its URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_slow_or_overloaded_server_is_waited_for(health_server: str, monkeypatch) -> None:
    monkeypatch.setattr(store, "HEALTH_TIMEOUT_S", 0.3)
    Health.script = ["slow", 503, "slow", 429]
    tracker = Tracker(health_server, None, max_wait_s=60)
    assert tracker.retries == 4 and not Health.script
    assert tracker.call_seconds["server_health"] >= 4 * 0.3


def test_a_server_busy_past_the_bounded_wait_is_one_line(health_server: str) -> None:
    Health.script = [503] * 100
    t0 = time.perf_counter()
    with pytest.raises(UserError, match=r"stayed unavailable for \d+ s \(HTTP 503\)") as e:
        Tracker(health_server, None, max_wait_s=2)
    assert time.perf_counter() - t0 < 5 and "\n" not in str(e.value)
    assert "raise tracking.max_wait_s (now 2)" in str(e.value)
