"""The automatic calibration's search and the chain diagnostics it reads (ArviZ's R-hat, ESS, MCSE)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline.slt import calibration, llc
from pipeline.slt.settings import Diagnostics, Momentum, Search, Settings


def row(
    lam: float, *, mcse: float = 0.01, rhat: float = 1.0, ess: float = 400.0, status: str = "ok", **flags
):
    """An estimate's row as the estimators return it (only what the search reads)."""
    return {
        "llc": lam,
        "llc_mcse": mcse,
        "rhat": rhat,
        "ess_bulk": ess,
        "ess_tail": ess,
        "status": status,
        "negative": lam < 0,
        "nonstationary": flags.get("nonstationary", False),
        "rhat_high": rhat > 1.01,
        "nbeta": 10.0,
        "trace": None,
    }


def fake(table: dict[tuple, dict], by_sampler: bool = False):
    """An estimator that answers from `table` by (ε, γ), or (sampler, ε, γ), recording what it was
    asked."""
    asked: list[Settings] = []

    def estimate(at: Settings) -> dict:
        asked.append(at)
        key = (at.lr, at.localization)
        return dict(table[(at.sampler, *key) if by_sampler else key], nbeta=at.nbeta)

    return estimate, asked


def picked(choice: dict) -> tuple:
    """What the search chose: (sampler, ε, γ, plateau)."""
    return choice["sampler"], choice["lr"], choice["localization"], choice["plateau"]


BASE = Settings(lr=1e-4, localization=100.0, nbeta=None, num_chains=4, num_draws=100, num_burnin_steps=50)
NBETA = 1000.0  # γ up to 100 is within max_prior·nβ (the cap: its own test)
LADDER = Search(
    enabled=True, lr=(1e-5, 1e-4, 1e-3, 1e-2), localization=(10.0, 100.0), draws=200, max_steps=8000
)


def test_the_largest_step_a_smaller_one_confirms_is_chosen() -> None:
    # Weakest localization first: at γ = 10 the chains disagree (R-hat 1.2: nothing usable); at
    # γ = 100: discretization bias at 1e-2, then a plateau.
    lams = {
        (1e-2, 10.0): 30.0,
        (1e-3, 10.0): 12.0,
        (1e-2, 100.0): 2.6,
        (1e-3, 100.0): 1.85,
        (1e-4, 100.0): 1.80,
        (1e-5, 100.0): 0.5,
    }
    table = {k: row(v, ess=200.0, rhat=1.2 if k[1] == 10.0 else 1.0) for k, v in lams.items()}
    estimate, asked = fake(table)
    rows, choice = calibration.search(estimate, BASE, LADDER, nbeta=NBETA)
    assert choice["lr"] == 1e-3 and choice["localization"] == 100.0 and choice["plateau"]
    assert choice["nbeta"] is None and choice["nbeta_factor"] == 1.0  # the preset's batch/log batch, kept
    assert choice["reason"] == "λ̂ at ε=0.001 agrees with ε=0.0001"
    # γ = 10: 1e-4 would need 3 time constants 2/(εγ) = 6000 steps of burn-in and as many draws.
    assert [(r["localization"], r["lr"]) for r in rows] == [
        (10.0, 1e-2),
        (10.0, 1e-3),
        (100.0, 1e-2),
        (100.0, 1e-3),
        (100.0, 1e-4),
    ]
    # Burn-in and draws: 3 × 2/(εγ), at least the preset's 50 and the search's 200.
    assert [(a.num_burnin_steps, a.num_draws) for a in asked] == [
        (60, 200),
        (600, 600),
        (50, 200),
        (60, 200),
        (600, 600),
    ]
    assert all(a.num_chains == 4 for a in asked)
    assert choice["burnin"] == 60
    # ESS 200 from 4 chains x 200 draws: 0.25 per draw; 3 x 100 per chain needs 1200 draws.
    assert choice["num_draws"] == 1200
    assert calibration.apply(BASE, choice).num_burnin_steps == 60


