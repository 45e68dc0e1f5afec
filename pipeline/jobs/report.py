"""What `python launch.py` prints when a job ends: a run's numbers and verdicts, a batched job's
seeds and their spread, the posterior experiment's clusters and Table 2. Read back from the store."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from pipeline.config import checks
from pipeline.config.members import is_batched
from pipeline.stages.context import Member
from pipeline.tracking import Tracker, names, ui_command, ui_url


def of(tracker: Tracker, members: list[Member], cfg: DictConfig) -> str:
    """The report of a job's members (nothing for a point another live job runs)."""
    shown = [m for m in members if m.action != "busy"]
    if not shown:
        return ""
    if is_batched(cfg):
        return seeds(tracker, shown)
    (m,) = shown
    if checks.first_stage(cfg.stages) == "ensemble":
        return posterior(tracker, m.run_id)
    return run(tracker, m.run_id)


def describe(tracker: Tracker, members: list[Member], cfg: DictConfig) -> None:
    """Each finished run's report (what `run` prints) as its MLflow description, shown on the run's
    page in the UI; a description already the same is not rewritten."""
    if checks.first_stage(cfg.stages) == "ensemble":
        return
    for m in members:
        if m.action == "busy" or m.failed is not None:
            continue
        # A fenced block: the UI renders descriptions as Markdown, and the report is aligned text.
        record = tracker.get_run(m.run_id)
        lines = run(tracker, m.run_id, record).splitlines()
        kept = "\n".join(line for line in lines if not line.lstrip().startswith(("browse:", "then http")))
        text = f"```text\n{kept}\n```"
        if record.tags.get(names.DESCRIPTION) != text:
            tracker.set_tags(m.run_id, {names.DESCRIPTION: text})


def _interval(metrics: dict) -> str:
    """' [lo, hi] (bootstrap)' when the fit stage wrote d_s's interval (level: fit.bootstrap.level)."""
    lo, hi = metrics.get("d_s_ci_low"), metrics.get("d_s_ci_high")
    return f" [{lo:.4g}, {hi:.4g}] (bootstrap)" if lo is not None and hi is not None else ""


def _calibration(tags: dict, run_id: str) -> str:
    """'; calibrated on this run (<why>)' or '; calibration of run <id> (<why>)' when the automatic
    calibration chose the settings, <why> its reason: a plateau in ε, or none (then λ is unconfirmed:
    docs/trustworthy-numbers.md); nothing otherwise."""
    source = tags.get(names.LLC_CALIBRATED_FROM)
    if source is None:
        return ""
    where = "calibrated on this run" if source == run_id else f"calibration of run {source}"
    why = json.loads(tags.get(names.LLC_CALIBRATION_CHOICE, "{}")).get("reason")
    return f"; {where}" + (f" ({why})" if why else "")


# The samplers other than plain SGLD, as the settings tag names them: (key, in words, short).
_SAMPLERS = (
    ("rmsprop_sgld", "devinterp RMSProp-preconditioned SGLD", "RMSProp-SGLD"),
    ("underdamped", "underdamped Langevin", "underdamped"),
)


def run(tracker: Tracker, run_id: str, record=None) -> str:
    """The lines `python launch.py` prints for a run (`record`: its `RunRecord`, when already read)."""
    r = record or tracker.get_run(run_id)
    tags, metrics = r.tags, r.metrics
    m = {k: metrics.get(k, float("nan")) for k in names.SUMMARY_METRICS}
    # The λ the verdicts compared with: the llc stage's, or one training phase's (fit.phase).
    m |= {k: metrics[f"fit_{k}"] for k in ("lambda_final", "lambda_bar") if f"fit_{k}" in metrics}
    settings = tags.get(names.LLC_SETTINGS, "")
    sampler, short = next(
        ((long, name) for key, long, name in _SAMPLERS if f"sampler={key}" in settings),
        ("devinterp SGLD", "SGLD"),
    )
    lines = [
        f"run {run_id} ({r.name}) in experiment '{tracker.experiment_name(r.experiment_id)}'",
        f"  data: {tags.get(names.DATASET, 'n/a')}",
        f"  λ_final = {m['lambda_final']:.4g}   λ̄ = {m['lambda_bar']:.4g}   "
        f"({sampler}, nβ = {tags.get(names.LLC_NBETA, 'n/a')})",
        *([f"  {short}: {settings}{_calibration(tags, run_id)}"] if names.LLC_SETTINGS in tags else []),
        f"  α = {m['alpha']:.4f} ± {m['alpha_se']:.4f}   r² = {m['r2']:.4f}   "
        f"fit window: steps {tags.get(names.FIT_WINDOW, 'n/a')}",
        f"  d_s = 2·λ_final·α = {m['d_s']:.4g}{_interval(metrics)}   d_walk = 1/α = {m['d_walk']:.4g}",
        f"  λ diagnostics: {tags.get(names.LLC_NEGATIVE, 'n/a')} negative, "
        f"{tags.get(names.LLC_NONSTATIONARY, 'n/a')} non-stationary, "
        f"{tags.get(names.LLC_RHAT_HIGH, 'n/a')} R-hat high, {tags.get(names.LLC_ESS_LOW, 'n/a')} ESS low, "
        f"{tags.get(names.LLC_FAILED, 'n/a')} failed of {tags.get(names.LLC_ESTIMATES, 'n/a')} estimates",
        f"                 median R-hat {tags.get(names.LLC_RHAT_MEDIAN, 'n/a')}, "
        f"median bulk ESS {tags.get(names.LLC_ESS_MEDIAN, 'n/a')}; "
        f"λ_final ± {metrics.get('lambda_final_mcse', float('nan')):.2g} (MCSE), "
        f"± {metrics.get('lambda_final_std', float('nan')):.2g} "
        f"(sd of its {tags.get(names.LLC_LAST, 'n/a')} estimates)",
        f"  test acc = {m['test_acc']:.4f}   gen error (test − train loss) = {m['gen_error']:.4g}   "
        f"parameters = {int(m['num_params']) if m['num_params'] == m['num_params'] else 'n/a'}",
        f"  Lemma 3.4      d_s ≤ λ_final: {tags.get(names.LEMMA_3_4, 'n/a')}",
        f"  Corollary 3.3  d_s ≤ λ̄:       {tags.get(names.COROLLARY_3_3, 'n/a')}",
        *(
            [f"  calibrate: use {tags[names.CALIBRATE_RECOMMENDED]}"]
            if names.CALIBRATE_RECOMMENDED in tags
            else []
        ),
        "  stage times: "
        + ", ".join(
            f"{s} {metrics[names.stage_seconds(s)]:.1f} s"
            for s in checks.STAGES
            if names.stage_seconds(s) in metrics
        )
        + (
            f"; tracking {metrics[names.TRACKING_SECONDS]:.1f} s "
            f"({metrics[names.TRACKING_SHARE]:.1%} of the job)"
            if names.TRACKING_SHARE in metrics
            else ""
        ),
        f"browse: {ui_command(tracker.uri)}",
        f"        then {ui_url(tracker.uri, r.experiment_id, run_id)}",
    ]
    return "\n".join(lines)


