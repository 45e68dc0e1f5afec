"""The one SGLD sampler core: devinterp's sampler on a stacked model, the loss trace of every member.

Every batched estimate runs through `sample`: the llc stage's λ at many checkpoints at once, the
ensemble's λ per member, the calibration grid, and the posterior's chains. It hands devinterp 1.3's
`sample` (the loop the paper's estimates come from: `SGMCMC.sgld`, burn-in, draws, chains seeded
from one seed) a model whose loss is the sum of its members' own losses, so each member's slice
gets its own gradient and devinterp's elementwise update runs M independent chains in one pass.
At every draw the members' losses (before the step, as devinterp's LLC estimator reads them) go
into a (members, chains, draws) trace; `on_draw` sees the model after the step (the posterior reads
its samples there). λ is computed from the trace by `pipeline.slt.llc`, as devinterp's
`LLCEstimator` computes it.

The chains' update is devinterp's own arithmetic (`SGLD`, below): the same operations on the same
values in the same order, the same calls to the random number generator, so every number is
devinterp's to the bit (tested against devinterp's `SGMCMC.sgld` step); it skips devinterp's multiplications
by a coefficient of 1 and writes into buffers kept between steps, which on a stack of 148 chains of
a 17k-parameter MLP takes 53 % of the time of devinterp's step. `sampler: underdamped` swaps in
`Underdamped`, Langevin dynamics with momentum (devinterp 1.3 has none that works), through the same
loop: it reaches equilibrium along directions only the localization holds far sooner than SGLD.

Plain torch and devinterp; no MLflow, no config.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import warnings
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from pipeline.slt.settings import Chains

# devinterp warns on every call about choices the paper's Table 3 makes on purpose (0 burn-in, nβ
# from the batch, more draws than batches) or that a stacked pass makes (no init loss of its own);
# the settings are recorded with every estimate instead.
EXPECTED_WARNINGS = (
    "nbeta not set",
    "You are taking more draws than burn-in steps",
    "You are taking more sample batches than there are dataloader batches",
    "Using passed in nbeta",
    "If you're setting a nbeta or temperature",
    "You are using seeded runs",
    "nbeta set to 1",
    "std(): degrees of freedom",  # one chain has no spread; llc_std is recorded as NaN then
)


@contextlib.contextmanager
def quiet_devinterp() -> Iterator[None]:
    """Inside, devinterp's expected warnings (above) are not shown."""
    with warnings.catch_warnings():
        for message in EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=re.escape(message))
        yield


@functools.cache
def _sgld_class():
    """`SGLD`, devinterp's SGMCMC with the step below (a function: devinterp imports on first use)."""
    from devinterp.optim import SGMCMC
    from devinterp.optim.preconditioner import IdentityPreconditioner
    from devinterp.optim.prior import GaussianPrior

    def plain(group: dict) -> bool:
        """A group whose update is SGLD with at most a Gaussian prior: coefficients all 1."""
        prior = group["prior"]
        return (
            isinstance(group["preconditioner"], IdentityPreconditioner)
            and not group["metrics"]
            and group["bounding_box_size"] is None
            and group["weight_decay"] == 0
            and (prior is None or type(prior) is GaussianPrior)
        )

    class SGLD(SGMCMC):
        """devinterp's SGMCMC; for plain SGLD groups, its step without the ×1 multiplications and
        with buffers kept per parameter (`devinterp.optim.sgmcmc.SGMCMC.step`, line by line:
        d_p = nβ·g + γ·(w − w₀); ξ ~ N(0, σ²); w += −ε/2·d_p; w += √ε·ξ). Other samplers
        (RMSProp-preconditioned SGLD, metrics, bounding boxes) run devinterp's step itself."""

        @torch.no_grad()
        def step(self, closure=None):
            if closure is not None or not all(plain(g) for g in self.param_groups):
                return super().step(closure)
            for group in self.param_groups:
                prior, lr = group["prior"], group["lr"]
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    state = self.state[p]
                    if "sgld_buffers" not in state:
                        state["sgld_buffers"] = tuple(torch.empty_like(p) for _ in range(3))
                    d_p, prior_grad, noise = state["sgld_buffers"]
                    torch.mul(p.grad, group["nbeta"], out=d_p)
                    if prior is not None:
                        center = state[prior.key]
                        if center is None:
                            torch.mul(p, prior.localization, out=prior_grad)
                        else:
                            torch.sub(p, center, out=prior_grad).mul_(prior.localization)
                        d_p.add_(prior_grad)
                    torch.normal(0.0, group["noise_level"], size=d_p.size(), out=noise)
                    p.add_(d_p, alpha=-0.5 * lr)
                    p.add_(noise, alpha=lr**0.5)
            return None

    return SGLD


