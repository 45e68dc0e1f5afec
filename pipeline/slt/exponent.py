"""The displacement exponent: least-squares fit of log R(t) on log t (eq. 17), and crossover detection.

Plain numpy. α is the slope, its standard error the usual OLS one, r² the coefficient of
determination of the log-log regression. The window used is part of the result. The uncertainty
of d_s = 2·λ·α comes from a seeded bootstrap (`bootstrap_spectral_dimension`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class ExponentFit:
    """α and the window it was measured on (t_c > 0 when the fit starts at a crossover)."""

    alpha: float
    alpha_se: float
    intercept: float
    r2: float
    t_start: int
    t_end: int
    n_points: int
    t_c: float = 0.0
    shifted: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """Slope, its standard error, intercept and r² of y on x."""
    n = len(x)
    xm, ym = x.mean(), y.mean()
    sxx = np.sum((x - xm) ** 2)
    slope = np.sum((x - xm) * (y - ym)) / sxx
    intercept = ym - slope * xm
    resid = y - (intercept + slope * x)
    sse = float(np.sum(resid**2))
    sst = float(np.sum((y - ym) ** 2))
    se = float(np.sqrt(sse / (n - 2) / sxx)) if n > 2 else float("nan")
    r2 = 1.0 - sse / sst if sst > 0 else float("nan")
    return float(slope), se, float(intercept), float(r2)


# A window's end: a step, or None for no limit on that side.
End = float | None


def _bounds(t_start: End, t_end: End, t_c: float) -> tuple[float, float]:
    """The window [lo, hi]: from the later of `t_start` and the crossover to `t_end`."""
    return max(t_start if t_start is not None else -np.inf, t_c), (t_end if t_end is not None else np.inf)


def fit_exponent(
    t: np.ndarray, r: np.ndarray, t_start: End = None, t_end: End = None, t_c: float = 0, shift: bool = False
) -> ExponentFit:
    """Fit log R = α log t + c on the points with max(t_start, t_c) ≤ t ≤ t_end.

    A crossover t_c > 0 starts the window there. With `shift`, the fit follows appendix B.3,
    eq. (32) literally: R(t) − R(t_c) ~ (t − t_c)^α. The shift is exact when t_c is, but an
    error in a detected t_c biases it (R(t_c) is subtracted), so it is off by default.
    """
    tt, rr = window_points(t, r, t_start, t_end, t_c, shift)
    lo, hi = _bounds(t_start, t_end, t_c)
    offset = t_c if shift else 0.0
    if len(tt) < 3:
        raise ValueError(
            f"only {len(tt)} usable points in the fit window [{lo}, {hi}]: widen the window "
            "(fit.start_step / fit.end_step) or record more points"
        )
    slope, se, intercept, r2 = _ols(np.log(tt), np.log(rr))
    return ExponentFit(
        alpha=slope,
        alpha_se=se,
        intercept=intercept,
        r2=r2,
        t_start=int(round(tt[0] + offset)),
        t_end=int(round(tt[-1] + offset)),
        n_points=len(tt),
        t_c=float(t_c),
        shifted=bool(shift and t_c > 0),
    )


def window_mask(
    t: np.ndarray, r: np.ndarray, t_start: End = None, t_end: End = None, t_c: float = 0, shift: bool = False
) -> tuple[np.ndarray, int]:
    """Which of the points (t, R) `fit_exponent` regresses on (same window and shift rules), and
    how many points inside the window it drops for having no logarithm (R = 0 or not finite, or
    R(t) − R(t_c) ≤ 0 with `shift`): they are counted, not silently lost."""
    t = np.asarray(t, dtype=float)
    r = np.asarray(r, dtype=float)
    lo, hi = _bounds(t_start, t_end, t_c)
    inside = (t >= lo) & (t <= hi)
    tt, rr = t, r
    if shift and t_c > 0:
        tt, rr = t - t_c, r - float(np.interp(t_c, t, r))
    with np.errstate(invalid="ignore"):
        keep = inside & np.isfinite(rr) & (tt > 0) & (rr > 0)
    return keep, int((inside & (tt > 0)).sum() - keep.sum())


def window_points(
    t: np.ndarray, r: np.ndarray, t_start: End = None, t_end: End = None, t_c: float = 0, shift: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The (t, R) points `fit_exponent` regresses on, with the same window and shift rules."""
    t = np.asarray(t, dtype=float)
    r = np.asarray(r, dtype=float)
    keep, _ = window_mask(t, r, t_start, t_end, t_c, shift)
    if shift and t_c > 0:
        return t[keep] - t_c, r[keep] - float(np.interp(t_c, t, r))
    return t[keep], r[keep]


