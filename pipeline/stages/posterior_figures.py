"""Figures of the posterior-concentration experiment (Fig. 3, 4a, 4b), written as PNG files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

COLORS = {"sgd": "tab:blue", "bayes": "tab:orange", "tempered": "tab:green"}


def kl_vs_xi(sweep: pd.DataFrame, table2: dict, path: Path) -> None:
    """Fig. 3: KL(Bayes ‖ tempered SGD) against ξ, with ξ = 1 (no tempering) and the best ξ."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(sweep["xi"], sweep["kl"], "o-", ms=3, color=COLORS["tempered"], label="KL(Bayes ‖ tempered SGD)")
    ax.axhline(
        table2["untempered"]["kl"], color=COLORS["sgd"], ls="--", lw=1, label="KL(Bayes ‖ SGD), no tempering"
    )
    ax.axvline(table2["best_xi"], color="0.5", ls=":", lw=1)
    ax.axvline(0.5, color="tab:red", ls=":", lw=1, label="paper's best ξ = 0.5")
    if table2["best_xi"] in (sweep["xi"].min(), sweep["xi"].max()):
        ax.text(
            0.02,
            0.02,
            "minimum at the edge of the ξ grid",
            transform=ax.transAxes,
            fontsize=8,
            color="tab:red",
        )
    ax.annotate(
        f"best ξ = {table2['best_xi']:.3g}\nKL = {table2['kl']:.3g}",
        (table2["best_xi"], table2["kl"]),
        textcoords="offset points",
        xytext=(-75 if table2["best_xi"] > np.median(sweep["xi"]) else 8, 12),
        fontsize=8,
    )
    ax.set_xscale("log")
    if (sweep["kl"] > 0).all() and sweep["kl"].max() / max(sweep["kl"].min(), 1e-12) > 10:
        ax.set_yscale("log")
    ax.set_xlabel("characteristic length scale ξ")
    ax.set_ylabel("KL divergence (nats)")
    ax.set_title("Tempering SGD towards the Bayesian posterior")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def llc_histogram(members: pd.DataFrame, keep: np.ndarray, chain_members: np.ndarray, path: Path) -> None:
    """Fig. 4a: λ of the converged SGD solutions (the SGLD seeds marked)."""
    lam = members.loc[keep, "llc"].dropna()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(lam, bins=min(40, max(10, len(lam) // 10)), color=COLORS["sgd"], alpha=0.8)
    if lam.min() < 0:  # negative estimates (an artefact of the estimator) against zero
        ax.axvline(0.0, color="0.3", lw=0.8)
    for i, v in enumerate(members.loc[chain_members, "llc"]):
        ax.axvline(v, color=COLORS["bayes"], lw=0.8, alpha=0.7, label="SGLD seeds" if i == 0 else None)
    ax.set_xlabel("local learning coefficient λ (devinterp SGLD, Table 3)")
    ax.set_ylabel("SGD solutions")
    neg = float((lam < 0).mean())
    ax.set_title(f"λ of {len(lam)} converged SGD solutions ({neg:.0%} negative)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def cluster_shares(table: pd.DataFrame, table2: dict, path: Path) -> None:
    """Fig. 4b: per cluster, the share of SGD solutions, Bayes samples and tempered SGD."""
    x = np.arange(len(table))
    w = 0.27
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(table) + 2), 3.5))
    for j, (col, key, label) in enumerate(
        [
            ("share_sgd", "sgd", "SGD"),
            ("share_bayes", "bayes", "Bayes (SGLD)"),
            ("share_tempered", "tempered", f"tempered SGD (ξ = {table2['best_xi']:.3g})"),
        ]
    ):
        ax.bar(x + (j - 1) * w, table[col], w, color=COLORS[key], label=label)
    ticks = [f"{r['name']}\nλ={r['lambda']:.2f}\n{r['n_sgd']} runs" for _, r in table.iterrows()]
    ax.set_xticks(x, ticks)
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.set_title(
        f"at best ξ: KL {table2['kl']:.3g}, W {table2['wasserstein']:.3g}, JS {table2['js']:.3g}"
        "   (paper, ξ = 0.5: 0.009, 0.002, 0.003)",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def cluster_functions(represent, centroids: np.ndarray, table: pd.DataFrame, data, path: Path) -> None:
    """Top: each cluster's mean predicted P(class 1) on the grid (0.5 contour in black), with the
    training data. Bottom: its difference from the SGD-weighted mean, where clusters differ."""
    g = represent.grid.numpy()
    n = int(round(np.sqrt(len(g))))
    k = len(centroids)
    fig, axes = plt.subplots(2, k, figsize=(2.4 * k, 5.0), squeeze=False)
    x, y = data.x_train.cpu().numpy(), data.y_train.cpu().numpy()
    g0, g1 = g[:, 0].reshape(n, n)[:, 0], g[:, 1].reshape(n, n)[0]
    fields = centroids[:, : n * n].reshape(k, n, n).transpose(0, 2, 1)
    mean = np.tensordot(table["share_sgd"].to_numpy(), fields, axes=1)
    span = max(float(np.abs(fields - mean).max()), 1e-6)
    for c in range(k):
        top, bottom = axes[0, c], axes[1, c]
        top.contourf(g0, g1, fields[c], levels=np.linspace(0, 1, 21), cmap="RdBu_r")
        top.contour(g0, g1, fields[c], levels=[0.5], colors="k", linewidths=0.8)
        top.scatter(x[:, 0], x[:, 1], c=y, s=2, cmap="coolwarm", edgecolors="none")
        r = table.iloc[c]
        top.set_title(f"{r['name']}: SGD {r['share_sgd']:.2f}, Bayes {r['share_bayes']:.2f}", fontsize=8)
        im = bottom.contourf(g0, g1, fields[c] - mean, levels=np.linspace(-span, span, 21), cmap="PuOr")
        bottom.set_title(f"Δ from mean, max {np.abs(fields[c] - mean).max():.2f}", fontsize=8)
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.45, anchor=(0.0, 0.0), label="Δ P(class 1)")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
