"""Stage ensemble: many seeds of one run config trained at once (`pipeline.ensemble`), then each
member's λ at its final weights and its displacement exponent α.

Reads: the config; members are `ensemble.members` seeds from `ensemble.first_seed` (or the list
`ensemble.seeds`). Each member is what a one-by-one train stage with its seed would train.
Writes to the run: `members.parquet` (member, seed, final train/test loss and accuracy, λ with
the llc stage's sampler and settings (see below for how the two modes differ): `llc`, `llc_std`,
`init_loss`, `nbeta`, `status`, the diagnostics `negative`, `nonstationary`; the fit's `alpha`,
`alpha_se`, `r2`, `d_s`, `d_walk`), `member_trajectory.parquet` (R(t) per member, the train stage's
columns plus `member`, `seed`), `member_evals.parquet`, `ensemble/member_weights.pt` (stacked final
weights and seeds), summary `ensemble_members`, `time/ensemble_train_s`, `time/ensemble_llc_s`,
`time/llc_per_member_s`.

λ at the last step, with devinterp's SGLD estimator and the settings `cfg.llc` either way:
- `ensemble.llc=serial`: `pipeline.llc.estimate` (the llc stage's estimator) on each member with
  the member's seed in `llc.seed`, so a member's λ is exactly what a one-by-one run with that seed
  gets there; one member at a time.
- `ensemble.llc=batched`: devinterp's sampler once, on the stacked members (`Stacked`): the same
  update, settings and nβ, all members in one pass (one member alone gives `llc.estimate`'s value
  in `llc_batch_init`, tested). The members share the minibatches (common random numbers), so the
  minibatch noise that dominates single estimates on small data sets is common to every member
  and differences between members are their own. The loss at w_t is the full training loss
  L_n(w_t), eq. (25)'s own definition: devinterp's default takes it on `num_chains` minibatches,
  which adds nβ·(L_batch − L_n) to every estimate, and with shared batches that would be one
  common offset for all members (+0.09 on the moons ensemble, +1.36 with 256 training samples).
  `llc_batch_init` keeps the devinterp-convention value.
α: `pipeline.fit.compute` on the member's R(t) with `cfg.fit` (use `fit.points=all` for short runs).
"""

from __future__ import annotations

import copy
import tempfile
import time
import warnings
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, open_dict

from pipeline import build, fit, llc
from pipeline.data import Data
from pipeline.ensemble import Ensemble, seeds_of, train
from pipeline.errors import UserError
from pipeline.progress import bar
from pipeline.stacked import Stacked
from pipeline.tracking import Tracker

WEIGHTS = "ensemble/member_weights.pt"


def member_llc(ens: Ensemble, data: Data, llc_cfg: DictConfig, step: int, device: str, progress=None):
    """λ of every member at `step`, one devinterp estimate each (rows without the traces)."""
    rows = []
    for i in bar(progress, iterable=range(len(ens)), desc="llc per member"):
        cfg_i = copy.deepcopy(llc_cfg)
        with open_dict(cfg_i):
            cfg_i.seed = ens.seeds[i]
        row = llc.estimate(ens.member(i).to(device), data, cfg_i, step, device)
        rows.append({k: v for k, v in row.items() if k != "trace"})
    return pd.DataFrame(rows)


def _per_member_ce(model: Stacked, batch) -> dict:
    x, y = batch
    out = model(x)
    per = F.cross_entropy(out.flatten(0, 1), y.repeat(out.shape[0]), reduction="none").view(out.shape[0], -1)
    per = per.mean(1)
    return {"loss": per.sum(), "per_member": per.detach()}


def member_llc_batched(
    ens: Ensemble, data: Data, llc_cfg: DictConfig, step: int, device: str
) -> pd.DataFrame:
    """λ of every member from ONE devinterp SGLD run on the stacked members (same sampler,
    settings and nβ as `llc.estimate`; the loss at w_t on the whole training set, see the module
    docstring). Members share the minibatch order and draw other noise than their one-by-one
    estimates, so `llc_batch_init` equals the serial value in distribution, not bitwise."""
    from devinterp.optim import SGMCMC
    from devinterp.slt.sampler import sample

    seed = llc.sampler_seed(llc_cfg.seed, step)
    loader = data.loader(seed)
    nbeta = llc.nbeta(llc_cfg, data.batch_size)
    model = Stacked(ens.base, ens.params, ens.buffers, shared=True).to(device).train()
    with torch.no_grad():  # the loss at w_t as devinterp takes it: num_chains batches, train mode
        batches = list(islice(loader, min(int(llc_cfg.num_chains), len(loader))))
        init_batch = torch.stack(
            [_per_member_ce(model, (x.to(device), y.to(device)))["per_member"] for x, y in batches]
        ).mean(0)
        # ... and as eq. (25) defines it: L_n(w_t) on the whole training set (see the docstring).
        init = _per_member_ce(model, (data.x_train.to(device), data.y_train.to(device)))["per_member"]
    trace = torch.zeros(len(ens), int(llc_cfg.num_draws), device=device)

    def record(draw: int, results: dict, chain: int, **_) -> None:
        trace[:, draw] += results["per_member"] / int(llc_cfg.num_chains)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sample(
            model,
            loader,
            callbacks=[record],
            evaluate=_per_member_ce,
            sampling_method=SGMCMC.sgld,
            optimizer_kwargs={
                "lr": float(llc_cfg.lr),
                "localization": float(llc_cfg.localization),
                "nbeta": nbeta,
            },
            num_draws=int(llc_cfg.num_draws),
            num_chains=int(llc_cfg.num_chains),
            num_burnin_steps=int(llc_cfg.num_burnin_steps),
            num_steps_bw_draws=int(llc_cfg.num_steps_bw_draws),
            init_loss=1.0,  # unused (λ is computed above and below, per member); skips devinterp's own
            seed=seed,
            device=device,
            verbose=False,
        )
    lam = nbeta * (trace.mean(1) - init)
    ok = torch.isfinite(lam)
    # The llc stage's diagnostics (negative λ̂, a trending trace), from each member's own trace.
    flags = pd.DataFrame(
        [
            llc.diagnose({"trace": tr[None], "nbeta": nbeta, "llc": float(lm)}, llc_cfg.get("diagnostics"))
            for tr, lm in zip(trace.cpu().double().numpy(), lam.cpu().double().numpy())
        ]
    )
    return pd.DataFrame(
        {
            "init_loss": init.cpu().double().numpy(),
            "init_loss_batch": init_batch.cpu().double().numpy(),
            "nbeta": nbeta,
            "llc": lam.cpu().double().numpy(),
            "llc_batch_init": (nbeta * (trace.mean(1) - init_batch)).cpu().double().numpy(),
            "llc_std": np.nan,
            "status": np.where(ok.cpu().numpy(), "ok", "failed: non-finite loss"),
            "llc_method": "batched",
        }
    ).join(flags)


