"""From a run's R(t) and λ(t): α, d_s = 2·λ_final·α with its bootstrap interval, d_walk, the verdicts.

`compute` is everything the fit stage records (`fit.json`), from the two tables alone, so the
ensemble stage runs the same fit on each member's R(t). Plain numpy and pandas.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from pipeline.slt.exponent import (
    bootstrap_spectral_dimension,
    crossover_test,
    detect_crossover,
    fit_exponent,
    spectral_dimension,
    walk_dimension,
    window_mask,
    window_points,
)
from pipeline.slt.settings import Window


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
    """'100-3700 (37 points, llc)', with the crossover when the fit started at one and the points
    dropped for R = 0."""
    extra = f", crossover t_c={result['t_c']:g}" if result["crossover"] else ""
    test = result.get("crossover_test")
    if test and not result["crossover"]:
        extra += f", no crossover (at t={test['t_c']:g} the exponents agree)"
    extra += f", {result['points_dropped']} with R = 0 dropped" if result.get("points_dropped") else ""
    extra += f", phase {result['phase']}" if result.get("phase") else ""
    return f"{result['t_start']}-{result['t_end']} ({result['n_points']} points, {result['points']}{extra})"


def _selected(traj: pd.DataFrame, llc_table: pd.DataFrame | None, points: str, every: int) -> pd.DataFrame:
    """The trajectory rows the fit uses: at the LLC steps (the paper's) or every recorded step."""
    if points == "all":
        return traj
    steps = (
        llc_table["step"].to_numpy()
        if llc_table is not None
        else np.arange(every, traj["step"].max() + 1, every)
    )
    return traj[traj["step"].isin(steps)]


def fit_points(traj: pd.DataFrame, llc_table: pd.DataFrame | None, points: str, every: int):
    """The (t, R) points the fit uses: at the LLC steps (the paper's) or every recorded step."""
    sel = _selected(traj, llc_table, points, every)
    return sel["step"].to_numpy(), sel["displacement"].to_numpy()


def fit_groups(traj: pd.DataFrame, llc_table: pd.DataFrame | None, points: str, every: int):
    """The coordinate groups' squared displacements at the fit points (groups x points), or None
    for a trajectory recorded without them."""
    columns = sorted(c for c in traj.columns if c.startswith("displacement_group/"))  # displacement.py's
    if not columns:
        return None
    return _selected(traj, llc_table, points, every)[columns].to_numpy(dtype=float).T


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
    window: Window | Mapping,
    every: int,
    last: int = 10,
    phase: str | None = None,
) -> dict:
    """Everything `fit.json` holds, from the tables alone (ValueError: too few points to fit);
    `phase`: the training phase the window is restricted to, recorded with the result."""
    window = Window.of(window)
    t, r = fit_points(traj, llc_table, window.points, every)
    groups = fit_groups(traj, llc_table, window.points, every)
    t_c, crossover = 0.0, None
    if window.crossover:
        found = detect_crossover(t, r)
        if groups is not None and np.isfinite(groups).all():  # a crossover only where the data say so
            crossover = crossover_test(t, groups, found, seed=int(window.bootstrap.seed))
            t_c = found if crossover["supported"] else 0.0
        else:  # no groups recorded: no test, the breakpoint as found
            crossover = {
                "t_c": float(found),
                "supported": None,
                "test": "none: no coordinate groups recorded",
            }
            t_c = found
    span = dict(t_start=window.start_step, t_end=window.end_step, t_c=t_c, shift=window.shift)
    ef = fit_exponent(t, r, **span)
    keep, dropped = window_mask(t, r, **span)
    if groups is not None and not (window.shift and t_c > 0):  # (a shifted R is no sum of groups)
        groups = groups[:, keep]
    else:
        groups = None
    lam_final, lam_bar = lambdas.get("lambda_final", np.nan), lambdas.get("lambda_bar", np.nan)
    d_s = spectral_dimension(lam_final, ef.alpha)
    d_walk = walk_dimension(ef.alpha)
    boot = window.bootstrap
    estimates = final_estimates(llc_table, last)
    if not len(estimates):  # λ_final came from elsewhere (or is missing): hold it fixed
        estimates = np.array([lam_final])
    every_estimate = final_estimates(llc_table, len(llc_table) if llc_table is not None else 0)
    if not len(every_estimate):  # likewise λ̄
        every_estimate = np.array([lam_bar])
    ci = bootstrap_spectral_dimension(
        *window_points(t, r, **span),
        estimates,
        samples=int(boot.samples),
        level=float(boot.level),
        block=boot.block,
        seed=int(boot.seed),
        bar_lambdas=every_estimate,
        groups=groups,
    )
    return {
        **ef.to_dict(),
        "points": window.points,
        "crossover": bool(window.crossover and t_c > 0),
        "crossover_test": crossover,
        "phase": phase,
        "lambda_final": lam_final,
        "lambda_bar": lam_bar,
        "d_s": d_s,
        "d_s_ci_low": ci.d_s_low,
        "d_s_ci_high": ci.d_s_high,
        "alpha_ci_low": ci.alpha_low,
        "alpha_ci_high": ci.alpha_high,
        "margin_lemma_3_4_low": ci.lemma_margin_low,
        "margin_corollary_3_3_low": ci.corollary_margin_low,
        "points_dropped": dropped,
        "bootstrap": {
            "method": (
                f"coordinate-group bootstrap ({ci.groups} groups) x resampled λ_final estimates"
                if ci.groups
                else "moving-block pairs bootstrap of the fit points x resampled λ_final estimates"
            ),
            "level": ci.level,
            "samples": ci.samples,
            "block": ci.block,
            "groups": ci.groups,
            "n_lambdas": ci.n_lambdas,
            "seed": int(boot.seed),
        },
        "d_s_bar": spectral_dimension(lam_bar, ef.alpha),
        "d_walk": d_walk,
        "diffusion_exponent": 2.0 - d_walk,
        "lemma_3_4": verdict(d_s, lam_final, ci.lemma_margin_low),
        "corollary_3_3": verdict(d_s, lam_bar, ci.corollary_margin_low),
    }
