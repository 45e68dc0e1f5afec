"""Random walks whose displacement exponent is known exactly, for the fitter's known-answer tests.

Each generator returns positions X of shape (copies, len(t), dim) at the requested times t ≥ 1,
starting from X(0) = 0. The
tests turn them into R(t) = ‖X(t) − X(0)‖₂ over all copies and coordinates at once: the
pipeline's R(t) is the norm over many weights of one trajectory, and a norm over N independent
copies is that with N "weights" (R = √N × the root-mean-square displacement, same exponent).
"""

from __future__ import annotations

import numpy as np


def displacement(x: np.ndarray) -> np.ndarray:
    """R(t) = ‖X(t) − X(0)‖₂ over copies and coordinates (the pipeline's definition); every
    generator here starts at X(0) = 0."""
    return np.sqrt((x**2).sum(axis=(0, 2)))


def brownian(t: np.ndarray, copies: int, rng: np.random.Generator) -> np.ndarray:
    """Brownian motion sampled at integer times t (independent Gaussian steps): α = 1/2."""
    steps = rng.normal(size=(copies, int(t.max()), 1))
    path = np.concatenate([np.zeros((copies, 1, 1)), np.cumsum(steps, axis=1)], axis=1)
    return path[:, t.astype(int)]


def fractional_brownian(t: np.ndarray, hurst: float, copies: int, rng: np.random.Generator) -> np.ndarray:
    """Fractional Brownian motion with Hurst index H at times t, exact (Cholesky factor of its
    covariance ½(s^2H + u^2H − |s − u|^2H)): E‖X(t)‖² ∝ t^2H, so α = H."""
    s, u = np.meshgrid(t, t, indexing="ij")
    h2 = 2 * hurst
    cov = 0.5 * (s**h2 + u**h2 - np.abs(s - u) ** h2)
    chol = np.linalg.cholesky(cov + 1e-12 * np.diag(np.diag(cov)))
    return (rng.normal(size=(copies, len(t))) @ chol.T)[:, :, None]


def time_changed_brownian(t: np.ndarray, clock: np.ndarray, copies: int, rng: np.random.Generator):
    """Brownian motion run on a deterministic clock τ(t) (what a learning-rate schedule does to
    SGD noise): X(t) = B(τ(t)), E‖X(t)‖² = τ(t), so R ∝ √τ(t) regime by regime."""
    dtau = np.diff(np.concatenate([[0.0], clock]))
    return np.cumsum(rng.normal(size=(copies, len(t))) * np.sqrt(dtau), axis=1)[:, :, None]


def ctrw(
    t: np.ndarray, beta: float, copies: int, rng: np.random.Generator, jumps: int, waits: str = "pareto"
) -> np.ndarray:
    """Continuous-time random walk: Gaussian jumps after waiting times of tail index β (0 < β < 1,
    infinite mean). The number of jumps by time t grows as t^β, so E‖X(t)‖² ∝ t^β and α = β/2
    (Metzler & Klafter 2000, Phys. Rep. 339, §3).

    `waits="pareto"`: P(τ > s) = s^−β for s ≥ 1; its mean number of jumps reaches t^β only
    asymptotically (a t^(β−1) correction that bends R(t) at the fit's times: the local slope is
    biased up). `waits="mittag-leffler"`: Mittag-Leffler waits, drawn as Kozubowski & Rachev (1999)
    give them (Fulger, Scalas & Germano 2008, eq. 20); their renewal count has mean t^β/Γ(1 + β)
    exactly at every t (Mainardi, Gorenflo & Scalas 2004), so R(t) is a pure power law."""
    if waits == "pareto":
        tau = rng.uniform(size=(copies, jumps)) ** (-1.0 / beta)
    elif waits == "mittag-leffler":
        u, v = rng.uniform(size=(copies, jumps)), rng.uniform(size=(copies, jumps))
        shape = np.sin(beta * np.pi) / np.tan(beta * np.pi * v) - np.cos(beta * np.pi)
        tau = -np.log(u) * shape ** (1.0 / beta)
    else:
        raise ValueError(f"waits: {waits!r} is not pareto or mittag-leffler")
    clocks = np.cumsum(tau, axis=1)
    if (clocks[:, -1] < t.max()).any():
        raise ValueError("too few jumps drawn for the horizon: raise `jumps`")
    walk = np.cumsum(rng.normal(size=(copies, jumps)), axis=1)
    walk = np.concatenate([np.zeros((copies, 1)), walk], axis=1)
    done = np.stack([np.searchsorted(c, t, side="right") for c in clocks])  # jumps made by time t
    return np.take_along_axis(walk, done, axis=1)[:, :, None]


def sierpinski_gasket(level: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The level-`level` Sierpinski gasket graph: vertex positions (V, 2), a padded neighbour
    table (V, 4) and degrees (V,). Vertex 0 is the corner at the origin."""
    index: dict[tuple[int, int], int] = {(0, 0): 0}
    edges: set[tuple[int, int]] = set()

    def vid(p: tuple[int, int]) -> int:
        return index.setdefault(p, len(index))

    def triangle(a: int, b: int, size: int) -> None:
        if size == 1:
            corners = [vid((a, b)), vid((a + 1, b)), vid((a, b + 1))]
            for i in range(3):
                for j in range(i + 1, 3):
                    edges.add((min(corners[i], corners[j]), max(corners[i], corners[j])))
            return
        half = size // 2
        triangle(a, b, half)
        triangle(a + half, b, half)
        triangle(a, b + half, half)

    triangle(0, 0, 2**level)
    n = len(index)
    neighbours = np.zeros((n, 4), dtype=np.int64)
    degree = np.zeros(n, dtype=np.int64)
    for i, j in edges:
        neighbours[i, degree[i]], neighbours[j, degree[j]] = j, i
        degree[i] += 1
        degree[j] += 1
    lattice = np.array(sorted(index, key=index.get), dtype=float)
    # Triangular-lattice coordinates (a, b) -> the plane: a·(1, 0) + b·(1/2, √3/2).
    xy = np.stack([lattice[:, 0] + lattice[:, 1] / 2, lattice[:, 1] * np.sqrt(3) / 2], axis=1)
    return xy, neighbours, degree


def gasket_walk(t: np.ndarray, level: int, copies: int, rng: np.random.Generator) -> np.ndarray:
    """Simple random walk on the Sierpinski gasket from its corner, positions at integer times t.
    E‖X(t)‖² ∝ t^(2/d_w) with d_w = log 5 / log 2 (Given & Mandelbrot 1983; Barlow & Perkins
    1988), so α = 1/d_w = log 2 / log 5; the gasket of side 2^level must be wider than the walk."""
    xy, neighbours, degree = sierpinski_gasket(level)
    at = np.zeros(copies, dtype=np.int64)
    want = set(t.astype(int).tolist())
    out = [xy[at]] if 0 in want else []
    for step in range(1, int(t.max()) + 1):
        pick = (rng.random(copies) * degree[at]).astype(np.int64)
        at = neighbours[at, pick]
        if step in want:
            out.append(xy[at])
    return np.stack(out, axis=1)
