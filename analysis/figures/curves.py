"""Figures of curves through training: R(t) (Fig. 1, per tensor: the first version's Fig. 12),
λ(t) (first version, Fig. 8), and the fitted power law against the true R(t) (Fig. 14, 15, 20)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from analysis.aggregate import RunSeries
from analysis.checks import correlation
from analysis.figures.style import (
    MAX_CURVE_PANELS,
    hue_axis,
    label,
    legend_outside,
    optimizer_facets,
    run_label,
    run_lines,
    with_config,
)
from analysis.tables import Missing, require


def displacement_curves(table: pd.DataFrame, series: RunSeries, swept: list[str]) -> Figure:
    """Fig. 1: R(t) against t, log-log, with the Brownian t^½ reference, each run's fitted line over
    its window and the window shaded; runs coloured by what the sweep varied (seeds told apart)."""
    traj = series.trajectory
    require(traj, "displacement", "step")
    hue = hue_axis(table, swept, exclude=("optimizer",))
    facets = optimizer_facets(table, swept)
    fig, axes = plt.subplots(
        1, len(facets), figsize=(5.2 * len(facets) + 1.5, 4.2), squeeze=False, sharey=True
    )
    for ax, (title, sub) in zip(axes[0], facets):
        d = with_config(traj[traj["step"] > 0], sub, [hue] if hue else [])
        if d.empty:
            raise Missing("no trajectory.parquet in the finished runs")
        run_lines(ax, d, "displacement", hue, sub, legend="full")
        _fitted_lines(ax, series.fits, d)
        t = np.geomspace(d["step"].min(), d["step"].max(), 50)
        r_end = d.groupby("run_id")["displacement"].last().median()
        ax.plot(t, r_end * np.sqrt(t / t[-1]), "k--", lw=1.2, label=r"Brownian $\propto t^{1/2}$")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="step t",
            ylabel=r"displacement $R(t) = \|w_t - w_0\|$",
            title=title,
        )
        ax.legend(title=label(hue) if hue else None, fontsize=8, title_fontsize=8, frameon=False)
    fig.suptitle("Weight displacement over training")
    fig.tight_layout()
    return fig


def _predicted(fit: pd.Series, t: np.ndarray, r: np.ndarray) -> np.ndarray:
    """R(t) the fit predicts: e^c t^α, or R(t_c) + e^c (t − t_c)^α for a shifted fit (eq. 32)."""
    if bool(fit.get("shifted", False)):
        t_c = float(fit["t_c"])
        return np.interp(t_c, t, r) + np.exp(fit["intercept"]) * np.clip(t - t_c, 1e-12, None) ** fit["alpha"]
    return np.exp(fit["intercept"]) * t ** fit["alpha"]


def _fitted_lines(ax, fits: pd.DataFrame, traj: pd.DataFrame) -> None:
    """Each run's fitted power law (`_predicted`) over its fit window (red, dashed), and the
    windows' common span shaded: what α was measured on."""
    if fits is None or fits.empty or not {"alpha", "intercept", "t_start", "t_end"} <= set(fits.columns):
        return
    mine = fits[fits["run_id"].isin(traj["run_id"])].dropna(subset=["alpha", "intercept", "t_start", "t_end"])
    for i, (_, f) in enumerate(mine.iterrows()):
        run = traj[traj["run_id"] == f["run_id"]].sort_values("step")
        t, r = run["step"].to_numpy(float), run["displacement"].to_numpy(float)
        inside = (t >= max(float(f["t_start"]), 1.0)) & (t <= float(f["t_end"]))
        t, line = t[inside], _predicted(f, t, r)[inside]
        first = "fit over its window" if i == 0 else None
        ax.plot(t, line, color="tab:red", ls=(0, (4, 2)), lw=1.0, zorder=3, label=first)
    if len(mine):
        ax.axvspan(mine["t_start"].median(), mine["t_end"].median(), color="tab:blue", alpha=0.06, lw=0,
                   label="fit window (median)")  # fmt: skip


def layer_displacement(table: pd.DataFrame, series: RunSeries, swept: list[str]) -> Figure:
    """The first version's Fig. 12: R(t) of each parameter tensor, for one run per optimizer (the
    median-d_s run)."""
    traj = series.trajectory
    layer_cols = [c for c in traj.columns if c.startswith("displacement/")]
    if not layer_cols:
        raise Missing("no per-tensor displacement columns in trajectory.parquet")
    picks = []
    for _, sub in optimizer_facets(table, swept)[:MAX_CURVE_PANELS]:
        sub = sub.dropna(subset=["d_s"]) if "d_s" in sub else sub
        if sub.empty:
            continue
        row = (
            sub.iloc[(sub["d_s"] - sub["d_s"].median()).abs().argsort().iloc[0]]
            if "d_s" in sub
            else sub.iloc[0]
        )
        picks.append((run_label(row, swept), row["run_id"]))
    fig, axes = plt.subplots(1, len(picks), figsize=(5 * len(picks) + 2, 4.2), squeeze=False, sharey=True)
    for i, (ax, (name, rid)) in enumerate(zip(axes[0], picks)):
        d = traj[(traj["run_id"] == rid) & (traj["step"] > 0)]
        long = d.melt(id_vars="step", value_vars=layer_cols, var_name="tensor", value_name="R")
        long["tensor"] = long["tensor"].str.removeprefix("displacement/")
        sns.lineplot(
            long, x="step", y="R", hue="tensor", ax=ax, lw=1.1, palette="tab10", legend=i == len(picks) - 1
        )
        ax.set(
            xscale="log", yscale="log", xlabel="step t", ylabel=r"$\|w_t - w_0\|$ of the tensor", title=name
        )
        if i == len(picks) - 1:
            legend_outside(ax, "parameter tensor")
    fig.suptitle("Per-layer displacement")
    fig.tight_layout()
    return fig


