"""Histograms over a sweep's runs: the diffusion exponent 2 − d_walk (first version, Fig. 4) and the
r² of the displacement fits (Fig. 18)."""

from __future__ import annotations

import matplotlib
import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from analysis.aggregate import RunSeries
from analysis.figures.style import palette
from analysis.tables import require


def histogram(
    table: pd.DataFrame, swept: list[str], column: str, xlabel: str, title: str
) -> tuple[Figure, plt.Axes]:
    """A histogram of `column` over the runs (one per optimizer when the sweep compares them)."""
    require(table, column)
    d = table.dropna(subset=[column])
    hue = "optimizer" if "optimizer" in swept else None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sns.histplot(
        d,
        x=column,
        hue=hue,
        bins=min(30, max(5, len(d) // 2)),
        palette=palette(d, hue),
        element="step",
        ax=ax,
    )
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set(xlabel=xlabel, ylabel="runs", title=title)
    return fig, ax


def diffusion_exponent_histogram(table: pd.DataFrame, series: RunSeries, swept: list[str]) -> Figure:
    """The first version's Fig. 4: histogram of the diffusion exponent 2 − d_walk (0 = Brownian,
    < 0 = sub-diffusive)."""
    xlabel = r"diffusion exponent $2 - d_{\mathrm{walk}}$ of $D_\xi \propto \xi^{2-d_{walk}}$"
    fig, ax = histogram(table, swept, "diffusion_exponent", xlabel, "Diffusion exponent (< 0: sub-diffusive)")
    ax.axvline(0, color="k", ls="--", lw=1)
    ax.text(0.01, 0.98, " Brownian\n (d_walk = 2)", transform=ax.get_xaxis_transform(), va="top", fontsize=8)
    fig.tight_layout()
    return fig


def r2_histogram(table: pd.DataFrame, series: RunSeries, swept: list[str]) -> Figure:
    """Fig. 18: histogram of the r² of the log-log fits."""
    xlabel = r"$r^2$ of the fit $\log R = \alpha \log t + c$"
    fig, _ = histogram(table, swept, "r2", xlabel, "Goodness of the displacement fit")
    fig.tight_layout()
    return fig
