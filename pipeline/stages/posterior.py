"""Stage posterior: SGD vs Bayes vs tempered SGD over clusters of solutions (section 4.2, G.4).

Reads from the run: `config.yaml`, `members.parquet` and `ensemble/member_weights.pt` (the
ensemble stage's), so clustering and tempering re-run alone with other settings, never retraining.
Steps, each with its settings in `cfg.posterior`:
1. drop unconverged members (`converged`: final train loss finite, at most
   median + `mad`·1.4826·MAD over the members, and at most `max_train_loss` when set);
2. seed `chains` SGLD chains at the converged members with the lowest loss and lowest λ (smallest
   sum of their two ranks) and sample the posterior (`sgld`: G.4's 1000 samples, 200 burn-in,
   10 steps per sample, lr 1e-5);
3. represent every SGD solution and SGLD sample (`representation`) and cluster them (`clustering`,
   `cluster_on`);
4. per cluster the shares of SGD solutions, Bayes samples and tempered SGD (`pipeline.slt.tempering`)
   over the ξ grid `tempering.xi`; KL(Bayes ‖ tempered SGD) per ξ, and KL, Wasserstein and
   Jensen–Shannon at the ξ with the least KL (Table 2).
Writes: `posterior_members.parquet` (member, seed, converged, chain seed or not, cluster),
`posterior_samples.parquet` (chain, seed, sample, loss, distance from the seed, cluster),
`clusters.parquet`, `xi_sweep.parquet`, `table2.json`, figures `figures/kl_vs_xi.png` (Fig. 3),
`figures/llc_histogram.png` (Fig. 4a), `figures/cluster_shares.png` (Fig. 4b),
`figures/cluster_functions.png`; summary `best_xi`, `kl_best`, `wasserstein_best`, `js_best`,
`kl_untempered`, `members_converged`, `clusters`, `cluster_silhouette` (of the SGD solutions'
representations), `best_xi_at_grid_edge`; tags `posterior.*`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sklearn.metrics import silhouette_score

from pipeline.config import build
from pipeline.errors import UserError
from pipeline.slt import clusters, posterior, tempering
from pipeline.slt.settings import Chains
from pipeline.stages import ensemble, inputs, posterior_figures
from pipeline.stages.context import Context, Member
from pipeline.tracking import names


def converged(members: pd.DataFrame, mad: float, max_train_loss: float | None) -> tuple[np.ndarray, str]:
    """Which members count as converged, and the criterion in words (recorded with the run)."""
    loss = members["train_loss"].to_numpy(dtype=float)
    finite = np.isfinite(loss)
    med = float(np.median(loss[finite])) if finite.any() else np.nan
    spread = 1.4826 * float(np.median(np.abs(loss[finite] - med))) if finite.any() else np.nan
    limit = med + mad * spread
    if max_train_loss is not None:
        limit = min(limit, float(max_train_loss))
    keep = finite & (loss <= limit)
    text = (
        f"final train loss finite and <= {limit:.4g} (median {med:.4g} + {mad:g} x 1.4826 MAD"
        + (f", capped at {max_train_loss:g}" if max_train_loss is not None else "")
        + ")"
    )
    return keep, text


def chain_seeds(members: pd.DataFrame, keep: np.ndarray, n: int) -> np.ndarray:
    """Members that seed SGLD: converged, λ estimated, lowest rank(train loss) + rank(λ)."""
    ok = members[keep & (members["status"] == "ok").to_numpy()]
    if len(ok) < n:
        raise UserError(
            f"only {len(ok)} converged members with a λ estimate: lower posterior.chains to ≤ {len(ok)}"
        )
    score = ok["train_loss"].rank() + ok["llc"].rank()
    return ok.assign(score=score).sort_values(["score", "member"])["member"].to_numpy()[:n]


def cluster_table(
    members: pd.DataFrame, labels_sgd: np.ndarray, labels_bayes: np.ndarray, k: int
) -> pd.DataFrame:
    """Per cluster: counts and shares, and λ, α, d_s, d_walk of its SGD runs."""
    rows = []
    for c in range(k):
        runs = members[labels_sgd == c]
        lam, d_s = runs["llc"].mean(), runs["d_s"].mean()
        rows.append(
            {
                "cluster": c,
                "name": f"C{c + 1}",
                "n_sgd": len(runs),
                "n_bayes": int((labels_bayes == c).sum()),
                "share_sgd": len(runs) / max(len(members), 1),
                "share_bayes": float((labels_bayes == c).mean()) if len(labels_bayes) else np.nan,
                "lambda": lam,
                "lambda_std": runs["llc"].std(),
                "alpha": runs["alpha"].mean(),
                "d_s": d_s,
                "d_walk": 2 * lam / d_s if d_s > 0 else np.nan,
                "train_loss": runs["train_loss"].mean(),
                "test_acc": runs["test_acc"].mean(),
            }
        )
    t = pd.DataFrame(rows)
    t["diffusion_exponent"] = 2 - t["d_walk"]
    t["d_xi_defined"] = np.isfinite(t["d_walk"]) & (t["d_walk"] > 0)
    return t


def table_2(
    table: pd.DataFrame, centroids: np.ndarray, xis: np.ndarray, m: float
) -> tuple[pd.DataFrame, dict]:
    """The ξ sweep and Table 2 (KL, Wasserstein, JS at the ξ with the least KL, and untempered);
    adds the tempered shares at that ξ to `table`."""
    cost = tempering.centroid_cost(centroids)
    p_bayes, p_sgd = table["share_bayes"].to_numpy(), table["share_sgd"].to_numpy()
    sweep = tempering.sweep(p_bayes, p_sgd, table["d_walk"].to_numpy(), xis, cost, m)
    best = sweep.loc[sweep["kl"].idxmin()]
    d_best = tempering.diffusion_coefficient(best["xi"], table["d_walk"].to_numpy())
    table["d_xi_best"] = d_best
    table["share_tempered"] = tempering.tempered(p_sgd, d_best, m)
    return sweep, {
        "best_xi": float(best["xi"]),
        "kl": float(best["kl"]),
        "wasserstein": float(best["wasserstein"]),
        "js": float(best["js"]),
        "untempered": {
            "kl": tempering.kl(p_bayes, p_sgd),
            "wasserstein": tempering.wasserstein(p_bayes, p_sgd, cost),
            "js": tempering.jensen_shannon(p_bayes, p_sgd),
        },
        "paper": {"xi": 0.5, "kl": 0.009, "wasserstein": 0.002, "js": 0.003},
        "m": m,
        "wasserstein_ground_cost": "RMS difference of cluster centroids in the representation",
    }


def run(ctx: Context, run_members: list[Member]) -> dict:
    """Steps 1-4 above on the run's ensemble; logs tables, Table 2 and the figures."""
    (member,) = run_members
    cfg, tracker, run_id = ctx.cfg, ctx.tracker, member.run_id
    pc = cfg.posterior
    trained = inputs.trained_config(tracker, run_id)
    members = tracker.load_table(run_id, names.MEMBERS)
    if members is None or "ensemble" not in trained:
        raise UserError(f"run {run_id} has no ensemble: run stages=[ensemble,posterior] first")
    device = cfg.device
    data = build.data(trained)
    ens = ensemble.load(tracker, run_id, trained, data, device)

    keep, criterion = converged(members, float(pc.converged.mad), pc.converged.max_train_loss)
    idx_conv = np.flatnonzero(keep)
    seeds_idx = chain_seeds(members, keep, int(pc.chains))
    represent = instantiate(pc.representation, data=data)
    rep_sgd = represent(ens.select(idx_conv)).cpu().numpy()

    s = pc.sgld
    nbeta = float(s.nbeta) if s.nbeta is not None else float(data.n_train)
    t0 = time.perf_counter()
    sgld = Chains(
        lr=float(s.lr),
        localization=float(s.localization),
        nbeta=nbeta,
        chains=1,  # one chain per seed member, all of them in one stacked pass
        draws=int(s.num_samples),
        burnin=int(s.num_burnin_steps),
        every=int(s.num_steps_bw_samples),
    )
    task = build.task(trained)
    out = posterior.sample(
        ens.select(seeds_idx), data, represent, task, sgld, int(cfg.seed), device, cfg.progress
    )
    t_sgld = time.perf_counter() - t0
    chains, n_samples, _ = out["representation"].shape
    rep_bayes = out["representation"].reshape(chains * n_samples, -1)
    finite = np.isfinite(out["loss"].ravel()) & np.isfinite(rep_bayes).all(1)

    labels_sgd, labels_finite, cents = clusters.assign(
        instantiate(pc.clustering), rep_sgd, rep_bayes[finite], str(pc.cluster_on)
    )
    labels_bayes = np.full(len(rep_bayes), -1)
    labels_bayes[finite] = labels_finite
    k = len(cents)
    conv = members.iloc[idx_conv].reset_index(drop=True)
    table = cluster_table(conv, labels_sgd, labels_finite, k)
    # How separated the clusters are (near 0: slices of one continuum, near 1: distinct basins).
    silhouette = float(silhouette_score(rep_sgd, labels_sgd)) if 1 < k < len(rep_sgd) else float("nan")

    xis = np.asarray(OmegaConf.to_container(pc.tempering.xi), dtype=float)
    sweep, table2 = table_2(table, cents, xis, float(pc.tempering.m))
    untempered = table2["untempered"]

    post_members = members[["member", "seed", "train_loss", "test_acc", "llc", "alpha", "d_s"]].assign(
        converged=keep, chain_seed=members["member"].isin(seeds_idx), cluster=-1
    )
    post_members.loc[idx_conv, "cluster"] = labels_sgd
    samples = pd.DataFrame(
        {
            "chain": np.repeat(np.arange(chains), n_samples),
            "seed_member": np.repeat(seeds_idx, n_samples),
            "sample": np.tile(np.arange(n_samples), chains),
            "loss": out["loss"].ravel(),
            "distance": out["distance"].ravel(),
            "cluster": labels_bayes,
        }
    )
    tracker.log_table(run_id, post_members, names.POSTERIOR_MEMBERS)
    tracker.log_table(run_id, samples, names.POSTERIOR_SAMPLES)
    tracker.log_table(run_id, table, names.CLUSTERS)
    tracker.log_table(run_id, sweep, names.XI_SWEEP)
    tracker.log_json(run_id, table2, names.TABLE_2)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        posterior_figures.kl_vs_xi(sweep, table2, folder / "kl_vs_xi.png")
        posterior_figures.llc_histogram(members, keep, seeds_idx, folder / "llc_histogram.png")
        posterior_figures.cluster_shares(table, table2, folder / "cluster_shares.png")
        if hasattr(represent, "grid"):
            posterior_figures.cluster_functions(
                represent, cents, table, data, folder / "cluster_functions.png"
            )
        tracker.log_dir(run_id, folder, names.FIGURES)
    summary = {
        "best_xi": table2["best_xi"],
        "kl_best": table2["kl"],
        "wasserstein_best": table2["wasserstein"],
        "js_best": table2["js"],
        "kl_untempered": untempered["kl"],
        "members_converged": int(keep.sum()),
        "clusters": k,
        "cluster_silhouette": silhouette,
        "best_xi_at_grid_edge": float(table2["best_xi"] in (xis.min(), xis.max())),
        "sgld_samples": int(finite.sum()),
        "time/sgld_s": t_sgld,
    }
    tracker.log_summary(run_id, summary)
    tracker.set_tags(
        run_id,
        {
            names.POSTERIOR_CRITERION: criterion,
            names.POSTERIOR_CHAIN_SEEDS: ",".join(str(members["seed"].iloc[i]) for i in seeds_idx),
            names.POSTERIOR_NBETA: f"{nbeta:.6g}" + (" (n_train)" if s.nbeta is None else " (set)"),
            names.POSTERIOR_REPRESENTATION: str(pc.representation._target_),
            names.POSTERIOR_CLUSTERING: f"{pc.clustering._target_} (fit on {pc.cluster_on})",
            names.POSTERIOR_NONFINITE: int((~finite).sum()),
        },
    )
    return summary
