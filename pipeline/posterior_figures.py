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
    ax.annotate(
        f"best ξ = {table2['best_xi']:.3g}\nKL = {table2['kl']:.3g}",
        (table2["best_xi"], table2["kl"]),
        textcoords="offset points",
        xytext=(8, 12),
        fontsize=8,
    )
    ax.set_xscale("log")
    if (sweep["kl"] > 0).all() and sweep["kl"].max() / max(sweep["kl"].min(), 1e-12) > 100:
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
    for i, v in enumerate(members.loc[chain_members, "llc"]):
        ax.axvline(v, color=COLORS["bayes"], lw=0.8, alpha=0.7, label="SGLD seeds" if i == 0 else None)
    ax.set_xlabel("local learning coefficient λ (devinterp SGLD, Table 3)")
    ax.set_ylabel("SGD solutions")
    ax.set_title(f"λ of {len(lam)} converged SGD solutions")
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
    ax.set_xticks(x, [f"{n}\nλ={lam:.2f}" for n, lam in zip(table["name"], table["lambda"])])
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.set_title(
        f"KL {table2['kl']:.3g}, W {table2['wasserstein']:.3g}, JS {table2['js']:.3g} at best ξ",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def cluster_functions(represent, centroids: np.ndarray, table: pd.DataFrame, data, path: Path) -> None:
    """Each cluster's mean predicted P(class 1) on the grid, with the training data."""
    g = represent.grid.numpy()
    n = int(round(np.sqrt(len(g))))
    k = len(centroids)
    fig, axes = plt.subplots(1, k, figsize=(2.4 * k, 2.6), squeeze=False)
    x, y = data.x_train.cpu().numpy(), data.y_train.cpu().numpy()
    for c, ax in enumerate(axes[0]):
        field = centroids[c][: n * n].reshape(n, n).T
        ax.contourf(
            g[:, 0].reshape(n, n)[:, 0],
            g[:, 1].reshape(n, n)[0],
            field,
            levels=20,
            cmap="RdBu_r",
            vmin=0,
            vmax=1,
        )
        ax.scatter(x[:, 0], x[:, 1], c=y, s=3, cmap="coolwarm", edgecolors="none")
        r = table.iloc[c]
        ax.set_title(f"{r['name']}: SGD {r['share_sgd']:.2f}, Bayes {r['share_bayes']:.2f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
