"""The paper's checks on a sweep table: Lemma 3.4, Corollary 3.3, and the correlations.

Verdicts are recomputed from the numbers (the run's own `verdict.*` tag is shown beside them):
`holds` (d_s ≤ bound), `within_error` (d_s > bound, but the fit stage's bootstrap interval of
d_s − bound reaches 0: `margin_*_low` ≤ 0, when the run has one), `violated`, `n/a`
(a side is missing or not finite). The bound is the one the fit compared with (`fit_lambda_*`:
a phase's λ with `fit.phase`), else the llc stage's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from pipeline.tracking import names

VERDICTS = ("holds", "within_error", "violated", "n/a")


MARGINS = {"lambda_final": "margin_lemma_3_4_low", "lambda_bar": "margin_corollary_3_3_low"}


def verdicts(table: pd.DataFrame, bound: str) -> pd.Series:
    """d_s ≤ `bound` (a column: lambda_final or lambda_bar) per run."""
    nan = pd.Series(np.nan, index=table.index)
    d_s = table.get("d_s", nan).astype(float)
    lam = table.get(f"fit_{bound}", nan).astype(float).fillna(table.get(bound, nan).astype(float))
    margin_low = table.get(MARGINS[bound], nan).astype(float)
    out = pd.Series("violated", index=table.index)
    out[d_s <= lam] = "holds"
    out[(d_s > lam) & (margin_low <= 0)] = "within_error"
    out[~(np.isfinite(d_s) & np.isfinite(lam))] = "n/a"
    return out


def bound_check(table: pd.DataFrame, bound: str, tag: str) -> tuple[dict[str, int], pd.DataFrame]:
    """Counts per verdict and the runs that do not hold (run, α ± se, window, d_s, bound)."""
    v = verdicts(table, bound)
    counts = {k: int((v == k).sum()) for k in VERDICTS}
    cols = [
        c
        for c in (
            "run_name",
            "run_id",
            "d_s",
            "d_s_ci_low",
            "d_s_ci_high",
            bound,
            f"fit_{bound}",
            MARGINS[bound],
            "alpha",
            "alpha_se",
            "r2",
            "fit.window",
            tag,
        )
        if c in table
    ]
    bad = table.loc[v.isin(["violated", "within_error"]), cols].assign(
        verdict=v[v.isin(["violated", "within_error"])]
    )
    return counts, bad.reset_index(drop=True)


def lemma_3_4(table: pd.DataFrame) -> tuple[dict[str, int], pd.DataFrame]:
    """Lemma 3.4: d_s ≤ λ_final."""
    return bound_check(table, "lambda_final", "verdict.lemma_3_4")


def corollary_3_3(table: pd.DataFrame) -> tuple[dict[str, int], pd.DataFrame]:
    """Corollary 3.3: d_s ≤ λ̄."""
    return bound_check(table, "lambda_bar", "verdict.corollary_3_3")


def correlation(x: pd.Series, y: pd.Series) -> dict[str, float]:
    """Pearson and Spearman coefficients with their p-values on the finite pairs."""
    xy = pd.DataFrame({"x": pd.to_numeric(x, errors="coerce"), "y": pd.to_numeric(y, errors="coerce")})
    xy = xy[np.isfinite(xy["x"]) & np.isfinite(xy["y"])]
    n = len(xy)
    out = {"n": n, "pearson_r": np.nan, "pearson_p": np.nan, "spearman_rho": np.nan, "spearman_p": np.nan}
    if n < 3 or xy["x"].nunique() < 2 or xy["y"].nunique() < 2:
        return out
    pr = stats.pearsonr(xy["x"], xy["y"])
    sr = stats.spearmanr(xy["x"], xy["y"])
    out.update(
        pearson_r=float(pr.statistic),
        pearson_p=float(pr.pvalue),
        spearman_rho=float(sr.statistic),
        spearman_p=float(sr.pvalue),
    )
    return out


def correlation_pairs(table: pd.DataFrame, swept: list[str]) -> list[tuple[str, str]]:
    """The (x, y) pairs the checks correlate (λ and d_s against performance and the swept values;
    total displacement against the average learning rate, Fig. 2b) that this table has data for."""
    pairs = [(q, perf) for q in ("lambda_final", "d_s") for perf in ("gen_error", "test_acc")]
    for axis in ("lr", "batch", "momentum"):
        if axis in swept:
            pairs += [(q, axis) for q in ("lambda_final", "d_s")]
    pairs.append(("total_displacement", "avg_lr"))  # Fig. 2b
    return [(x, y) for x, y in pairs if x in table and y in table]


def correlations(table: pd.DataFrame, swept: list[str]) -> pd.DataFrame:
    """One row per (group, x, y): over all finished runs, and per optimizer when it is swept
    (the paper's appendix H reads SGD and Adam separately)."""
    groups = [("all", table)]
    if "optimizer" in swept:
        groups += [(str(k), g) for k, g in table.groupby("optimizer")]
    rows = [
        {"group": name, "x": x, "y": y, **correlation(g[x], g[y])}
        for name, g in groups
        for x, y in correlation_pairs(table, swept)
    ]
    return pd.DataFrame(
        rows, columns=["group", "x", "y", "n", "pearson_r", "pearson_p", "spearman_rho", "spearman_p"]
    )


def negatives(table: pd.DataFrame) -> list[str]:
    """Negative λ or d_s (near initialization, Table 8): reported, never dropped."""
    lines = []
    for col in ("lambda_final", "d_s"):
        if col in table:
            neg = table.loc[table[col] < 0, "run_name"].tolist() if "run_name" in table else []
            lines.append(
                f"negative {col}: {len(neg)} runs" + (f" ({', '.join(map(str, neg))})" if neg else "")
            )
    flags = (names.LLC_NEGATIVE, names.LLC_NONSTATIONARY, names.LLC_RHAT_HIGH, names.LLC_ESS_LOW)
    for tag in (*flags, names.LLC_FAILED):
        if tag in table:
            n = pd.to_numeric(table[tag], errors="coerce")
            lines.append(
                f"{tag.removeprefix('llc.')}: {int(n.sum())} λ estimates in {int((n > 0).sum())} runs"
            )
    return lines


def _fmt(v: float) -> str:
    return "n/a" if not np.isfinite(v) else f"{v:.4g}"


def report(sweep: str, table: pd.DataFrame, not_finished: pd.DataFrame, swept: list[str]) -> str:
    """The short text report of the checks (printed and saved beside the table)."""
    lines = [f"sweep {sweep}: {len(table)} finished runs, {len(not_finished)} not finished"]
    lines += [f"  swept: {', '.join(swept) if swept else 'nothing (a single configuration)'}"]
    for _, r in not_finished.iterrows():
        lines.append(f"  not finished: {r['run_name']} ({r['run_id']}) {r['status']}: {r['reason']}")
    if "llc" in swept and table["llc"].nunique() > 1:  # each claim per SGLD preset: λ differs by preset
        within = [s for s in swept if s != "llc"]
        for preset, group in table.groupby("llc", sort=True):
            lines.append(f"SGLD preset {preset} ({len(group)} runs):")
            lines += ["  " + line for line in _claims(group, within)]
        return "\n".join(lines)
    return "\n".join(lines + _claims(table, swept))


def _claims(table: pd.DataFrame, swept: list[str]) -> list[str]:
    """The bound checks, the negatives and the correlations of `table`'s runs."""
    lines: list[str] = []
    for title, (counts, bad), bound in (
        ("Lemma 3.4      d_s ≤ λ_final", lemma_3_4(table), "lambda_final"),
        ("Corollary 3.3  d_s ≤ λ̄", corollary_3_3(table), "lambda_bar"),
    ):
        lines.append(f"{title}: " + ", ".join(f"{counts[k]} {k}" for k in VERDICTS))
        for _, r in bad.iterrows():
            alpha = f"α = {_fmt(r.get('alpha', np.nan))} ± {_fmt(r.get('alpha_se', np.nan))}"
            lines.append(
                f"  {r['verdict']}: {r.get('run_name', '')} ({r['run_id']}) d_s = {_fmt(r['d_s'])} > "
                f"{_fmt(r[bound])}, {alpha}, window {r.get('fit.window', 'n/a')}"
            )
    lines += negatives(table)
    corr = correlations(table, swept)
    if not corr.empty:
        lines.append("Correlations (Pearson r [p], Spearman ρ [p], n):")
        for _, c in corr.iterrows():
            lines.append(
                f"  {c['group']:>5}  {c['x']} vs {c['y']}: "
                f"r = {_fmt(c['pearson_r'])} [{_fmt(c['pearson_p'])}], "
                f"ρ = {_fmt(c['spearman_rho'])} [{_fmt(c['spearman_p'])}], n = {c['n']}"
            )
    return lines