def test_usable_chains_at_a_weak_localization_are_kept_without_a_plateau() -> None:
    # nβ = 500: γ = 10 is within 0.1·nβ, γ = 100 is not. At γ = 10 λ̂ still falls with ε when the
    # steps get too long (no plateau), but its chains are usable: its smallest step wins.
    lams = {(1e-2, 10.0): 30.0, (1e-3, 10.0): 12.0, (1e-2, 100.0): 2.6, (1e-3, 100.0): 1.85}
    estimate, asked = fake({k: row(v) for k, v in lams.items()})
    rows, choice = calibration.search(estimate, BASE, LADDER, nbeta=500.0)
    assert (choice["lr"], choice["localization"], choice["plateau"]) == (1e-3, 10.0, False)
    assert choice["reason"] == "no two neighbouring steps agree at γ=10: its smallest usable step"
    assert [a.localization for a in asked] == [10.0, 10.0]  # γ = 100 never sampled
    assert choice["burnin"] == 600


def test_a_localization_above_a_tenth_of_nbeta_comes_only_after_the_weaker_ones() -> None:
    # nβ = 50: only γ = 1 is within 0.1·nβ = 5. Its walk has usable chains but no plateau; γ = 10
    # (nβ/5) has one, at a value its prior pulls down: γ = 1 wins, unplateaued.
    lams = {(1e-2, 1.0): 9.0, (1e-3, 1.0): 6.0, (1e-2, 10.0): 2.6, (1e-3, 10.0): 2.5}
    ladder = dataclasses.replace(LADDER, localization=(1.0, 10.0), max_steps=20000)
    estimate, asked = fake({k: row(v) for k, v in lams.items()})
    _, choice = calibration.search(estimate, BASE, ladder, nbeta=50.0)
    assert (choice["lr"], choice["localization"], choice["plateau"]) == (1e-3, 1.0, False)
    assert [a.localization for a in asked] == [1.0, 1.0]
    # Nothing usable at γ = 1: the stronger γ is walked, and the reason says it is above the cap.
    lams = {k: row(-1.0 if k[1] == 1.0 else v) for k, v in lams.items()}
    estimate, _ = fake(lams)
    _, choice = calibration.search(estimate, BASE, ladder, nbeta=50.0)
    assert (choice["lr"], choice["localization"], choice["plateau"]) == (1e-2, 10.0, True)
    assert choice["reason"] == "λ̂ at ε=0.01 agrees with ε=0.001; γ above nβ·max_prior"


def test_an_unusable_step_breaks_the_plateau_and_a_divergence_is_passed_over() -> None:
    table = {
        (1e-2, 100.0): row(np.nan, status="failed: NaN detected in loss at chain 0, draw 3"),
        (1e-3, 100.0): row(0.5),
        (1e-4, 100.0): row(0.49, rhat=1.2),  # the chains disagree: not usable
        (1e-2, 1000.0): row(0.9),
        (1e-3, 1000.0): row(0.31),
        (1e-4, 1000.0): row(0.30),
    }
    estimate, _ = fake(table)
    search = dataclasses.replace(LADDER, localization=(100.0, 1000.0))
    rows, choice = calibration.search(estimate, BASE, search, nbeta=NBETA)
    # 1e-5 at γ = 100 would need 6000 steps of burn-in and 6000 draws: past max_steps, not run.
    # 0.5 and 0.49 agree, but 1e-4's chains disagree: no plateau, and 1e-3 is γ = 100's only usable step.
    assert [(r["lr"], r["localization"]) for r in rows] == [(1e-2, 100.0), (1e-3, 100.0), (1e-4, 100.0)]
    assert (choice["lr"], choice["localization"], choice["plateau"]) == (1e-3, 100.0, False)
    # Nothing usable at γ = 100: on to γ = 1000, whose plateau is taken.
    table[(1e-3, 100.0)] = row(0.5, nonstationary=True)
    estimate, _ = fake(table)
    _, choice = calibration.search(estimate, BASE, search, nbeta=NBETA)
    assert (choice["lr"], choice["localization"], choice["plateau"]) == (1e-3, 1000.0, True)


