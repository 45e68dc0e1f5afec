"""Tempered SGD (eq. 15) at the level of clusters, and divergences between distributions over them.

Corollary 3.2: p(w|X) ∝ ρ(w)·p_s(w)^(m·D_ξ), with SGD's steady state p_s and the effective
diffusion coefficient D_ξ = ξ^(2 − 2λ/d_s) (eq. 13). The paper does not say how it applied this to
clusters; this module's operationalization, documented in docs/experiments/posterior.md:

- p_s(C) is the share of the converged SGD solutions in cluster C (SGD's empirical distribution);
- D_ξ(C) = ξ^(2 − d_walk(C)), d_walk(C) = 2·λ_C / d_s,C with λ_C the mean λ of C's SGD runs and
  d_s,C the mean of their d_s = 2·λ·α; this equals 1 / (the λ-weighted mean α of C's runs);
- the prior ρ is uniform over clusters, so the tempered share is
  q_ξ(C) = p_s(C)^(m·D_ξ(C)) / Σ_C' p_s(C')^(m·D_ξ(C')).

m is eq. 15's data-size factor. For densities it multiplies the log-likelihood; on a handful of
cluster shares m = n would put all tempered mass on one cluster at every ξ, so m defaults to 1
and is a setting. At ξ = 1 every D_ξ is 1 and q is SGD's own distribution (for m = 1).
A cluster whose d_s is not positive has no D_ξ; it keeps D_ξ = 1 and is flagged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linprog


def diffusion_coefficient(xi: float, d_walk: np.ndarray) -> np.ndarray:
    """D_ξ = ξ^(2 − d_walk) (Lemma 3.2); NaN where d_walk is not a positive number."""
    d_walk = np.asarray(d_walk, dtype=float)
    ok = np.isfinite(d_walk) & (d_walk > 0)
    return np.where(ok, float(xi) ** (2.0 - np.where(ok, d_walk, 0.0)), np.nan)


def tempered(p_sgd: np.ndarray, d_xi: np.ndarray, m: float = 1.0) -> np.ndarray:
    """q(C) ∝ p_s(C)^(m·D_ξ(C)), computed in log space; D_ξ = NaN counts as 1 (untempered)."""
    p = np.asarray(p_sgd, dtype=float)
    d = np.where(np.isfinite(d_xi), d_xi, 1.0)
    with np.errstate(divide="ignore"):
        logq = np.where(p > 0, m * d * np.log(np.where(p > 0, p, 1.0)), -np.inf)
    logq -= logq[np.isfinite(logq)].max()
    q = np.exp(logq)
    return q / q.sum()


def kl(p: np.ndarray, q: np.ndarray, floor: float = 1e-12) -> float:
    """KL(p ‖ q) in nats; q is floored so an empty cluster gives a large, finite number."""
    p, q = np.asarray(p, float), np.maximum(np.asarray(q, float), floor)
    keep = p > 0
    return float(np.sum(p[keep] * np.log(p[keep] / q[keep])))


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon divergence in nats (the square of scipy's JS distance), in [0, log 2]."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    mid = 0.5 * (p + q)
    return 0.5 * kl(p, mid) + 0.5 * kl(q, mid)


def wasserstein(p: np.ndarray, q: np.ndarray, cost: np.ndarray) -> float:
    """Earth mover's distance between two distributions over clusters with ground cost
    `cost[i, j]` (the distance between cluster i's and cluster j's centroids); a linear program."""
    k = len(p)
    a_eq = np.zeros((2 * k, k * k))
    for i in range(k):
        a_eq[i, i * k : (i + 1) * k] = 1.0  # mass leaving i
        a_eq[k + i, i::k] = 1.0  # mass arriving at i
    b_eq = np.concatenate([p, q]) / np.array([p.sum()] * k + [q.sum()] * k)
    res = linprog(np.asarray(cost, float).ravel(), A_eq=a_eq[:-1], b_eq=b_eq[:-1], bounds=(0, None))
    if not res.success:
        raise RuntimeError(f"Wasserstein linear program failed: {res.message}")
    return float(res.fun)


def centroid_cost(centroids: np.ndarray) -> np.ndarray:
    """RMS difference between cluster centroids (for grid predictions: the root mean square
    difference of the predicted probability over the grid, in [0, 1])."""
    diff = centroids[:, None, :] - centroids[None, :, :]
    return np.sqrt((diff**2).mean(-1))


def sweep(
    p_bayes: np.ndarray,
    p_sgd: np.ndarray,
    d_walk: np.ndarray,
    xis: np.ndarray,
    cost: np.ndarray,
    m: float = 1.0,
) -> pd.DataFrame:
    """KL(Bayes ‖ tempered SGD), Wasserstein and Jensen–Shannon at every ξ."""
    rows = []
    for xi in xis:
        q = tempered(p_sgd, diffusion_coefficient(xi, d_walk), m)
        rows.append(
            {
                "xi": float(xi),
                "kl": kl(p_bayes, q),
                "wasserstein": wasserstein(p_bayes, q, cost),
                "js": jensen_shannon(p_bayes, q),
            }
        )
    return pd.DataFrame(rows)
