"""Stage 2, llc: λ(t) with devinterp's SGLD estimator at every kept checkpoint.

Reads from the run: `config.yaml` (to rebuild data and model) and `checkpoints/step_*.pt`.
Writes: `llc.parquet` (step, llc, llc_std, init_loss, nbeta, status, and the diagnostics
`negative`, `nonstationary`, `trace_drift`, `trace_drift_z`), `llc_traces.parquet` (the loss at
every draw, per chain), step metric `llc`, summary `lambda_final` (mean of the last `llc.last`
estimates, G.1), `lambda_final_std` (their standard deviation) and `lambda_bar` (time average
over the run, Corollary 3.3), tags `llc.negative_estimates` and `llc.nonstationary_estimates`
(counts of flagged estimates). While it runs, `llc_partial.parquet` (the estimates so far, for a
resumed stage; `Partial`), removed when the stage completes.

Diagnostics (devinterp's calibration guidance: a usable chain has a flat loss trace and gives a
positive λ). `negative`: λ̂ < 0, the chain found lower loss than w_t (w_t is not a local minimum,
or the step is too large). `nonstationary`: the trace still trends. The chain-averaged trace is cut
into `llc.diagnostics.batches` consecutive batches; the drift is nβ·(mean of the second half −
mean of the first half), in units of λ, and its z-score uses the spread of the batch means
(batch means, not single draws, so autocorrelation does not inflate it). Flagged when
|z| > `max_z` and |drift| > `max_drift`·|λ̂|: a trend both real and large enough to move λ̂.

devinterp deep-copies the model and samples in train mode whatever mode it is handed, so batch
norm uses batch statistics during SGLD; the run records this as tag `llc.model_mode`.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from pipeline import artifacts, build, resume
from pipeline.data import Data
from pipeline.errors import UserError
from pipeline.models import num_params
from pipeline.progress import bar
from pipeline.stacked import MemberBatches, Stacked
from pipeline.tasks import Classification, Task
from pipeline.tracking import Tracker

# devinterp warns on every call about choices the paper's Table 3 makes on purpose
# (0 burn-in, nβ from the batch, more draws than batches); the settings are recorded instead.
_EXPECTED_WARNINGS = (
    "nbeta not set",
    "You are taking more draws than burn-in steps",
    "You are taking more sample batches than there are dataloader batches",
    "Using passed in nbeta",
    "If you're setting a nbeta or temperature",
    "You are using seeded runs",
    "std(): degrees of freedom",  # one chain has no spread; llc_std is recorded as NaN then
)


def stationarity(trace: np.ndarray, nbeta: float, batches: int = 20) -> tuple[float, float]:
    """Drift of a loss trace (chains x draws) in λ units, nβ·(second-half mean − first-half mean),
    and its batch-means z-score; NaNs when the trace is too short to split (< 4 draws)."""
    mean = np.asarray(trace, dtype=float).mean(0)
    b = min(int(batches), len(mean) // 2) // 2 * 2  # an even number of batches, ≥ 2 draws each
    if b < 2:
        return float("nan"), float("nan")
    means = np.array([c.mean() for c in np.array_split(mean[: len(mean) // b * b], b)])
    first, second = means[: b // 2], means[b // 2 :]
    drift = nbeta * (second.mean() - first.mean())
    if b < 4:  # one batch per half: no spread to compare with
        return float(drift), float("nan")
    se = nbeta * np.sqrt(first.var(ddof=1) / len(first) + second.var(ddof=1) / len(second))
    z = drift / se if se > 0 else (0.0 if drift == 0 else np.inf * np.sign(drift))
    return float(drift), float(z)


def diagnose(row: dict, diagnostics: DictConfig | None) -> dict:
    """The flags of one estimate (see the module docstring); a failed estimate is flagged neither
    way (its status says it failed)."""
    d = diagnostics if diagnostics is not None else OmegaConf.create({})
    if row["trace"] is None:
        return {"negative": False, "nonstationary": False, "trace_drift": np.nan, "trace_drift_z": np.nan}
    drift, z = stationarity(row["trace"], row["nbeta"], int(d.get("batches", 20)))
    trending = bool(np.isfinite(z) and abs(z) > float(d.get("max_z", 3.0)))
    large = bool(abs(drift) > float(d.get("max_drift", 0.1)) * abs(row["llc"]))
    return {
        "negative": bool(row["llc"] < 0),
        "nonstationary": trending and large,
        "trace_drift": drift,
        "trace_drift_z": z,
    }


def sampler_seed(llc_seed: int, step: int) -> int:
    """devinterp's seed for the estimate at training step `step`: reproducible, and other noise
    (and other minibatches) at every step."""
    return int(llc_seed) * 1_000_003 + int(step)


def nbeta(llc: DictConfig, batch_size: int) -> float:
    """nβ: the setting, else devinterp's `default_nbeta`, batch / log(batch)."""
    from devinterp.utils import default_nbeta

    return float(llc.nbeta) if llc.nbeta is not None else float(default_nbeta(int(batch_size)))


