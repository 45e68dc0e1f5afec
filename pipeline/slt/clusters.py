"""Grouping solutions (SGD runs and posterior samples alike) into clusters of their representations.

The clusterer is any object with scikit-learn's `fit_predict(X) -> labels` (KMeans, Gaussian
mixtures, agglomerative clustering, ...), built from the config. With `fit_on="sgd"` the clusters
are found among the SGD solutions and every posterior sample joins the cluster with the nearest
centroid, so each cluster holds SGD runs (whose λ and d_s temper it) and the thousands of
correlated SGLD samples cannot outvote the 500 independent SGD runs when the clusters are drawn.
With `fit_on="all"` both sets are clustered together. Labels are renumbered by SGD share, largest
first, so C1 is the cluster SGD prefers (as in Fig. 4b).
"""

from __future__ import annotations

import numpy as np


def nearest(x: np.ndarray, centroids: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Index of the nearest centroid (Euclidean) of every row of x."""
    out = np.empty(len(x), dtype=np.int64)
    c2 = (centroids**2).sum(1)
    for i in range(0, len(x), chunk):
        xb = x[i : i + chunk]
        out[i : i + chunk] = np.argmin(c2[None, :] - 2.0 * xb @ centroids.T, axis=1)
    return out


def centroids_of(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    return np.stack([x[labels == c].mean(0) for c in range(k)])


def assign(
    clusterer, sgd: np.ndarray, bayes: np.ndarray, fit_on: str = "sgd"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cluster labels of the SGD solutions and of the posterior samples, and the centroids
    (mean representation of each cluster's SGD solutions)."""
    if fit_on == "sgd":
        raw_sgd = np.asarray(clusterer.fit_predict(sgd))
        raw_bayes = None
    elif fit_on == "all":
        raw = np.asarray(clusterer.fit_predict(np.concatenate([sgd, bayes])))
        raw_sgd, raw_bayes = raw[: len(sgd)], raw[len(sgd) :]
    else:
        raise ValueError(f"fit_on={fit_on!r}: choose sgd or all")
    # Renumber: clusters with SGD solutions by SGD share (largest first), then the rest.
    ids, counts = np.unique(raw_sgd, return_counts=True)
    ranked = list(ids[np.argsort(-counts, kind="stable")])
    if raw_bayes is not None:
        ranked += [c for c in np.unique(raw_bayes) if c not in ranked]
    remap = {c: i for i, c in enumerate(ranked)}
    labels_sgd = np.array([remap[c] for c in raw_sgd], dtype=np.int64)
    k = len(ranked)
    if raw_bayes is None:
        cents = centroids_of(sgd, labels_sgd, k)
        labels_bayes = nearest(bayes, cents)
    else:
        labels_bayes = np.array([remap[c] for c in raw_bayes], dtype=np.int64)
        both = np.concatenate([sgd, bayes])
        cents = centroids_of(both, np.concatenate([labels_sgd, labels_bayes]), k)
    return labels_sgd, labels_bayes, cents


def shares(labels: np.ndarray, k: int) -> np.ndarray:
    """Fraction of the points in each of k clusters."""
    return np.bincount(labels, minlength=k).astype(float) / max(len(labels), 1)
