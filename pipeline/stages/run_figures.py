"""A run's own small figures, logged by the fit stage under `figures/` so that the MLflow UI previews
them on the run's page: R(t) in log-log with the fitted line and its window, and λ̂(t) with its
Monte-Carlo error bars and λ_final. Plain matplotlib (Agg) on the stage's own tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SIZE = (4.6, 3.2)  # inches: readable in the UI's artifact preview without scrolling


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def displacement(traj: pd.DataFrame, result: dict, title: str, path: Path) -> Path:
    """R(t) on log-log axes, every recorded step; the fit's points, its line over the window and the
    window shaded; α ± its standard error in the legend."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=SIZE, layout="constrained")
    ok = traj[(traj["step"] > 0) & (traj["displacement"] > 0)]
    ax.loglog(ok["step"], ok["displacement"], color="0.6", lw=1, label="R(t) = ‖w_t − w_0‖")
    lo, hi = float(result["t_start"]), float(result["t_end"])
    ax.axvspan(lo, hi, color="tab:blue", alpha=0.08, lw=0, label=f"fit window {lo:g}-{hi:g}")
    t = np.geomspace(max(lo, 1.0), hi, 50)
    shift = float(result.get("t_c") or 0.0) if result.get("shifted") else 0.0
    line = np.exp(result["intercept"]) * np.maximum(t - shift, 1.0) ** result["alpha"]
    if shift:  # eq. (32): R − R(t_c) was fitted on t − t_c; draw it back on R
        line = line + float(np.interp(shift, ok["step"], ok["displacement"]))
    ax.loglog(t, line, color="tab:red", lw=1.6, label=f"α = {result['alpha']:.3f} ± {result['alpha_se']:.3f}")
    if result.get("crossover"):
        ax.axvline(
            float(result["t_c"]), color="tab:red", ls=":", lw=1, label=f"crossover t_c = {result['t_c']:g}"
        )
    ax.set(xlabel="step t", ylabel="R(t)", title=title)
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def llc(llc_table: pd.DataFrame, result: dict, last: int, title: str, path: Path) -> Path:
    """λ̂ at each estimated step with ±1 MCSE error bars (capped), the last `last` estimates that
    make λ_final marked, λ_final and λ̄ as lines; failed estimates as crosses on the axis."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=SIZE, layout="constrained")
    ok = llc_table[llc_table["status"] == "ok"].sort_values("step")
    err = ok["llc_mcse"] if "llc_mcse" in ok else None
    ax.errorbar(
        ok["step"],
        ok["llc"],
        yerr=err,
        fmt="o",
        ms=3,
        color="tab:blue",
        ecolor="tab:blue",
        elinewidth=0.8,
        capsize=2,
        label="λ̂ ± MCSE",
    )
    tail = ok.tail(last)
    if len(tail):
        ax.hlines(
            result["lambda_final"],
            tail["step"].min(),
            tail["step"].max(),
            color="tab:red",
            lw=1.6,
            label=f"λ_final = {result['lambda_final']:.4g} (last {len(tail)})",
        )
    if np.isfinite(result.get("lambda_bar", np.nan)):
        ax.axhline(result["lambda_bar"], color="0.4", ls="--", lw=1, label=f"λ̄ = {result['lambda_bar']:.4g}")
    failed = llc_table[llc_table["status"] != "ok"]
    if len(failed):
        ax.plot(
            failed["step"], np.zeros(len(failed)), "x", color="tab:orange", label=f"failed ({len(failed)})"
        )
    ax.set(xlabel="step t", ylabel="λ̂ (LLC)", title=title)
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, frameon=False)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
