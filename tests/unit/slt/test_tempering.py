"""Tempering (eq. 15) over clusters, the divergences, and cluster assignment: known answers."""

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance
from sklearn.cluster import KMeans

from pipeline.slt import clusters, tempering


def test_diffusion_coefficient_is_xi_to_two_minus_walk_dimension() -> None:
    d = tempering.diffusion_coefficient(0.5, np.array([3.0, 2.0, 1.0, -1.0, np.nan]))
    np.testing.assert_allclose(d[:3], [2.0, 1.0, 0.5])
    assert np.isnan(d[3:]).all()


def test_tempered_shares() -> None:
    p = np.array([0.5, 0.5])
    np.testing.assert_allclose(tempering.tempered(p, np.array([1.0, 1.0])), p)
    # p^D: the cluster with the larger D_ξ loses mass: [0.5, 0.25] normalised.
    np.testing.assert_allclose(tempering.tempered(p, np.array([1.0, 2.0])), [2 / 3, 1 / 3])
    np.testing.assert_allclose(tempering.tempered(p, np.array([1.0, 2.0]), m=2.0), [0.8, 0.2])
    # An undefined D_ξ (NaN) leaves the cluster untempered; an empty cluster stays empty.
    q = tempering.tempered(np.array([0.6, 0.4, 0.0]), np.array([np.nan, 1.0, 2.0]))
    np.testing.assert_allclose(q, [0.6, 0.4, 0.0])


def test_divergences_known_values() -> None:
    p, q = np.array([0.5, 0.5]), np.array([0.25, 0.75])
    assert tempering.kl(p, q) == pytest.approx(0.5 * np.log(2) + 0.5 * np.log(2 / 3))
    assert tempering.kl(p, p) == 0.0
    assert tempering.jensen_shannon(p, q) == pytest.approx(jensenshannon(p, q) ** 2)
    assert tempering.wasserstein(p, q, np.array([[0.0, 1.0], [1.0, 0.0]])) == pytest.approx(0.25)
    # Clusters on a line: the linear program is the 1-d earth mover's distance.
    pos = np.array([0.0, 1.0, 3.0])
    a, b = np.array([0.2, 0.5, 0.3]), np.array([0.6, 0.1, 0.3])
    cost = np.abs(pos[:, None] - pos[None, :])
    expected = wasserstein_distance(pos, pos, a, b)
    assert tempering.wasserstein(a, b, cost) == pytest.approx(expected)


def test_sweep_at_xi_one_is_sgd_itself() -> None:
    p_bayes, p_sgd = np.array([0.7, 0.2, 0.1]), np.array([0.3, 0.5, 0.2])
    d_walk = np.array([1.5, 3.0, 4.0])
    cost = 1 - np.eye(3)
    s = tempering.sweep(p_bayes, p_sgd, d_walk, np.array([0.5, 1.0, 2.0]), cost)
    at_one = s[s["xi"] == 1.0].iloc[0]
    assert at_one["kl"] == pytest.approx(tempering.kl(p_bayes, p_sgd))
    # ξ < 1 raises D_ξ for d_walk > 2 clusters (C2, C3), which moves mass to C1, as Bayes has it.
    assert s[s["xi"] == 0.5].iloc[0]["kl"] < at_one["kl"]


def test_clusters_from_sgd_and_nearest_centroid_for_samples() -> None:
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    sizes = [10, 30, 20]  # SGD prefers the second blob: it becomes C1
    sgd = np.concatenate([c + 0.1 * rng.standard_normal((n, 2)) for c, n in zip(centers, sizes)])
    bayes = np.concatenate([centers[0] + 0.1 * rng.standard_normal((40, 2)), centers[2] + [[0.2, 0.1]]])
    lab_sgd, lab_bayes, cents = clusters.assign(KMeans(3, n_init=5, random_state=0), sgd, bayes)
    np.testing.assert_allclose(clusters.shares(lab_sgd, 3), [0.5, 20 / 60, 10 / 60])
    np.testing.assert_allclose(cents[0], centers[1], atol=0.1)
    assert (lab_bayes[:40] == 2).all() and lab_bayes[40] == 1
    lab_sgd2, lab_bayes2, _ = clusters.assign(KMeans(3, n_init=5, random_state=0), sgd, bayes, fit_on="all")
    assert (lab_sgd2 == lab_sgd).all() and (lab_bayes2 == lab_bayes).all()
    with pytest.raises(ValueError, match="sgd or all"):
        clusters.assign(KMeans(3, n_init=1), sgd, bayes, fit_on="both")
