"""Stage ensemble: many seeds of one run config trained at once (`pipeline.training.ensemble`), then
each member's λ at its final weights and its displacement exponent α, all in ONE run.

Reads: the config; members are `ensemble.members` seeds from `ensemble.first_seed` (or the list
`ensemble.seeds`). Each member is what a one-by-one train stage with its seed would train.
Writes to the run: `members.parquet` (member, seed, final train/test loss and accuracy, λ with
the llc stage's sampler and settings (see below for how the two modes differ): `llc`, `llc_std`,
`init_loss`, `nbeta`, `status`, the diagnostics `negative`, `nonstationary`; the fit's `alpha`,
`alpha_se`, `r2`, `d_s`, `d_walk`), `member_trajectory.parquet` (R(t) per member, the train stage's
columns plus `member`, `seed`), `member_evals.parquet`, `ensemble/member_weights.pt` (stacked final
weights and seeds), summary `ensemble_members`, `total_steps`, `time/ensemble_train_s`,
`time/ensemble_llc_s`, `time/llc_per_member_s`, `members_llc_failed`, tag `llc.nbeta_used`.

λ at the last step, with devinterp's SGLD and the settings `cfg.llc` either way:
- `ensemble.llc=serial`: devinterp's own estimator (`pipeline.slt.llc.estimate`) on each member with
  the member's seed, so a member's λ is exactly what a one-by-one run with that seed gets there.
- `ensemble.llc=batched`: the sampler core once, on the stacked members
  (`pipeline.slt.llc.estimate_members`): the members share the minibatches (common random numbers)
  and the loss at w_t is the whole training loss L_n(w_t) (eq. 25); devinterp's convention, on
  `num_chains` minibatches, adds nβ·(L_batch − L_n) to every estimate, one common offset with shared
  batches (+0.09 on the moons ensemble, +1.36 with 256 training samples): column `llc_batch_init`.
α: `pipeline.slt.fit.compute` on the member's R(t) with `cfg.fit` (use `fit.points=all` for short runs).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from pipeline.config import build, checks
from pipeline.config.members import ensemble_seeds, with_seed
from pipeline.data import Data
from pipeline.errors import UserError
from pipeline.progress import bar
from pipeline.slt import fit, llc
from pipeline.slt.settings import Settings, Window
from pipeline.slt.stacked import Stacked
from pipeline.stages.context import Context, Member
from pipeline.tracking import Tracker, names
from pipeline.training import ensemble

FIT_COLUMNS = ("alpha", "alpha_se", "r2", "d_s", "d_walk")


def member_llc(
    stacked: Stacked,
    seeds: list[int],
    data: Data,
    settings: Settings | Mapping,
    step: int,
    device: str,
    progress=None,
) -> pd.DataFrame:
    """λ of every member at `step`, one devinterp estimate each, with the member's seed (rows without
    the traces)."""
    settings = Settings.of(settings)
    rows = []
    for i in bar(progress, iterable=range(len(stacked)), desc="llc per member"):
        at = dataclasses.replace(settings, seed=seeds[i])
        row = llc.estimate(stacked.member_model(i).to(device), data, at, step, device)
        rows.append({k: v for k, v in row.items() if k != "trace"})
    return pd.DataFrame(rows)


def member_fits(traj: pd.DataFrame, lambdas: np.ndarray, window: Window, every: int) -> pd.DataFrame:
    """α, r², d_s = 2λα and d_walk of every member, from its own R(t)."""
    rows = []
    for (_, part), lam in zip(traj.groupby("member", sort=True), lambdas):
        try:
            r = fit.compute(part, None, {"lambda_final": float(lam)}, window, every)
            rows.append({k: r[k] for k in FIT_COLUMNS})
        except ValueError:  # too few usable points: recorded as NaN, never dropped silently
            rows.append(dict.fromkeys(FIT_COLUMNS, np.nan))
    return pd.DataFrame(rows)


def run(ctx: Context, members: list[Member]) -> dict:
    """Train the ensemble, estimate λ and α per member, log everything to the run."""
    (member,) = members
    cfg, tracker, run_id = ctx.cfg, ctx.tracker, member.run_id
    data = ctx.data or build.data(cfg)
    seeds = ensemble_seeds(cfg)
    steps = checks.check_with_data(cfg, data.n_train, data.steps_per_epoch)
    task = build.task(cfg)
    t0 = time.perf_counter()
    stacked, optimizer, plan = build.ensemble(cfg, data, seeds, steps)
    trained = ensemble.train(stacked, optimizer, task, data, seeds, plan, cfg.device, cfg.progress)
    t_train = time.perf_counter() - t0

    t0 = time.perf_counter()
    settings = Settings.of(cfg.llc)
    if str(cfg.ensemble.get("llc", "serial")) == "batched":
        lam = llc.estimate_members(stacked, data, settings, trained.steps, cfg.device, task)
    else:
        lam = member_llc(stacked, seeds, data, settings, trained.steps, cfg.device, cfg.progress)
        lam = lam.assign(llc_method="serial")
    t_llc = time.perf_counter() - t0
    fits = member_fits(trained.trajectory, lam["llc"].to_numpy(), Window.of(cfg.fit), int(cfg.llc.every))

    final = trained.evals[trained.evals["step"] == trained.steps].sort_values("member")
    table = pd.concat([final.drop(columns="step").reset_index(drop=True), lam, fits], axis=1).assign(
        step=trained.steps
    )
    tracker.log_table(run_id, table, names.MEMBERS)
    tracker.log_table(run_id, trained.trajectory, names.MEMBER_TRAJECTORY)
    tracker.log_table(run_id, trained.evals, names.MEMBER_EVALS)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / Path(names.ENSEMBLE_WEIGHTS).parent
        folder.mkdir()
        params = {n: p.detach() for n, p in stacked.params.items()}
        weights = {"seeds": seeds, "params": params, "buffers": stacked.extra, "step": trained.steps}
        torch.save(weights, folder / Path(names.ENSEMBLE_WEIGHTS).name)
        tracker.log_dir(run_id, folder, str(Path(names.ENSEMBLE_WEIGHTS).parent))
    summary = {
        "ensemble_members": len(stacked),
        "total_steps": trained.steps,
        "time/ensemble_train_s": t_train,
        "time/ensemble_llc_s": t_llc,
        "time/llc_per_member_s": t_llc / len(stacked),
        "members_llc_failed": int((lam["status"] != "ok").sum()),
    }
    tracker.log_summary(run_id, summary)
    tracker.set_tags(run_id, {names.LLC_NBETA: f"{lam['nbeta'].iloc[0]:.6g}"})
    return summary


def load(tracker: Tracker, run_id: str, trained_cfg: DictConfig, data: Data, device: str) -> Stacked:
    """The trained ensemble back from the run's artifacts (no retraining)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = tracker.download_file(run_id, names.ENSEMBLE_WEIGHTS, Path(tmp))
        if path is None:
            raise UserError(
                f"run {run_id} has no {names.ENSEMBLE_WEIGHTS}: run the ensemble stage first "
                "(stages=[ensemble,...])"
            )
        saved = torch.load(path, map_location=device)
    base = build.model(with_seed(trained_cfg, saved["seeds"][0]), data)
    return Stacked(base, saved["params"], saved["buffers"]).to(device)
