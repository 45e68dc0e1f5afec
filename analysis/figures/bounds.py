"""The bounds: λ_final against d_s with the line d_s = λ (Fig. 2a, Lemma 3.4) and λ̄ against d_s
(Fig. 21, Corollary 3.3)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from analysis.aggregate import RunSeries
from analysis.checks import verdicts
from analysis.figures.style import hue_axis, label, legend_outside, palette
from analysis.tables import require


def _bound_scatter(table: pd.DataFrame, swept: list[str], bound: str, title: str) -> Figure:
    require(table, bound, "d_s")
    d = table.dropna(subset=[bound, "d_s"])
    hue = hue_axis(d, swept)
    size = "num_params" if "num_params" in d and d["num_params"].nunique() > 1 else None
    if size:  # a count: the legend shows 1642, not 1642.0
        d = d.assign(num_params=d["num_params"].round().astype("Int64"))
    fig, ax = plt.subplots(figsize=(6.4, 5))
    # Error bars: the spread of the last λ estimates (the λ ± std of Tables 5-8) and the d_s interval.
    xerr = d["lambda_final_std"].fillna(0) if bound == "lambda_final" and "lambda_final_std" in d else None
    yerr = None
    if {"d_s_ci_low", "d_s_ci_high"} <= set(d.columns):
        yerr = np.vstack([d["d_s"] - d["d_s_ci_low"], d["d_s_ci_high"] - d["d_s"]]).clip(0)
    if xerr is not None or yerr is not None:  # capped, darker than the grid, clipped to the axes
        ax.errorbar(d[bound], d["d_s"], xerr=xerr, yerr=yerr, fmt="none", ecolor="0.35", elinewidth=0.9,
                    capsize=2.5, capthick=0.9, zorder=1, clip_on=True)  # fmt: skip
    style = "optimizer" if hue != "optimizer" and "optimizer" in swept else None
    sns.scatterplot(
        d,
        x=bound,
        y="d_s",
        hue=hue,
        size=size,
        sizes=(30, 250),
        palette=palette(d, hue),
        style=style,
        ax=ax,
        alpha=0.9,
        zorder=2,
    )
    both = d[[bound, "d_s"]]
    if yerr is not None:  # the limits hold the error bars, not only the points
        both = pd.concat([both, d[["d_s_ci_low", "d_s_ci_high"]].set_axis(["d_s", bound], axis=1)])
    if xerr is not None:
        both = pd.concat([both, pd.DataFrame({bound: d[bound] + xerr, "d_s": d["d_s"]})])
    hi = both.max().max() * 1.1
    # Values spanning decades crowd into one corner on linear axes: log axes when all are positive.
    log = bool((both > 0).all().all() and hi / both.min().min() > 30)
    lo = both.min().min() / 1.5 if log else min(0.0, both.min().min() - 0.05 * hi)
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label=r"$d_s = \lambda$", zorder=1)
    ax.fill_between(
        [lo, hi], [lo, hi], lo, color="0.9", lw=0, label=r"$d_s \leq \lambda$ (bound holds)", zorder=0
    )
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel=label(bound), ylabel=label("d_s"))
    if log:
        ax.set(xscale="log", yscale="log")
    bars = [
        *(["λ: std of the last estimates"] if xerr is not None else []),
        *(["d_s: 95 % bootstrap interval"] if yerr is not None else []),
    ]
    ax.set_title(title + (f"\n(bars: {'; '.join(bars)})" if bars else ""), fontsize=10)
    # The verdicts as the checks count them: within error (the interval of d_s − bound reaches 0)
    # ringed apart from violations (crossed), and each counted apart.
    v = verdicts(d, bound)
    for kind, marker, color in (("within_error", "o", "tab:orange"), ("violated", "s", "tab:red")):
        pick = d[v == kind]
        if len(pick):  # unfilled, so the run's own colour stays visible inside
            ax.scatter(pick[bound], pick["d_s"], s=150, marker=marker, facecolors="none", edgecolors=color,
                       linewidths=1.5, zorder=3, label=kind.replace("_", " "))  # fmt: skip
    counts = {k: int((v == k).sum()) for k in ("holds", "within_error", "violated")}
    ax.text(
        0.02,
        0.98,
        f"of {len(d)} runs: {counts['holds']} hold, {counts['within_error']} within error, "
        f"{counts['violated']} violated",
        transform=ax.transAxes,
        va="top",
        fontsize=9,
    )
    ax.legend(fontsize=8, frameon=False)
    legend_outside(ax, title=label(hue) if hue else None)
    fig.tight_layout()
    return fig


def lambda_vs_spectral_dimension(table: pd.DataFrame, series: RunSeries, swept: list[str]) -> Figure:
    """Fig. 2a: λ_final against d_s with the line d_s = λ (Lemma 3.4); dot size = parameters."""
    return _bound_scatter(table, swept, "lambda_final", r"Lemma 3.4: $d_s \leq \lambda_{\mathrm{final}}$")


def lambda_bar_vs_spectral_dimension(table: pd.DataFrame, series: RunSeries, swept: list[str]) -> Figure:
    """Fig. 21: λ̄ against d_s (Corollary 3.3)."""
    return _bound_scatter(table, swept, "lambda_bar", r"Corollary 3.3: $d_s \leq \bar\lambda$")