def test_without_a_plateau_the_weakest_usable_localization_then_the_preset() -> None:
    values = {1e-2: 8.1, 1e-3: 2.7, 1e-4: 0.9, 1e-5: 0.3}
    table = {(lr, g): row(v * (1.5 if g == 10.0 else 1.0)) for g in (10.0, 100.0) for lr, v in values.items()}
    estimate, _ = fake(table)
    rows, choice = calibration.search(estimate, BASE, LADDER, nbeta=NBETA)
    assert not choice["plateau"] and choice["reason"].startswith("no two neighbouring steps agree at γ=10")
    assert (choice["lr"], choice["localization"]) == (1e-3, 10.0)
    estimate, _ = fake({k: row(-1.0) for k in table})
    _, kept = calibration.search(estimate, BASE, LADDER, nbeta=NBETA)
    assert kept["reason"].startswith("no usable setting") and kept["lr"] == BASE.lr
    assert calibration.apply(BASE, kept) == BASE


def test_no_localization_means_no_bounded_burn_in() -> None:
    search = Search(enabled=True, lr=(1e-3,), localization=(0.0,))
    estimate, asked = fake({})
    rows, choice = calibration.search(estimate, BASE, search, nbeta=NBETA)
    assert rows == [] and asked == [] and choice["reason"].startswith("no usable setting")


def test_the_search_times_each_sampler_by_its_own_relaxation() -> None:
    """SGLD relaxes along a direction only the localization curves in 2/(εγ) steps; the
    underdamped sampler (time step √ε, critically damped there) in 2/√(εγ): the search's burn-in
    and draws are `relaxations` of those, at least the preset's and the search's own."""
    search = Search(enabled=True, relaxations=3.0, draws=200)
    assert calibration.steps_for(BASE, search, 1e-4, 10.0) == (6000, 6000)  # 3 × 2/(1e-4 · 10)
    under = dataclasses.replace(BASE, sampler="underdamped")
    assert calibration.steps_for(under, search, 1e-4, 10.0) == (190, 200)  # 3 × 2/√1e-3; draws ≥ 200
    assert calibration.steps_for(under, search, 1e-7, 10.0) == (6000, 6000)  # 3 × 2/√1e-6


def test_agreement_allows_for_the_monte_carlo_error() -> None:
    assert calibration.agree(row(1.0), row(1.09), 0.1)
    assert not calibration.agree(row(1.0), row(1.2), 0.1)
    assert calibration.agree(row(1.0, mcse=0.1), row(1.25, mcse=0.1), 0.1)  # 0.25 ≤ 0.125 + 0.141
    assert not calibration.agree(row(1.0, mcse=0.1), row(1.3, mcse=0.1), 0.1)  # 0.3 > 0.13 + 0.141


def test_draws_are_sized_for_the_ess_bound_within_limits() -> None:
    search = Search(draws=200, margin=1.5, max_draws=1000)
    assert calibration.draws_for(row(1.0, ess=800.0), search, 4, 100, floor=100) == 150
    assert calibration.draws_for(row(1.0, ess=800.0) | {"draws": 400}, search, 4, 100, floor=100) == 300
    assert calibration.draws_for(row(1.0, ess=8000.0), search, 4, 100, floor=100) == 100  # the floor
    assert calibration.draws_for(row(1.0, ess=40.0), search, 4, 100, floor=100) == 1000  # the cap
    assert calibration.draws_for(row(1.0, ess=np.nan), search, 4, 100, floor=100) == 1000