class Underdamped(torch.optim.Optimizer):
    """Underdamped Langevin dynamics on U(w) = nβ·L(w) + γ/2·‖w − w₀‖² with unit mass, BAOAB
    splitting (Leimkuhler & Matthews 2013; with minibatch gradients, SGHMC: Chen et al. 2014).
    With exact gradients its positions sample exp(−U) as SGLD's do, with a configurational bias of
    second order in the time step (none on a quadratic U), but the momentum carries them along
    directions the loss hardly curves: where only the localization holds them, SGLD relaxes in
    2/(εγ) steps, this in about 2/√(εγ). Minibatch gradients heat it more than SGLD: their noise
    (variance V per coordinate) adds about h·nβ²V/(2ζ) to the temperature against SGLD's ε·nβ²V/4,
    1/√(εγ) times as much (no correction here: read its λ̂ from minibatches as an upper estimate).

    Parametrized as devinterp's SGLD (`lr` ε, `localization` γ, `nbeta`): the time step is h = √ε,
    so that both are stable below the same ε (ε·κ < 4 along a curvature κ of U) and a calibration's
    ε ladder means the same for both. The friction ζ is 2√γ, critical damping of the directions only
    the localization curves (the slowest), so it needs γ > 0. Velocities start from their stationary
    N(0, 1). One gradient per step: the two half kicks of consecutive steps act at the same point and
    are applied together as one (B(h) A O A; the first step's kick is a half one). devinterp 1.3's
    own `sgnht` is not this: its step drops the momentum (1.3.2 never applies its
    `grad_correction`), which leaves SGLD with scaled noise, and it takes no localization."""

    def __init__(
        self, params, lr: float, localization: float, nbeta: float, metrics: list | None = None
    ) -> None:
        if not localization > 0:
            raise ValueError("the underdamped sampler needs a localization γ > 0 (its friction is 2√γ)")
        if metrics:  # devinterp's optimizer metrics (for MALA acceptance, noise norms) are SGMCMC's
            raise ValueError(f"the underdamped sampler tracks no optimizer metrics (asked for {metrics})")
        super().__init__(params, {"lr": lr, "localization": localization, "nbeta": nbeta})
        if any("optimize_over" in group for group in self.param_groups):
            raise ValueError("the underdamped sampler moves every coordinate: no optimize_over masks")

    @torch.no_grad()
    def step(self, closure: None = None) -> None:
        if closure is not None:
            raise ValueError("the underdamped sampler takes the gradient already computed, not a closure")
        for group in self.param_groups:
            h = group["lr"] ** 0.5
            damping = math.exp(-2 * group["localization"] ** 0.5 * h)  # e^(−ζh), ζ = 2√γ
            kick_noise = (1 - damping * damping) ** 0.5
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                first = not state
                if first:  # the chain's start (devinterp makes an optimizer per chain): w₀
                    state["center"] = p.detach().clone()
                    state["velocity"] = torch.randn_like(p)
                    state["buffers"] = (torch.empty_like(p), torch.empty_like(p))
                grad_u, noise = state["buffers"]
                velocity = state["velocity"]
                torch.sub(p, state["center"], out=grad_u).mul_(group["localization"])
                grad_u.add_(p.grad, alpha=group["nbeta"])  # ∇U = nβ·∇L + γ(w − w₀)
                velocity.add_(grad_u, alpha=-(h / 2 if first else h))  # B
                p.add_(velocity, alpha=h / 2)  # A
                torch.normal(0.0, 1.0, size=p.size(), out=noise)
                velocity.mul_(damping).add_(noise, alpha=kick_noise)  # O
                p.add_(velocity, alpha=h / 2)  # A
        return None


