"""The paper's figures from a sweep table and the runs' curves (seaborn; PNG and PDF).

One function per figure: `fn(table, series, swept) -> Figure`, where `table` holds the finished
runs, `series` their curves (`aggregate.RunSeries`) and `swept` the config values the sweep
varies. A function raises `Missing` when the sweep lacks its data; `write_all` turns that into a
one-line skip.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from analysis.aggregate import RunSeries  # noqa: E402
from analysis.checks import correlation  # noqa: E402
from analysis.tables import Missing, require  # noqa: E402

LABELS = {
    "lambda_final": r"$\lambda_{\mathrm{final}}$",
    "lambda_bar": r"$\bar\lambda$ (time average)",
    "d_s": r"spectral dimension $d_s$",
    "gen_error": "generalization error (test − train loss)",
    "test_acc": "test accuracy",
    "lr": "learning rate",
    "batch": "batch size",
    "momentum": "momentum",
    "avg_lr": "average learning rate",
    "total_displacement": r"total displacement $\|w_T - w_0\|$",
    "optimizer": "optimizer",
    "num_params": "parameters",
    "seed": "seed",
}
LOG_AXES = ("lr", "batch", "avg_lr")
MAX_CURVE_PANELS = 4


def _label(name: str) -> str:
    return LABELS.get(name, name)


def run_label(row: pd.Series, swept: list[str]) -> str:
    """'adam, lr 0.001, batch 128, seed 1': the run's swept values, in the paper's words."""
    parts = []
    for axis in swept:
        if axis not in row or "." in axis:  # helper keys like ablation.lr_level repeat lr
            continue
        v = row[axis]
        parts.append(
            str(v)
            if axis == "optimizer"
            else f"{axis} {v:g}"
            if isinstance(v, float | int)
            else f"{axis} {v}"
        )
    return ", ".join(parts) or str(row.get("run_name", row.get("run_id", "")))


def _log_ticks(ax, values: pd.Series) -> None:
    """A log x axis ticked at the swept values themselves (0.001, 32, ...), not at 10^k."""
    ax.set_xscale("log")
    ticks = sorted(pd.unique(values.dropna()))
    if len(ticks) <= 8:
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def _correlation_title(d: pd.DataFrame, x: str, y: str, by: str | None) -> str:
    """Pearson r and Spearman ρ over all runs, and per optimizer when the sweep compares them."""
    c = correlation(d[x], d[y])
    text = f"all: r = {c['pearson_r']:.2f}, ρ = {c['spearman_rho']:.2f} (n = {c['n']})"
    if by:
        for k, g in d.groupby(by):
            c = correlation(g[x], g[y])
            text += f"\n{k}: r = {c['pearson_r']:.2f}, ρ = {c['spearman_rho']:.2f} (n = {c['n']})"
    return text


def hue_axis(table: pd.DataFrame, swept: list[str], exclude: tuple[str, ...] = ()) -> str | None:
    """The swept value curves and dots are coloured by: optimizer, else lr, batch, momentum."""
    for axis in ("optimizer", "lr", "batch", "momentum", *swept):
        if axis in swept and axis not in exclude and axis in table and table[axis].nunique() > 1:
            return axis
    return None


def _palette(table: pd.DataFrame, hue: str | None) -> dict | None:
    """Level -> colour over the sorted levels, so an optimizer or lr has one colour in every figure."""
    if hue is None:
        return None
    levels = sorted(table[hue].dropna().unique())
    colors = sns.color_palette("colorblind" if hue == "optimizer" else "viridis", len(levels))
    return dict(zip(levels, colors))


def _facets(table: pd.DataFrame, swept: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """One panel per optimizer when the sweep compares optimizers, else one panel."""
    if "optimizer" in swept and table["optimizer"].nunique() > 1:
        return [(f"optimizer: {k}", g) for k, g in table.groupby("optimizer")]
    return [("", table)]


def _curves(series: pd.DataFrame, table: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Per-run curves joined with the run's config values."""
    keep = ["run_id", *[c for c in cols if c in table and c != "run_id"]]
    return series.merge(table[keep], on="run_id")