def test_arviz_diagnostics_of_independent_and_of_stuck_chains() -> None:
    rng = np.random.default_rng(0)
    good = rng.normal(size=(4, 1000))
    d = llc.convergence(good, nbeta=10.0)
    assert d["rhat"] == pytest.approx(1.0, abs=0.01)
    assert 3000 < d["ess_bulk"] < 5000 and 3000 < d["ess_tail"] < 5000
    assert d["llc_mcse"] == pytest.approx(10.0 / np.sqrt(4000), rel=0.15)  # nβ·sd/√ESS
    stuck = good + np.arange(4)[:, None]  # four chains in four places
    flags = llc.diagnose({"trace": stuck, "nbeta": 10.0, "llc": 5.0}, Diagnostics())
    assert flags["rhat"] > 1.5 and flags["rhat_high"]
    walk = np.cumsum(rng.normal(size=(4, 1000)), axis=1)  # a random walk: few effective draws
    flags = llc.diagnose({"trace": walk, "nbeta": 1.0, "llc": 100.0}, Diagnostics())
    assert flags["ess_bulk"] < 400 and flags["ess_low"]
    fine = llc.diagnose({"trace": good, "nbeta": 10.0, "llc": 5.0}, Diagnostics())
    assert not (fine["rhat_high"] or fine["ess_low"] or fine["negative"] or fine["nonstationary"])
    failed = llc.diagnose({"trace": None, "nbeta": 10.0, "llc": np.nan}, Diagnostics())
    assert not any(failed[k] for k in llc.FLAGS) and np.isnan(failed["rhat"])


def test_lambda_final_carries_its_monte_carlo_error() -> None:
    import pandas as pd

    table = pd.DataFrame(
        {"step": [1, 2, 3], "llc": [1.0, 2.0, 3.0], "llc_mcse": [9.0, 0.3, 0.4], "status": ["ok"] * 3}
    )
    s = llc.summarize(table, last=2)
    assert s["lambda_final"] == 2.5 and s["lambda_final_mcse"] == pytest.approx(0.25)  # √(0.09+0.16)/2


DIVERGED = row(np.nan, status="failed: NaN detected in loss at chain 0, draw 0")


def sgld_stuck_momentum_plateau(over: dict) -> tuple[dict, Search]:
    """SGLD: every step its budget allows diverges at γ = 10; at γ = 100 λ̂ still falls with ε (no
    plateau). The momentum walk, on its own ladder, agrees at 1e-4 and 1e-5 at γ = 10, below SGLD's
    steps, its chains judged by its own R-hat bound (1.07 passes its 1.1, not the search's 1.05);
    `over` is its row at 1e-3, the step above the pair. (table, search)"""
    table = {("sgld", lr, 10.0): DIVERGED for lr in (1e-4, 1e-3, 1e-2)}
    table |= {("sgld", lr, 100.0): row(v) for lr, v in {1e-2: 8.1, 1e-3: 2.7, 1e-4: 0.9}.items()}
    momentum = {1e-2: 9.0, 1e-3: 4.0, 1e-4: 1.05, 1e-5: 1.0, 1e-6: 0.98}
    table |= {
        ("underdamped", lr, g): row(v, ess=100.0, rhat=1.07)
        for g in (10.0, 100.0)
        for lr, v in momentum.items()
    }
    table[("underdamped", 1e-3, 10.0)] = over
    search = dataclasses.replace(
        LADDER,
        lr=(1e-4, 1e-3, 1e-2),
        max_steps=20_000,
        momentum=Momentum(lr=(1e-6, 1e-5, 1e-4, 1e-3, 1e-2), max_steps=40_000, max_draws=10_000),
    )
    return table, search


