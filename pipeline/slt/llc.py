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
`max_drift`·|λ̂|: a trend both real and large enough to move λ̂. ArviZ's diagnostics (Vehtari et
al. 2021) on the same trace: rank-normalized split-R-hat (`rhat`; `rhat_high` above `max_rhat`,
1.01), bulk and tail effective sample sizes (`ess_bulk`, `ess_tail`; `ess_low` below
`min_ess_per_chain` per chain, 100) and λ̂'s Monte-Carlo standard error (`llc_mcse`), its error bar.
With one chain R-hat compares the chain's two halves.

devinterp deep-copies the model and samples in train mode whatever mode it is handed, so batch norm
uses batch statistics during SGLD. Plain torch, numpy and devinterp; no MLflow, no config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from itertools import islice

import numpy as np
import pandas as pd
import torch

from pipeline.data import Data
from pipeline.data.batches import MemberBatches
from pipeline.errors import UserError
from pipeline.models.tasks import Classification, Task
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


def convergence(trace: np.ndarray, nbeta: float) -> dict[str, float]:
    """ArviZ's chain diagnostics of a loss trace (chains x draws): rank-normalized split-R-hat,
    bulk and tail ESS (tail: the 5 % and 95 % quantiles), and λ̂'s Monte-Carlo standard error,
    nβ·MCSE(mean loss) (λ̂ = nβ·(mean loss − L(w_t)) with L(w_t) fixed). NaNs below 4 draws."""
    from arviz_stats.base import array_stats

    x = np.asarray(trace, dtype=float)
    if x.shape[0] == 1:  # one chain: R-hat compares its two halves (ArviZ wants two chains at least)
        x = x[:, : x.shape[1] // 2 * 2].reshape(2, -1)
    if x.shape[-1] < 4:
        return {"rhat": np.nan, "ess_bulk": np.nan, "ess_tail": np.nan, "llc_mcse": np.nan}
    return {
        "rhat": float(array_stats.rhat(x)),
        "ess_bulk": float(array_stats.ess(x, method="bulk")),
        "ess_tail": float(array_stats.ess(x, method="tail", prob=0.05)),
        "llc_mcse": float(nbeta * array_stats.mcse(x, method="mean")),
    }


FLAGS = ("negative", "nonstationary", "rhat_high", "ess_low")


def diagnose(row: dict, diagnostics: Diagnostics | Mapping | None = None) -> dict:
    """The diagnostics and flags of one estimate (see the module docstring); a failed estimate is
    flagged no way (its status says it failed)."""
    d = Diagnostics.of(diagnostics)
    if row["trace"] is None:
        nan = {"trace_drift": np.nan, "trace_drift_z": np.nan}
        return dict.fromkeys(FLAGS, False) | nan | convergence(np.zeros((1, 0)), 1.0)
    trace = np.asarray(row["trace"])
    drift, z = stationarity(trace, row["nbeta"], int(d.batches))
    trending = bool(np.isfinite(z) and abs(z) > float(d.max_z))
    large = bool(abs(drift) > float(d.max_drift) * abs(row["llc"]))
    conv = convergence(trace, row["nbeta"])
    min_ess = float(d.min_ess_per_chain) * trace.shape[0]
    ess = min(conv["ess_bulk"], conv["ess_tail"])
    return {
        "negative": bool(row["llc"] < 0),
        "nonstationary": trending and large,
        "rhat_high": bool(np.isfinite(conv["rhat"]) and conv["rhat"] > float(d.max_rhat)),
        "ess_low": bool(not np.isfinite(ess) or ess < min_ess),
        "trace_drift": drift,
        "trace_drift_z": z,
    } | conv


def method_for(method: str, task: Task) -> str:
    """How the llc stage runs its estimates: `method` (batched or serial), serial for tasks whose
    models are not stacked (language models: HuggingFace modules are not vmapped here)."""
    if method not in ("batched", "serial"):
        raise UserError(f"llc.method={method}: choose batched or serial")
    return method if isinstance(task, Classification) else "serial"


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
    from devinterp.utils import evaluate_ce, get_init_loss_multi_batch, split_results

    evaluate = evaluate or evaluate_ce
    settings = Settings.of(settings)
    seed = sampler_seed(settings.seed, step)
    loader = data.loader(seed)
    row = {"nbeta": nbeta(settings.nbeta, data.batch_size)}
    chains = settings.chains(row["nbeta"])
    # The loss at w_t: devinterp's (train mode, num_chains batches) or L_n(w_t) (settings.init_loss).
    if settings.init_loss == "full":
        first = lambda m, batch: split_results(evaluate(m, batch))[0]  # noqa: E731  (loss, outputs) -> loss
        row["init_loss"] = float(full_loss(first, model.to(device), data, device))
    else:
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
def full_loss(losses: Callable, model: torch.nn.Module, data: Data, device: str, chunk: int = 4096):
    """L_n(w_t): `losses(model, batch)` (a mean over the batch) over the whole training set in
    consecutive chunks, weighted by their sizes, in train mode (as the chains see the model)."""
    model.train()
    n = len(data.y_train)
    total = 0.0
    for i in range(0, n, chunk):
        x, y = data.x_train[i : i + chunk].to(device), data.y_train[i : i + chunk].to(device)
        total = total + losses(model, (x, y)) * (len(y) / n)
    return total


@torch.no_grad()
def _batch_init_loss(task: Task, stacked: Stacked, loader, chains: int, device: str) -> torch.Tensor:
    """Every member's loss at w_t as devinterp's get_init_loss_multi_batch takes it: the mean over
    the first `chains` batches, in train mode."""
    first = islice(loader, min(chains, len(loader)))
    losses = [task.sgld_member_losses(stacked, (x.to(device), y.to(device))) for x, y in first]
    return torch.stack(losses).mean(0)


def chain_seed(member_seed: int, chain: int) -> int:
    """The minibatch stream of chain `chain` of a member: chain 0's is the member's own seed (so a
    one-chain estimate is the one-by-one estimate), the others' derived from it, independent."""
    if chain == 0:
        return int(member_seed)
    return int(np.random.SeedSequence([int(member_seed) % 2**63, int(chain)]).generate_state(1)[0])


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
    pass of the sampler core on stacked copies, every chain of every state a member of the stack;
    rows as `estimate` returns them.

    State i's chains start at its weights, each with its own minibatch stream (`chain_seed` of
    `sampler_seed(seeds[i], steps[i])`, default seed `settings.seed`) and its own Gaussian noise (one
    draw per stacked tensor serves every member). Its loss at w_t is devinterp's (the mean over the
    first `num_chains` batches of chain 0's stream, in train mode) or, with `init_loss=full`,
    L_n(w_t) on the whole training set. With one chain, state i's estimate
    is what `estimate` does at `steps[i]`: the same sampler, settings, nβ and minibatches, and (with
    a single state) the same noise, tested. A member whose chain diverges fails alone."""
    settings = Settings.of(settings)
    seeds = [int(settings.seed)] * len(states) if seeds is None else [int(s) for s in seeds]
    member_seeds = [sampler_seed(s, t) for s, t in zip(seeds, steps)]
    nb = nbeta(settings.nbeta, data.batch_size)
    chains = settings.chains(nb)
    per = chains.chains
    stacked = Stacked.from_states(model, [s for s in states for _ in range(per)]).to(device).train()
    streams = [chain_seed(s, c) for s in member_seeds for c in range(per)]
    loader = MemberBatches(data.x_train.to(device), data.y_train.to(device), data.batch_size, streams)
    if settings.init_loss == "full":  # L_n(w_t), eq. (25): no minibatch noise in the reference
        own = Stacked.from_states(model, states)
        shared = Stacked(own.member, own.params, own.extra, shared=True).to(device)  # one batch for all
        init = full_loss(task.sgld_member_losses, shared, data, device)
    else:  # devinterp's: `num_chains` batches of the stream its chains share, chain 0's (from the
        # same loader as the chains, which go on from there, as devinterp's do)
        init = _batch_init_loss(task, stacked, loader, per, device).reshape(len(states), per)[:, 0]
    one = dataclasses.replace(chains, chains=1)
    trace = sgld.sample(stacked, loader, task.sgld_member_losses, len(streams), one, member_seeds[0], device)
    trace = trace.reshape(len(states), per, chains.draws)
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
    trace = sgld.sample(shared, loader, task.sgld_member_losses, len(stacked), chains, seed, device)
    mean = trace.mean((1, 2))
    lam = nb * (mean - init)
    ok = torch.isfinite(lam)
    flags = pd.DataFrame(
        [
            diagnose({"trace": tr, "nbeta": nb, "llc": float(lm)}, settings.diagnostics)
            for tr, lm in zip(trace.cpu().double().numpy(), lam.cpu().double().numpy())
        ]
    )
    return pd.DataFrame(
        {
            "init_loss": init.cpu().double().numpy(),
            "init_loss_batch": init_batch.cpu().double().numpy(),
            "nbeta": nb,
            "llc": lam.cpu().double().numpy(),
            "llc_batch_init": (nb * (mean - init_batch)).cpu().double().numpy(),
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
    `lambda_final_std` (the "λ ± std" of Tables 5-8), its Monte-Carlo standard error
    `lambda_final_mcse` and λ̄ (the time average of all of them).

    Estimates are evenly spaced in t, so the mean over all of them is the time average.
    """
    ok = table[table["status"] == "ok"].sort_values("step")
    if ok.empty:
        return dict.fromkeys(
            ("lambda_final", "lambda_final_std", "lambda_final_mcse", "lambda_bar"), float("nan")
        )
    tail = ok.tail(last)
    mcse = tail["llc_mcse"] if "llc_mcse" in tail else pd.Series(np.nan, index=tail.index)
    return {
        "lambda_final": float(tail["llc"].mean()),
        # ddof=1; a single estimate has no spread (NaN, not 0).
        "lambda_final_std": float(tail["llc"].std(ddof=1)) if len(tail) > 1 else float("nan"),
        # The sampler's own error of that mean (independent estimates): sqrt(Σ mcse²) / k.
        "lambda_final_mcse": float(np.sqrt((mcse**2).sum(min_count=1)) / len(tail)),
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
