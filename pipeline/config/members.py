"""The members of a job: the seeds of a batched job (`seeds=N` or `seeds=[...]`, one run each) and
of the posterior experiment's ensemble (`ensemble.members`, one run in all), and what stacking them
asks of the config."""

from __future__ import annotations

import copy

from omegaconf import DictConfig, OmegaConf, open_dict

from pipeline.errors import UserError

# Optimizers whose update is elementwise (or per-tensor only through elementwise state): one of them
# on stacked members is each member's own optimizer.
ELEMENTWISE = ("torch.optim.SGD", "torch.optim.Adam", "torch.optim.AdamW", "torch.optim.RMSprop")


def is_batched(cfg: DictConfig) -> bool:
    """A batched job (`seeds=...`): one run per seed, trained at once."""
    return cfg.get("seeds") is not None


def with_seed(cfg: DictConfig, seed: int) -> DictConfig:
    """A copy of the config for one member: the config a one-by-one job with `seed` has."""
    member = copy.deepcopy(cfg)
    with open_dict(member):
        member.seed = int(seed)
        if is_batched(member):
            member.seeds = None
    return member


def seeds_of(cfg: DictConfig) -> list[int]:
    """A batched job's seeds: `seeds=N`, N seeds from `seed` on; `seeds=[...]`, those, distinct."""
    value = cfg.seeds
    if OmegaConf.is_list(value):
        seeds = [int(s) for s in value]
        if not seeds or len(set(seeds)) != len(seeds):
            raise UserError(f"seeds={list(value)}: give distinct seeds, e.g. seeds=[0,1,2] or seeds=8")
        return seeds
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"seeds={value}: give a number of seeds ≥ 1 (seeds=8) or a list (seeds=[0,1,2])")
    return list(range(int(cfg.seed), int(cfg.seed) + int(value)))


def ensemble_seeds(cfg: DictConfig) -> list[int]:
    """The ensemble's seeds: `ensemble.seeds` when given, else `members` seeds from `first_seed`."""
    e = cfg.ensemble
    if e.get("seeds"):
        seeds = [int(s) for s in OmegaConf.to_container(e.seeds)]
    else:
        seeds = list(range(int(e.first_seed), int(e.first_seed) + int(e.members)))
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"ensemble seeds {seeds[:5]}...: give ≥ 1 distinct seeds (ensemble.members=500)")
    return seeds


def check_elementwise(cfg: DictConfig) -> None:
    """Stacked members train with one optimizer: it must act elementwise, or it couples them."""
    target = str(cfg.optimizer._target_)
    if target not in ELEMENTWISE:
        raise UserError(
            f"optimizer {target} is not known to act elementwise, so stacked members would be "
            f"coupled: use one of {', '.join(ELEMENTWISE)}"
        )


def check_batched(cfg: DictConfig) -> None:
    """What one batched job can do: the train, llc and fit stages of a classifier, one optimizer."""
    if "train" not in cfg.stages or any(s not in ("train", "llc", "fit") for s in cfg.stages):
        raise UserError(
            f"seeds=... with stages={list(cfg.stages)}: it trains, so use stages among [train,llc,fit]; "
            "re-run a stage on one seed's run with run_id=<id> instead"
        )
    if cfg.train.get("phases"):
        raise UserError(
            "seeds=... trains with one optimizer: train.phases needs one job per seed (-m seed=0,1,...)"
        )
    task = cfg.dataset.get("task")
    if task is not None and not str(task.get("_target_", "")).endswith("Classification"):
        raise UserError(
            f"seeds=... stacks classifiers only: dataset.task={task._target_} needs -m seed=0,1,..."
        )
    if cfg.llc.online:
        raise UserError("seeds=... estimates λ from the kept checkpoints: set llc.online=false")
    check_elementwise(cfg)
    seeds_of(cfg)