@dataclass
class SpectralInterval:
    """Bootstrap interval of d_s (and of α alone), with how it was made."""

    d_s_low: float
    d_s_high: float
    alpha_low: float
    alpha_high: float
    # Lower ends of the intervals of d_s − λ_final (Lemma 3.4) and d_s − λ̄ (Corollary 3.3), each
    # bound resampled in the same replicate as d_s: a violation is within error when they are ≤ 0.
    lemma_margin_low: float
    corollary_margin_low: float
    level: float
    samples: int
    block: int
    n_lambdas: int
    groups: int = 0  # coordinate groups resampled (0: moving blocks of fit points instead)

    def to_dict(self) -> dict:
        return asdict(self)


def _slope(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slopes of every row of `y` on `x`."""
    xc = x - x.mean()
    return (xc * (y - y.mean(-1, keepdims=True))).sum(-1) / (xc**2).sum()


def _resampled_log_r(groups: np.ndarray, samples: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """log R* for `samples` replicates, R*² the sum of G groups drawn with replacement from `groups`
    (G x points, squared displacements), in chunks of about 4·10⁶ values (a long trajectory's
    replicates would not fit in memory at once); rows with a zero R* left out."""
    g = len(groups)
    for chunk in np.array_split(np.arange(samples), max(1, samples * g * groups.shape[1] // 4_000_000)):
        pick = rng.integers(0, g, size=(len(chunk), g))
        with np.errstate(divide="ignore", invalid="ignore"):
            y = 0.5 * np.log(groups[pick].sum(1))  # (replicates, points)
        yield y[np.isfinite(y).all(1)]


def _group_slopes(x: np.ndarray, groups: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Slopes of log R* on `x` = log t over the resampled groups (`_resampled_log_r`)."""
    return np.concatenate([_slope(x, y) for y in _resampled_log_r(groups, samples, rng)])


def bootstrap_spectral_dimension(
    t: np.ndarray,
    r: np.ndarray,
    lambdas: np.ndarray,
    samples: int = 1000,
    level: float = 0.95,
    block: int | None = None,
    seed: int = 0,
    bar_lambdas: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> SpectralInterval:
    """Percentile bootstrap interval of d_s = 2·mean(λ)·α.

    Each replicate (i) refits the log-log slope α* on resampled displacements and (ii) resamples
    the λ estimates that make λ_final with replacement and takes their mean λ*; d_s* = 2·λ*·α*.
    With `groups` (G x points: the squared displacements of G groups of coordinates at the fit
    points, summing to R²), (i) draws G groups with replacement and refits on R*² = their sum: the
    points of one trajectory are too correlated for resampling them to say how α varies (on
    processes with a known exponent that interval covered the truth about 60 % of the time), while
    the coordinates carry that variation (docs/trustworthy-numbers.md: coverage 88-95 %). Without
    groups (runs recorded before them, or a shifted fit), (i) resamples the fit points as pairs in
    moving blocks of `block` consecutive points (None: round(n^(1/3))). The points passed are those
    of the fit window (`window_points`). With one λ estimate, or none finite, only α is resampled
    (a NaN λ gives a NaN d_s interval). Seeded: same inputs, same interval.

    The verdicts need the uncertainty of d_s − bound, not of d_s alone; their lower percentiles
    are returned. Lemma 3.4: λ_final is on both sides, d_s − λ_final = λ_final·(2α − 1), so for
    λ_final > 0 (the lemma's setting) its sign is that of 2α − 1 and only α's uncertainty can
    excuse a violation: λ_final·(2α* − 1) at the point λ_final (resampling λ there would let any
    λ estimate near 0 excuse any α). Corollary 3.3 compares two different estimates, d_s* with
    λ̄* (the mean of `bar_lambdas`, all the run's estimates, resampled the same way).
    """
    x, y = np.log(np.asarray(t, dtype=float)), np.log(np.asarray(r, dtype=float))
    lambdas = np.asarray(lambdas, dtype=float)
    lambdas = lambdas[np.isfinite(lambdas)]
    n = len(x)
    if n < 3:
        raise ValueError(f"only {n} usable points in the fit window: the bootstrap needs at least 3")
    b = max(1, min(n, int(round(n ** (1 / 3))) if block is None else int(block)))
    rng = np.random.default_rng(seed)
    use_groups = groups is not None and np.isfinite(groups).all() and len(groups) >= 2
    if use_groups:
        alpha = _group_slopes(x, np.asarray(groups, dtype=float), samples, rng)
    else:
        # Moving blocks: ceil(n/b) random block starts, each contributing b consecutive points.
        starts = rng.integers(0, n - b + 1, size=(samples, -(-n // b)))
        slopes = []
        for chunk in np.array_split(starts, max(1, samples * n // 2_000_000)):  # bounded memory
            idx = (chunk[:, :, None] + np.arange(b)).reshape(len(chunk), -1)[:, :n]
            xs, ys = x[idx], y[idx]
            xc = xs - xs.mean(1, keepdims=True)
            sxx = (xc**2).sum(1)
            # A replicate whose points share one t has no slope; it is dropped (possible for tiny n).
            with np.errstate(invalid="ignore", divide="ignore"):
                slope = (xc * (ys - ys.mean(1, keepdims=True))).sum(1) / sxx
            slopes.append(slope[sxx > 0])
        alpha = np.concatenate(slopes)
    if len(lambdas) >= 2:
        lam = lambdas[rng.integers(0, len(lambdas), size=(len(alpha), len(lambdas)))].mean(1)
    else:
        lam = np.full(len(alpha), lambdas[0] if len(lambdas) else np.nan)
    d_s = 2.0 * lam * alpha
    lambda_final = float(lambdas.mean()) if len(lambdas) else float("nan")
    bars = np.asarray(bar_lambdas if bar_lambdas is not None else lambdas, dtype=float)
    bars = bars[np.isfinite(bars)]
    if len(bars) >= 2:
        lam_bar = bars[rng.integers(0, len(bars), size=(len(alpha), len(bars)))].mean(1)
    else:
        lam_bar = np.full(len(alpha), bars[0] if len(bars) else np.nan)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]

    def low(x: np.ndarray) -> float:
        return float(np.percentile(x, q[0])) if np.isfinite(x).all() else float("nan")

    d_lo, d_hi = np.percentile(d_s, q) if np.isfinite(d_s).all() else (np.nan, np.nan)
    a_lo, a_hi = np.percentile(alpha, q)
    return SpectralInterval(
        d_s_low=float(d_lo),
        d_s_high=float(d_hi),
        alpha_low=float(a_lo),
        alpha_high=float(a_hi),
        lemma_margin_low=low(lambda_final * (2.0 * alpha - 1.0)),
        corollary_margin_low=low(d_s - lam_bar),
        level=float(level),
        samples=int(len(alpha)),
        block=0 if use_groups else b,
        n_lambdas=int(len(lambdas)),
        groups=int(len(groups)) if use_groups else 0,
    )


def detect_crossover(t: np.ndarray, r: np.ndarray, min_points: int = 5) -> float:
    """Crossover time t_c between an early and a late power law (appendix B.3).

    Two-segment regression in log-log: every admissible breakpoint splits the points into an
    early and a late line, each fitted separately; t_c is the breakpoint with the least total
    squared error. Each segment keeps at least `min_points` points, so t_c is never an endpoint.
    """
    t = np.asarray(t, dtype=float)
    r = np.asarray(r, dtype=float)
    ok = (t > 0) & (r > 0) & np.isfinite(r)
    x, y = np.log(t[ok]), np.log(r[ok])
    n = len(x)
    if n < 2 * min_points:
        raise ValueError(f"crossover detection needs at least {2 * min_points} points, got {n}")
    # Prefix sums give each segment's least-squares error in O(1).
    cx, cy = np.cumsum(x), np.cumsum(y)
    cxx, cxy, cyy = np.cumsum(x * x), np.cumsum(x * y), np.cumsum(y * y)

    def sse(i: int, j: int) -> float:  # points i..j-1
        m = j - i
        sx = cx[j - 1] - (cx[i - 1] if i else 0.0)
        sy = cy[j - 1] - (cy[i - 1] if i else 0.0)
        sxx = cxx[j - 1] - (cxx[i - 1] if i else 0.0) - sx * sx / m
        sxy = cxy[j - 1] - (cxy[i - 1] if i else 0.0) - sx * sy / m
        syy = cyy[j - 1] - (cyy[i - 1] if i else 0.0) - sy * sy / m
        return syy - (sxy * sxy / sxx if sxx > 0 else 0.0)

    best_k = min(range(min_points, n - min_points + 1), key=lambda k: sse(0, k) + sse(k, n))
    return float(np.exp(x[best_k]))


def crossover_test(
    t: np.ndarray, groups: np.ndarray, t_c: float, samples: int = 4000, level: float = 0.999, seed: int = 0
) -> dict:
    """Whether the data support a crossover at `t_c` (the breakpoint `detect_crossover` found): the
    exponents of the two segments differ beyond what resampling the coordinate groups (`groups`:
    G x points, squared displacements, summing to R²) makes of them. Each replicate draws G groups
    with replacement and refits both segments at the same breakpoint; the crossover is supported
    when the `level` percentile interval of α_late − α_early excludes 0. The level, 99.9 %, pays
    for the breakpoint being the one of some 30 candidates that splits the exponents most (at 95 %
    a single power law got a crossover in 10-25 % of the seeds; at 99.9 %, 3-5 %). Returns the
    exponents, their difference and its interval, and `supported`."""
    x = np.log(np.asarray(t, dtype=float))
    groups = np.asarray(groups, dtype=float)
    k = int(np.searchsorted(np.asarray(t, dtype=float), t_c))  # late segment: points k..n-1

    def slopes(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _slope(x[:k], y[..., :k]), _slope(x[k:], y[..., k:])

    early, late = slopes(0.5 * np.log(groups.sum(0)))
    rng = np.random.default_rng(seed)
    differences = [lt - e for e, lt in map(slopes, _resampled_log_r(groups, samples, rng))]
    lo, hi = np.percentile(np.concatenate(differences), [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return {
        "t_c": float(t_c),
        "alpha_early": float(early),
        "alpha_late": float(late),
        "difference": float(late - early),
        "difference_low": float(lo),
        "difference_high": float(hi),
        "supported": bool(lo > 0 or hi < 0),
        "test": f"coordinate-group bootstrap: the {level:.1%} interval of α_late − α_early excludes 0",
    }


def spectral_dimension(llc: float, alpha: float) -> float:
    """d_s = 2·λ·α (eq. 17 rearranged)."""
    return 2.0 * llc * alpha


def walk_dimension(alpha: float) -> float:
    """d_walk = 1/α (Definition 3.2); equals 2λ/d_s."""
    return 1.0 / alpha if alpha != 0 else float("inf")
