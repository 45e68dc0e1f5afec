"""The automatic calibration of the SGLD settings: one setting, found on one checkpoint, for every
estimate of a run (so that λ(t) is comparable over time).

The rule follows devinterp's calibration guidance and Timaeus's sampling guide: a usable estimate
has no diverging chain, a positive λ̂, a flat loss trace after burn-in and chains that agree (R-hat
at most `Search.max_rhat`, 1.05, for the search's short chains; the estimates themselves, with draws
sized for the ESS bound, are flagged at `llc.diagnostics.max_rhat`, 1.01). A step size ε too small
leaves the chain near w_t (λ̂ far too low, though the trace may look flat: minibatch noise around
L(w_t)); one too large biases λ̂ by the discretization, or diverges. In between λ̂ hardly moves with
ε: a plateau.

For each localization γ (weakest first: it is a nuisance that only keeps the chain near w_t) and nβ
factor, in their order of preference, the search walks ε DOWN the ladder and stops at the first two
neighbouring steps that are both usable and agree (`Search.plateau` of λ̂ plus their combined
Monte-Carlo error), taking the larger: the largest step a smaller one confirms, which mixes fastest
for the same bias. Each step gets a burn-in and draws of `relaxations` times the localization's
time constant 2/(εγ) (2/√(εγ) for the underdamped sampler) each (at least the preset's burn-in
and `Search.draws`), so that small steps and weak localizations have the time to equilibrate and
to show it; a step that would need more than `max_steps` ends that γ's walk (smaller ones need
more). The chosen step's burn-in is the estimates' burn-in, and their draws are sized for the ESS
bound from the effective sample size per draw the step reached.

A localization comparable to nβ holds the chains itself and pulls λ̂ down whatever the step
(measured: reduced-rank regression −40 % at γ = nβ/1.45 where γ = nβ/14.5 is within 10 %; flat 2-D
potentials −99 %; the default job λ̂ 20 at γ = 0.65 nβ against 54 at γ = 0.065 nβ). So the γ of at
most `max_prior`·nβ (0.1: the prior's pull at most a tenth of the likelihood's along a direction of
unit curvature) come first, each walked for a plateau; none: the weakest of them with usable
chains, at its smallest usable step (the least discretization bias), `plateau: false`. Only when
none of them has a usable chain are the stronger γ tried, the same way, and the reason says so.
Nothing usable anywhere: the preset's settings, said so in the choice.

Momentum. SGLD relaxes along the directions only the localization curves in 2/(εγ) steps, so the
budget bounds its smallest step: ε ≥ 2·relaxations·2/(γ·max_steps). Large models need smaller
steps (the step's bias grows as the chains spread along the symmetries: deep linear networks of
10⁴ parameters need ε of 1e-8 to 1e-7 at nβ ≈ 9000, docs/trustworthy-numbers.md#deep-linear-networks).
So when no weak γ gives SGLD a plateau, SGLD has no usable step at all at the weakest γ (none its
budget allows: on the deep linear networks every one diverges) and the gradients are exact
(full batch: momentum would heat minibatch noise 1/√(εγ)-fold), the weak γ are walked again with
`Search.momentum`'s sampler (underdamped Langevin, relaxing in 2/√(εγ) steps), its own ladder,
budgets and R-hat bound; its first plateau is the choice: the larger step of the pair, or the
smaller where the step above the pair diverged (the estimates' far longer chains could diverge at a
step that close to it). Where SGLD can sample the weakest γ, its own fallback stands (on normal
crossings the momentum sampler's exact finite-nβ answer sits further from λ than SGLD's, whose
step bias lifts it: docs/trustworthy-numbers.md#the-momentum-walk).
Neither walk with a plateau: SGLD's fallbacks above, as they were.

Plain numpy; the estimator is handed in (`estimate(settings) -> row`, a row of `pipeline.slt.llc`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable

import numpy as np

from pipeline.slt.settings import Search, Settings


def usable(row: dict, max_rhat: float | None = None) -> bool:
    """Succeeded, λ̂ > 0, stationary, and R-hat in bounds: the row's own flag, or at most `max_rhat`
    when given (the search's short chains). ESS is reached afterwards, by sizing the draws."""
    if row["status"] != "ok" or row["negative"] or row["nonstationary"]:
        return False
    if max_rhat is None:
        return not row.get("rhat_high", False)  # (tables written before R-hat was recorded: no flag)
    return bool(row["rhat"] <= max_rhat)


def agree(a: dict, b: dict, plateau: float) -> bool:
    """λ̂ of two estimates within `plateau`·|λ̂| plus their combined Monte-Carlo error (one standard
    error: more would let the short chains of the search hide the onset of the step's bias)."""
    mcse = math.hypot(a["llc_mcse"], b["llc_mcse"])
    tolerance = plateau * max(abs(a["llc"]), abs(b["llc"])) + (mcse if np.isfinite(mcse) else 0.0)
    return abs(a["llc"] - b["llc"]) <= tolerance


def draws_for(row: dict, search: Search, chains: int, min_ess_per_chain: float, floor: int) -> int:
    """Draws per chain for `min_ess_per_chain`·`margin` effective draws per chain, at the ESS per draw
    `row` reached (the smaller of bulk and tail, over its `draws` draws per chain), between `floor`
    and `search.max_draws`."""
    ess = min(row["ess_bulk"], row["ess_tail"])
    per_draw = ess / (chains * row.get("draws", search.draws))
    if not np.isfinite(per_draw) or per_draw <= 0:
        return int(search.max_draws)
    needed = math.ceil(search.margin * float(min_ess_per_chain) / per_draw)
    return int(min(max(needed, int(floor)), int(search.max_draws)))


def steps_for(base: Settings, search: Search, lr: float, localization: float) -> tuple[float, float]:
    """Burn-in and draws per chain for step size `lr` at localization γ: each `relaxations` times
    the localization's time constant in steps (the pull back to w_t, the slowest along directions
    the loss hardly curves): 2/(εγ) for SGLD, 2/√(εγ) for the underdamped sampler (critically
    damped there, time step √ε); at least the preset's burn-in and the search's draws; infinite
    without localization."""
    rate = math.sqrt(lr * localization) / 2 if base.sampler == "underdamped" else lr * localization / 2
    if rate <= 0:
        return math.inf, math.inf
    needed = math.ceil(search.relaxations / rate)
    return max(base.num_burnin_steps, needed), max(int(search.draws), needed)


def search(
    estimate: Callable[[Settings], dict],
    base: Settings,
    search: Search,
    nbeta: float,
    exact: bool = False,
) -> tuple[list[dict], dict]:
    """Run the search (module docstring) from the preset `base`, nβ factors applied to `nbeta` (the
    preset's nβ); `exact`: the gradients are the full batch's (one batch holds the training set),
    which lets the momentum walk run. Returns every tried setting's row (with `sampler`, `lr`,
    `localization`, `nbeta_factor`, `nbeta`, `burnin`, `usable`, the estimate's columns and its
    `trace`) and the choice: `sampler`, `lr`, `localization`, `nbeta`, `nbeta_factor`, `burnin`,
    `num_draws`, `plateau`, `reason` and `searched` (false when the preset's settings were kept)."""
    rows: list[dict] = []
    pairs = list(itertools.product(search.localization, search.nbeta_factor))
    weak = [(g, f) for g, f in pairs if g <= search.max_prior * f * nbeta]
    m = search.momentum
    for group, note in ((weak, ""), ([p for p in pairs if p not in weak], "; γ above nβ·max_prior")):
        for gamma, factor in group:
            plateau = _walk(estimate, base, search, gamma, factor, nbeta, rows)
            if plateau is not None:
                above, below = plateau
                why = f"λ̂ at ε={above['lr']:g} agrees with ε={below['lr']:g}{note}"
                return rows, _choice(above, search, base, True, why)
        # The momentum walk, on the weak γ only (the strong ones pull λ̂ down whatever the sampler);
        # no row at the weakest γ: the budget allowed SGLD no step there, which counts as none usable
        walked_momentum = (
            group is weak
            and bool(weak)
            and exact
            and m.sampler not in (None, base.sampler)
            and not any(r["usable"] for r in rows if _at(r, *weak[0], base.sampler))
        )
        if walked_momentum:
            found = _momentum_walk(estimate, base, search, weak, nbeta, rows)
            if found is not None:
                return rows, found
        for gamma, factor in group:
            # No plateau within the budget: the weakest γ with usable chains, its smallest usable
            # step (the least discretization bias); a stronger γ pulls λ̂ down whatever ε. (The
            # preset's sampler's rows: the momentum walk's smallest steps are no safer a fallback.)
            walked = [r for r in rows if _at(r, gamma, factor, base.sampler)]
            smallest = min((r for r in walked if r["usable"]), key=lambda r: r["lr"], default=None)
            if smallest is not None:
                why = f"no two neighbouring steps agree at γ={gamma:g}: its smallest usable step{note}"
                if walked_momentum:
                    why += f"; the {m.sampler} walk found no plateau either"
                return rows, _choice(smallest, search, base, False, why)
    keep = {
        "sampler": base.sampler,
        "lr": base.lr,
        "localization": base.localization,
        "nbeta": base.nbeta,
        "nbeta_factor": 1.0,
        "burnin": base.num_burnin_steps,
        "num_draws": base.num_draws,
        "plateau": False,
        "reason": "no usable setting: the preset's settings are kept",
        "searched": False,
    }
    return rows, keep


def _momentum_walk(
    estimate: Callable[[Settings], dict],
    base: Settings,
    search: Search,
    weak: list[tuple[float, float]],
    nbeta: float,
    rows: list[dict],
) -> dict | None:
    """The weak γ walked with `search.momentum`'s sampler, ladder and budgets (module docstring),
    rows appended to `rows`; the choice at its first plateau, else None."""
    m = search.momentum
    moved = dataclasses.replace(base, sampler=m.sampler)
    budget = dataclasses.replace(
        search, lr=m.lr, max_steps=m.max_steps, max_draws=m.max_draws, max_rhat=m.max_rhat
    )
    for gamma, factor in weak:
        plateau = _walk(estimate, moved, budget, gamma, factor, nbeta, rows)
        if plateau is not None:
            above, below = plateau
            how = f"{m.sampler}: no usable {base.sampler} step at γ={weak[0][0]:g}"
            over = _over(rows, above)
            if over is not None and over["status"] != "ok":
                # The estimates run far longer than the search (draws up to 40 000): a step next to
                # one that diverged within the search, stable there, can diverge as the chains
                # spread along the symmetries (measured: depth 5's 1e-6 after 11 672 draws)
                agrees = f"λ̂ at ε={below['lr']:g} agrees with ε={above['lr']:g} ({how})"
                why = f"{agrees}; ε={over['lr']:g} diverged: the smaller"
                return _choice(below, budget, moved, True, why)
            # Otherwise the larger, as SGLD's walk takes it: the same λ̂, and more relaxations
            # within the draws' cap (measured: 10³-10⁴ networks, R-hat and ESS better, λ̂ alike)
            why = f"λ̂ at ε={above['lr']:g} agrees with ε={below['lr']:g} ({how}): the larger"
            return _choice(above, budget, moved, True, why)
    return None


def _over(rows: list[dict], row: dict) -> dict | None:
    """The row walked just before `row` at its γ, nβ factor and sampler (the next larger step)."""
    i = next(i for i, r in enumerate(rows) if r is row)
    if i > 0 and _at(rows[i - 1], row["localization"], row["nbeta_factor"], row["sampler"]):
        return rows[i - 1]
    return None


def _at(row: dict, gamma: float, factor: float, sampler: str) -> bool:
    return (row["localization"], row["nbeta_factor"], row["sampler"]) == (gamma, factor, sampler)


def _walk(
    estimate: Callable[[Settings], dict],
    base: Settings,
    search: Search,
    gamma: float,
    factor: float,
    nbeta: float,
    rows: list[dict],
) -> tuple[dict, dict] | None:
    """Walk ε down the ladder at localization `gamma` and nβ `factor`·`nbeta`, appending each
    step's row to `rows`; the rows (larger step, smaller step) of the first agreeing usable pair,
    else None."""
    above: dict | None = None  # the estimate at the next larger step
    for lr in sorted(search.lr, reverse=True):
        burnin, draws = steps_for(base, search, lr, gamma)
        if burnin + draws > search.max_steps:
            return None  # smaller steps need longer still: this γ cannot equilibrate within the budget
        at = dataclasses.replace(
            base, lr=lr, localization=gamma, nbeta=factor * nbeta, num_draws=draws, num_burnin_steps=burnin
        )
        row = {"sampler": base.sampler, "lr": lr, "localization": gamma, "nbeta_factor": factor}
        row |= {"burnin": burnin, "draws": draws}
        row |= estimate(at)
        row["usable"] = usable(row, search.max_rhat)
        rows.append(row)
        if row["usable"] and above is not None and above["usable"] and agree(above, row, search.plateau):
            return above, row
        above = row
    return None


def _choice(row: dict, search: Search, base: Settings, plateau: bool, reason: str) -> dict:
    return {
        "sampler": base.sampler,
        "lr": float(row["lr"]),
        "localization": float(row["localization"]),
        # null, as in the preset, when the preset's batch/log batch is kept: the record says so
        "nbeta": None if base.nbeta is None and row["nbeta_factor"] == 1.0 else float(row["nbeta"]),
        "nbeta_factor": float(row["nbeta_factor"]),
        "burnin": int(row["burnin"]),
        "num_draws": draws_for(
            row, search, base.num_chains, base.diagnostics.min_ess_per_chain, base.num_draws
        ),
        "plateau": plateau,
        "reason": reason,
        "searched": True,
    }


def apply(base: Settings, choice: dict) -> Settings:
    """The preset's settings with the chosen sampler, step size, localization, nβ and draws."""
    return dataclasses.replace(
        base,
        sampler=str(choice.get("sampler", base.sampler)),  # (choices recorded before it: the preset's)
        lr=float(choice["lr"]),
        localization=float(choice["localization"]),
        nbeta=None if choice["nbeta"] is None else float(choice["nbeta"]),
        num_draws=int(choice["num_draws"]),
        num_burnin_steps=int(choice.get("burnin", base.num_burnin_steps)),
    )