def seeds(tracker: Tracker, members: list[Member]) -> str:
    """One line per seed, then the spread over the seeds that finished."""
    lines = [f"{len(members)} seeds in one batched job, one run each:"]
    rows, data = [], set()
    for m in members:
        if m.failed is not None:
            lines.append(f"  seed {m.seed:>4}  run {m.run_id}  FAILED: {m.failed}")
            continue
        r = tracker.get_run(m.run_id)
        x, tags = r.metrics, r.tags
        rows.append(x)
        data.add(tags.get(names.DATASET, "n/a"))
        lines.append(
            f"  seed {m.seed:>4}  run {m.run_id}  λ_final {x['lambda_final']:.4g}  α {x['alpha']:.4f}  "
            f"d_s {x['d_s']:.4g}  Lemma 3.4 {tags.get(names.LEMMA_3_4)}  "
            f"Corollary 3.3 {tags.get(names.COROLLARY_3_3)}"
        )
    if rows:
        table = pd.DataFrame(rows)
        spread = ", ".join(
            f"{k} {table[k].mean():.4g} ± {table[k].std(ddof=1) if len(table) > 1 else np.nan:.2g}"
            for k in ("lambda_final", "alpha", "d_s", "test_acc")
        )
        lines.append(f"  mean ± sd over {len(rows)} seeds: {spread}")
        lines.insert(1, f"  data: {', '.join(sorted(data))}")
    lines.append(f"browse: {ui_command(tracker.uri)}")
    lines.append(f"        then {ui_url(tracker.uri, tracker.experiment_id)}")
    return "\n".join(lines)


def posterior(tracker: Tracker, run_id: str) -> str:
    """The lines `python launch.py +experiment=moons_posterior` prints."""
    record = tracker.get_run(run_id)
    m, tags = record.metrics, record.tags
    t = tracker.load_json(run_id, names.TABLE_2) or {}
    table = tracker.load_table(run_id, names.CLUSTERS)
    nan = float("nan")
    criterion = tags.get(names.POSTERIOR_CRITERION, "n/a")
    lines = [
        f"run {run_id}: {int(m.get('ensemble_members', 0))} SGD members, "
        f"{int(m.get('members_converged', 0))} converged ({criterion})",
        f"  ensemble training {m.get('time/ensemble_train_s', nan):.1f} s, λ per member "
        f"{m.get('time/llc_per_member_s', nan):.3f} s, SGLD {m.get('time/sgld_s', nan):.1f} s",
    ]
    if table is not None:
        lines.append("  cluster  SGD    Bayes  tempered  λ      d_s     d_walk")
        for _, r in table.iterrows():
            lines.append(
                f"  {r['name']:<7}  {r['share_sgd']:.3f}  {r['share_bayes']:.3f}  {r['share_tempered']:.3f}"
                f"     {r['lambda']:<6.3g} {r['d_s']:<7.3g} {r['d_walk']:.3g}"
            )
    if t:
        lines.append(
            f"  Table 2 at best ξ = {t['best_xi']:.3g}: KL {t['kl']:.4f}, "
            f"Wasserstein {t['wasserstein']:.4f}, JS {t['js']:.4f}   "
            f"(paper, ξ = 0.5: 0.009, 0.002, 0.003; untempered KL {t['untempered']['kl']:.4f})"
        )
        if m.get("best_xi_at_grid_edge"):
            lines.append("  the least KL lies at the edge of the ξ grid: widen posterior.tempering.xi")
        lines.append(
            f"  cluster silhouette {m.get('cluster_silhouette', nan):.3f} (SGD solutions' representations)"
        )
    return "\n".join(lines)