def _legend_outside(ax, title: str | None = None) -> None:
    if ax.get_legend() is not None:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), title=title, frameon=False)


def displacement_curves(table: pd.DataFrame, series: RunSeries, swept: list[str]) -> Figure:
    """Fig. 1: R(t) against t, log-log, with the Brownian t^½ reference."""
    traj = series.trajectory
    require(traj, "displacement", "step")
    hue = hue_axis(table, swept, exclude=("optimizer",))
    facets = _facets(table, swept)
    fig, axes = plt.subplots(
        1, len(facets), figsize=(5.2 * len(facets) + 1.5, 4.2), squeeze=False, sharey=True
    )
    for ax, (title, sub) in zip(axes[0], facets):
        d = _curves(traj[traj["step"] > 0], sub, [hue] if hue else [])
        if d.empty:
            raise Missing("no trajectory.parquet in the finished runs")
        sns.lineplot(
            d,
            x="step",
            y="displacement",
            hue=hue,
            units="run_id",
            estimator=None,
            lw=0.9,
            alpha=0.8,
            palette=_palette(sub, hue),
            ax=ax,
            legend="full",
        )
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
        ax.legend(title=_label(hue) if hue else None, fontsize=8, title_fontsize=8, frameon=False)
    fig.suptitle("Weight displacement over training")
    fig.tight_layout()
    return fig


def layer_displacement(table: pd.DataFrame, series: RunSeries, swept: list[str]) -> Figure:
    """000 Fig. 12: R(t) of each parameter tensor, for one run per optimizer (the median-d_s run)."""
    traj = series.trajectory
    layer_cols = [c for c in traj.columns if c.startswith("displacement/")]
    if not layer_cols:
        raise Missing("no per-tensor displacement columns in trajectory.parquet")
    picks = []
    for _, sub in _facets(table, swept)[:MAX_CURVE_PANELS]:
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
            _legend_outside(ax, "parameter tensor")
    fig.suptitle("Per-layer displacement")
    fig.tight_layout()
    return fig


def _bound_scatter(table: pd.DataFrame, swept: list[str], bound: str, title: str) -> Figure:
    require(table, bound, "d_s")
    d = table.dropna(subset=[bound, "d_s"])
    hue = hue_axis(d, swept)
    size = "num_params" if "num_params" in d and d["num_params"].nunique() > 1 else None
    fig, ax = plt.subplots(figsize=(6.4, 5))
    # Error bars: the spread of the last λ estimates (the λ ± std of Tables 5-8) and the d_s interval.
    xerr = d["lambda_final_std"].fillna(0) if bound == "lambda_final" and "lambda_final_std" in d else None
    yerr = None
    if {"d_s_ci_low", "d_s_ci_high"} <= set(d.columns):
        yerr = np.vstack([d["d_s"] - d["d_s_ci_low"], d["d_s_ci_high"] - d["d_s"]]).clip(0)
    if xerr is not None or yerr is not None:
        ax.errorbar(d[bound], d["d_s"], xerr=xerr, yerr=yerr, fmt="none", ecolor="0.65", lw=0.8, zorder=1)
    style = "optimizer" if hue != "optimizer" and "optimizer" in swept else None
    sns.scatterplot(
        d,
        x=bound,
        y="d_s",
        hue=hue,
        size=size,
        sizes=(30, 250),
        palette=_palette(d, hue),
        style=style,
        ax=ax,
        alpha=0.9,
        zorder=2,
    )
    both = d[[bound, "d_s"]]
    hi = both.max().max() * 1.1
    # Values spanning decades crowd into one corner on linear axes: log axes when all are positive.
    log = bool((both > 0).all().all() and hi / both.min().min() > 30)
    lo = both.min().min() / 1.5 if log else min(0.0, both.min().min() - 0.05 * hi)
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label=r"$d_s = \lambda$", zorder=1)
    ax.fill_between(
        [lo, hi], [lo, hi], lo, color="0.9", lw=0, label=r"$d_s \leq \lambda$ (bound holds)", zorder=0
    )
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel=_label(bound), ylabel=_label("d_s"))
    if log:
        ax.set(xscale="log", yscale="log")
    bars = [
        *(["λ: std of the last estimates"] if xerr is not None else []),
        *(["d_s: 95 % bootstrap interval"] if yerr is not None else []),
    ]
    ax.set_title(title + (f"\n(bars: {'; '.join(bars)})" if bars else ""), fontsize=10)
    holds = int((d["d_s"] <= d[bound]).sum())
    ax.text(
        0.02,
        0.98,
        f"{holds} of {len(d)} runs on or below the line",
        transform=ax.transAxes,
        va="top",
        fontsize=9,
    )
    ax.legend(fontsize=8, frameon=False)
    _legend_outside(ax)
    fig.tight_layout()
    return fig


