"""The MLflow UI in a real browser: `mlflow server` on 127.0.0.1 with a store filled by two tiny
runs, headless Chromium (Debian's `chromium`) renders the JS app: the experiment opens on the runs
table (it is marked as model training), the pages show the runs and their `d_s` and `lambda_final`
values, a run's page its report as the description, and its figures preview as images.

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


def page_dom(url: str, profile: Path, budget_ms: int = 30000) -> str:
    """The rendered page's DOM: Chromium runs the app's JS for `budget_ms` of virtual time."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("no chromium on PATH: apt-get install -y chromium (.ci/run does this)")
    return subprocess.run(
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


def page_text(url: str, profile: Path, budget_ms: int = 30000) -> str:
    """The rendered page's visible text: styles and scripts dropped, tags become spaces."""
    out = page_dom(url, profile, budget_ms)
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
        tracker, run_id, metrics = execute(
            tiny_cfg(f"lr={lr}", "fit.figures=true"), JobInfo("browser", f"lr={lr}")
        )
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


def test_the_ui_opens_on_the_runs_table_and_a_run_shows_its_report_and_figures(
    server, tmp_path: Path
) -> None:
    """The experiment's link the report prints lands on the runs table, not on GenAI traces, with
    the runs' data set; a run's page shows the printed report as its description; its R(t) figure
    previews as an image."""
    base, experiment_id, runs = server
    from pipeline.tracking import ui_url

    landing = page_text(
        ui_url(base, experiment_id), tmp_path / "profile-landing"
    )  # the link the report prints
    for name, _, _ in runs:
        assert name in landing, f"run {name} not on the experiment's landing view"
    assert "Run Name" in landing and "digits (" in landing  # the runs table, its Dataset column
    from mlflow import MlflowClient

    tags = MlflowClient(base).get_experiment(str(experiment_id)).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"  # marked as model training
    name, run_id, _ = runs[0]
    page = page_text(ui_url(base, experiment_id, run_id), tmp_path / "profile-run")
    assert "Lemma 3.4" in page and "data: digits" in page, "the report is not the run's description"
    figure = f"{base}/#/experiments/{experiment_id}/runs/{run_id}/artifacts/figures/displacement.png"
    dom = page_dom(figure, tmp_path / "profile-figure")
    assert re.search(r"<img[^>]+figures(%2F|/)displacement\.png", dom), "the run's figure is not shown"


def test_the_sweeps_report_page_shows_its_figures_and_verdict_counts(server, tmp_path: Path) -> None:
    """`python -m analysis` writes the sweep's page and logs it to the sweep's analysis run: opened
    from the MLflow UI's artifact view and from disk, it shows the embedded figures and the counts."""
    from mlflow import MlflowClient

    from analysis.__main__ import main as analysis_main
    from pipeline.tracking import ui_url

    base, experiment_id, runs = server
    client = MlflowClient(base)
    sweep = client.get_run(runs[0][1]).data.tags["sweep"]
    experiment = client.get_experiment(str(experiment_id)).name
    args = ["--uri", base, "--experiment", experiment, "--sweep", sweep, "--out", str(tmp_path / "results")]
    assert analysis_main(args) == 0
    page = tmp_path / "results" / sweep / "report.html"
    dom = page_dom(page.as_uri(), tmp_path / "profile-page")
    figures = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', dom)
    assert "fig01_displacement" in figures and "fig02a_lambda_vs_ds" in figures and len(figures) >= 5
    text = page_text(page.as_uri(), tmp_path / "profile-page-text")
    assert re.search(r"Lemma 3\.4 \(d_s ≤ λ_final\) holds: \d+ within_error: \d+ violated: \d+", text), text[
        :2000
    ]
    assert "2 finished runs" in text and "What the sweep varied" in text
    (analysis,) = client.search_runs([str(experiment_id)], "tags.analysis = 'true'")
    view = f"{ui_url(base, experiment_id, analysis.info.run_id)}".replace(
        "?", "/artifacts/analysis/report.html?"
    )
    assert 'class="mlflow-html-iframe"' in page_dom(view, tmp_path / "profile-ui-page")  # the UI renders it
