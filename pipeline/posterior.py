"""The approximate Bayesian posterior around SGD solutions, and the representation solutions are
clustered on (section 4.2, appendix G.4).

Posterior: SGLD chains seeded at chosen SGD solutions, all chains at once on stacked weights
(the ensemble's vmapped forward), with devinterp's own SGLD update (`SGMCMC.sgld`, the sampler the
llc stage uses): w <- w - (ε/2)·(nβ·∇L_batch(w) + γ·(w - w_seed)) + sqrt(ε)·N(0, 1). The loss summed
over chains gives each chain its own gradient, and the update is elementwise, so the chains are
independent. Each chain draws its own minibatches (its own seed), as devinterp's sampler does.

Representation: a solution is represented by what it computes, not by its weights, so that the
permutation symmetry of hidden units (and every other symmetry of the parametrisation) does not
split one function into many clusters. `GridPredictions` evaluates the class-1 probability on a
fixed grid covering the inputs. Any callable `(ensemble) -> (members, features)` can replace it
through the config.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.data import Data
from pipeline.ensemble import Ensemble, batches, member_losses
from pipeline.progress import bar


class GridPredictions:
    """Class probabilities on a fixed `points` x `points` grid over the training inputs' box
    (widened by `margin` on every side); for 2-d inputs such as moons."""

    def __init__(self, data: Data, points: int = 25, margin: float = 0.5, classes: str = "last") -> None:
        x = data.x_train.flatten(1)
        if x.shape[1] != 2:
            raise ValueError(f"GridPredictions needs 2-d inputs, the data have {x.shape[1]}")
        lo, hi = x.min(0).values - margin, x.max(0).values + margin
        g0, g1 = torch.linspace(lo[0], hi[0], points), torch.linspace(lo[1], hi[1], points)
        self.grid = torch.cartesian_prod(g0, g1)
        self.classes = classes  # "last": P(class k-1) (all a binary problem needs); "all": every class

    @torch.no_grad()
    def __call__(self, ens: Ensemble) -> torch.Tensor:
        was_training = ens.base.training
        ens.base.eval()
        device = next(iter(ens.params.values())).device
        prob = F.softmax(ens.forward(self.grid.to(device), shared=True), dim=-1)
        ens.base.train(was_training)
        return prob[..., -1] if self.classes == "last" else prob.flatten(1)


class Weights:
    """The flattened weights themselves (not permutation invariant; for comparison)."""

    def __init__(self, data: Data) -> None:
        del data

    def __call__(self, ens: Ensemble) -> torch.Tensor:
        return ens.flat()


def sample(
    ens: Ensemble,
    data: Data,
    represent: Callable[[Ensemble], torch.Tensor],
    lr: float,
    nbeta: float,
    localization: float,
    num_samples: int,
    num_burnin_steps: int,
    num_steps_bw_samples: int,
    seed: int,
    device: str = "cpu",
    loss: Callable = F.cross_entropy,
    progress: bool | None = None,
) -> dict[str, np.ndarray]:
    """Run one SGLD chain from every member of `ens` (changed in place); returns, per chain and
    sample, the representation (chains, samples, features), the batch loss and ‖w - w_seed‖."""
    from devinterp.optim import SGMCMC

    chains = len(ens)
    torch.manual_seed(seed)  # devinterp's SGLD draws its noise from the global generator
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=re.escape("nbeta set to 1"))
        opt = SGMCMC.sgld(list(ens.params.values()), lr=lr, localization=localization, nbeta=nbeta)
    w_seed = [p.detach().clone() for p in ens.params.values()]
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    total = num_burnin_steps + num_samples * num_steps_bw_samples
    reps, losses, dist = [], [], []
    # Chain c draws the minibatches of seed (seed, c), independent of the SGD runs' orders.
    order = batches([seed * 100_003 + c for c in range(chains)], data, device)
    with bar(progress, total=total, desc=f"sgld ({chains} chains)") as pbar:
        for step, idx in zip(range(1, total + 1), order):
            opt.zero_grad()
            per = member_losses(ens, x_train[idx], y_train[idx], loss)
            per.sum().backward()
            opt.step()
            pbar.update(1)
            after = step - num_burnin_steps
            if after > 0 and after % num_steps_bw_samples == 0:
                reps.append(represent(ens).detach().cpu())
                losses.append(per.detach().cpu())
                with torch.no_grad():
                    sq = sum(
                        (p - p0).flatten(1).square().sum(1) for p, p0 in zip(ens.params.values(), w_seed)
                    )
                dist.append(sq.sqrt().cpu())
    return {
        "representation": torch.stack(reps, dim=1).numpy(),
        "loss": torch.stack(losses, dim=1).double().numpy(),
        "distance": torch.stack(dist, dim=1).double().numpy(),
    }
