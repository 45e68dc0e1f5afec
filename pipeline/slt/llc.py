"""λ, the local learning coefficient (Lau et al.), estimated with devinterp's SGLD, and its diagnostics.

Two ways to one estimator:
- `estimate`: devinterp 1.3's own `estimate_learning_coeff_with_summary` on one model, the reference
  (the llc stage's `method=serial`, online λ during training, models that cannot be stacked);
- `estimate_many` and `estimate_members`: the sampler core (`pipeline.slt.sgld`) on a stacked model,
  many estimates in one pass, each computed from its own loss trace as devinterp's `LLCEstimator`
  computes it: λ̂ = nβ·(mean loss over the draws − loss at w_t), per chain, averaged over chains.

Diagnostics (devinterp's calibration guidance: a usable chain has a flat loss trace and gives a
positive λ). `negative`: λ̂ < 0, the chain found lower loss than w_t (w_t is not a local minimum,
or the step is too large). `nonstationary`: the trace still trends. The chain-averaged trace is cut
into `batches` consecutive batches; the drift is nβ·(mean of the second half − mean of the first
half), in units of λ, and its z-score uses the spread of the batch means (batch means, not single
draws, so autocorrelation does not inflate it). Flagged when |z| > `max_z` and |drift| >
`max_drift`·|λ̂|: a trend both real and large enough to move λ̂.

devinterp deep-copies the model and samples in train mode whatever mode it is handed, so batch norm
uses batch statistics during SGLD. Plain torch, numpy and devinterp; no MLflow, no config.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import islice

import numpy as np
import pandas as pd
import torch

from pipeline.data import Data
from pipeline.data.batches import MemberBatches
from pipeline.models.tasks import Task
from pipeline.slt import sgld
from pipeline.slt.settings import Diagnostics, Settings
from pipeline.slt.stacked import Stacked


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


def diagnose(row: dict, diagnostics: Diagnostics | Mapping | None = None) -> dict:
    """The flags of one estimate (see the module docstring); a failed estimate is flagged neither
    way (its status says it failed)."""
    d = Diagnostics.of(diagnostics)
    if row["trace"] is None:
        return {"negative": False, "nonstationary": False, "trace_drift": np.nan, "trace_drift_z": np.nan}
    drift, z = stationarity(row["trace"], row["nbeta"], int(d.batches))
    trending = bool(np.isfinite(z) and abs(z) > float(d.max_z))
    large = bool(abs(drift) > float(d.max_drift) * abs(row["llc"]))
    return {
        "negative": bool(row["llc"] < 0),
        "nonstationary": trending and large,
        "trace_drift": drift,
        "trace_drift_z": z,
    }


def sampler_seed(llc_seed: int, step: int) -> int:
    """The sampler's seed for the estimate at training step `step`: reproducible, and other noise
    (and other minibatches) at every step."""
    return int(llc_seed) * 1_000_003 + int(step)


def nbeta(setting: float | None, batch_size: int) -> float:
    """nβ: the setting, else devinterp's `default_nbeta`, batch / log(batch)."""
    from devinterp.utils import default_nbeta

    return float(setting) if setting is not None else float(default_nbeta(int(batch_size)))


def estimate(
    model: torch.nn.Module,
    data: Data,
    settings: Settings | Mapping,
    step: int,
    device: str,
    evaluate: Callable | None = None,
) -> dict:
    """One λ estimate at the model's current weights (training step `step`) with devinterp's own
    estimator. The sampler's seed is derived from `settings.seed` and the step, so every estimate
    is reproducible and estimates at different steps use different noise.

    `evaluate(model, batch) -> loss` is devinterp's loss hook; the default is its cross-entropy
    for classifiers (models with another loss, e.g. a causal LM, pass their task's `sgld_loss`).
    The row carries the diagnostics of `diagnose` (negative λ̂, non-stationary trace)."""
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary
    from devinterp.utils import evaluate_ce, get_init_loss_multi_batch

    evaluate = evaluate or evaluate_ce
    settings = Settings.of(settings)
    seed = sampler_seed(settings.seed, step)
    loader = data.loader(seed)
    row = {"nbeta": nbeta(settings.nbeta, data.batch_size)}
    chains = settings.chains(row["nbeta"])
    # The loss at w_t, computed as devinterp does (train mode, num_chains batches), kept for the record.
    row["init_loss"] = get_init_loss_multi_batch(loader, chains.chains, model, evaluate, device)
    with sgld.quiet_devinterp():
        try:
            out = estimate_learning_coeff_with_summary(
                model,
                loader,
                evaluate=evaluate,
                **sgld.devinterp_arguments(chains),
                init_loss=row["init_loss"],
                seed=seed,
                device=device,
                verbose=False,
            )
        except RuntimeError as e:  # a diverging chain: "NaN detected in loss ..."
            row |= {"llc": np.nan, "llc_std": np.nan, "status": f"failed: {e}", "trace": None}
            return row | diagnose(row, settings.diagnostics)
    row |= {
        "llc": float(out["llc/mean"]),
        "llc_std": float(out["llc/std"]) if chains.chains > 1 else np.nan,
        "status": "ok",
        "trace": np.asarray(out["loss/trace"]),
    }
    return row | diagnose(row, settings.diagnostics)


