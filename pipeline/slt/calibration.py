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
time constant 2/(εγ) each (at least the preset's burn-in and `Search.draws`), so that small steps
and weak localizations have the time to equilibrate and to show it; a step that would need more
than `max_steps` ends that γ's walk (smaller ones need more). The chosen step's burn-in is the
estimates' burn-in, and their draws are sized for the ESS bound from the effective sample size per
draw the step reached. No agreeing pair anywhere: the larger step of the closest usable pair, and
the choice says `plateau: false`; nothing usable: the preset's settings, said so in the choice.

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
    the localization's time constant 2/(εγ) (the pull back to w_t, the slowest along directions
    the loss hardly curves), at least the preset's burn-in and the search's draws; infinite
    without localization."""
    rate = lr * localization / 2
    if rate <= 0:
        return math.inf, math.inf
    needed = math.ceil(search.relaxations / rate)
    return max(base.num_burnin_steps, needed), max(int(search.draws), needed)


def search(
    estimate: Callable[[Settings], dict], base: Settings, search: Search, nbeta: float
) -> tuple[list[dict], dict]:
    """Run the search (module docstring) from the preset `base`, nβ factors applied to `nbeta` (the
    preset's nβ). Returns every tried setting's row (with `lr`, `localization`, `nbeta_factor`,
    `nbeta`, `burnin`, `usable`, the estimate's columns and its `trace`) and the choice: `lr`,
    `localization`, `nbeta`, `nbeta_factor`, `burnin`, `num_draws`, `plateau`, `reason` and
    `searched` (false when the preset's settings were kept)."""
    rows: list[dict] = []
    for gamma, factor in itertools.product(search.localization, search.nbeta_factor):
        above: dict | None = None  # the estimate at the next larger step
        for lr in sorted(search.lr, reverse=True):
            burnin, draws = steps_for(base, search, lr, gamma)
            if burnin + draws > search.max_steps:
                break  # smaller steps need longer still: this γ cannot equilibrate within the budget
            at = dataclasses.replace(
                base,
                lr=lr,
                localization=gamma,
                nbeta=factor * nbeta,
                num_draws=draws,
                num_burnin_steps=burnin,
            )
            row = {"lr": lr, "localization": gamma, "nbeta_factor": factor, "burnin": burnin, "draws": draws}
            row |= estimate(at)
            row["usable"] = usable(row, search.max_rhat)
            rows.append(row)
            if row["usable"] and above is not None and above["usable"] and agree(above, row, search.plateau):
                why = f"λ̂ at ε={above['lr']:g} agrees with ε={lr:g}"
                return rows, _choice(above, search, base, True, why)
            above = row
    flattest = _flattest(rows)
    if flattest is not None:
        return rows, _choice(
            flattest, search, base, False, "no two neighbouring steps agree: the closest pair's larger step"
        )
    keep = {
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


def _flattest(rows: list[dict]) -> dict | None:
    """Without a plateau: of the usable neighbouring pairs (same γ and nβ), the larger step of the
    pair whose λ̂ differ least relative to their size; None when no pair is usable."""
    pairs = [
        (abs(a["llc"] - b["llc"]) / max(abs(a["llc"]), abs(b["llc"]), 1e-12), a)
        for a, b in zip(rows, rows[1:])
        if a["usable"]
        and b["usable"]
        and (a["localization"], a["nbeta_factor"]) == (b["localization"], b["nbeta_factor"])
    ]
    return min(pairs, key=lambda p: p[0])[1] if pairs else None


def _choice(row: dict, search: Search, base: Settings, plateau: bool, reason: str) -> dict:
    return {
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
    """The preset's settings with the chosen step size, localization, nβ and draws."""
    return dataclasses.replace(
        base,
        lr=float(choice["lr"]),
        localization=float(choice["localization"]),
        nbeta=None if choice["nbeta"] is None else float(choice["nbeta"]),
        num_draws=int(choice["num_draws"]),
        num_burnin_steps=int(choice.get("burnin", base.num_burnin_steps)),
    )
