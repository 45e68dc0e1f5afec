"""λ and d_s against what a sweep varies and what runs reach: generalization error (first version,
Fig. 5), test accuracy (Fig. 12, 13), lr × batch heatmaps (Fig. 7, 9), each hyperparameter (Fig. 8,
10, 11), and total displacement against the average learning rate (Fig. 2b)."""

from __future__ import annotations

import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from analysis.aggregate import RunSeries
from analysis.checks import correlation
from analysis.figures.style import (
    LOG_AXES,
    correlation_title,
    hue_axis,
    label,
    legend_outside,
    log_ticks,
    palette,
)
from analysis.tables import Missing, require


def panels(table: pd.DataFrame, ys: list[str], xs: list[str], height: float):
    """A figure of len(ys) x len(xs) panels, and per panel: its axes, x, y, the runs that have
    both, and whether the legend goes there (the top right panel)."""
    fig, axes = plt.subplots(len(ys), len(xs), figsize=(4.6 * len(xs) + 1.5, height * len(ys)), squeeze=False)
    cells = [
        (axes[i][j], x, y, table.dropna(subset=[x, y]), i == 0 and j == len(xs) - 1)
        for i, y in enumerate(ys)
        for j, x in enumerate(xs)
    ]
    return fig, cells


def _scatter_panels(
    table: pd.DataFrame, swept: list[str], xs: list[str], ys: list[str], title: str
) -> Figure:
    hue = hue_axis(table, swept)
    fig, cells = panels(table, ys, xs, 3.8)
    for ax, x, y, d, legend in cells:
        sns.scatterplot(d, x=x, y=y, hue=hue, palette=palette(d, hue), ax=ax, alpha=0.85, legend=legend)
        ax.set(xlabel=label(x), ylabel=label(y))
        ax.set_title(correlation_title(d, x, y, "optimizer" if "optimizer" in swept else None), fontsize=8)
        if x in LOG_AXES and (d[x] > 0).all():
            log_ticks(ax, d[x])
        if legend and hue:
            legend_outside(ax, label(hue))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def generalization(table: pd.DataFrame, series: RunSeries, swept: list[str]) -> Figure:
    """The first version's Fig. 5: λ_final and d_s against the generalization error."""
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
            sns.heatmap(pivot, annot=True, fmt=".3g", cmap="magma", ax=ax, cbar_kws={"label": label(q)})
            ax.set(xlabel="learning rate", ylabel="batch size", title=f"{opt}: {label(q)}")
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
    fig, cells = panels(table, ["lambda_final", "d_s"], axes_, 3.7)
    for ax, a, q, d, legend in cells:
        sns.lineplot(
            d,
            x=a,
            y=q,
            hue=hue,
            palette=palette(table, hue),
            hue_order=hue_order,
            marker="o",
            errorbar="sd",
            ax=ax,
            legend=legend,
        )
        ax.scatter(d[a], d[q], s=10, color="0.3", alpha=0.5, zorder=3, label="runs")
        if a in LOG_AXES:
            log_ticks(ax, d[a])
        groups = [(k, g) for k, g in d.groupby(hue)] if hue else [("all", d)]
        text = ", ".join(f"{k}: ρ = {correlation(g[a], g[q])['spearman_rho']:.2f}" for k, g in groups)
        ax.set_title(f"Spearman {text}", fontsize=8)
        ax.set(xlabel=label(a), ylabel=label(q))
        if legend and hue:
            legend_outside(ax, label(hue))
    fig.suptitle("λ and d_s against the swept hyperparameters (line: mean ± sd over runs)")
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
