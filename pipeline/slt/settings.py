"""The settings of the estimators and the fit, as plain frozen dataclasses.

They are what the config's `llc` and `fit` blocks hold (`pipeline.config.schema` types the config
from them), and what the science functions take, so these know nothing of the config. No torch here:
the command line's pre-check reads them before anything heavy is imported.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field


def from_mapping(cls: type, values: Mapping | None):
    """An instance of dataclass `cls` from the entries of `values` it names (nested dataclasses
    alike; other keys are ignored, missing ones keep their defaults); an instance passes as it is."""
    if isinstance(values, cls):
        return values
    values = values or {}
    hints = typing.get_type_hints(cls)
    picked = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            value = values[f.name]
            picked[f.name] = (
                from_mapping(hints[f.name], value) if dataclasses.is_dataclass(hints[f.name]) else value
            )
    return cls(**picked)


# The chains' updates: devinterp's SGLD and RMSProp-preconditioned SGLD, and Langevin dynamics with
# momentum (`pipeline.slt.sgld.Underdamped`).
SAMPLERS = ("sgld", "rmsprop_sgld", "underdamped")


@dataclass(frozen=True)
class Chains:
    """How long and with what update the chains run: step size ε, localization γ, nβ, `chains`
    chains of `draws` draws after `burnin` steps, `every` steps apart, and devinterp's update
    (`sampler`: `sgld`, `rmsprop_sgld`, SGLD preconditioned by RMSProp's running average, or
    `underdamped`, Langevin dynamics with momentum: `pipeline.slt.sgld.Underdamped`)."""

    lr: float
    localization: float
    nbeta: float
    chains: int
    draws: int
    burnin: int = 0
    every: int = 1
    sampler: str = "sgld"


@dataclass(frozen=True)
class Diagnostics:
    """The thresholds that flag an estimate: the stationarity test's batch means, |z| and drift;
    rank-normalized split-R-hat above `max_rhat`, bulk or tail ESS below `min_ess_per_chain` per
    chain (Vehtari et al. 2021, the rules ArviZ's diagnostics implement: R-hat < 1.01, ESS > 100
    per chain)."""

    batches: int = 20
    max_z: float = 3.0
    max_drift: float = 0.1
    max_rhat: float = 1.01
    min_ess_per_chain: float = 100.0

    @classmethod
    def of(cls, values: Mapping | None) -> Diagnostics:
        return from_mapping(cls, values)


@dataclass(frozen=True)
class Settings:
    """devinterp SGLD for λ: step size ε (`lr`), localization γ, nβ (None: batch / log batch),
    chains, draws, burn-in, steps between draws, the seed estimates derive theirs from, and the
    loss at w_t λ̂ is measured from (`init_loss`): `batches`, devinterp's (the mean over
    `num_chains` minibatches), or `full`, L_n(w_t) on the whole training set (eq. 25's own), and
    the update (`sampler`: devinterp's `sgld` or `rmsprop_sgld`, preconditioned, or `underdamped`)."""

    lr: float = 1e-5
    localization: float = 100.0
    nbeta: float | None = field(default=None, metadata={"example": "10"})
    num_chains: int = 1
    num_draws: int = 400
    num_burnin_steps: int = 0
    num_steps_bw_draws: int = 1
    seed: int = 0
    init_loss: str = "batches"
    sampler: str = "sgld"
    diagnostics: Diagnostics = field(default_factory=Diagnostics)

    @classmethod
    def of(cls, values: Mapping | Settings) -> Settings:
        """The settings among `values` (e.g. the config's `llc` block; other keys are ignored)."""
        return from_mapping(cls, values)

    def chains(self, nb: float) -> Chains:
        return Chains(
            lr=float(self.lr),
            localization=float(self.localization),
            nbeta=nb,
            chains=int(self.num_chains),
            draws=int(self.num_draws),
            burnin=int(self.num_burnin_steps),
            every=int(self.num_steps_bw_draws),
            sampler=str(self.sampler),
        )


@dataclass(frozen=True)
class Bootstrap:
    """The d_s interval: replicates, coverage, fit points per resampled block (None: n^(1/3)), seed."""

    samples: int = 1000
    level: float = 0.95
    block: int | None = field(default=None, metadata={"example": "4"})
    seed: int = 0


@dataclass(frozen=True)
class Window:
    """Which points the fit uses: `points` llc (the LLC steps, the paper's) or all (every recorded
    step), between `start_step` and `end_step`; from a detected crossover t_c with `crossover`
    (with `shift`, R − R(t_c) on t − t_c, eq. 32)."""

    points: str = "llc"
    start_step: int | None = field(default=None, metadata={"example": "1000"})
    end_step: int | None = field(default=None, metadata={"example": "10000"})
    crossover: bool = field(default=False, metadata={"example": "true"})
    shift: bool = False
    bootstrap: Bootstrap = field(default_factory=Bootstrap)

    @classmethod
    def of(cls, values: Mapping | Window) -> Window:
        """The fit settings among `values` (e.g. the config's `fit` block; other keys are ignored)."""
        return from_mapping(cls, values)


@dataclass(frozen=True)
class Momentum:
    """The search's second walk (`Search.momentum`): where SGLD finds no two agreeing steps at any
    γ of at most `max_prior`·nβ, has no usable step at all at the weakest of them, and the gradients
    are exact (one batch holds the whole training set), those γ walked again with `sampler`
    (Langevin with momentum: it relaxes in 2/√(εγ) steps, not 2/(εγ), so it reaches the small steps
    large models need within the budget) on its own ladder `lr`, at most `max_steps` steps per chain,
    chains usable up to R-hat `max_rhat`, the estimates' draws up to `max_draws`. Minibatch gradients
    never get it: momentum heats their noise 1/√(εγ)-fold (`pipeline.slt.sgld.Underdamped`).
    `sampler: null` turns it off."""

    sampler: str | None = "underdamped"
    lr: tuple[float, ...] = (1e-8, 3e-8, 1e-7, 3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
    max_steps: int = 40000
    max_draws: int = 40000
    max_rhat: float = 1.1


@dataclass(frozen=True)
class Search:
    """The automatic calibration (`llc.calibration`, `pipeline.slt.calibration`): on one checkpoint,
    for each localization γ and nβ factor in turn (the order given is the order of preference), SGLD
    step sizes ε from the largest down, a burn-in and draws of `relaxations` localization time
    constants 2/(εγ) each (2/√(εγ) for the underdamped sampler; at least the preset's burn-in and
    `draws`; at most `max_steps` steps per chain in all), until two neighbouring steps agree
    (within `plateau`·|λ̂| plus their combined Monte-Carlo error), both usable (succeeded, λ̂ > 0,
    stationary, R-hat at most `max_rhat`); the larger is chosen. The γ of at most `max_prior`·nβ are
    walked first; without a plateau among them, the first of them with a usable step gives its
    smallest usable step (`plateau: false`); the others are walked only when none of those has one.
    The estimates' draws are then sized for the ESS bound (`min_ess_per_chain` per chain) with a
    margin of `margin`, between the preset's `num_draws` and `max_draws`. Without a plateau among
    the weak γ, with no usable step at the weakest and exact gradients, `momentum` walks them again
    before any fallback."""

    enabled: bool = False
    step: int | None = field(default=None, metadata={"example": "3000"})
    lr: tuple[float, ...] = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
    localization: tuple[float, ...] = (1.0, 10.0, 100.0, 1000.0)
    nbeta_factor: tuple[float, ...] = (1.0,)
    draws: int = 200
    relaxations: float = 3.0
    max_steps: int = 8000
    max_rhat: float = 1.05
    max_prior: float = 0.1
    plateau: float = 0.1
    margin: float = 3.0
    max_draws: int = 4000
    momentum: Momentum = field(default_factory=Momentum)

    @classmethod
    def of(cls, values: Mapping | Search | None) -> Search:
        found = from_mapping(cls, values)
        as_tuple = {
            k: tuple(float(v) for v in getattr(found, k)) for k in ("lr", "localization", "nbeta_factor")
        }
        off = isinstance(values, Mapping) and "momentum" in values and values["momentum"] is None
        momentum = Momentum(sampler=None) if off else found.momentum  # `momentum: null`: no second walk
        momentum = dataclasses.replace(momentum, lr=tuple(float(v) for v in momentum.lr))
        return dataclasses.replace(found, **as_tuple, momentum=momentum)
