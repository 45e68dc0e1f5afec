"""The approximate Bayesian posterior around SGD solutions, and the representation solutions are
clustered on (section 4.2, appendix G.4).

Posterior: SGLD chains seeded at chosen SGD solutions, all chains at once on the stacked weights,
through the sampler core (`pipeline.slt.sgld`: devinterp's SGLD update, `SGMCMC.sgld`):
w <- w - (ε/2)·(nβ·∇L_batch(w) + γ·(w - w_seed)) + sqrt(ε)·N(0, 1). Each chain draws its own
minibatches (its own seed, in the train stage's data order).

Representation: a solution is represented by what it computes, not by its weights, so that the
permutation symmetry of hidden units (and every other symmetry of the parametrisation) does not
split one function into many clusters. `GridPredictions` evaluates the class-1 probability on a
fixed grid covering the inputs. Any callable `(stacked) -> (members, features)` can replace it
through the config.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.data import Data
from pipeline.models.tasks import Task
from pipeline.progress import bar
from pipeline.slt import sgld
from pipeline.slt.stacked import Stacked


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
    def __call__(self, stacked: Stacked) -> torch.Tensor:
        was_training = stacked.training
        stacked.eval()
        device = stacked.stacked[0].device
        prob = F.softmax(stacked(self.grid.to(device), shared=True), dim=-1)
        stacked.train(was_training)
        return prob[..., -1] if self.classes == "last" else prob.flatten(1)


class Weights:
    """The flattened weights themselves (not permutation invariant; for comparison)."""

    def __init__(self, data: Data) -> None:
        del data

    def __call__(self, stacked: Stacked) -> torch.Tensor:
        return stacked.flat()


def sample(
    stacked: Stacked,
    data: Data,
    represent: Callable[[Stacked], torch.Tensor],
    task: Task,
    chains: sgld.Chains,
    seed: int,
    device: str = "cpu",
    progress: bool | None = None,
) -> dict[str, np.ndarray]:
    """Run one SGLD chain from every member of `stacked` (`chains.chains` is 1: the members are the
    chains); returns, per chain and sample, the representation (chains, samples, features), the
    batch loss and ‖w - w_seed‖."""
    w_seed = [p.detach().clone() for p in stacked.stacked]
    reps, dist = [], []
    # Chain c draws the minibatches of seed (seed, c), independent of the SGD runs' orders.
    order = data.member_batches([seed * 100_003 + c for c in range(len(stacked))], device)
    total = chains.burnin + chains.draws * chains.every
    with bar(progress, total=chains.draws, desc=f"sgld ({len(stacked)} chains, {total} steps)") as pbar:

        def keep(model: Stacked, draw: int, chain: int, per_member: torch.Tensor) -> None:
            reps.append(represent(model).detach().cpu())
            sq = sum(model.squared_distances(w_seed).unbind(1))
            dist.append(sq.sqrt().cpu())
            pbar.update(1)

        # devinterp seeds a chain given in a list with that seed itself: the noise of torch.manual_seed(seed).
        trace = sgld.sample(
            stacked, order, task.sgld_member_losses, len(stacked), chains, [seed], device, on_draw=keep
        )
    return {
        "representation": torch.stack(reps, dim=1).numpy(),
        "loss": trace[:, 0].cpu().double().numpy(),  # one chain per member
        "distance": torch.stack(dist, dim=1).double().numpy(),
    }
