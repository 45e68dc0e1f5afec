"""Stage calibrate: a small grid of SGLD settings on one checkpoint, to choose `llc` for a model.

devinterp's calibration guidance: an estimate is usable when its loss trace is flat (the chain has
equilibrated), λ̂ is positive and no chain diverges; try step sizes, localizations and nβ until that
holds. This stage runs the llc stage's own estimator (for classifiers the sampler core,
`llc.estimate_many`; `llc.method=serial` and language models: devinterp's, `llc.estimate`), its
other settings from `cfg.llc`, on every combination of `calibrate.lr`, `calibrate.localization` and
`calibrate.nbeta_factor` (nβ = factor × `llc.nbeta`, or × batch/log batch when that is null).

Reads from the run: `config.yaml` and one checkpoint (`calibrate.step`, default the last kept).
Writes: `calibration.parquet` (one row per setting: λ̂, its spread over chains, status, the
diagnostics of `llc.diagnose`, whether recommended), `calibration_traces.parquet` (setting, chain,
draw, loss), `calibration/traces_nbeta_x<factor>.png` (a grid of trace plots, rows γ, columns ε),
`calibration.json` (the recommendation and its rule) and tag `calibrate.recommended` (overrides to
paste, e.g. `llc.lr=0.0001 llc.localization=10 llc.nbeta=null`, or `none`).

Recommendation rule: among usable settings (`pipeline.slt.calibration.usable`: succeeded, positive,
stationary, R-hat in bounds), the
largest step size (the chain travels furthest in the same number of draws; too large a step is
what the flags catch: divergence, negative λ̂ or a falling trace), then the smallest localization
(least pull towards w_t), then the nβ factor closest to 1 (the paper's nβ). A step so small that
the chain barely moves also passes the stationarity test (its trace is minibatch noise around
L(w_t)), which is why the largest usable step is preferred. The table and plots show every
setting, so the user can overrule.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from pipeline.config import build, hashes
from pipeline.errors import UserError
from pipeline.progress import bar
from pipeline.slt import calibration, llc
from pipeline.slt.settings import Search, Settings
from pipeline.stages import inputs
from pipeline.stages.context import Context, Member
from pipeline.tracking import Tracker, names


def settings(cfg: DictConfig, base: float) -> list[dict]:
    """Every combination of the grid, each with the nβ it uses (`nbeta_factor` times `base`)."""
    c = cfg.calibrate
    return [
        {"lr": float(lr), "localization": float(gamma), "nbeta_factor": float(f), "nbeta": float(f) * base}
        for f, gamma, lr in itertools.product(c.nbeta_factor, c.localization, c.lr)
    ]


def recommend(table: pd.DataFrame) -> pd.Series | None:
    """The recommended row (see the module docstring), or None when no setting is usable."""
    usable = table[table.apply(lambda r: calibration.usable(r.to_dict()), axis=1)]
    if usable.empty:
        return None
    order = usable.assign(dist=(np.log(usable["nbeta_factor"])).abs())
    return order.sort_values(["lr", "localization", "dist"], ascending=[False, True, True]).iloc[0]


def overrides(row: pd.Series | None, nbeta_was_null: bool) -> str:
    """The command-line overrides that select `row`'s settings for the llc stage."""
    if row is None:
        return "none"
    nbeta = "null" if nbeta_was_null and row["nbeta_factor"] == 1.0 else f"{row['nbeta']:.6g}"
    return f"llc.lr={row['lr']:g} llc.localization={row['localization']:g} llc.nbeta={nbeta}"


