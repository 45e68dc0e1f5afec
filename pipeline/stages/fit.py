"""Stage 3, fit: α from R(t), then d_s, d_walk and the paper's two verdicts (`pipeline.slt.fit`).

Reads from each run: `trajectory.parquet`, `llc.parquet` (when λ was estimated), `config.yaml`, its
summary metrics and tag `llc.last`. Writes: `fit.json` (α, its standard error, intercept, r², the
window, t_c, d_s with its bootstrap interval, d_walk, the D_ξ exponent 2 − d_walk, verdicts),
summary metrics `alpha`, `alpha_se`, `r2`, `d_s`, `d_s_ci_low`, `d_s_ci_high`, `d_walk`,
`diffusion_exponent`, the bounds compared with (`fit_lambda_final`, `fit_lambda_bar`: the llc
stage's λ_final and λ̄, or a phase's with `fit.phase`), the window (`fit_t_start`, `fit_t_end`,
`fit_t_c`) and the lower ends of the bootstrap intervals of d_s − bound (`margin_lemma_3_4_low`,
`margin_corollary_3_3_low`), and tags `verdict.lemma_3_4` (d_s ≤ λ_final), `verdict.corollary_3_3`
(d_s ≤ λ̄), each one of `holds`, `violated`, `within_error` (d_s exceeds the bound, but the interval
of d_s − bound reaches 0) or `n/a`, and `fit.window`; and the run's own figures (`fit.figures`):
`figures/displacement.png` and `figures/llc.png`. Re-running it with another window never
retrains.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from pipeline.errors import UserError
from pipeline.interrupts import INTERRUPTS
from pipeline.slt import llc
from pipeline.slt.fit import compute, window_text
from pipeline.slt.settings import Window
from pipeline.stages import inputs
from pipeline.stages.context import Context, Member
from pipeline.tracking import Tracker, names

SUMMARY = (
    "alpha",
    "alpha_se",
    "r2",
    "d_s",
    "d_s_ci_low",
    "d_s_ci_high",
    "d_walk",
    "diffusion_exponent",
    "margin_lemma_3_4_low",
    "margin_corollary_3_3_low",
)


def run(ctx: Context, members: list[Member]) -> None:
    """The fit on every member's run; in a batched job a member whose window holds too few points
    fails alone, the others go on."""
    INTERRUPTS.hold()  # quick: the members' records, all or none, before the job acts on a signal
    for m in members:
        try:
            fit_run(m.cfg, ctx.tracker, m.run_id)
        except UserError as e:
            if not ctx.batched:
                raise
            ctx.fail(m, f"UserError: {e}")


def restrict_to_phase(
    window: Window,
    phase: str,
    metrics: dict[str, float],
    llc_table: pd.DataFrame | None,
    lambdas: dict[str, float],
    last: int,
) -> tuple[Window, pd.DataFrame | None, dict[str, float]]:
    """The fit window, the λ(t) table and λ_final, λ̄ of one training phase (`fit.phase`, e.g. the
    SGD phase of the Tiny ImageNet protocol, G.2): the window starts at the phase's first step (R
    and t still count from w_0 and step 1, as the paper's Table 1 fit does) and λ is summarised,
    and bootstrapped, over its steps."""
    key = f"phase/{phase}/start_step"
    if key not in metrics:
        known = sorted({k.split("/")[1] for k in metrics if k.startswith("phase/")})
        raise UserError(f"fit.phase={phase}: the run recorded no such phase (it has: {known or 'none'})")
    start = int(metrics[key])
    window = dataclasses.replace(window, start_step=max(start, int(window.start_step or 0)))
    if llc_table is not None:
        llc_table = llc_table[llc_table["step"] >= start]
        lambdas = llc.summarize(llc_table, last)
    return window, llc_table, lambdas


def fit_run(cfg: DictConfig, tracker: Tracker, run_id: str) -> dict:
    """Fit one run's recorded trajectory with the window in `cfg.fit` and log the result."""
    traj = tracker.load_table(run_id, names.TRAJECTORY)
    if traj is None:
        raise UserError(f"run {run_id} has no {names.TRAJECTORY}.parquet: run the train stage first")
    llc_table = tracker.load_table(run_id, names.LLC)
    trained = inputs.trained_config(tracker, run_id)
    every = int(trained.llc.every) if "llc" in trained else int(cfg.llc.every)
    run = tracker.get_run(run_id)
    metrics = run.metrics
    lambdas = {k: metrics[k] for k in ("lambda_final", "lambda_bar") if k in metrics}
    # The estimates λ_final averaged, as the llc stage that wrote it counted them.
    last = int(run.tags.get(names.LLC_LAST, cfg.llc.last))
    window, phase = Window.of(cfg.fit), cfg.fit.get("phase")
    if phase:
        window, llc_table, lambdas = restrict_to_phase(window, str(phase), metrics, llc_table, lambdas, last)
    try:
        result = compute(traj, llc_table, lambdas, window, every, last, phase)
    except ValueError as e:  # a window with too few points: the message names the fix
        raise UserError(str(e)) from None
    tracker.log_json(run_id, result, names.FIT)
    tracker.log_summary(
        run_id,
        {k: result[k] for k in SUMMARY}
        | {
            # The bounds the verdicts compared with (the llc stage's λ_final and λ̄, or a phase's).
            "fit_lambda_final": result["lambda_final"],
            "fit_lambda_bar": result["lambda_bar"],
            "fit_t_start": result["t_start"],
            "fit_t_end": result["t_end"],
            "fit_t_c": result["t_c"],
        },
    )
    tracker.set_tags(
        run_id,
        {
            names.LEMMA_3_4: result["lemma_3_4"],
            names.COROLLARY_3_3: result["corollary_3_3"],
            names.FIT_WINDOW: window_text(result),
        },
    )
    if cfg.fit.get("figures", True):
        log_figures(tracker, run, cfg, traj, llc_table, result, last)
    return result


def log_figures(tracker: Tracker, run, cfg: DictConfig, traj, llc_table, result: dict, last: int) -> None:
    """The run's R(t) and λ(t) figures under `figures/`, titled with its data, model, preset and seed."""
    from pipeline.stages import run_figures

    target = str(cfg.model.get("_target_", "model")).rsplit(".", 1)[-1]
    hidden = cfg.model.get("hidden")
    model = f"{target} {'-'.join(str(h) for h in hidden)}" if hidden else target
    about = f"{run.tags.get(names.DATASET, 'data n/a')} · {model} · seed {cfg.seed}"
    preset = cfg.llc.get("preset", "custom")
    with tempfile.TemporaryDirectory(prefix="ab-fig-") as d:
        files = [
            run_figures.displacement(traj, result, f"R(t), {about}", Path(d) / names.FIGURE_DISPLACEMENT)
        ]
        if llc_table is not None and len(llc_table):
            title = f"λ(t), SGLD {preset}, {about}"
            files.append(run_figures.llc(llc_table, result, last, title, Path(d) / names.FIGURE_LLC))
        tracker.log_files(run.run_id, files, names.FIGURES)