def member_fits(traj: pd.DataFrame, lambdas: np.ndarray, fit_cfg: DictConfig, every: int) -> pd.DataFrame:
    """α, r², d_s = 2λα and d_walk of every member, from its own R(t)."""
    rows = []
    for (_, part), lam in zip(traj.groupby("member", sort=True), lambdas):
        try:
            r = fit.compute(part, None, {"lambda_final": float(lam)}, fit_cfg, every)
            rows.append({k: r[k] for k in ("alpha", "alpha_se", "r2", "d_s", "d_walk")})
        except ValueError:  # too few usable points: recorded as NaN, never dropped silently
            rows.append(dict.fromkeys(("alpha", "alpha_se", "r2", "d_s", "d_walk"), np.nan))
    return pd.DataFrame(rows)


def run(cfg: DictConfig, tracker: Tracker, run_id: str, progress: bool | None = None, data=None) -> dict:
    """Train the ensemble, estimate λ and α per member, log everything to the run."""
    data = data or build.data(cfg)
    seeds = seeds_of(cfg)
    t0 = time.perf_counter()
    trained = train(cfg, data, seeds, progress)
    t_train = time.perf_counter() - t0
    ens = trained.ensemble

    t0 = time.perf_counter()
    if str(cfg.ensemble.get("llc", "serial")) == "batched":
        lam = member_llc_batched(ens, data, cfg.llc, trained.steps, cfg.device)
    else:
        lam = member_llc(ens, data, cfg.llc, trained.steps, cfg.device, progress).assign(llc_method="serial")
    t_llc = time.perf_counter() - t0
    fits = member_fits(trained.trajectory, lam["llc"].to_numpy(), cfg.fit, int(cfg.llc.every))

    final = trained.evals[trained.evals["step"] == trained.steps].sort_values("member")
    members = pd.concat([final.drop(columns="step").reset_index(drop=True), lam, fits], axis=1).assign(
        step=trained.steps
    )
    tracker.log_table(run_id, members, "members")
    tracker.log_table(run_id, trained.trajectory, "member_trajectory")
    tracker.log_table(run_id, trained.evals, "member_evals")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ensemble"
        folder.mkdir()
        torch.save(
            {"seeds": ens.seeds, "params": ens.params, "buffers": ens.buffers, "step": trained.steps},
            folder / Path(WEIGHTS).name,
        )
        tracker.log_dir(run_id, folder, "ensemble")
    summary = {
        "ensemble_members": len(ens),
        "total_steps": trained.steps,
        "time/ensemble_train_s": t_train,
        "time/ensemble_llc_s": t_llc,
        "time/llc_per_member_s": t_llc / len(ens),
        "members_llc_failed": int((lam["status"] != "ok").sum()),
    }
    tracker.log_summary(run_id, summary)
    tracker.set_tags(run_id, {"llc.nbeta_used": f"{lam['nbeta'].iloc[0]:.6g}"})
    return summary


def load(tracker: Tracker, run_id: str, trained_cfg: DictConfig, data: Data, device: str) -> Ensemble:
    """The trained ensemble back from the run's artifacts (no retraining)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = tracker.download_dir(run_id, WEIGHTS, Path(tmp))
        if path is None:
            raise UserError(
                f"run {run_id} has no {WEIGHTS}: run the ensemble stage first (stages=[ensemble,...])"
            )
        saved = torch.load(path, map_location=device)
    ens = Ensemble.build(trained_cfg, data, saved["seeds"])
    ens.params = {k: v.detach().to(device).requires_grad_() for k, v in saved["params"].items()}
    ens.buffers = {k: v.to(device) for k, v in saved["buffers"].items()}
    return ens
