"""The replication scorecard: a paper experiment's runs beside the paper's published numbers.

The experiment's config names the tables it reproduces (`reproduces: [table_8]`); the paper's
numbers are in `analysis/reference/` (one CSV per table, each row citing its table). Per row of the
paper's table that the sweep has (a model, an architecture, an optimizer, or all the runs of Table
8) and per quantity: the paper's mean ± sd over its rows, ours over the matching runs, the
difference, and the difference in units of the spread (the paper's sd where it has one, else
ours). Then the settings in which the runs differ from the paper's: data, λ preset, length, runs,
hardware. Reads the sweep table only.
"""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

REFERENCE = Path(__file__).with_name("reference")
PAPER = (
    "Hennick & De Baerdemacker, Almost Bayesian: Dynamics of SGD through singular learning theory "
    "(later version)"
)
HARDWARE = "one NVIDIA RTX A4000 GPU (appendix K)"
# The data each table's runs trained on, as the paper describes them.
DATA = {
    "table_1": "TinyStories / Tiny ImageNet",
    "table_2": "moons (scikit-learn)",
    "table_4": "TinyStories",
    "table_5": "CIFAR10 (10 000-image subset)",
    "table_6": "CIFAR10 (10 000-image subset)",
    "table_7": "MNIST (10 000-image subset, 50/50)",
    "table_8": "MNIST (10 000-image subset, 50/50)",
    "appendix_h": "MNIST (10 000-image subset, 50/50)",
}
# Training images per run where the paper says (MNIST: a 10 000-image subset split 50/50, G.1).
TRAIN_SAMPLES = {"table_8": 5000, "table_7": 5000, "appendix_h": 5000}
TITLES = {"appendix_h": "appendix H table"} | {f"table_{i}": f"Table {i}" for i in range(1, 9)}
# reference column -> (our column, the quantity's name)
QUANTITIES = {
    "lambda": ("lambda_final", "λ_final"),
    "d_s": ("d_s", "d_s"),
    "alpha": ("alpha", "α"),
    "r2": ("r2", "r²"),
}
COLUMNS = [
    *("table", "row", "quantity", "paper", "paper sd", "paper n", "ours", "ours sd", "ours n"),
    *("difference", "in spreads", "spread"),
]


def reference(table: str) -> pd.DataFrame:
    """The paper's numbers of one table (`analysis/reference/<table>.csv`)."""
    return pd.read_csv(REFERENCE / f"{table}.csv")


def reproduced(done: pd.DataFrame) -> list[str]:
    """The tables the sweep's runs reproduce (their `reproduces` config value), in the order named."""
    found: list[str] = []
    for value in done.get("reproduces", pd.Series(dtype=object)).dropna().astype(str):
        if value in ("None", ""):
            continue
        try:
            names = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            names = value.strip("[]").split(",")
        for name in [names] if isinstance(names, str) else names:
            name = str(name).strip().strip("'\"")
            if name and name not in found:
                found.append(name)
    return [t for t in found if (REFERENCE / f"{t}.csv").is_file()]


def _norm(text: object) -> str:
    return re.sub(r"[^a-z0-9]", "", str(text).lower())


def _widths(value: object) -> str:
    """'128, 64' from a config list as params hold it ('[128, 64]')."""
    return ", ".join(re.findall(r"-?\d+", str(value)))


def _entry(table: str, row: str, quantity: str, paper: np.ndarray, ours: np.ndarray, paper_sd=None) -> dict:
    paper, ours = np.asarray(paper, dtype=float), np.asarray(ours, dtype=float)
    ours = ours[np.isfinite(ours)]
    p_sd = float(paper_sd) if paper_sd is not None else (paper.std(ddof=1) if len(paper) > 1 else np.nan)
    o_mean = ours.mean() if len(ours) else np.nan
    o_sd = ours.std(ddof=1) if len(ours) > 1 else np.nan
    diff = o_mean - paper.mean()
    spread, of = (p_sd, "paper's sd") if np.isfinite(p_sd) and p_sd > 0 else (o_sd, "our sd")
    return dict(
        zip(
            COLUMNS,
            [
                TITLES.get(table, table),
                row,
                quantity,
                paper.mean(),
                p_sd,
                len(paper),
                o_mean,
                o_sd,
                len(ours),
                diff,
                diff / spread if np.isfinite(spread) and spread > 0 else np.nan,
                of,
            ],  # fmt: skip
        )
    )


