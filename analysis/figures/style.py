"""What every figure shares: axis labels in the paper's words, one colour per swept value, one
panel per optimizer, legends outside the axes."""

from __future__ import annotations

import matplotlib
import pandas as pd
import seaborn as sns

from analysis.checks import correlation

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


def label(name: str) -> str:
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


def log_ticks(ax, values: pd.Series) -> None:
    """A log x axis ticked at the swept values themselves (0.001, 32, ...), not at 10^k."""
    ax.set_xscale("log")
    ticks = sorted(pd.unique(values.dropna()))
    if len(ticks) <= 8:
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def correlation_title(d: pd.DataFrame, x: str, y: str, by: str | None) -> str:
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


def palette(table: pd.DataFrame, hue: str | None) -> dict | None:
    """Level -> colour over the sorted levels, so an optimizer or lr has one colour in every figure."""
    if hue is None:
        return None
    levels = sorted(table[hue].dropna().unique())
    colors = sns.color_palette("colorblind" if hue == "optimizer" else "viridis", len(levels))
    return dict(zip(levels, colors))


def run_lines(ax, d: pd.DataFrame, y: str, hue: str | None, sub: pd.DataFrame, legend) -> None:
    """One line per run of `d` (step against `y`), coloured by `hue` with the sweep's colours."""
    sns.lineplot(
        d,
        x="step",
        y=y,
        hue=hue,
        units="run_id",
        estimator=None,
        lw=0.9,
        alpha=0.8,
        palette=palette(sub, hue),
        ax=ax,
        legend=legend,
    )


def optimizer_facets(table: pd.DataFrame, swept: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """One panel per optimizer when the sweep compares optimizers, else one panel."""
    if "optimizer" in swept and table["optimizer"].nunique() > 1:
        return [(f"optimizer: {k}", g) for k, g in table.groupby("optimizer")]
    return [("", table)]


def with_config(series: pd.DataFrame, table: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Per-run curves joined with the run's config values."""
    keep = ["run_id", *[c for c in cols if c in table and c != "run_id"]]
    return series.merge(table[keep], on="run_id")


def legend_outside(ax, title: str | None = None) -> None:
    """The legend beside the axes, titled (`title`, else the title seaborn gave it: the hue's name)."""
    legend = ax.get_legend()
    if legend is not None:
        kept = title or (legend.get_title().get_text() or None)
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), title=kept, frameon=False)


def about(d: pd.DataFrame) -> str:
    """'data: fashion_mnist · model: MLP 128-64 · SGLD paper': the runs' data set, model(s) and λ
    preset(s), for a figure's caption."""
    parts = []
    for col, prefix in (("dataset", "data: "), ("model", "model: "), ("llc", "SGLD ")):
        if col in d and not pd.api.types.is_numeric_dtype(d[col]):
            values = sorted({str(x) for x in d[col].dropna()})
            if values:
                parts.append(prefix + ("; ".join(values) if len(values) <= 2 else f"{len(values)} kinds"))
    return " · ".join(parts) or "data n/a"