def member_row(trace: np.ndarray, init_loss: float, nb: float, diagnostics: Diagnostics) -> dict:
    """One estimate's row from its loss trace (chains x draws), as devinterp's LLCEstimator computes
    λ̂; a non-finite loss fails the estimate, naming the first chain and draw it appears at."""
    row: dict = {"nbeta": nb, "init_loss": init_loss}
    bad = np.argwhere(~np.isfinite(trace))
    if len(bad):
        chain, draw = bad[np.lexsort((bad[:, 1], bad[:, 0]))][0]
        status = f"failed: NaN detected in loss at chain {chain}, draw {draw}"
        row |= {"llc": np.nan, "llc_std": np.nan, "status": status, "trace": None}
        return row | diagnose(row, diagnostics)
    per_chain = nb * (trace.mean(1) - init_loss)
    row |= {
        "llc": float(per_chain.mean()),
        "llc_std": float(per_chain.std(ddof=1)) if len(per_chain) > 1 else np.nan,
        "status": "ok",
        "trace": trace,
    }
    return row | diagnose(row, diagnostics)


@torch.no_grad()
def _batch_init_loss(task: Task, stacked: Stacked, loader, chains: int, device: str) -> torch.Tensor:
    """Every member's loss at w_t as devinterp's get_init_loss_multi_batch takes it: the mean over
    the first `chains` batches, in train mode."""
    first = islice(loader, min(chains, len(loader)))
    losses = [task.sgld_member_losses(stacked, (x.to(device), y.to(device))) for x, y in first]
    return torch.stack(losses).mean(0)


def estimate_many(
    model: torch.nn.Module,
    states: Sequence[Mapping[str, torch.Tensor]],
    data: Data,
    settings: Settings | Mapping,
    steps: Sequence[int],
    device: str,
    task: Task,
    seeds: Sequence[int] | None = None,
) -> list[dict]:
    """λ at each of `states` (weights of `model`'s architecture, at training steps `steps`) from ONE
    pass of the sampler core on the stacked copies; rows as `estimate` returns them.

    Member i is what `estimate` does at `steps[i]` with `seed = seeds[i]` (default `settings.seed`):
    the same sampler, settings and nβ, the same minibatches (its own stream, seeded as there) and
    the same loss at w_t (devinterp's: `num_chains` batches in train mode). Only the Gaussian noise
    differs: one draw per stacked tensor serves every member, so each member's noise is independent
    of the others' but not the draw `estimate` makes (with a single member it is that draw, tested).
    A member whose chain diverges fails alone."""
    settings = Settings.of(settings)
    seeds = [int(settings.seed)] * len(states) if seeds is None else [int(s) for s in seeds]
    member_seeds = [sampler_seed(s, t) for s, t in zip(seeds, steps)]
    nb = nbeta(settings.nbeta, data.batch_size)
    chains = settings.chains(nb)
    stacked = Stacked.from_states(model, states).to(device).train()
    loader = MemberBatches(data.x_train.to(device), data.y_train.to(device), data.batch_size, member_seeds)
    init = _batch_init_loss(task, stacked, loader, chains.chains, device)
    losses = task.sgld_member_losses
    trace = sgld.sample(stacked, loader, losses, len(states), chains, member_seeds[0], device)
    return [
        member_row(tr, float(i0), nb, settings.diagnostics)
        for tr, i0 in zip(trace.cpu().numpy(), init.cpu().numpy())
    ]


def estimate_members(
    stacked: Stacked, data: Data, settings: Settings | Mapping, step: int, device: str, task: Task
) -> pd.DataFrame:
    """λ of every member of `stacked` (one model per seed, at training step `step`) from ONE pass of
    the sampler core, the members sharing the minibatches (common random numbers: the minibatch
    noise that dominates single estimates on small data sets is then common to every member).
    The loss at w_t is the whole training loss L_n(w_t), eq. (25)'s own definition (`llc`);
    devinterp's convention, `num_chains` minibatches, is kept as `llc_batch_init`."""
    settings = Settings.of(settings)
    seed = sampler_seed(settings.seed, step)
    loader = data.loader(seed)
    nb = nbeta(settings.nbeta, data.batch_size)
    chains = settings.chains(nb)
    shared = Stacked(stacked.member, stacked.params, stacked.extra, shared=True).to(device).train()
    init_batch = _batch_init_loss(task, shared, loader, chains.chains, device)
    with torch.no_grad():  # ... and as eq. (25) defines it: L_n(w_t) on the whole training set
        init = task.sgld_member_losses(shared, (data.x_train.to(device), data.y_train.to(device)))
    trace = sgld.sample(shared, loader, task.sgld_member_losses, len(stacked), chains, seed, device).mean(1)
    lam = nb * (trace.mean(1) - init)
    ok = torch.isfinite(lam)
    flags = pd.DataFrame(
        [
            diagnose({"trace": tr[None], "nbeta": nb, "llc": float(lm)}, settings.diagnostics)
            for tr, lm in zip(trace.cpu().double().numpy(), lam.cpu().double().numpy())
        ]
    )
    return pd.DataFrame(
        {
            "init_loss": init.cpu().double().numpy(),
            "init_loss_batch": init_batch.cpu().double().numpy(),
            "nbeta": nb,
            "llc": lam.cpu().double().numpy(),
            "llc_batch_init": (nb * (trace.mean(1) - init_batch)).cpu().double().numpy(),
            "llc_std": np.nan,
            "status": np.where(ok.cpu().numpy(), "ok", "failed: non-finite loss"),
            "llc_method": "batched",
        }
    ).join(flags)


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
