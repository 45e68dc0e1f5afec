"""A SQLite store held busy by another process, and what a store holds, read from the file itself."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from pipeline.tracking.queries import record

HOLD = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
con.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.execute("COMMIT")
"""


def hold_lock(db: Path, seconds: float) -> subprocess.Popen:
    """Another process holding the store's write lock for `seconds`; returns once it holds it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def points(db: Path, run_id: str) -> dict[str, int]:
    """Metric points per key of a run, read from the SQLite file itself."""
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT key, COUNT(*) FROM metrics WHERE run_uuid = ? GROUP BY key", (run_id,)
        ).fetchall()
    return dict(rows)


def series(n: int, offset: int = 0) -> list[tuple[str, int, float]]:
    return [("displacement", offset + i, 0.5 * i) for i in range(n)]


def snapshot(store: str) -> dict:
    """Everything a store holds: each run's status, params, tags and metric histories, and the
    bytes (sha256) of every artifact file."""
    client = MlflowClient(store)
    experiments = [e.experiment_id for e in client.search_experiments()]
    state: dict = {"runs": {}}
    for r in map(record, client.search_runs(experiments)):
        run_id = r.run_id
        state["runs"][run_id] = {
            "status": r.status,
            "params": r.params,
            "tags": r.tags,
            "metrics": {
                k: [(m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, k)]
                for k in r.metrics
            },
        }
    root = Path(store.removeprefix("sqlite:///")).parent / "mlartifacts"
    state["files"] = {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }
    return state