def lambda_vs_spectral_dimension(table: pd.DataFrame, series: RunSeries, swept: list[str]) -> Figure:
    """Fig. 2a: λ_final against d_s with the line d_s = λ (Lemma 3.4); dot size = parameters."""
    return _bound_scatter(table, swept, "lambda_final", r"Lemma 3.4: $d_s \leq \lambda_{\mathrm{final}}$")


def lambda_bar_vs_spectral_dimension(table: pd.DataFrame, series: RunSeries, swept: list[str]) -> Figure:
    """Fig. 21: λ̄ against d_s (Corollary 3.3)."""
    return _bound_scatter(table, swept, "lambda_bar", r"Corollary 3.3: $d_s \leq \bar\lambda$")


def llc_over_training(table: pd.DataFrame, series: RunSeries, swept: list[str]) -> Figure:
    """000 Fig. 8: λ(t) through training, one line per run."""
    llc = series.llc
    require(llc, "llc", "step")
    llc = llc[llc["status"] == "ok"] if "status" in llc else llc
    hue = hue_axis(table, swept, exclude=("optimizer",))
    facets = _facets(table, swept)
    fig, axes = plt.subplots(1, len(facets), figsize=(5.2 * len(facets) + 1.5, 4.2), squeeze=False)
    for ax, (title, sub) in zip(axes[0], facets):
        d = _curves(llc, sub, [hue] if hue else [])
        if d.empty:
            raise Missing("no llc.parquet in the finished runs")
        sns.lineplot(
            d,
            x="step",
            y="llc",
            hue=hue,
            units="run_id",
            estimator=None,
            lw=0.9,
            alpha=0.8,
            palette=_palette(sub, hue),
            ax=ax,
            legend="full" if hue else False,
        )
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
            ax.legend(title=_label(hue), fontsize=8, title_fontsize=8, frameon=False)
    fig.suptitle("Local learning coefficient through training")
    fig.tight_layout()
    return fig