def estimate(
    model: torch.nn.Module,
    data: Data,
    llc: DictConfig,
    step: int,
    device: str,
    evaluate: Callable | None = None,
) -> dict:
    """One λ estimate at the model's current weights (training step `step`), devinterp SGLD with
    the given settings. The sampler's seed is derived from `llc.seed` and the step, so every
    estimate is reproducible and estimates at different steps use different noise.

    `evaluate(model, batch) -> loss` is devinterp's loss hook; the default is its cross-entropy
    for classifiers (models with another loss, e.g. a causal LM or a regression, pass theirs).
    The row carries the diagnostics of `diagnose` (negative λ̂, non-stationary trace)."""
    from devinterp.optim import SGMCMC
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary
    from devinterp.utils import evaluate_ce, get_init_loss_multi_batch

    evaluate = evaluate or evaluate_ce
    seed = sampler_seed(llc.seed, step)
    loader = data.loader(seed)
    row = {"nbeta": nbeta(llc, data.batch_size)}
    # The loss at w_t, computed as devinterp does (train mode, num_chains batches), kept for the record.
    row["init_loss"] = get_init_loss_multi_batch(loader, int(llc.num_chains), model, evaluate, device)
    with warnings.catch_warnings():
        for msg in _EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=re.escape(msg))
        try:
            out = estimate_learning_coeff_with_summary(
                model,
                loader,
                evaluate=evaluate,
                sampling_method=SGMCMC.sgld,
                optimizer_kwargs=_sgld_kwargs(llc, row["nbeta"]),
                num_draws=int(llc.num_draws),
                num_chains=int(llc.num_chains),
                num_burnin_steps=int(llc.num_burnin_steps),
                num_steps_bw_draws=int(llc.num_steps_bw_draws),
                init_loss=row["init_loss"],
                seed=seed,
                device=device,
                verbose=False,
            )
        except RuntimeError as e:  # a diverging chain: "NaN detected in loss ..."
            row |= {"llc": np.nan, "llc_std": np.nan, "status": f"failed: {e}", "trace": None}
            return row | diagnose(row, llc.get("diagnostics"))
    row |= {
        "llc": float(out["llc/mean"]),
        "llc_std": float(out["llc/std"]) if int(llc.num_chains) > 1 else np.nan,
        "status": "ok",
        "trace": np.asarray(out["loss/trace"]),
    }
    return row | diagnose(row, llc.get("diagnostics"))


def _sgld_kwargs(llc: DictConfig, nb: float) -> dict:
    return {"lr": float(llc.lr), "localization": float(llc.localization), "nbeta": nb}


