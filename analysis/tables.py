"""The paper's tables from a sweep table, written as Markdown and LaTeX.

Each `table_*` function takes the finished runs and returns a DataFrame shaped like the paper's
table, or raises `Missing` naming what the sweep lacks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


class Missing(ValueError):
    """The sweep lacks the data a table or figure needs (the message says what)."""


def require(table: pd.DataFrame, *cols: str, min_rows: int = 1) -> None:
    lacking = [c for c in cols if c not in table or table[c].notna().sum() == 0]
    if lacking:
        raise Missing(f"no {', '.join(lacking)} in the sweep")
    if len(table) < min_rows:
        raise Missing(f"needs at least {min_rows} finished runs, the sweep has {len(table)}")


def _pm(mean: float, std: float) -> str:
    return f"{mean:.3f}" if not np.isfinite(std) else f"{mean:.3f} ± {std:.3f}"


def _interval(lo: float, hi: float) -> str:
    return f"[{lo:.3g}, {hi:.3g}]" if np.isfinite(lo) and np.isfinite(hi) else "n/a"


def _ci(table: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """The runs' bootstrap interval of d_s (NaN for runs fitted before the fit stage wrote it)."""
    nan = pd.Series(np.nan, index=table.index)
    return table.get("d_s_ci_low", nan).astype(float), table.get("d_s_ci_high", nan).astype(float)


def _presets(table: pd.DataFrame) -> bool:
    """More than one SGLD preset (`llc`, a name, not the λ metric) in the sweep."""
    named = "llc" in table and not pd.api.types.is_numeric_dtype(table["llc"])
    return bool(named and table["llc"].nunique() > 1)


def _keys(table: pd.DataFrame, *keys: str) -> list[str]:
    """The grouping keys: the SGLD preset (`llc`) first when the sweep ran more than one (a mean over
    both presets would mix two estimators' λ), then the data set the runs trained on (its tag)."""
    return (["llc"] if _presets(table) else []) + (["dataset"] if "dataset" in table else []) + list(keys)


NAMES = {"llc": "SGLD preset", "dataset": "Data set"}


def table_1(table: pd.DataFrame) -> pd.DataFrame:
    """Table 1: model, λ, d_s, α, r² (means over the runs of each model); d_s's uncertainty is the
    run's 95 % bootstrap interval for a model with one run, else the std over its runs."""
    require(table, "lambda_final", "d_s", "alpha", "r2", "model")
    lo, hi = _ci(table)
    g = table.assign(_lo=lo, _hi=hi).groupby(_keys(table, "model"), sort=False, dropna=False)
    out = g[["lambda_final", "d_s", "alpha", "r2"]].mean()
    out.insert(0, "runs", g.size())
    out.insert(
        3,
        "d_s ± (95 % CI or std)",
        [
            _interval(float(grp["_lo"].iloc[0]), float(grp["_hi"].iloc[0]))
            if len(grp) == 1
            else f"± {grp['d_s'].std():.3g}"
            for _, grp in g
        ],
    )
    out = out.reset_index().rename(
        columns={
            **NAMES,
            "model": "Model",
            "lambda_final": "λ",
            "d_s": "d_s",
            "alpha": "α",
            "r2": "r²",
        }
    )
    return out


def table_4(table: pd.DataFrame) -> pd.DataFrame:
    """Table 4: Table 1 for the runs trained with Adam."""
    require(table, "optimizer")
    adam = table[table["optimizer"].astype(str).str.startswith("adam")]
    if adam.empty:
        raise Missing("no Adam runs in the sweep")
    return table_1(adam)