def test_where_sgld_diverges_at_the_weakest_localization_exact_gradients_get_the_momentum_walk() -> None:
    table, search = sgld_stuck_momentum_plateau(over=DIVERGED)
    estimate, asked = fake(table, by_sampler=True)
    rows, choice = calibration.search(estimate, BASE, search, nbeta=NBETA, exact=True)
    # ... and of the agreeing pair, the smaller step: the one above the pair diverged, and the
    # estimates run their chains far longer than the search (the larger could diverge there)
    assert picked(choice) == ("underdamped", 1e-5, 10.0, True)
    assert choice["reason"] == (
        "λ̂ at ε=1e-05 agrees with ε=0.0001 (underdamped: no usable sgld step at γ=10); "
        "ε=0.001 diverged: the smaller"
    )
    # SGLD's whole walk first (both γ), then the momentum walk, timed by 2/√(εγ): 3 × 2/√1e-4 = 600
    # at ε = 1e-5, γ = 10 (SGLD's 2/(εγ) would need 60 000, past any budget here).
    assert [(a.sampler, a.localization) for a in asked[:6]] == [("sgld", 10.0)] * 3 + [("sgld", 100.0)] * 3
    assert [(a.sampler, a.lr, a.num_burnin_steps) for a in asked[6:]] == [
        ("underdamped", 1e-2, 50),  # (the preset's 50 at least)
        ("underdamped", 1e-3, 60),
        ("underdamped", 1e-4, 190),
        ("underdamped", 1e-5, 600),
    ]
    assert [r["sampler"] for r in rows] == [a.sampler for a in asked]
    # ESS 100 from 4 × 600 draws: 1/24 per draw; 300 per chain needs 7200, within its max_draws
    assert choice["num_draws"] == 7200
    chosen = calibration.apply(BASE, choice)
    assert (chosen.sampler, chosen.lr, chosen.localization, chosen.num_burnin_steps) == (
        "underdamped",
        1e-5,
        10.0,
        600,
    )

    # Minibatch gradients (momentum would heat their noise), or the walk turned off: SGLD's
    # smallest usable step at the weakest γ it can sample, as without it.
    for exact, off in ((False, search), (True, dataclasses.replace(search, momentum=Momentum(sampler=None)))):
        estimate, asked = fake(table, by_sampler=True)
        _, choice = calibration.search(estimate, BASE, off, nbeta=NBETA, exact=exact)
        assert {a.sampler for a in asked} == {"sgld"}
        assert picked(choice) == ("sgld", 1e-4, 100.0, False)


def test_the_momentum_walk_takes_the_larger_step_of_its_pair_unless_the_next_larger_diverged() -> None:
    # The step above the pair ran (λ̂ 4.0: too large a step, not agreeing) without diverging: the
    # larger of the pair, as SGLD's walk takes it (more relaxations within the draws' cap).
    table, search = sgld_stuck_momentum_plateau(over=row(4.0, ess=100.0, rhat=1.07))
    estimate, _ = fake(table, by_sampler=True)
    _, choice = calibration.search(estimate, BASE, search, nbeta=NBETA, exact=True)
    assert picked(choice) == ("underdamped", 1e-4, 10.0, True)
    assert choice["reason"] == (
        "λ̂ at ε=0.0001 agrees with ε=1e-05 (underdamped: no usable sgld step at γ=10): the larger"
    )
    # 3 × 2/√(εγ) = 190 steps of burn-in at ε = 1e-4, and the search's 200 draws: ESS 100 over
    # 4 × 200 draws, 300 per chain needs 2400
    assert (choice["burnin"], choice["num_draws"]) == (190, 2400)
    # Unusable for its chains (R-hat 1.3, no divergence) is not diverged: the larger, too.
    table, search = sgld_stuck_momentum_plateau(over=row(1.0, ess=100.0, rhat=1.3))
    _, choice = calibration.search(fake(table, by_sampler=True)[0], BASE, search, nbeta=NBETA, exact=True)
    assert picked(choice) == ("underdamped", 1e-4, 10.0, True)
    # The pair at the ladder's top (nothing above it): the larger.
    table, search = sgld_stuck_momentum_plateau(over=row(1.02, ess=100.0, rhat=1.07))
    search = dataclasses.replace(search, momentum=dataclasses.replace(search.momentum, lr=(1e-5, 1e-4)))
    _, choice = calibration.search(fake(table, by_sampler=True)[0], BASE, search, nbeta=NBETA, exact=True)
    assert picked(choice) == ("underdamped", 1e-4, 10.0, True)