def _rows(table: str, ref: pd.DataFrame, done: pd.DataFrame) -> list[dict]:
    """Per paper row the sweep has, per quantity, ours beside theirs."""
    out: list[dict] = []
    if table == "table_8":  # one architecture over 50 initializations: all runs against all rows
        for col, (ours, name) in QUANTITIES.items():
            if col in ref and ours in done:
                out.append(
                    _entry(table, f"MLP {ref['layers'].iloc[0]}, all runs", name, ref[col], done[ours])
                )
        return out
    if table == "appendix_h":
        for _, r in ref.iterrows():
            mine = done[done.get("optimizer", pd.Series("", index=done.index)).astype(str) == r["optimizer"]]
            if mine.empty:
                continue
            for q, ours, sd, name in (
                ("d_s_mean", "d_s", "d_s_std", "d_s"),
                ("lambda_final_mean", "lambda_final", "lambda_final_std", "λ_final"),
                ("test_acc_mean", "test_acc", None, "test acc (%)"),
            ):
                scale = 100.0 if ours == "test_acc" else 1.0
                out.append(
                    _entry(table, r["optimizer"], name, [r[q]], scale * mine[ours], r[sd] if sd else None)
                )
        return out
    if table == "table_2":
        for _, r in ref.iterrows():
            ours = {"kl": "kl_best", "wasserstein": "wasserstein_best", "js": "js_best"}[
                r["metric"].split("_")[0]
            ]
            if ours in done:
                out.append(_entry(table, "Bayes vs tempered SGD", r["metric"], [r["value"]], done[ours]))
        return out
    for _, r in ref.iterrows():  # a row per model: by name, layers or channels
        if "layers" in ref:  # Table 7: the hidden widths after the 784 inputs
            key = ", ".join(r["layers"].split(", ")[1:])
            mine = done[done.get("model.hidden", pd.Series(index=done.index)).map(_widths) == key]
            label = f"MLP {r['layers']}"
        elif "channels" in ref:
            mine = done[
                done.get("model.channels", pd.Series(index=done.index)).map(_widths) == str(r["channels"])
            ]
            label = f"channels {r['channels']}"
        else:  # Tables 1 and 4: the model's name in its label, HF name or torchvision arch
            names = done[[c for c in ("model", "model.name", "model.arch") if c in done]].astype(str)
            wanted = _norm(r["model"])
            mine = done[names.apply(lambda row, w=wanted: any(w in _norm(v) for v in row), axis=1)]
            label = r["model"]
        if mine.empty:
            continue
        for col, (ours, name) in QUANTITIES.items():
            if col in ref and ours in mine:
                sd = r["lambda_pm"] if col == "lambda" and "lambda_pm" in ref else None
                out.append(_entry(table, label, name, [r[col]], mine[ours], sd))
    return out