def table_runs(table: pd.DataFrame) -> pd.DataFrame:
    """Tables 5-8: a row per run, sorted by d_s: the data set, both parameter counts (the paper's
    weights-only and every trainable one), d_s, λ ± std, architecture, batch, the length as trained
    (epochs where they set it, and steps), lr."""
    require(table, "lambda_final", "d_s")
    nan = pd.Series(np.nan, index=table.index)
    std = table["lambda_final_std"] if "lambda_final_std" in table else pd.Series(np.nan, index=table.index)
    out = pd.DataFrame(
        {
            # The paper's tables count weight matrices and kernels (`num_weights`; older runs: all
            # parameters); `launch.py` prints every trainable parameter (biases, batch norm).
            "Num Params (weights)": table.get("num_weights", nan)
            .astype(float)
            .fillna(table.get("num_params", nan).astype(float))
            .astype("Int64"),
            "Trainable params": table.get("num_params", nan).astype(float).astype("Int64"),
            "Spect. Dim": table["d_s"].round(3),
            "d_s 95 % CI": [_interval(a, b) for a, b in zip(*_ci(table))],
            "LLC (final)": [_pm(m, s) for m, s in zip(table["lambda_final"], std)],
            "Architecture": table.get("model", ""),
            "Optimizer": table.get("optimizer", ""),
            "Batch": table.get("batch", np.nan),
        }
    )
    if "dataset" in table:
        out.insert(0, "Data set", table["dataset"].to_numpy())
    if _presets(table):
        out.insert(0, "SGLD preset", table["llc"].to_numpy())
    # The length as trained: the steps the run took (a phase or train.steps may stop it before its
    # epochs), and the epochs where those set it.
    if "epochs" in table and table["epochs"].notna().any():
        out["Epochs"] = table["epochs"].astype("Int64")
    if "total_steps" in table:
        out["Steps"] = table["total_steps"].astype(float).astype("Int64")
    elif "steps" in table:
        out["Steps"] = table["steps"].astype("Int64")
    out["LR"] = table.get("lr", np.nan)
    return out.sort_values("Spect. Dim").reset_index(drop=True)


def ablation_table(table: pd.DataFrame) -> pd.DataFrame:
    """Appendix H: optimizer -> d_s mean/std, λ_final mean/std, test accuracy mean (%)."""
    require(table, "optimizer", "d_s", "lambda_final", "test_acc")
    g = table.groupby(_keys(table, "optimizer"), dropna=False)
    out = pd.DataFrame(
        {
            "d_s (mean)": g["d_s"].mean(),
            "d_s (std)": g["d_s"].std(),
            "λ_final (mean)": g["lambda_final"].mean(),
            "λ_final (std)": g["lambda_final"].std(),
            "Test Acc (mean)": 100 * g["test_acc"].mean(),
            "runs": g.size(),
        }
    )
    return out.reset_index().rename(columns={**NAMES, "optimizer": "Optimizer"})


TABLES = {
    "table_1": table_1,
    "table_4_adam": table_4,
    "tables_5_8_runs": table_runs,
    "ablation_appendix_h": ablation_table,
}


def _cell(v: object) -> str:
    if isinstance(v, float | np.floating):
        return "n/a" if not np.isfinite(v) else f"{v:.4g}"
    return "n/a" if v is pd.NA or v is None else str(v)


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub Markdown table."""
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


_LATEX = {
    "λ": r"$\lambda$",
    "α": r"$\alpha$",
    "r²": r"$r^2$",
    "±": r"$\pm$",
    "d_s": r"$d_s$",
    "_final": r"$_{\mathrm{final}}$",
    "%": r"\%",
    "&": r"\&",
}


def _tex(s: str) -> str:
    for k, v in _LATEX.items():
        s = s.replace(k, v)
    return s.replace("$$", "")


def to_latex(df: pd.DataFrame, caption: str) -> str:
    """A booktabs tabular inside a table float."""
    cols = "l" * len(df.columns)
    lines = [
        r"\begin{table}[h]",
        r"\centering",
        rf"\begin{{tabular}}{{{cols}}}",
        r"\toprule",
        " & ".join(_tex(str(c)) for c in df.columns) + r" \\",
        r"\midrule",
        *(" & ".join(_tex(_cell(v)) for v in row) + r" \\" for row in df.itertuples(index=False)),
        r"\bottomrule",
        r"\end{tabular}",
        rf"\caption{{{_tex(caption)}}}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def write_all(table: pd.DataFrame, folder: Path) -> tuple[dict[str, str], list[str]]:
    """Every table the sweep has data for, as <name>.md and <name>.tex in `folder`.

    Returns the Markdown of each table written and one line per table skipped."""
    folder.mkdir(parents=True, exist_ok=True)
    written, skipped = {}, []
    for name, fn in TABLES.items():
        try:
            df = fn(table)
        except Missing as e:
            skipped.append(f"table {name} skipped: {e}")
            continue
        md = to_markdown(df)
        (folder / f"{name}.md").write_text(md)
        (folder / f"{name}.tex").write_text(to_latex(df, (fn.__doc__ or name).split("\n")[0]))
        written[name] = md
    return written, skipped
