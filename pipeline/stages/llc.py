"""Stage 2, llc: λ(t) with devinterp's SGLD estimator at every kept checkpoint.

Reads from each run: `config.yaml` (to rebuild data and model) and `checkpoints/step_*.pt`.
Writes: `llc.parquet` (step, llc, llc_std, init_loss, nbeta, status, the diagnostics `rhat`,
`ess_bulk`, `ess_tail`, `llc_mcse`, `trace_drift`, `trace_drift_z` and the flags `negative`,
`nonstationary`, `rhat_high`, `ess_low`; see `pipeline.slt.llc`), `llc_traces.parquet` (the loss
at every draw, per chain), step metric `llc`, summary `lambda_final` (mean of the last `llc.last`
estimates, G.1), `lambda_final_std` (their standard deviation), `lambda_final_mcse` (its
Monte-Carlo error) and `lambda_bar` (time average over the run, Corollary 3.3), tags `llc.method`,
`llc.nbeta_used`, `llc.model_mode`, `llc.last`, `llc.estimates`, the medians `llc.rhat_median`,
`llc.ess_bulk_median` and the counts `llc.failed_estimates`, `llc.negative_estimates`,
`llc.nonstationary_estimates`, `llc.rhat_high_estimates`, `llc.ess_low_estimates`, and
`llc.settings_used` (the sampler settings every estimate used). While it runs,
`llc_partial.parquet` (the estimates so far, for a resumed stage; `Partial`), removed when the
stage completes.

Under `llc.calibration.enabled` (the `calibrated` preset) the settings are those of the automatic
calibration (`pipeline.stages.calibrate.automatic`), one setting for every estimate of the run.

`llc.method=batched` (the default) estimates every checkpoint of every member in stacked passes of
the sampler core (`llc.max_stacked` parameters at most per pass); `serial` calls devinterp's own
estimator once per checkpoint (also the path of models that are not stacked: language models).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from pipeline.config import build
from pipeline.errors import UserError
from pipeline.interrupts import INTERRUPTS, interruption
from pipeline.models import num_params
from pipeline.progress import bar
from pipeline.slt import llc
from pipeline.slt.settings import Search, Settings
from pipeline.stages import calibrate, inputs
from pipeline.stages.context import Context, Member
from pipeline.tracking import Tracker, names


def record(
    tracker: Tracker, run_id: str, rows: list[dict], cfg: DictConfig, settings: Settings | None = None
) -> dict[str, float]:
    """Log λ(t), its traces and the summary to the run (`settings`: those every estimate used,
    default the config's); returns the summary."""
    settings = settings or Settings.of(cfg.llc)
    table, traces = llc.tables(rows)
    tracker.log_table(run_id, table, names.LLC)
    if not traces.empty:
        tracker.log_table(run_id, traces, names.LLC_TRACES)
    tracker.log_series(run_id, "llc", table["step"], table["llc"])
    summary = llc.summarize(table, int(cfg.llc.last))
    tracker.log_summary(run_id, summary)
    failed = int((table["status"] != "ok").sum())
    flags = {k: int(table[k].sum()) if k in table else 0 for k in llc.FLAGS}
    ok = table[table["status"] == "ok"]
    tracker.set_tags(
        run_id,
        {
            names.LLC_MODEL_MODE: "train (devinterp samples in train mode; batch norm uses batch stats)",
            names.LLC_NBETA: f"{table['nbeta'].iloc[0]:.6g}"
            + (" (batch/log batch)" if settings.nbeta is None else " (set)"),
            names.LLC_SETTINGS: settings_line(settings),
            names.LLC_FAILED: failed,
            names.LLC_LAST: int(cfg.llc.last),  # how many estimates λ_final averages (fit resamples them)
            names.LLC_NEGATIVE: flags["negative"],
            names.LLC_NONSTATIONARY: flags["nonstationary"],
            names.LLC_RHAT_HIGH: flags["rhat_high"],
            names.LLC_ESS_LOW: flags["ess_low"],
            names.LLC_RHAT_MEDIAN: f"{ok['rhat'].median():.4g}" if "rhat" in ok else "n/a",
            names.LLC_ESS_MEDIAN: f"{ok['ess_bulk'].median():.4g}" if "ess_bulk" in ok else "n/a",
            names.LLC_ESTIMATES: len(table),
        },
    )
    return summary


def settings_line(s: Settings) -> str:
    """The sampler settings an estimate used, in one line (tag `llc.settings_used`)."""
    nb = "batch/log batch" if s.nbeta is None else f"{float(s.nbeta):.6g}"
    sampler = "" if s.sampler == "sgld" else f" sampler={s.sampler}"
    return (
        f"ε={s.lr:g} γ={s.localization:g} nβ={nb} chains={s.num_chains} "
        f"burn-in={s.num_burnin_steps} draws={s.num_draws} every={s.num_steps_bw_draws}{sampler}"
    )


class Partial:
    """The rows estimated so far, persisted as artifact `llc_partial.parquet` at most every
    `every_s` seconds (and when interrupted), so that a resumed llc stage skips their steps.

    The loss trace goes in as raw bytes with its shape and dtype: read back, every row is the row
    it was, bit for bit."""

    def __init__(
        self, tracker: Tracker, run_id: str, settings: DictConfig, every_s: float, enabled: bool = True
    ) -> None:
        self.tracker, self.run_id, self.every_s, self.enabled = tracker, run_id, float(every_s), enabled
        # Rows are reused only by an llc stage with the same settings (a re-run with others starts over).
        self.key = json.dumps(OmegaConf.to_container(settings, resolve=True), sort_keys=True, default=str)
        self.rows: list[dict] = self.load() if enabled else []
        self.saved = len(self.rows)
        self.last = time.monotonic()

    @property
    def steps(self) -> set[int]:
        return {int(r["step"]) for r in self.rows}

    def load(self) -> list[dict]:
        table = self.tracker.load_table(self.run_id, names.LLC_PARTIAL)
        if table is None:
            return []
        rows = []
        for r in table.to_dict("records"):
            if r.pop("settings") != self.key:
                continue
            raw, shape, dtype = r.pop("trace_bytes"), r.pop("trace_shape"), r.pop("trace_dtype")
            r["trace"] = None if raw is None else np.frombuffer(raw, dtype=dtype).reshape(list(shape)).copy()
            rows.append(r)
        return rows

    def add(self, rows: list[dict]) -> None:
        """New rows; persisted when `every_s` has passed since the last save."""
        self.rows += rows
        if self.enabled and time.monotonic() - self.last >= self.every_s:
            self.save()

    def save(self) -> None:
        if not self.enabled or len(self.rows) == self.saved:
            return
        out = []
        for r in self.rows:
            t = r.get("trace")
            out.append(
                {k: v for k, v in r.items() if k != "trace"}
                | {
                    "trace_bytes": None if t is None else t.tobytes(),
                    "trace_shape": None if t is None else list(t.shape),
                    "trace_dtype": None if t is None else str(t.dtype),
                    "settings": self.key,
                }
            )
        self.tracker.log_table(self.run_id, pd.DataFrame(out), names.LLC_PARTIAL)
        self.saved, self.last = len(self.rows), time.monotonic()

    def clear(self) -> None:
        """After the stage has recorded its tables: the partial rows are no longer needed."""
        if self.enabled and self.saved:
            self.tracker.delete_artifacts(self.run_id, f"{names.LLC_PARTIAL}.parquet")


def run(ctx: Context, members: list[Member]) -> None:
    """Estimate λ at every checkpoint each member's train stage kept, with the settings in `cfg.llc`."""
    cfg, tracker = ctx.cfg, ctx.tracker
    todo: list[tuple[Member, DictConfig]] = []
    for m in members:
        trained = inputs.trained_config(tracker, m.run_id)
        if trained.llc.online and m.cfg.llc.online and tracker.load_table(m.run_id, names.LLC) is not None:
            continue  # estimated during training already
        todo.append((m, trained))
    if not todo:
        return
    with tempfile.TemporaryDirectory() as tmp:
        # (member, step, checkpoint file) for every estimate to make, member by member, by step.
        work: list[tuple[int, int, Path]] = []
        partials: list[Partial] = []
        first_kept: list[tuple[int, Path]] = []
        for i, (m, trained) in enumerate(todo):
            every = int(trained.llc.every)
            kept = inputs.checkpoints(tracker, m.run_id, Path(tmp) / str(i))
            first_kept = first_kept or kept
            chosen = [(s, f) for s, f in kept if s > 0 and s % every == 0]
            if not chosen:
                raise UserError(
                    f"run {m.run_id} kept no checkpoints at multiples of llc.every={every}: "
                    "re-train with train.keep_checkpoints=true and llc.online=false"
                )
            inputs.check_checkpoints(m.run_id, [f for _, f in chosen])  # before data and model are built
            partials.append(Partial(tracker, m.run_id, m.cfg.llc, cfg.resume.every_s, cfg.resume.enabled))
            work += [(i, s, f) for s, f in chosen if s not in partials[i].steps]
        # Data and model are rebuilt only once there is something to estimate on.
        trained = todo[0][1]
        data = build.data(trained)
        model = build.model(trained, data).to(cfg.device)
        task = build.task(trained)
        method = llc.method_for(cfg.llc.get("method", "batched"), task)
        for m, _ in todo:
            tracker.set_tags(m.run_id, {names.LLC_METHOD: method})
        settings = Settings.of(cfg.llc)
        if Search.of(cfg.llc.get("calibration")).enabled:  # one setting for every estimate of the job
            members_todo = [m for m, _ in todo]
            settings = calibrate.automatic(ctx, members_todo, first_kept, data, model, task, settings)
        try:
            _estimate(ctx, todo, work, partials, data, model, task, method, settings)
        except BaseException as e:
            if interruption(e) is not None:  # keep what was estimated for the resumed run
                for partial in partials:
                    partial.save()
            raise
    INTERRUPTS.hold()  # the job acts on a signal after marking the stage done
    for (m, _), partial in zip(todo, partials):
        rows = sorted(partial.rows, key=lambda r: int(r["step"]))
        record(tracker, m.run_id, rows, m.cfg, settings)
        partial.clear()
        if rows and all(r["status"] != "ok" for r in rows):  # λ = nan: no number to fit or check
            why = all_failed(rows, settings)
            if not ctx.batched:
                raise UserError(why)  # the run is FAILED with its records kept; the fit never runs
            ctx.fail(m, f"UserError: {why}")


def all_failed(rows: list[dict], settings: Settings) -> str:
    """The one line for a run whose every λ estimate failed: the first failure and the setting to change."""
    first = str(rows[0]["status"]).removeprefix("failed: ")
    return (
        f"all {len(rows)} λ estimates failed (first, at step {int(rows[0]['step'])}: {first}): "
        f"the {'SGLD' if settings.sampler == 'sgld' else settings.sampler} chains diverge at "
        f"llc.lr={settings.lr:g}: lower it, e.g. llc.lr={settings.lr / 100:g}, "
        "or use llc=calibrated (its search picks a step that does not diverge)"
    )


def _estimate(ctx, todo, work, partials, data, model, task, method: str, settings: Settings) -> None:
    """Every estimate of `work`, in stacked groups or one by one, into the members' partial rows."""
    cfg, device = ctx.cfg, ctx.cfg.device
    # Each member's own sampler seed (a seed sweep's members: their seeds), as its one-by-one run's.
    seeds = [int(m.cfg.llc.seed) for m, _ in todo]
    items = [(seeds[i], s, (todo[i][0].run_id, f)) for i, s, f in work]
    load = lambda source: inputs.load_checkpoint(*source, device)  # noqa: E731
    for found in passes(
        items, model, data, task, method, settings, device, int(cfg.llc.max_stacked), load, cfg.progress
    ):
        rows = defaultdict(list)
        for k, row in found:
            i, s, _ = work[k]
            rows[i].append({"step": s, **row})
        for i, member_rows in rows.items():
            partials[i].add(member_rows)


def passes(
    work: list[tuple[int, int, object]],
    model,
    data,
    task,
    method: str,
    settings: Settings,
    device: str,
    max_stacked: int,
    load,
    progress: bool | None = None,
):
    """The estimates of `work` ((sampler seed, step, checkpoint) triples; `load(checkpoint)` gives its
    state dict): in stacked passes of the sampler core, `max_stacked` parameters at most a pass, or
    with devinterp's own estimator one by one (on `model`, whose weights it loads). Yields each pass's
    (index into `work`, row) pairs as the pass ends, so a caller keeps what is done."""
    if method == "batched":
        size = num_params(model) * int(settings.num_chains)  # every chain is a member of the stack
        groups = llc.stacked_groups(len(work), size, int(max_stacked))
        for group in bar(progress, iterable=groups, desc=f"llc ({len(work)} estimates, batched)"):
            states = [load(work[k][2]) for k in group]
            steps, seeds = [work[k][1] for k in group], [work[k][0] for k in group]
            yield list(
                zip(group, llc.estimate_many(model, states, data, settings, steps, device, task, seeds))
            )
    else:
        for k, (seed, s, source) in enumerate(bar(progress, iterable=work, desc="llc")):
            model.load_state_dict(load(source))
            at = dataclasses.replace(settings, seed=seed)
            yield [(k, llc.estimate(model, data, at, s, device, task.sgld_loss))]