def differences(table: str, ref: pd.DataFrame, done: pd.DataFrame) -> list[str]:
    """The settings in which the sweep's runs differ from the paper's for this table."""
    lines = []

    def values(col: str) -> list[str]:
        return sorted({str(v) for v in done[col].dropna()}) if col in done else []

    data = values("dataset")
    if data:
        lines.append(f"data: ours {', '.join(data)}; the paper's {DATA.get(table, 'n/a')}")
    presets = values("llc")
    if presets and presets != ["paper"]:
        lines.append(f"λ preset: ours {', '.join(presets)}; the paper's Table 3 settings (llc=paper)")
    if "epochs" in ref:  # the length as trained: epochs set by the config, steps as run
        epochs = sorted({int(float(e)) for e in values("epochs") if e != "nan"})
        steps = sorted({int(float(s)) for s in values("total_steps")})
        paper = sorted({int(e) for e in ref["epochs"]})
        train = TRAIN_SAMPLES.get(table)
        batch = int(ref["batch"].iloc[0]) if "batch" in ref else None
        paper_steps = (
            f" ({', '.join(str(e * math.ceil(train / batch)) for e in paper)} steps"
            f" of batch {batch} on {train} images)"
            if train and batch
            else ""
        )
        mine = ", ".join(f"{e} epochs" for e in epochs) + (
            f" ({', '.join(map(str, steps))} steps)" if steps else ""
        )
        if epochs != paper or paper_steps:
            lines.append(
                f"length: ours {mine or 'n/a'}; the paper's {', '.join(map(str, paper))} epochs{paper_steps}"
            )
    if table == "table_8" and len(done) != len(ref):
        lines.append(f"runs: ours {len(done)}; the paper's {len(ref)} initializations")
    devices = values("device")
    lines.append(f"hardware: ours {', '.join(devices) or 'n/a'}; the paper's {HARDWARE}")
    return lines


def scorecard(done: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Ours beside the paper's per table, row and quantity (columns `COLUMNS`), and per table the
    settings that differ; empty when the runs reproduce no table of the paper."""
    rows, differ = [], {}
    for table in reproduced(done):
        ref = reference(table)
        rows += _rows(table, ref, done)
        differ[TITLES.get(table, table)] = differences(table, ref, done)
    return pd.DataFrame(rows, columns=COLUMNS), differ


def markdown(card: pd.DataFrame, differ: dict[str, list[str]]) -> str:
    """The scorecard as Markdown: the table, then per paper table what the runs did differently."""
    from analysis.tables import to_markdown

    shown = card.copy()
    for c in ("paper", "paper sd", "ours", "ours sd", "difference", "in spreads"):
        shown[c] = shown[c].map(lambda v: "n/a" if not np.isfinite(v) else f"{v:.4g}")
    lines = [f"Replication scorecard against {PAPER}.", "", to_markdown(shown)]
    for table, what in differ.items():
        lines += [f"{table}: the runs differ from the paper's in", *(f"- {w}" for w in what), ""]
    return "\n".join(lines)


def figure(card: pd.DataFrame, path: Path) -> list[Path]:
    """Per quantity, each row's paper value and ours with ±1 sd bars (capped), side by side; PNG
    and a vector PDF."""
    from analysis.figures import plt

    quantities = list(dict.fromkeys(card["quantity"]))
    size = (2.6 * len(quantities) + 1.6, 0.45 * card["row"].nunique() + 1.6)
    fig, axes = plt.subplots(1, len(quantities), figsize=size, squeeze=False, layout="constrained")
    # Each quantity may have its own rows (Table 2's metrics): one y axis per panel, labels on each.
    for ax, q in zip(axes[0], quantities):
        part = card[card["quantity"] == q].reset_index(drop=True)
        y = np.arange(len(part))
        for dy, who, color in ((-0.12, "paper", "0.35"), (0.12, "ours", "tab:blue")):
            err = part[f"{who} sd"].where(np.isfinite(part[f"{who} sd"]), 0.0)
            ax.errorbar(part[who], y + dy, xerr=err, fmt="o", ms=4, color=color, capsize=3, elinewidth=1,
                        label="paper" if who == "paper" else "ours")  # fmt: skip
        ax.set_yticks(y, part["row"], fontsize=7)
        ax.set_ylim(len(part) - 0.5, -0.5)  # first row on top
        ax.set_title(f"{q} ({part['table'].iloc[0]})", fontsize=9)
        ax.grid(axis="x", color="0.9")
    handles, labels = axes[0][0].get_legend_handles_labels()
    legend = dict(loc="outside lower center", ncols=2, fontsize=7, frameon=False, title_fontsize=7)
    fig.legend(handles, labels, title="mean ± sd", **legend)
    out = [path.with_suffix(".png"), path.with_suffix(".pdf")]
    for p in out:
        fig.savefig(p, dpi=130)
    plt.close(fig)
    return out