def devinterp_arguments(chains: Chains, reference: bool = True) -> dict:
    """The chains as devinterp 1.3's sampler and estimator take them (`SGMCMC.sgld`, or
    `SGMCMC.rmsprop_sgld` with its defaults: α 0.99, ε 0.1); `reference=False`: with `SGLD`'s step,
    the same numbers faster. `underdamped` is `Underdamped` either way (devinterp has no reference)."""
    from devinterp.optim import SGMCMC

    if chains.sampler == "underdamped":
        method = Underdamped
    else:
        method = getattr(SGMCMC if reference else _sgld_class(), chains.sampler)
    return {
        "sampling_method": method,
        "optimizer_kwargs": {"lr": chains.lr, "localization": chains.localization, "nbeta": chains.nbeta},
        "num_draws": chains.draws,
        "num_chains": chains.chains,
        "num_burnin_steps": chains.burnin,
        "num_steps_bw_draws": chains.every,
    }


def sample(
    model: nn.Module,
    loader,
    member_losses: Callable[[nn.Module, object], torch.Tensor],
    members: int,
    chains: Chains,
    seed: int | Sequence[int],
    device: str,
    on_draw: Callable[[nn.Module, int, int, torch.Tensor], None] | None = None,
    reference: bool = False,
) -> torch.Tensor:
    """Run the chains on `model` (not changed: devinterp samples a copy) with minibatches from
    `loader`; returns every member's loss at every draw, shape (members, chains, draws).

    `member_losses(model, batch)` gives the members' losses on one batch, shape (members,). `seed`
    is devinterp's: an int seeds the chains through a SeedSequence, a list gives each chain its
    seed. `on_draw(model, draw, chain, losses)` is called after each draw's step. `reference`:
    devinterp's own step instead of `SGLD`'s (the same numbers, slower). Once every member's loss
    is non-finite the run stops, the draws not taken NaN (a diverged chain stays diverged), unless
    `on_draw` watches every draw."""
    from devinterp.slt.sampler import sample as devinterp_sample

    trace = torch.zeros(members, chains.chains, chains.draws, device=device)
    following = [0, 0]  # the (chain, draw) recorded next
    # Reading the check back waits for the device: every step on the CPU (free there), every
    # `_DIVERGENCE_STRIDE` steps on an accelerator, whose queue a per-step wait would stall.
    stride = 1 if torch.device(device).type == "cpu" else _DIVERGENCE_STRIDE
    steps = [0]  # (per chain: devinterp hands each chain its own copy of `evaluate`)

    def evaluate(m: nn.Module, batch) -> dict:
        per = member_losses(m, batch)
        steps[0] += 1
        if on_draw is None and steps[0] % stride == 0 and not torch.isfinite(per).any():
            raise _AllDiverged  # every member failed: the rest of the run cannot change that
        return {"loss": per.sum(), "per_member": per.detach()}

    def record(draw: int, chain: int, results: dict, model: nn.Module, **_) -> None:
        trace[:, chain, draw] = results["per_member"]
        following[:] = [chain, draw + 1]
        if on_draw is not None:
            on_draw(model, draw, chain, results["per_member"])

    try:
        with quiet_devinterp():
            devinterp_sample(
                model,
                loader,
                callbacks=[record],
                evaluate=evaluate,
                **devinterp_arguments(chains, reference),
                init_loss=1.0,  # unused: λ is computed from the trace; non-zero so devinterp skips its own
                seed=list(seed) if not isinstance(seed, int) else seed,
                device=device,
                verbose=False,
            )
    except _AllDiverged:  # what was not recorded is NaN, from where the divergence was seen
        chain, draw = following
        trace[:, chain, draw:] = float("nan")
        trace[:, chain + 1 :] = float("nan")
    return trace


_DIVERGENCE_STRIDE = 64


class _AllDiverged(Exception):
    """Every member's loss is non-finite: `sample` stops (a diverged member stays diverged)."""