def plot(table: pd.DataFrame, traces: pd.DataFrame, factor: float, path: Path, sampler: str = "sgld") -> None:
    """Trace plots for one nβ factor and sampler: rows localization, columns step size; flagged
    panels in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = table[table["nbeta_factor"] == factor]
    if "sampler" in sub:
        sub = sub[sub["sampler"] == sampler]
    lrs, gammas = sorted(sub["lr"].unique()), sorted(sub["localization"].unique())
    fig, axes = plt.subplots(
        len(gammas), len(lrs), figsize=(3.2 * len(lrs), 2.4 * len(gammas)), squeeze=False, sharex=True
    )
    for (i, gamma), (j, lr) in itertools.product(enumerate(gammas), enumerate(lrs)):
        ax = axes[i, j]
        cell = sub[(sub["lr"] == lr) & (sub["localization"] == gamma)]
        if cell.empty:  # the automatic search stops a ladder early: nothing was run there
            ax.set_axis_off()
            continue
        row = cell.iloc[0]
        tr = traces[traces["setting"] == row["setting"]]
        for _, chain in tr.groupby("chain"):
            ax.plot(chain["draw"], chain["loss"], lw=0.7)
        ax.axhline(row["init_loss"], color="k", ls="--", lw=0.7)
        flags = [k for k in llc.FLAGS if row.get(k, False)]
        if row["status"] != "ok":
            flags = ["diverged"]
        bad = bool(flags) or row["status"] != "ok"
        ax.set_title(
            f"ε={lr:g} γ={gamma:g}\nλ̂={row['llc']:.3g}" + (f" ({', '.join(flags)})" if flags else ""),
            fontsize=8,
            color="red" if bad else "black",
        )
        for side in ax.spines.values():
            side.set_color("red" if bad else "black")
        ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("draw", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("loss", fontsize=8)
    nbeta = sub["nbeta"].iloc[0]
    title = f"{sampler} loss traces, nβ = {nbeta:.4g} ({factor:g} × default); dashed: L(w_t)"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(ctx: Context, members: list[Member]) -> dict:
    """Run the grid on the chosen checkpoint and log the table, the trace plots and the recommendation."""
    (member,) = members
    cfg, tracker, run_id = ctx.cfg, ctx.tracker, member.run_id
    trained = inputs.trained_config(tracker, run_id)
    kept = inputs.kept_checkpoints(tracker, run_id)
    kept.pop(0, None)  # w_0 is no minimum: calibrating there says nothing about the run
    if not kept:
        raise UserError(f"run {run_id} kept no trained checkpoint: run the train stage first")
    step = int(cfg.calibrate.step) if cfg.calibrate.step is not None else max(kept)
    if step not in kept:
        raise UserError(f"calibrate.step={step} is not a kept checkpoint: choose one of {sorted(kept)}")
    data = build.data(trained)
    model = build.model(trained, data).to(cfg.device)
    task = build.task(trained)  # the model's own loss, as the llc stage uses
    with tempfile.TemporaryDirectory() as tmp:
        path = tracker.download_file(run_id, kept[step], Path(tmp))
        state = inputs.load_checkpoint(run_id, path, cfg.device)
    # The llc stage's estimator: stacked for classifiers, devinterp's own for models it does not stack.
    batched = llc.method_for(cfg.llc.get("method", "batched"), task) == "batched"
    if not batched:
        model.load_state_dict(state)
    grid = settings(cfg, llc.nbeta(cfg.llc.nbeta, data.batch_size))
    c = cfg.calibrate
    base = Settings.of(cfg.llc)
    base = dataclasses.replace(
        base,
        num_draws=int(c.num_draws) if c.num_draws is not None else base.num_draws,
        num_chains=int(c.num_chains) if c.num_chains is not None else base.num_chains,
    )
    rows, traces = [], []
    for k, s in enumerate(bar(cfg.progress, iterable=grid, desc="calibrate")):
        at = dataclasses.replace(base, lr=s["lr"], localization=s["localization"], nbeta=s["nbeta"])
        if batched:
            (out,) = llc.estimate_many(model, [state], data, at, [step], cfg.device, task)
        else:
            out = llc.estimate(model, data, at, step, cfg.device, task.sgld_loss)
        trace = out.pop("trace")
        out.pop("nbeta")  # the grid's own value, already in `s`
        rows.append({"setting": k, "step": step, **s, **out})
        if trace is not None:
            traces.append(llc.trace_table(trace, setting=k))
    table = pd.DataFrame(rows)
    best = recommend(table)
    table["recommended"] = table["setting"] == (best["setting"] if best is not None else -1)
    trace_table = (
        pd.concat(traces, ignore_index=True)
        if traces
        else pd.DataFrame(columns=["setting", "chain", "draw", "loss"])
    )
    tracker.log_table(run_id, table, names.CALIBRATION)
    tracker.log_table(run_id, trace_table, names.CALIBRATION_TRACES)
    with tempfile.TemporaryDirectory() as tmp:
        for factor in sorted(table["nbeta_factor"].unique()):
            plot(table, trace_table, factor, Path(tmp) / f"traces_nbeta_x{factor:g}.png", cfg.llc.sampler)
        tracker.log_dir(run_id, Path(tmp), names.CALIBRATION)
    chosen = overrides(best, cfg.llc.nbeta is None)
    result = {
        "step": step,
        "recommended": chosen,
        "rule": "usable = ok, λ̂ > 0, stationary, R-hat in bounds; then largest lr, smallest localization, "
        "nβ factor closest to 1",
        "usable": int(table.apply(lambda r: calibration.usable(r.to_dict()), axis=1).sum()),
        "settings": len(table),
    }
    tracker.log_json(run_id, result, names.CALIBRATION)
    tracker.set_tags(run_id, {names.CALIBRATE_RECOMMENDED: chosen, names.CALIBRATE_STEP: step})
    return result


def estimator(model, state: dict, data, step: int, device: str, task, batched: bool):
    """`estimate(settings) -> row` on one checkpoint with the llc stage's own estimator."""
    if not batched:
        model.load_state_dict(state)

    def estimate(at: Settings) -> dict:
        start = time.perf_counter()
        if batched:
            row = llc.estimate_many(model, [state], data, at, [step], device, task)[0]
        else:
            row = llc.estimate(model, data, at, step, device, task.sgld_loss)
        return row | {"seconds": time.perf_counter() - start}

    return estimate