def estimate_many(
    model: torch.nn.Module,
    states: Sequence[Mapping[str, torch.Tensor]],
    data: Data,
    llc: DictConfig,
    steps: Sequence[int],
    device: str,
    task: Task,
    seeds: Sequence[int] | None = None,
) -> list[dict]:
    """λ at each of `states` (weights of `model`'s architecture, at training steps `steps`) from ONE
    devinterp SGLD run on the stacked copies (`pipeline.stacked`); rows as `estimate` returns them.

    Member i is what `estimate` does at `steps[i]` with `llc.seed = seeds[i]` (default `llc.seed`):
    the same sampler, settings and nβ, the same minibatches (its own stream, seeded as there) and
    the same loss at w_t (devinterp's: `num_chains` batches in train mode). Only the Gaussian noise
    differs: one draw per stacked tensor serves every member, so each member's noise is independent
    of the others' but not the draw `estimate` makes (with a single member it is that draw, tested).
    A member whose chain diverges fails alone. `task` gives the members' losses
    (`Task.member_losses`)."""
    from devinterp.optim import SGMCMC
    from devinterp.slt.sampler import sample

    seeds = [int(llc.seed)] * len(states) if seeds is None else [int(s) for s in seeds]
    member_seeds = [sampler_seed(s, t) for s, t in zip(seeds, steps)]
    nb = nbeta(llc, data.batch_size)
    chains, draws = int(llc.num_chains), int(llc.num_draws)
    stacked = Stacked.from_states(model, states).to(device).train()
    loader = MemberBatches(data.x_train.to(device), data.y_train.to(device), data.batch_size, member_seeds)

    def evaluate(m: Stacked, batch: tuple[torch.Tensor, torch.Tensor]) -> dict:
        x, y = batch
        per = task.member_losses(m(x), y)
        return {"loss": per.sum(), "per_member": per.detach()}

    with torch.no_grad():  # the loss at w_t, as devinterp's get_init_loss_multi_batch takes it
        first = islice(loader, min(chains, len(loader)))
        init = torch.stack([evaluate(stacked, b)["per_member"] for b in first]).mean(0)
    trace = torch.zeros(len(states), chains, draws, device=device)

    def record(draw: int, chain: int, results: dict, **_) -> None:
        trace[:, chain, draw] = results["per_member"]

    with warnings.catch_warnings():
        for msg in _EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=re.escape(msg))
        sample(
            stacked,
            loader,
            callbacks=[record],
            evaluate=evaluate,
            sampling_method=SGMCMC.sgld,
            optimizer_kwargs=_sgld_kwargs(llc, nb),
            num_draws=draws,
            num_chains=chains,
            num_burnin_steps=int(llc.num_burnin_steps),
            num_steps_bw_draws=int(llc.num_steps_bw_draws),
            init_loss=1.0,  # unused: λ is computed below, per member; non-zero so devinterp skips its own
            seed=member_seeds[0],
            device=device,
            verbose=False,
        )
    return [_member_row(tr, float(i0), nb, llc) for tr, i0 in zip(trace.cpu().numpy(), init.cpu().numpy())]


def _member_row(trace: np.ndarray, init_loss: float, nb: float, llc: DictConfig) -> dict:
    """One member's row from its loss trace (chains x draws), as devinterp's LLCEstimator computes it."""
    row: dict = {"nbeta": nb, "init_loss": init_loss}
    bad = np.argwhere(~np.isfinite(trace))
    if len(bad):
        chain, draw = bad[np.lexsort((bad[:, 1], bad[:, 0]))][0]
        status = f"failed: NaN detected in loss at chain {chain}, draw {draw}"
        row |= {"llc": np.nan, "llc_std": np.nan, "status": status, "trace": None}
        return row | diagnose(row, llc.get("diagnostics"))
    per_chain = nb * (trace.mean(1) - init_loss)
    row |= {
        "llc": float(per_chain.mean()),
        "llc_std": float(per_chain.std(ddof=1)) if len(per_chain) > 1 else np.nan,
        "status": "ok",
        "trace": trace,
    }
    return row | diagnose(row, llc.get("diagnostics"))