def diffusion_exponent_histogram(table: pd.DataFrame, series: RunSeries, swept: list[str]) -> Figure:
    """000 Fig. 4: histogram of the diffusion exponent 2 − d_walk (0 = Brownian, < 0 = sub-diffusive)."""
    require(table, "diffusion_exponent")
    d = table.dropna(subset=["diffusion_exponent"])
    hue = "optimizer" if "optimizer" in swept else None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sns.histplot(
        d,
        x="diffusion_exponent",
        hue=hue,
        bins=min(30, max(5, len(d) // 2)),
        ax=ax,
        palette=_palette(d, hue),
        element="step",
    )
    ax.axvline(0, color="k", ls="--", lw=1)
    ax.text(0.01, 0.98, " Brownian\n (d_walk = 2)", transform=ax.get_xaxis_transform(), va="top", fontsize=8)
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set(
        xlabel=r"diffusion exponent $2 - d_{\mathrm{walk}}$ of $D_\xi \propto \xi^{2-d_{walk}}$",
        ylabel="runs",
        title="Diffusion exponent (< 0: sub-diffusive)",
    )
    fig.tight_layout()
    return fig


def _scatter_panels(
    table: pd.DataFrame, swept: list[str], xs: list[str], ys: list[str], title: str
) -> Figure:
    hue = hue_axis(table, swept)
    fig, axes = plt.subplots(len(ys), len(xs), figsize=(4.6 * len(xs) + 1.5, 3.8 * len(ys)), squeeze=False)
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            ax = axes[i][j]
            d = table.dropna(subset=[x, y])
            sns.scatterplot(
                d,
                x=x,
                y=y,
                hue=hue,
                palette=_palette(d, hue),
                ax=ax,
                alpha=0.85,
                legend=(i == 0 and j == len(xs) - 1),
            )
            ax.set(xlabel=_label(x), ylabel=_label(y))
            ax.set_title(
                _correlation_title(d, x, y, "optimizer" if "optimizer" in swept else None), fontsize=8
            )
            if x in LOG_AXES and (d[x] > 0).all():
                _log_ticks(ax, d[x])
            if i == 0 and j == len(xs) - 1 and hue:
                _legend_outside(ax, _label(hue))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def generalization(table: pd.DataFrame, series: RunSeries, swept: list[str]) -> Figure:
    """000 Fig. 5: λ_final and d_s against the generalization error."""
    require(table, "gen_error", "lambda_final", "d_s")
    return _scatter_panels(
        table, swept, ["gen_error"], ["lambda_final", "d_s"], "λ and d_s vs generalization error"
    )


def test_accuracy(table: pd.DataFrame, series: RunSeries, swept: list[str]) -> Figure:
    """Fig. 12, 13: d_s and λ_final against test accuracy."""
    require(table, "test_acc", "lambda_final", "d_s")
    return _scatter_panels(table, swept, ["test_acc"], ["d_s", "lambda_final"], "d_s and λ vs test accuracy")


def heatmaps(table: pd.DataFrame, series: RunSeries, swept: list[str]) -> Figure:
    """Fig. 7, 9: λ_final and d_s over learning rate × batch size, one row per optimizer
    (means over the other swept values, e.g. seeds)."""
    if not ("lr" in swept and "batch" in swept):
        raise Missing("the sweep does not vary both lr and batch")
    require(table, "lambda_final", "d_s")
    groups = [(k, g) for k, g in table.groupby("optimizer")] if "optimizer" in table else [("", table)]
    fig, axes = plt.subplots(len(groups), 2, figsize=(10, 3.6 * len(groups)), squeeze=False)
    for row, (opt, g) in zip(axes, groups):
        for ax, q in zip(row, ("lambda_final", "d_s")):
            pivot = g.pivot_table(index="batch", columns="lr", values=q, aggfunc="mean")
            pivot.columns = [f"{c:g}" for c in pivot.columns]
            sns.heatmap(pivot, annot=True, fmt=".3g", cmap="magma", ax=ax, cbar_kws={"label": _label(q)})
            ax.set(xlabel="learning rate", ylabel="batch size", title=f"{opt}: {_label(q)}")
            ax.invert_yaxis()
    fig.suptitle("λ and d_s over learning rate × batch size (mean over seeds)")
    fig.tight_layout()
    return fig


def hyperparameter_correlations(table: pd.DataFrame, series: RunSeries, swept: list[str]) -> Figure:
    """Fig. 8, 10, 11: λ_final and d_s against each swept lr, batch size and momentum."""
    axes_ = [a for a in ("lr", "batch", "momentum") if a in swept]
    if not axes_:
        raise Missing("the sweep varies none of lr, batch, momentum")
    require(table, "lambda_final", "d_s")
    hue = "optimizer" if "optimizer" in swept else None
    hue_order = sorted(table[hue].unique()) if hue else None
    fig, axes = plt.subplots(2, len(axes_), figsize=(4.6 * len(axes_) + 1.5, 7.4), squeeze=False)
    for i, q in enumerate(("lambda_final", "d_s")):
        for j, a in enumerate(axes_):
            ax = axes[i][j]
            d = table.dropna(subset=[a, q])
            sns.lineplot(
                d,
                x=a,
                y=q,
                hue=hue,
                palette=_palette(table, hue),
                hue_order=hue_order,
                marker="o",
                errorbar="sd",
                ax=ax,
                legend=(i == 0 and j == len(axes_) - 1),
            )
            ax.scatter(d[a], d[q], s=10, color="0.3", alpha=0.5, zorder=3, label="runs")
            if a in LOG_AXES:
                _log_ticks(ax, d[a])
            groups = [(k, g) for k, g in d.groupby(hue)] if hue else [("all", d)]
            text = ", ".join(f"{k}: ρ = {correlation(g[a], g[q])['spearman_rho']:.2f}" for k, g in groups)
            ax.set_title(f"Spearman {text}", fontsize=8)
            ax.set(xlabel=_label(a), ylabel=_label(q))
            if i == 0 and j == len(axes_) - 1 and hue:
                _legend_outside(ax, _label(hue))
    fig.suptitle("λ and d_s against the swept hyperparameters (line: mean ± sd over runs)")
    fig.tight_layout()
    return fig


def r2_histogram(table: pd.DataFrame, series: RunSeries, swept: list[str]) -> Figure:
    """Fig. 18: histogram of the r² of the log-log fits."""
    require(table, "r2")
    d = table.dropna(subset=["r2"])
    hue = "optimizer" if "optimizer" in swept else None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sns.histplot(
        d, x="r2", hue=hue, bins=min(30, max(5, len(d) // 2)), palette=_palette(d, hue), element="step", ax=ax
    )
    ax.set(
        xlabel=r"$r^2$ of the fit $\log R = \alpha \log t + c$",
        ylabel="runs",
        title="Goodness of the displacement fit",
    )
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    fig.tight_layout()
    return fig


def _predicted(fit: pd.Series, t: np.ndarray, r: np.ndarray) -> np.ndarray:
    """R(t) the fit predicts: e^c t^α, or R(t_c) + e^c (t − t_c)^α for a shifted fit (eq. 32)."""
    if bool(fit.get("shifted", False)):
        t_c = float(fit["t_c"])
        return np.interp(t_c, t, r) + np.exp(fit["intercept"]) * np.clip(t - t_c, 1e-12, None) ** fit["alpha"]
    return np.exp(fit["intercept"]) * t ** fit["alpha"]


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


def displacement_vs_learning_rate(table: pd.DataFrame, series: RunSeries, swept: list[str]) -> Figure:
    """Fig. 2b: total displacement against the average learning rate."""
    require(table, "total_displacement", "avg_lr")
    if table["avg_lr"].nunique() < 2:
        raise Missing("every run has the same average learning rate")
    return _scatter_panels(
        table, swept, ["avg_lr"], ["total_displacement"], "Total displacement vs average learning rate"
    )


FIGURES: dict[str, Callable[[pd.DataFrame, RunSeries, list[str]], Figure]] = {
    "fig01_displacement": displacement_curves,
    "fig02a_lambda_vs_ds": lambda_vs_spectral_dimension,
    "fig02b_displacement_vs_lr": displacement_vs_learning_rate,
    "fig07_09_heatmaps": heatmaps,
    "fig08_10_11_hyperparameters": hyperparameter_correlations,
    "fig12_13_test_accuracy": test_accuracy,
    "fig14_15_predicted_displacement": predicted_displacement,
    "fig18_r2_histogram": r2_histogram,
    "fig21_lambda_bar_vs_ds": lambda_bar_vs_spectral_dimension,
    "fig000_04_diffusion_exponent": diffusion_exponent_histogram,
    "fig000_05_generalization": generalization,
    "fig000_08_llc_over_training": llc_over_training,
    "fig000_12_layer_displacement": layer_displacement,
}


def write_all(
    table: pd.DataFrame, series: RunSeries, swept: list[str], folder: Path
) -> tuple[list[str], list[str]]:
    """Every figure the sweep has data for, as <name>.png and <name>.pdf; returns the names written
    and one line per figure skipped."""
    folder.mkdir(parents=True, exist_ok=True)
    sns.set_theme(style="whitegrid", context="notebook")
    written, skipped = [], []
    for name, fn in FIGURES.items():
        if table.empty:
            skipped.append(f"figure {name} skipped: no finished runs")
            continue
        try:
            fig = fn(table, series, swept)
        except Missing as e:
            skipped.append(f"figure {name} skipped: {e}")
            continue
        for ext in ("png", "pdf"):
            fig.savefig(folder / f"{name}.{ext}", dpi=150, bbox_inches="tight")
        plt.close(fig)
        written.append(name)
    return written, skipped
