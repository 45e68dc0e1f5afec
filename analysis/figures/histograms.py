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
        palette=palette(d, hue),
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


def r2_histogram(table: pd.DataFrame, series: RunSeries, swept: list[str]) -> Figure:
    """Fig. 18: histogram of the r² of the log-log fits."""
    require(table, "r2")
    d = table.dropna(subset=["r2"])
    hue = "optimizer" if "optimizer" in swept else None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sns.histplot(
        d, x="r2", hue=hue, bins=min(30, max(5, len(d) // 2)), palette=palette(d, hue), element="step", ax=ax
    )
    ax.set(
        xlabel=r"$r^2$ of the fit $\log R = \alpha \log t + c$",
        ylabel="runs",
        title="Goodness of the displacement fit",
    )
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    fig.tight_layout()
    return fig
