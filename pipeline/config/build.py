"""Config -> objects, through `hydra.utils.instantiate` only: data, models, the task, optimizers, the
phase schedule, and the training plan."""

from __future__ import annotations

import inspect
from collections.abc import Iterable

import torch
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from pipeline.config.members import with_seed
from pipeline.data import Data, convert
from pipeline.errors import UserError
from pipeline.models.tasks import CausalLM, Classification, Task
from pipeline.slt.stacked import Stacked
from pipeline.training.loop import Plan
from pipeline.training.phases import Phase, PhaseSchedule

# The container's own settings: a data-set function that does not name them leaves them to `Data`.
CONTAINER_KEYS = ("batch_size", "num_classes")


def parameters(target: object) -> dict[str, inspect.Parameter] | None:
    """A callable's named parameters; None when it takes any keyword (`**kwargs`) or has no signature."""
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return {k: p for k, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL}


def _unwrapped(e: Exception) -> BaseException:
    """instantiate's InstantiationException wraps the callee's own exception."""
    return e.__cause__ or e


def data(cfg: DictConfig) -> Data:
    """The configured data set as a `Data`: the product's loaders return one; a function of one's own
    may return any form `pipeline.data.convert` accepts (checked, converted where unambiguous)."""
    # `task` belongs to the data set's config but is not an argument of its loader.
    spec = OmegaConf.to_container(cfg.dataset, resolve=True)
    spec.pop("task", None)
    target = get_object(spec["_target_"])
    named = parameters(target)
    held = {k: spec.pop(k) for k in CONTAINER_KEYS if named is not None and k in spec and k not in named}
    if named is not None and "batch_size" in named and "batch_size" not in spec:
        spec["batch_size"] = int(cfg.batch)
    check_arguments(f"dataset {spec['_target_']}", "dataset", named, spec)
    try:
        returned = instantiate(spec)
    except Exception as e:  # instantiate wraps the loader's own UserError
        cause = _unwrapped(e)
        if isinstance(cause, UserError):
            raise cause from None
        if isinstance(cause, TypeError):  # settings it cannot take
            raise UserError(refused(f"dataset {spec['_target_']}", "dataset", cause)) from e
        raise
    sequences = isinstance(task(cfg), CausalLM)
    name = getattr(target, "__name__", str(spec["_target_"]))
    return convert.to_data(
        returned, name, int(held.get("batch_size", cfg.batch)), held.get("num_classes"), sequences
    )


def check_arguments(
    what: str, key: str, named: dict[str, inspect.Parameter] | None, given: dict, passed: dict | None = None
) -> None:
    """A constructor's arguments before it is called: a setting it does not name, a parameter no one
    gives. `passed`: what the product adds from the data (named in the message)."""
    if named is None:
        return
    passed = passed or {}
    settings = [k for k in given if not k.startswith("_")]
    unknown = [k for k in settings if k not in named]
    if unknown:
        raise UserError(
            f"{what} takes no {', '.join(repr(k) for k in unknown)}: its parameters are "
            f"({', '.join(named)}); remove {key}.{unknown[0]} or rename it"
        )
    empty = inspect.Parameter.empty
    required = [k for k, p in named.items() if p.default is empty and k not in given and k not in passed]
    if required:
        offered = ", ".join(f"{k}={v}" for k, v in passed.items()) or "nothing"
        raise UserError(
            f"{what} needs {', '.join(repr(k) for k in required)}, which neither {key}.* nor the data set "
            f"gives: the product passes a constructor the sizes it names ({offered}); rename the "
            f"parameter to one of those or set {key}.{required[0]}=<value>"
        )


def model(cfg: DictConfig, d: Data) -> nn.Module:
    """The model, with the sizes it asks for taken from the data; seeded so `seed` fixes w_0.

    Each model's constructor names what it needs (`in_features`, `in_shape`, `num_classes`, ...,
    see `Data.model_inputs`); only those are passed, so one data set serves every model. A setting it
    does not take, or a parameter no one gives, is named before it is called.
    """
    torch.manual_seed(int(cfg.seed))
    target = get_object(cfg.model._target_)
    offered = d.model_inputs()
    # Only sizes the constructor names, and never one the config sets itself.
    named = inspect.signature(target).parameters
    sizes = {k: v for k, v in offered.items() if k in named and k not in cfg.model}
    check_arguments(f"model {cfg.model._target_}", "model", parameters(target), dict(cfg.model), offered)
    try:
        return instantiate(cfg.model, **sizes).to(cfg.device)
    except Exception as e:  # instantiate wraps the model's own UserError (e.g. missing weights)
        cause = _unwrapped(e)
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


def check_model(cfg: DictConfig, m: nn.Module, d: Data, t: Task) -> None:
    """One forward pass and the loss on one training batch, before any run is created: a model that
    fails on the data, or gives outputs of the wrong size for its classes, is named in one line."""
    x, y = d.x_train[: d.batch_size].to(cfg.device), d.y_train[: d.batch_size].to(cfg.device)
    what = f"model {cfg.model._target_}"
    shape = f"a batch of shape {tuple(x.shape)} {str(x.dtype).removeprefix('torch.')}"
    was_training = m.training
    m.eval()
    try:
        with torch.no_grad():
            out = m(x)
            logits = getattr(out, "logits", out)  # a HuggingFace model's output
            if isinstance(t, Classification) and (logits.ndim != 2 or logits.shape[1] != d.num_classes):
                raise UserError(
                    f"{what} gives outputs of shape {tuple(logits.shape)} on {shape}; {d.name} has "
                    f"{d.num_classes} classes, so it must give ({len(x)}, {d.num_classes}): size its last "
                    "layer by num_classes (or out_features), which the product passes to a constructor "
                    "that names it"
                )
            if isinstance(t, CausalLM) and (logits.ndim != 3 or logits.shape[-1] < d.num_classes):
                raise UserError(
                    f"{what} gives outputs of shape {tuple(logits.shape)} on {shape}: a language model "
                    f"gives (batch, length, vocabulary ≥ {d.num_classes})"
                )
            t.loss(logits, y)
    except UserError:
        raise
    except Exception as e:
        why = (str(e).strip().splitlines() or [""])[0][:200]
        raise UserError(
            f"{what} fails on {shape} of {d.name} ({type(e).__name__}: {why}): make its forward "
            "take the data set's inputs as they are (see docs/bring-your-own.md)"
        ) from e
    finally:
        m.train(was_training)
