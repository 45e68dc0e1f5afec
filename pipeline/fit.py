"""Stage 3, fit: α from R(t), then d_s, d_walk and the paper's two verdicts.

Reads from the run: `trajectory.parquet`, `llc.parquet` (when λ was estimated) and `config.yaml`.
Writes: `fit.json` (α, its standard error, intercept, r², the window, t_c, d_s with its bootstrap
interval, d_walk, the D_ξ exponent 2 − d_walk, verdicts), summary metrics `alpha`, `alpha_se`,
`r2`, `d_s`, `d_s_ci_low`, `d_s_ci_high`, `d_walk`, `diffusion_exponent`, the bounds compared
with (`fit_lambda_final`, `fit_lambda_bar`: the llc stage's λ_final and λ̄, or a phase's with
`fit.phase`) and the lower ends of the bootstrap intervals of d_s − bound
(`margin_lemma_3_4_low`, `margin_corollary_3_3_low`), and tags `verdict.lemma_3_4`
(d_s ≤ λ_final), `verdict.corollary_3_3` (d_s ≤ λ̄), each one of `holds`, `violated`,
`within_error` (d_s exceeds the bound, but the interval of d_s − bound reaches 0) or `n/a`.
Re-running it on a run with another window never retrains.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from pipeline import artifacts, llc
from pipeline.errors import UserError
from pipeline.exponent import (
    bootstrap_spectral_dimension,
    detect_crossover,
    fit_exponent,
    spectral_dimension,
    walk_dimension,
    window_points,
)
from pipeline.tracking import Tracker


def verdict(d_s: float, bound: float, margin_low: float = float("nan")) -> str:
    """'holds' when d_s ≤ bound; 'within_error' when d_s > bound but the interval of d_s − bound
    reaches 0 (`margin_low` ≤ 0, from `bootstrap_spectral_dimension`: the violation is inside
    the error bar); 'violated' otherwise; 'n/a' when d_s or the bound is not a number. Without an
    interval (NaN `margin_low`) a violation is 'violated'."""
    if not (np.isfinite(d_s) and np.isfinite(bound)):
        return "n/a"
    if d_s <= bound:
        return "holds"
    return "within_error" if np.isfinite(margin_low) and margin_low <= 0 else "violated"


def window_text(result: dict) -> str:
    """'100-3700 (37 points, llc)', with the crossover when the fit started at one."""
    extra = f", crossover t_c={result['t_c']:g}" if result["crossover"] else ""
    extra += f", phase {result['phase']}" if result.get("phase") else ""
    return f"{result['t_start']}-{result['t_end']} ({result['n_points']} points, {result['points']}{extra})"


def fit_points(traj: pd.DataFrame, llc_table: pd.DataFrame | None, points: str, every: int):
    """The (t, R) points the fit uses: at the LLC steps (the paper's) or every recorded step."""
    if points == "all":
        return traj["step"].to_numpy(), traj["displacement"].to_numpy()
    steps = (
        llc_table["step"].to_numpy()
        if llc_table is not None
        else np.arange(every, traj["step"].max() + 1, every)
    )
    sel = traj[traj["step"].isin(steps)]
    return sel["step"].to_numpy(), sel["displacement"].to_numpy()


def final_estimates(llc_table: pd.DataFrame | None, last: int) -> np.ndarray:
    """The λ estimates whose mean is λ_final: the last `last` successful ones (G.1)."""
    if llc_table is None or llc_table.empty:
        return np.array([])
    ok = llc_table[llc_table["status"] == "ok"].sort_values("step")
    return ok["llc"].tail(last).to_numpy(dtype=float)


def compute(
    traj: pd.DataFrame,
    llc_table: pd.DataFrame | None,
    lambdas: dict[str, float],
    fit_cfg: DictConfig,
    every: int,
    last: int = 10,
) -> dict:
    """Everything `fit.json` holds, from the tables alone."""
    t, r = fit_points(traj, llc_table, fit_cfg.points, every)
    t_c = detect_crossover(t, r) if fit_cfg.crossover else 0.0
    window = dict(t_start=fit_cfg.start_step, t_end=fit_cfg.end_step, t_c=t_c, shift=fit_cfg.shift)
    ef = fit_exponent(t, r, **window)
    lam_final, lam_bar = lambdas.get("lambda_final", np.nan), lambdas.get("lambda_bar", np.nan)
    d_s = spectral_dimension(lam_final, ef.alpha)
    d_walk = walk_dimension(ef.alpha)
    boot = fit_cfg.bootstrap
    estimates = final_estimates(llc_table, last)
    if not len(estimates):  # λ_final came from elsewhere (or is missing): hold it fixed
        estimates = np.array([lam_final])
    every_estimate = final_estimates(llc_table, len(llc_table) if llc_table is not None else 0)
    if not len(every_estimate):  # likewise λ̄
        every_estimate = np.array([lam_bar])
    ci = bootstrap_spectral_dimension(
        *window_points(t, r, **window),
        estimates,
        samples=int(boot.samples),
        level=float(boot.level),
        block=boot.block,
        seed=int(boot.seed),
        bar_lambdas=every_estimate,
    )
    return {
        **ef.to_dict(),
        "points": fit_cfg.points,
        "crossover": bool(fit_cfg.crossover),
        "phase": fit_cfg.get("phase"),
        "lambda_final": lam_final,
        "lambda_bar": lam_bar,
        "d_s": d_s,
        "d_s_ci_low": ci.d_s_low,
        "d_s_ci_high": ci.d_s_high,
        "alpha_ci_low": ci.alpha_low,
        "alpha_ci_high": ci.alpha_high,
        "margin_lemma_3_4_low": ci.lemma_margin_low,
        "margin_corollary_3_3_low": ci.corollary_margin_low,
        "bootstrap": {
            "method": "moving-block pairs bootstrap of the fit points x resampled λ_final estimates",
            "level": ci.level,
            "samples": ci.samples,
            "block": ci.block,
            "n_lambdas": ci.n_lambdas,
            "seed": int(boot.seed),
        },
        "d_s_bar": spectral_dimension(lam_bar, ef.alpha),
        "d_walk": d_walk,
        "diffusion_exponent": 2.0 - d_walk,
        "lemma_3_4": verdict(d_s, lam_final, ci.lemma_margin_low),
        "corollary_3_3": verdict(d_s, lam_bar, ci.corollary_margin_low),
    }


def restrict_to_phase(
    fit_cfg: DictConfig,
    metrics: dict[str, float],
    llc_table: pd.DataFrame | None,
    lambdas: dict[str, float],
    last: int,
) -> tuple[DictConfig, pd.DataFrame | None, dict[str, float]]:
    """The fit window, the λ(t) table and λ_final, λ̄ of one training phase (`fit.phase`, e.g. the
    SGD phase of the Tiny ImageNet protocol, G.2): the window starts at the phase's first step (R
    and t still count from w_0 and step 1, as the paper's Table 1 fit does) and λ is summarised,
    and bootstrapped, over its steps."""
    name = str(fit_cfg.phase)
    key = f"phase/{name}/start_step"
    if key not in metrics:
        known = sorted({k.split("/")[1] for k in metrics if k.startswith("phase/")})
        raise UserError(f"fit.phase={name}: the run recorded no such phase (it has: {known or 'none'})")
    start = int(metrics[key])
    window = OmegaConf.merge(fit_cfg, {"start_step": max(start, int(fit_cfg.start_step or 0))})
    if llc_table is not None:
        llc_table = llc_table[llc_table["step"] >= start]
        lambdas = llc.summarize(llc_table, last)
    return window, llc_table, lambdas


def run(cfg: DictConfig, tracker: Tracker, run_id: str) -> dict:
    """Fit the run's recorded trajectory with the window in `cfg.fit` and log the result."""
    traj = tracker.load_table(run_id, "trajectory")
    if traj is None:
        raise UserError(f"run {run_id} has no trajectory.parquet: run the train stage first")
    llc_table = tracker.load_table(run_id, "llc")
    trained = artifacts.trained_config(tracker, run_id)
    every = int(trained.llc.every) if "llc" in trained else int(cfg.llc.every)
    metrics = tracker.summary(run_id)
    lambdas = {k: metrics[k] for k in ("lambda_final", "lambda_bar") if k in metrics}
    # The estimates λ_final averaged, as the llc stage that wrote it counted them.
    last = int(tracker.get_run(run_id).data.tags.get("llc.last", cfg.llc.last))
    fit_cfg = cfg.fit
    if fit_cfg.get("phase"):
        fit_cfg, llc_table, lambdas = restrict_to_phase(fit_cfg, metrics, llc_table, lambdas, last)
    try:
        result = compute(traj, llc_table, lambdas, fit_cfg, every, last)
    except ValueError as e:  # a window with too few points: the message names the fix
        raise UserError(str(e)) from None
    tracker.log_json(run_id, result, "fit")
    tracker.log_summary(
        run_id,
        {
            k: result[k]
            for k in (
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
        }
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
            "verdict.lemma_3_4": result["lemma_3_4"],
            "verdict.corollary_3_3": result["corollary_3_3"],
            "fit.window": window_text(result),
        },
    )
    return result
