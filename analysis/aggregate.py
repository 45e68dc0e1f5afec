"""One tidy table per sweep, read from the tracking store only (a row per run).

Columns: run_id, run_name, status, reason (why a run is not FINISHED), the swept config values
under short names (`optimizer`, `lr`, `batch`, `seed`, `momentum`, ... ), every summary metric,
the verdict and flag tags, and derived columns: `model` (a label), `avg_lr`, `total_displacement`.
Failed and unfinished runs stay in the table with their reason; `finished()` selects the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline.tracking import Tracker, names

# Short names for swept params, in the order they are preferred when two params vary together
# (e.g. `optimizer.lr` always equals `lr`, `llc.seed` equals `seed`).
AXES = {
    "llc.preset": "llc",  # the SGLD preset (paper, calibrated): before the llc values it sets
    "optimizer._target_": "optimizer",
    "lr": "lr",
    "batch": "batch",
    "optimizer.momentum": "momentum",
    "seed": "seed",
    "model.hidden": "hidden",
}


def ignored(param: str) -> bool:
    """A param that never describes the experiment: a runtime key (where and how a job ran)."""
    return param.split(".", 1)[0] in names.RUNTIME_KEYS


@dataclass
class SweepTable:
    """A sweep's runs: the tidy table and the names of the config values the sweep varies."""

    sweep: str
    table: pd.DataFrame
    swept: list[str] = field(default_factory=list)

    def finished(self) -> pd.DataFrame:
        return self.table[self.table["status"] == "FINISHED"]

    def not_finished(self) -> pd.DataFrame:
        return self.table[self.table["status"] != "FINISHED"][["run_id", "run_name", "status", "reason"]]


def reason_for(status: str, failure_reason: object) -> str:
    """Why a run is not FINISHED ('' when it is): its `failure_reason` tag, else its state."""
    if status == "FINISHED":
        return ""
    if isinstance(failure_reason, str) and failure_reason:
        return failure_reason
    return "unfinished (RUNNING)" if status == "RUNNING" else f"{status} (no failure_reason recorded)"


def _numeric(col: pd.Series) -> pd.Series:
    """Param strings as numbers where every present value parses ('None' counts as missing)."""
    s = col.replace({"None": np.nan, "null": np.nan})
    num = pd.to_numeric(s, errors="coerce")
    return num if num.notna().sum() == s.notna().sum() else col


def short_optimizer(target: object) -> object:
    """'torch.optim.SGD' -> 'sgd'."""
    return str(target).rsplit(".", 1)[-1].lower() if isinstance(target, str) else target


def optimizer_labels(runs: pd.DataFrame) -> pd.Series:
    """'sgd', 'adam', ... per run; SGD with momentum > 0 is 'sgd+momentum' (its own row in the
    appendix H table, not averaged with plain SGD)."""
    label = runs["optimizer._target_"].map(short_optimizer)
    if "optimizer.momentum" in runs:
        momentum = pd.to_numeric(runs["optimizer.momentum"], errors="coerce").fillna(0)
        label = label.where(~((label == "sgd") & (momentum > 0)), "sgd+momentum")
    return label


def swept_params(runs: pd.DataFrame, params: list[str]) -> list[str]:
    """Params that take at least two values between runs, one per distinct partition of the runs
    (a param that varies exactly with another, like `llc.seed` with `seed`, is left out; one that
    some runs lack, like `optimizer.momentum` beside Adam, counts only when two runs differ in it)."""
    present = {p: runs[p].astype(object).where(runs[p].notna(), None) for p in params if p in runs}
    varying = [p for p, col in present.items() if not ignored(p) and col.dropna().map(str).nunique() > 1]
    order = sorted(varying, key=lambda p: (list(AXES).index(p) if p in AXES else len(AXES), len(p), p))
    kept, partitions = [], set()
    for p in order:
        key = tuple(pd.factorize(present[p].map(str))[0])
        if key not in partitions:
            partitions.add(key)
            kept.append(p)
    return kept


def model_label(row: pd.Series) -> str:
    """'MLP 128-64 (batch norm)' from the model params, or the model class alone."""
    target = str(row.get("model._target_", "model")).rsplit(".", 1)[-1]
    parts = [target]
    for key in ("model.arch", "model.hidden", "model.channels", "model.name"):
        v = row.get(key)
        if isinstance(v, str) and v not in ("None", ""):
            parts.append(v.strip("[]").replace(", ", "-"))
    if str(row.get("model.batch_norm")) == "True":
        parts.append("(batch norm)")
    return " ".join(parts)


