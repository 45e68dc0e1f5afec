"""The MLflow UI in a real browser: `mlflow server` on 127.0.0.1 with a store filled by two tiny
runs, headless Chromium (Debian's `chromium`) renders the JS app, and the page shows the runs and
their `d_s` and `lambda_final` values.

Slow (the server's start and two page renders take 30-90 s on a loaded 2-core machine): run with
`pytest -m slow tests/integration/test_browser.py`; `.ci/run` runs it after the fast suite.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest

from pipeline.jobs.opening import JobInfo
from tests.helpers.jobs import execute

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--window-size=1920,1080",  # a narrow window virtualizes away the table's columns
]


def page_text(url: str, profile: Path, budget_ms: int = 30000) -> str:
    """The rendered page's visible text: Chromium runs the app's JS for `budget_ms` of virtual
    time, then dumps the DOM; styles and scripts are dropped, tags become spaces."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("no chromium on PATH: apt-get install -y chromium (.ci/run does this)")
    out = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    ).stdout
    out = re.sub(r"<(style|script)\b.*?</\1>", " ", out, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", out))


def shown(value: float) -> tuple[str, ...]:
    """How the MLflow UI may print a metric: rounded to 3 decimals, trailing zeros dropped or not."""
    fixed = f"{value:.3f}"
    return fixed, fixed.rstrip("0").rstrip(".")


@pytest.fixture
def server(tiny_cfg, tracking_server):
    """Two tiny real runs in a fresh store, served by `mlflow server` on a free local port."""
    runs = []
    for lr in (0.05, 0.2):
        tracker, run_id, metrics = execute(tiny_cfg(f"lr={lr}"), JobInfo("browser", f"lr={lr}"))
        runs.append((tracker.get_run(run_id).name, run_id, metrics))
    base, _ = tracking_server(tracker.uri)
    return base, tracker.experiment_id, runs


def test_mlflow_ui_shows_the_runs_and_their_numbers(server, tmp_path: Path) -> None:
    base, experiment_id, runs = server
    text = page_text(f"{base}/#/experiments/{experiment_id}/runs", tmp_path / "profile-runs")
    for name, _, _ in runs:
        assert name in text, f"run {name} not on the experiment page"
    ids = quote(json.dumps([rid for _, rid, _ in runs]))
    experiments = quote(json.dumps([str(experiment_id)]))
    text = page_text(
        f"{base}/#/compare-runs?runs={ids}&experiments={experiments}", tmp_path / "profile-compare"
    )
    metrics_part = text[text.find("Metrics") :]
    assert "d_s" in metrics_part and "lambda_final" in metrics_part
    for name, _, metrics in runs:
        assert name in text
        for key in ("d_s", "lambda_final"):
            assert any(s in metrics_part for s in shown(metrics[key])), f"{key} of {name} not shown"
