"""Config -> objects, through `hydra.utils.instantiate` only: data, models, the task, optimizers, the
phase schedule, and the training plan."""

from __future__ import annotations

import inspect
from collections.abc import Iterable

import torch
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from pipeline.config.members import with_seed
from pipeline.data import Data
from pipeline.errors import UserError
from pipeline.models.tasks import Classification, Task
from pipeline.slt.stacked import Stacked
from pipeline.training.loop import Plan
from pipeline.training.phases import Phase, PhaseSchedule


def data(cfg: DictConfig) -> Data:
    # `task` belongs to the data set's config but is not an argument of its loader.
    spec = OmegaConf.to_container(cfg.dataset, resolve=True)
    spec.pop("task", None)
    try:
        return instantiate(spec)
    except UserError:
        raise
    except Exception as e:  # instantiate wraps the loader's own UserError
        cause = e.__cause__ or e
        if isinstance(cause, UserError):
            raise cause from None
        raise


def model(cfg: DictConfig, d: Data) -> nn.Module:
    """The model, with the sizes it asks for taken from the data; seeded so `seed` fixes w_0.

    Each model's constructor names what it needs (`in_features`, `in_shape`, `num_classes`, ...,
    see `Data.model_inputs`); only those are passed, so one data set serves every model.
    """
    torch.manual_seed(int(cfg.seed))
    target = get_method(cfg.model._target_)
    named = inspect.signature(target).parameters
    # Only sizes the constructor names, and never one the config sets itself.
    sizes = {k: v for k, v in d.model_inputs().items() if k in named and k not in cfg.model}
    try:
        return instantiate(cfg.model, **sizes).to(cfg.device)
    except Exception as e:  # instantiate wraps the model's own UserError (e.g. missing weights)
        cause = e.__cause__ or e
        if isinstance(cause, UserError):
            raise cause from None
        if isinstance(cause, (TypeError, ValueError, RuntimeError)):  # a value it cannot take
            raise UserError(refused(f"model {cfg.model._target_}", "model", cause)) from e
        raise


def refused(what: str, key: str, cause: Exception) -> str:
    """The line for settings a constructor refused (`model.hidden=abc`, `optimizer.momentum=-1`)."""
    why = (str(cause).strip().splitlines() or [""])[0][:160]
    return (
        f"{what} refused its settings ({type(cause).__name__}: {why}): check the {key}.* values "
        "(python launch.py --cfg job shows them)"
    )


def check_optimizer(cfg: DictConfig) -> None:
    """The optimizers' settings, as torch checks them (lr, momentum, betas, weight decay), built
    once on a one-element parameter before anything trains."""
    specs = {"optimizer": cfg.optimizer}
    for name, p in (cfg.train.get("phases") or {}).items():
        specs[f"train.phases.{name}.optimizer"] = p.optimizer
    for key, spec in specs.items():
        try:
            instantiate(spec)([torch.nn.Parameter(torch.zeros(1))])
        except Exception as e:
            cause = e.__cause__ or e
            raise UserError(refused(f"optimizer {spec.get('_target_')}", key, cause)) from e


def task(cfg: DictConfig) -> Task:
    """The data set's task (`dataset.task`): loss, accuracy and devinterp's loss hook; classification
    when the data set names none."""
    spec = cfg.dataset.get("task")
    return instantiate(spec) if spec is not None else Classification()


def optimizer(cfg: DictConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The configured optimizer over `params` (a model's trainable parameters, or a stack's)."""
    return instantiate(cfg.optimizer)(list(params))


def trainable(m: nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in m.parameters() if p.requires_grad]


def schedule(cfg: DictConfig, m: nn.Module, steps_per_epoch: int) -> PhaseSchedule | None:
    """The run's phase schedule (`train.phases`, one optimizer per phase), or None for one phase."""
    phases = cfg.train.get("phases")
    if not phases:
        return None
    built = [
        Phase(name=str(name), **{k: (instantiate(v) if k == "optimizer" else v) for k, v in p.items()})
        for name, p in phases.items()
    ]
    return PhaseSchedule(built, m, steps_per_epoch)


def models(cfg: DictConfig, d: Data, seeds: list[int]) -> list[nn.Module]:
    """One model per seed, each initialised as a one-by-one run with that seed initialises it."""
    return [model(with_seed(cfg, s), d) for s in seeds]


def ensemble(
    cfg: DictConfig, d: Data, seeds: list[int], steps: int
) -> tuple[Stacked, torch.optim.Optimizer, Plan]:
    """A batched ensemble ready to train: the seeds' models stacked, the config's optimizer on the
    stack (one per member, as it acts elementwise), and the plan keeping every λ checkpoint."""
    stacked = Stacked.from_models(models(cfg, d, seeds))
    return stacked, optimizer(cfg, stacked.trainable()), plan(cfg, steps, keep_checkpoints=True)


def plan(cfg: DictConfig, steps: int, keep_checkpoints: bool | None = None) -> Plan:
    """What the training loop records and keeps over `steps` steps (`train.*`, `llc.every`);
    checkpoints at every λ step unless `train.keep_checkpoints=false` or λ is estimated online."""
    if keep_checkpoints is None:
        keep_checkpoints = bool(cfg.train.keep_checkpoints) and not bool(cfg.llc.online)
    return Plan(
        steps=int(steps),
        llc_every=int(cfg.llc.every),
        eval_every=int(cfg.train.eval_every),
        record_every_step_up_to=int(cfg.train.record_every_step_up_to),
        record_log_points=int(cfg.train.record_log_points),
        keep_checkpoints=keep_checkpoints,
    )
