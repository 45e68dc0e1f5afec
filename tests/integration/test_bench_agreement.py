"""The fast path keeps the results: λ_final and α from the pipeline (`python launch.py`, the default
llc.method) and from the straightforward baseline (`bench/baseline.py`) agree within their
seed-to-seed spread, over K seeds each of a shortened default job.

Agreement: |mean_ours − mean_baseline| ≤ C · sqrt(s_ours²/K + s_baseline²/K) (C standard errors of
the difference of two means), for λ_final and for α. Seed s gives both sides the same w_0; the data
order and the SGLD noise come from different streams, so single runs differ and their
distributions must not.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench import proc
from pipeline.tracking import open_existing
from tests.helpers.config import ROOT

K = 6  # seeds per side
C = 3.0  # standard errors of the difference allowed
STEPS = 1500  # of the default job's 3750: 15 λ estimates (Table 3's settings), λ_final over the last 10


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values)


@pytest.mark.slow
def test_pipeline_and_baseline_agree_within_seed_spread(tmp_path: Path):
    ours_dir, base_dir = tmp_path / "ours", tmp_path / "baseline"
    ours_dir.mkdir()
    base_dir.mkdir()
    seeds = list(range(K))
    ours_cmd = [
        sys.executable,
        str(ROOT / "launch.py"),
        "-m",
        f"seed={','.join(map(str, seeds))}",
        "llc=paper",  # the baseline's SGLD settings (Table 3)
        f"train.steps={STEPS}",
        "threads=1",
        "progress=false",
        f"tracking.uri=sqlite:///{ours_dir / 'mlflow.db'}",
        f"hydra.sweep.dir={ours_dir / 'multirun'}",
    ]
    base_cmds = [
        [
            sys.executable,
            str(ROOT / "bench" / "baseline.py"),
            f"--steps={STEPS}",
            f"--seed={s}",
            "--threads=1",
            f"--store=sqlite:///{base_dir / 'mlflow.db'}",
        ]
        for s in seeds
    ]
    # Ours in one process, the baseline's runs one after another beside it: two at a time, one thread each.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with ThreadPoolExecutor(2) as pool:
        ours_job = pool.submit(proc.run, ours_cmd, ours_dir, env, 1200)
        base_jobs = pool.submit(lambda: [proc.run(c, base_dir, env, 1200) for c in base_cmds])
        ours_res, base_res = ours_job.result(), base_jobs.result()
    ours_res.check()
    runs = open_existing(f"sqlite:///{ours_dir / 'mlflow.db'}", "almost-bayesian").runs_table()
    assert sorted(runs["status"]) == ["FINISHED"] * K
    ours = {k: [float(v) for v in runs[k]] for k in ("lambda_final", "alpha")}
    base_rows = [json.loads(r.check().stdout.strip().splitlines()[-1]) for r in base_res]
    base = {k: [row[k] for row in base_rows] for k in ("lambda_final", "alpha")}

    lines = []
    for key in ("lambda_final", "alpha"):
        (mo, so), (mb, sb) = _mean_sd(ours[key]), _mean_sd(base[key])
        bound = C * (so**2 / K + sb**2 / K) ** 0.5
        lines.append(
            f"{key}: ours {mo:.4f} ± {so:.4f}, baseline {mb:.4f} ± {sb:.4f} (sd over {K} seeds); "
            f"|difference| {abs(mo - mb):.4f} ≤ {C:g} standard errors = {bound:.4f}"
        )
        assert abs(mo - mb) <= bound, lines[-1]
    print("\n".join(lines))