def _stored(tracker: Tracker, members: list[Member], key: str) -> tuple[dict, str] | None:
    """A calibration recorded for `key`: a member's own (a resumed stage keeps it), else the oldest
    run's that holds one."""
    mine = [tracker.get_run(m.run_id) for m in members]
    for r in [*mine, *reversed(tracker.find_runs({names.LLC_CALIBRATION_KEY: key}))]:
        if r.tags.get(names.LLC_CALIBRATION_KEY) == key and names.LLC_CALIBRATION_CHOICE in r.tags:
            return json.loads(r.tags[names.LLC_CALIBRATION_CHOICE]), r.tags[names.LLC_CALIBRATED_FROM]
    return None


def automatic(
    ctx: Context, members: list[Member], kept: list[tuple[int, Path]], data, model, task, base: Settings
) -> Settings:
    """The llc stage's settings under `llc.calibration.enabled`: those of the calibration recorded for
    the members' training config (`hashes.calibration_hash`), else those the search
    (`pipeline.slt.calibration`) finds on the first member's checkpoint `llc.calibration.step`
    (default its last, `kept` being its checkpoints), recorded there: `llc_calibration.parquet` (every
    setting tried), `llc_calibration_traces.parquet`, `llc_calibration/traces_nbeta_x<f>.png` (and
    `..._underdamped.png` for the momentum walk's grid),
    `llc_calibration.json`. Every member gets tags `llc.calibration_key`, `llc.calibration` (the
    choice, JSON) and `llc.calibrated_from` (the run searched on)."""
    cfg, tracker = ctx.cfg, ctx.tracker
    search = Search.of(cfg.llc.calibration)
    key = hashes.calibration_hash(members[0].cfg)
    stored = _stored(tracker, members, key)
    if stored is not None:
        choice, source = stored
    else:
        choice, source = (
            _search(ctx, members[0], kept, data, model, task, base, search, key),
            members[0].run_id,
        )
    tags = {
        names.LLC_CALIBRATION_KEY: key,
        names.LLC_CALIBRATION_CHOICE: json.dumps(choice, sort_keys=True),
        names.LLC_CALIBRATED_FROM: source,
    }
    for m in members:
        tracker.set_tags(m.run_id, tags)
    return calibration.apply(base, choice)


def _search(ctx, member, kept, data, model, task, base: Settings, search: Search, key: str) -> dict:
    """Run the search on `member`'s checkpoint and record it on its run; returns the choice."""
    cfg, tracker = ctx.cfg, ctx.tracker
    trained = {s: f for s, f in kept if s > 0}
    if not trained:
        raise UserError(f"run {member.run_id} kept no trained checkpoint to calibrate the SGLD settings on")
    step = int(search.step) if search.step is not None else max(trained)
    if step not in trained:
        raise UserError(
            f"llc.calibration.step={step} is not a kept checkpoint: choose one of {sorted(trained)}"
        )
    state = inputs.load_checkpoint(member.run_id, trained[step], cfg.device)
    batched = llc.method_for(cfg.llc.get("method", "batched"), task) == "batched"
    estimate = estimator(model, state, data, step, cfg.device, task, batched)
    base = dataclasses.replace(base, seed=int(member.cfg.llc.seed))
    nb = llc.nbeta(base.nbeta, data.batch_size)
    rows, choice = calibration.search(estimate, base, search, nb, exact=data.full_batch)
    choice |= {"step": step, "chains": base.num_chains, "seconds": sum(r["seconds"] for r in rows)}
    table = pd.DataFrame([{k: v for k, v in r.items() if k != "trace"} for r in rows])
    table.insert(0, "setting", range(len(table)))
    table["step"] = step
    if rows:
        chosen = (table["lr"] == choice["lr"]) & (table["localization"] == choice["localization"])
        chosen &= (table["nbeta_factor"] == choice["nbeta_factor"]) & (table["sampler"] == choice["sampler"])
        table["chosen"] = chosen & choice["searched"]
    traces = [llc.trace_table(r["trace"], setting=k) for k, r in enumerate(rows) if r["trace"] is not None]
    trace_table = (
        pd.concat(traces, ignore_index=True)
        if traces
        else pd.DataFrame(columns=["setting", "chain", "draw", "loss"])
    )
    tracker.log_table(member.run_id, table, names.LLC_CALIBRATION)
    tracker.log_table(member.run_id, trace_table, names.LLC_CALIBRATION_TRACES)
    with tempfile.TemporaryDirectory() as tmp:
        for (factor, sampler), _ in table.groupby(["nbeta_factor", "sampler"]) if rows else []:
            # the preset's sampler keeps its name; the momentum walk's grid gets its own
            tail = "" if sampler == base.sampler else f"_{sampler}"
            plot(table, trace_table, factor, Path(tmp) / f"traces_nbeta_x{factor:g}{tail}.png", sampler)
        tracker.log_dir(member.run_id, Path(tmp), names.LLC_CALIBRATION)
    found = {"key": key, "choice": choice, "search": dataclasses.asdict(search), "tried": len(table)}
    tracker.log_json(member.run_id, found, names.LLC_CALIBRATION)
    return choice