def test_the_momentum_walk_is_only_for_where_sgld_cannot_sample_and_gives_way_to_its_fallback() -> None:
    search = dataclasses.replace(
        LADDER, lr=(1e-4, 1e-3, 1e-2), max_steps=20_000, momentum=Momentum(lr=(1e-4, 1e-3, 1e-2))
    )
    sgld = {("sgld", lr, 10.0): row(v) for lr, v in {1e-2: 3.0, 1e-3: 1.0, 1e-4: 0.3}.items()}
    sgld |= {("sgld", lr, 100.0): row(v) for lr, v in {1e-2: 2.0, 1e-3: 0.7, 1e-4: 0.2}.items()}
    momentum = {("underdamped", lr, g): row(0.5) for lr in (1e-4, 1e-3, 1e-2) for g in (10.0, 100.0)}
    # An SGLD plateau is the choice, whatever the gradients.
    plateau = sgld | {("sgld", 1e-4, 10.0): row(0.98)}
    estimate, asked = fake(plateau | momentum, by_sampler=True)
    _, choice = calibration.search(estimate, BASE, search, NBETA, exact=True)
    assert {a.sampler for a in asked} == {"sgld"} and choice["sampler"] == "sgld" and choice["plateau"]
    # SGLD samples the weakest γ, without a plateau: its smallest step there, no momentum walk
    # (its λ̂ would be another sampler's answer to a question SGLD's chains can answer).
    estimate, asked = fake(sgld | momentum, by_sampler=True)
    _, choice = calibration.search(estimate, BASE, search, NBETA, exact=True)
    assert {a.sampler for a in asked} == {"sgld"}
    assert picked(choice) == ("sgld", 1e-4, 10.0, False)
    # SGLD diverges at the weakest γ and the momentum walk finds no plateau either: SGLD's
    # smallest usable step at the next γ, not the momentum walk's.
    diverged = row(np.nan, status="failed: NaN detected in loss at chain 0, draw 0")
    table = sgld | {k: diverged for k in sgld if k[2] == 10.0}
    table |= {
        ("underdamped", lr, g): row(v)
        for lr, v in {1e-2: 5.0, 1e-3: 2.0, 1e-4: 0.7}.items()
        for g in (10.0, 100.0)
    }
    estimate, asked = fake(table, by_sampler=True)
    _, choice = calibration.search(estimate, BASE, search, NBETA, exact=True)
    assert [a.sampler for a in asked] == ["sgld"] * 6 + ["underdamped"] * 6
    assert picked(choice) == ("sgld", 1e-4, 100.0, False)


def test_the_momentum_walk_runs_where_the_budget_allows_sgld_no_step_and_null_turns_it_off() -> None:
    # γ = 1 with a budget of 8000: SGLD's step 1e-4 would need 60 000 steps there, so it runs none;
    # that is no usable step, and the momentum walk (timed by 2/√(εγ): 1200) runs.
    search = Search(enabled=True, lr=(1e-4,), localization=(1.0,), momentum=Momentum(lr=(1e-5, 1e-4)))
    table = {("underdamped", 1e-4, 1.0): row(1.0), ("underdamped", 1e-5, 1.0): row(1.02)}
    estimate, asked = fake(table, by_sampler=True)
    _, choice = calibration.search(estimate, BASE, search, NBETA, exact=True)
    assert [a.sampler for a in asked] == ["underdamped", "underdamped"]
    assert (choice["sampler"], choice["lr"], choice["plateau"]) == ("underdamped", 1e-4, True)
    # `momentum: null` in the config is `momentum.sampler: null`: no second walk
    assert Search.of({"enabled": True, "momentum": None}).momentum.sampler is None
    assert Search.of({"enabled": True}).momentum.sampler == "underdamped"