def llc_over_training(table: pd.DataFrame, series: RunSeries, swept: list[str]) -> Figure:
    """The first version's Fig. 8: λ(t) through training, one line per run."""
    llc = series.llc
    require(llc, "llc", "step")
    llc = llc[llc["status"] == "ok"] if "status" in llc else llc
    hue = hue_axis(table, swept, exclude=("optimizer",))
    facets = optimizer_facets(table, swept)
    fig, axes = plt.subplots(1, len(facets), figsize=(5.2 * len(facets) + 1.5, 4.2), squeeze=False)
    for ax, (title, sub) in zip(axes[0], facets):
        d = with_config(llc, sub, [hue] if hue else [])
        if d.empty:
            raise Missing("no llc.parquet in the finished runs")
        run_lines(ax, d, "llc", hue, sub, legend="full" if hue else False)
        ax.axhline(0, color="0.5", lw=0.8)
        # A single wild estimate (a chain far from equilibrium) would squash every other line.
        lo, hi = d["llc"].quantile([0.01, 0.99])
        pad = 0.1 * (hi - lo)
        outside = int(((d["llc"] < lo - pad) | (d["llc"] > hi + pad)).sum())
        ax.set_ylim(lo - pad, hi + pad)
        if outside:
            title += f"\n({outside} estimate{'s' * (outside > 1)} outside the axis, 1-99 % range shown)"
        ax.set(xlabel="step t", ylabel=r"$\hat\lambda(t)$ (SGLD estimate)", title=title)
        if hue:
            ax.legend(title=label(hue), fontsize=8, title_fontsize=8, frameon=False)
    fig.suptitle("Local learning coefficient through training")
    fig.tight_layout()
    return fig


def predicted_displacement(table: pd.DataFrame, series: RunSeries, swept: list[str]) -> Figure:
    """Fig. 14, 15, 20: the fitted power law against the true R(t) for a few runs (left), and the
    predicted against the true displacement at the end of every run's fit window (right)."""
    fits, traj = series.fits, series.trajectory
    require(fits, "alpha", "intercept")
    require(traj, "displacement")
    fits = fits[fits["run_id"].isin(table["run_id"])].dropna(subset=["alpha", "intercept"])
    if fits.empty:
        raise Missing("no fit.json in the finished runs")
    names = {r["run_id"]: run_label(r, swept) for _, r in table.iterrows()}
    # A few runs that span the range of α, so the panel shows the spread, not 24 overlapping lines.
    ordered = fits.sort_values("alpha")
    show = ordered.iloc[
        np.unique(np.linspace(0, len(ordered) - 1, min(MAX_CURVE_PANELS, len(ordered))).astype(int))
    ]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 4.8))
    colors = sns.color_palette("colorblind", len(show))
    points = []
    for (_, f), color in zip(show.iterrows(), colors):
        d = traj[(traj["run_id"] == f["run_id"]) & (traj["step"] > 0)]
        t, r = d["step"].to_numpy(float), d["displacement"].to_numpy(float)
        ax.plot(
            t, r, color=color, lw=1.4, label=f"{names.get(f['run_id'], f['run_id'])} (α = {f['alpha']:.2f})"
        )
        win = (t >= f["t_start"]) & (t <= f["t_end"])
        ax.plot(t[win], _predicted(f, t, r)[win], color=color, ls="--", lw=1.2)
    for _, f in fits.iterrows():
        d = traj[(traj["run_id"] == f["run_id"]) & (traj["step"] > 0)]
        t, r = d["step"].to_numpy(float), d["displacement"].to_numpy(float)
        if len(t):
            end = np.searchsorted(t, f["t_end"], side="right") - 1
            points.append((r[end], _predicted(f, t, r)[end]))
    ax.plot([], [], "k--", lw=1.2, label=r"fit $e^{c}\,t^{\alpha}$ over the window")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="step t",
        ylabel=r"displacement $R(t)$",
        title="True (solid) vs predicted (dashed)",
    )
    ax.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
    p = np.array(points)
    bx.scatter(p[:, 0], p[:, 1], s=25, alpha=0.8)
    lo, hi = p.min() * 0.9, p.max() * 1.1
    bx.plot([lo, hi], [lo, hi], "k--", lw=1, label="predicted = true")
    c = correlation(pd.Series(p[:, 0]), pd.Series(p[:, 1]))
    bx.set(
        xlabel="true displacement at the window's end",
        ylabel="predicted displacement",
        title=f"All runs: Pearson r = {c['pearson_r']:.3f} (n = {c['n']})",
        xlim=(lo, hi),
        ylim=(lo, hi),
    )
    bx.legend(frameon=False)
    fig.tight_layout()
    return fig