def tidy(runs: pd.DataFrame, sweep: str) -> SweepTable:
    """The tidy table from `Tracker.runs_table` output."""
    params = list(runs.attrs.get("params", []))
    metrics = list(runs.attrs.get("metrics", []))
    if runs.empty:
        return SweepTable(sweep, pd.DataFrame(columns=["run_id", "run_name", "status", "reason"]), [])
    swept = swept_params(runs, params)
    df = runs[["run_id", "run_name", "status"]].copy()
    df["reason"] = [
        reason_for(status, tag)
        for status, tag in zip(runs["status"], runs.get("failure_reason", [None] * len(runs)))
    ]
    for p in swept:
        name = AXES.get(p, p)
        df[name] = optimizer_labels(runs) if p == "optimizer._target_" else _numeric(runs[p])
    # The axes the figures and tables use, also when the sweep holds them fixed.
    if "optimizer" not in df and "optimizer._target_" in runs:
        df["optimizer"] = optimizer_labels(runs)
    for p in ("llc.preset", "lr", "batch", "seed", "optimizer.momentum"):
        name = AXES[p]
        if name not in df and p in runs:
            df[name] = _numeric(runs[p])
    df["model"] = runs.apply(model_label, axis=1)
    # What the scorecard matches the paper's rows by, and the settings it compares.
    for p in ("reproduces", "device", "model.hidden", "model.channels", "model.name", "model.arch"):
        if p in runs:
            df[p] = runs[p]
    for p in ("train.epochs", "train.steps"):
        if p in runs:
            df[p.removeprefix("train.")] = _numeric(runs[p])
    if "steps" in df and "epochs" in df:  # train.steps ends a run before its epochs: not its length
        df.loc[df["steps"].notna(), "epochs"] = np.nan
    for m in metrics:
        if m in df:  # an axis of the same name wins: the step metric `llc` is not the preset `llc`
            continue
        df[m] = pd.to_numeric(runs[m], errors="coerce")
    for t in runs.columns:
        if t in names.ANALYSIS_TAGS and t != names.FAILURE_REASON:
            df[t] = runs[t]
    # Fig. 2b: the train stage logs avg_lr (the mean over steps, phases included); older runs: lr.
    if "lr" in df:
        df["avg_lr"] = df["avg_lr"].fillna(df["lr"]) if "avg_lr" in df else df["lr"]
    if "displacement" in df:  # the step metric's latest value: R at the last step
        df["total_displacement"] = df["displacement"]
    df.attrs["swept"] = [AXES.get(p, p) for p in swept]
    return SweepTable(sweep, df.reset_index(drop=True), df.attrs["swept"])


def sweeps(tracker: Tracker) -> list[str]:
    """Every sweep tag in the experiment, oldest first."""
    runs = tracker.runs_table()
    if runs.empty or "sweep" not in runs:
        return []
    return list(dict.fromkeys(runs["sweep"].dropna()))


def sweep_table(tracker: Tracker, sweep: str) -> SweepTable:
    """The tidy table of one sweep."""
    return tidy(tracker.runs_table(sweep), sweep)


@dataclass
class RunSeries:
    """Per-run curves for the figures, long format with a run_id column."""

    trajectory: pd.DataFrame  # step, displacement, displacement/<tensor>
    llc: pd.DataFrame  # step, llc, status
    fits: pd.DataFrame  # one row per run: alpha, intercept, t_start, t_end, t_c, shifted


def run_series(tracker: Tracker, run_ids: list[str]) -> RunSeries:
    """Read each run's trajectory, λ(t) and fit artifacts back from the store."""
    traj, llc, fits = [], [], []
    for rid in run_ids:
        if (t := tracker.load_table(rid, names.TRAJECTORY)) is not None:
            traj.append(t.assign(run_id=rid))
        if (lt := tracker.load_table(rid, names.LLC)) is not None:
            llc.append(lt[[c for c in ("step", "llc", "status") if c in lt]].assign(run_id=rid))
        if (f := tracker.load_json(rid, names.FIT)) is not None:
            fits.append({"run_id": rid, **{k: v for k, v in f.items() if not isinstance(v, (list, dict))}})
    cat = lambda parts: pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()  # noqa: E731
    return RunSeries(cat(traj), cat(llc), pd.DataFrame(fits))