def method_for(llc: DictConfig, task: Task) -> str:
    """How the llc stage runs its estimates: `llc.method` (batched or serial), serial for tasks
    whose models are not stacked (language models: HuggingFace modules are not vmapped here)."""
    method = str(llc.get("method", "serial"))
    if method not in ("batched", "serial"):
        raise UserError(f"llc.method={method}: choose batched or serial")
    return method if isinstance(task, Classification) else "serial"


def stacked_groups(count: int, num_params: int, max_stacked: int) -> list[range]:
    """Consecutive groups of `count` members, each holding at most `max_stacked` parameters in all
    (at least one member per group), so one pass's memory stays bounded whatever the run's length."""
    per = max(1, int(max_stacked) // max(1, int(num_params)))
    return [range(i, min(i + per, count)) for i in range(0, count, per)]


def summarize(table: pd.DataFrame, last: int) -> dict[str, float]:
    """λ_final (mean of the last `last` successful estimates), their standard deviation
    `lambda_final_std` (the "λ ± std" of Tables 5-8) and λ̄ (the time average of all of them).

    Estimates are evenly spaced in t, so the mean over all of them is the time average.
    """
    ok = table[table["status"] == "ok"].sort_values("step")
    if ok.empty:
        return {"lambda_final": float("nan"), "lambda_final_std": float("nan"), "lambda_bar": float("nan")}
    tail = ok["llc"].tail(last)
    return {
        "lambda_final": float(tail.mean()),
        # ddof=1; a single estimate has no spread (NaN, not 0).
        "lambda_final_std": float(tail.std(ddof=1)) if len(tail) > 1 else float("nan"),
        "lambda_bar": float(ok["llc"].mean()),
    }


def trace_table(trace: np.ndarray, **keys: object) -> pd.DataFrame:
    """One estimate's loss trace (chains x draws) as long rows: the `keys` columns, chain, draw, loss."""
    chains, draws = trace.shape
    return pd.DataFrame(
        {
            **keys,
            "chain": np.repeat(np.arange(chains), draws),
            "draw": np.tile(np.arange(draws), chains),
            "loss": trace.ravel(),
        }
    )


def tables(rows: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The λ(t) table and the long table of loss traces (step, chain, draw, loss)."""
    table = pd.DataFrame([{k: v for k, v in r.items() if k != "trace"} for r in rows])
    traces = [trace_table(r["trace"], step=r["step"]) for r in rows if r["trace"] is not None]
    return table, (pd.concat(traces, ignore_index=True) if traces else pd.DataFrame())


def record(tracker: Tracker, run_id: str, rows: list[dict], cfg: DictConfig) -> dict[str, float]:
    """Log λ(t), its traces and the summary to the run; returns the summary."""
    table, traces = tables(rows)
    tracker.log_table(run_id, table, "llc")
    if not traces.empty:
        tracker.log_table(run_id, traces, "llc_traces")
    tracker.log_series(run_id, "llc", table["step"], table["llc"])
    summary = summarize(table, int(cfg.llc.last))
    tracker.log_summary(run_id, summary)
    failed = int((table["status"] != "ok").sum())
    flags = {k: int(table[k].sum()) if k in table else 0 for k in ("negative", "nonstationary")}
    tracker.set_tags(
        run_id,
        {
            "llc.model_mode": "train (devinterp samples in train mode; batch norm uses batch stats)",
            "llc.nbeta_used": f"{table['nbeta'].iloc[0]:.6g}"
            + (" (batch/log batch)" if cfg.llc.nbeta is None else " (set)"),
            "llc.failed_estimates": failed,
            "llc.last": int(cfg.llc.last),  # how many estimates λ_final averages (fit resamples them)
            "llc.negative_estimates": flags["negative"],
            "llc.nonstationary_estimates": flags["nonstationary"],
            "llc.estimates": len(table),
        },
    )
    return summary


class Partial:
    """The rows estimated so far, persisted as artifact `llc_partial.parquet` at most every
    `every_s` seconds (and when interrupted), so that a resumed llc stage skips their steps.

    The loss trace goes in as raw bytes with its shape and dtype: read back, every row is the row
    it was, bit for bit."""

    NAME = "llc_partial"

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
        table = self.tracker.load_table(self.run_id, self.NAME)
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
        self.tracker.log_table(self.run_id, pd.DataFrame(out), self.NAME)
        self.saved, self.last = len(self.rows), time.monotonic()

    def clear(self) -> None:
        """After the stage has recorded its tables: the partial rows are no longer needed."""
        if self.enabled and self.saved:
            self.tracker.delete_artifacts(self.run_id, f"{self.NAME}.parquet")


def run(cfg: DictConfig, tracker: Tracker, run_id: str, progress: bool | None = None) -> dict:
    """Estimate λ at every checkpoint the train stage kept, with the settings in `cfg.llc`."""
    trained = artifacts.trained_config(tracker, run_id)
    if trained.llc.online and cfg.llc.online:
        table = tracker.load_table(run_id, "llc")
        if table is not None:  # estimated during training already
            return summarize(table, int(cfg.llc.last))
    with tempfile.TemporaryDirectory() as tmp:
        ckpt_dir = tracker.download_dir(run_id, "checkpoints", Path(tmp))
        files = sorted(ckpt_dir.glob("step_*.pt")) if ckpt_dir else []
        every = int(trained.llc.every)
        steps = [int(f.stem.removeprefix("step_")) for f in files]
        chosen = [(s, f) for s, f in zip(steps, files) if s > 0 and s % every == 0]
        if not chosen:
            raise UserError(
                f"run {run_id} kept no checkpoints at multiples of llc.every={every}: "
                "re-train with train.keep_checkpoints=true and llc.online=false"
            )
        artifacts.check_checkpoints(run_id, [f for _, f in chosen])  # before data and model are built
        # Data and model are rebuilt only once there is something to estimate on.
        data = build.data(trained)
        model = build.model(trained, data).to(cfg.device)
        task = build.task(trained)
        method = method_for(cfg.llc, task)
        tracker.set_tags(run_id, {"llc.method": method})
        enabled, every_s, _ = resume.settings(cfg)
        partial = Partial(tracker, run_id, cfg.llc, every_s, enabled)  # rows an interrupted run estimated
        chosen = [(s, f) for s, f in chosen if s not in partial.steps]
        try:
            if method == "batched":
                groups = stacked_groups(len(chosen), num_params(model), int(cfg.llc.max_stacked))
                for group in bar(progress, iterable=groups, desc=f"llc ({len(chosen)} estimates, batched)"):
                    part = [chosen[i] for i in group]
                    states = [artifacts.load_checkpoint(run_id, f, cfg.device) for _, f in part]
                    steps = [step for step, _ in part]
                    found = estimate_many(model, states, data, cfg.llc, steps, cfg.device, task)
                    partial.add([{"step": step, **row} for step, row in zip(steps, found)])
            else:
                for step, f in bar(progress, iterable=chosen, desc="llc"):
                    model.load_state_dict(artifacts.load_checkpoint(run_id, f, cfg.device))
                    row = estimate(model, data, cfg.llc, step, cfg.device, task.sgld_loss)
                    partial.add([{"step": step, **row}])
        except BaseException as e:
            if resume.interruption(e) is not None:  # keep what was estimated for the resumed run
                partial.save()
            raise
    rows = sorted(partial.rows, key=lambda r: int(r["step"]))
    with resume.INTERRUPTS.deferred():  # the job acts on a signal after marking the stage done
        summary = record(tracker, run_id, rows, cfg)
        partial.clear()
    return summary
