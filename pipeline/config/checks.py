"""Config checks that run before any expensive work: one line naming the fix for each bad value.

The types of the values are Hydra's to check (the schema, `pipeline.config.schema`); these check
what a type cannot say: ranges, choices, combinations of stages and settings, and, once the data set
is loaded, what needs its size. Each raises `UserError`.
"""

from __future__ import annotations

import math

from omegaconf import DictConfig, OmegaConf

from pipeline.config.members import check_elementwise
from pipeline.errors import UserError
from pipeline.slt.settings import SAMPLERS

STAGES = ("train", "llc", "fit", "calibrate", "ensemble", "posterior")
# Stages that create a run (the others re-open one); each family reads only its own artifacts.
FIRST_STAGES = {"train": ("train", "llc", "fit", "calibrate"), "ensemble": ("ensemble", "posterior")}


def first_stage(stages) -> str:
    """The stage whose run the given stages work on: train, or ensemble for the posterior family."""
    return "ensemble" if any(s in FIRST_STAGES["ensemble"] for s in stages) else "train"


def non_finite(node, path: str = "") -> str | None:
    """The first setting holding an infinite or NaN number (`lr=inf` would train until the loss
    check at step 100), as its dotted key; None when every number is finite."""
    if OmegaConf.is_dict(node):
        items = ((f"{path}.{k}" if path else str(k), node._get_node(k)) for k in node.keys())
    elif OmegaConf.is_list(node):
        items = ((f"{path}[{i}]", node._get_node(i)) for i in range(len(node)))
    else:
        value = node._value() if hasattr(node, "_value") else node
        return path if isinstance(value, float) and not math.isfinite(value) else None
    for key, child in items:
        if child is not None and not (hasattr(child, "_is_interpolation") and child._is_interpolation()):
            found = non_finite(child, key)
            if found:
                return found
    return None


def targets(node, path: str = "") -> list[tuple[str, str]]:
    """Every `_target_` of the config (the hydra node aside), as (dotted key, import path)."""
    found = []
    if OmegaConf.is_dict(node):
        for k in node.keys():
            key = f"{path}.{k}" if path else str(k)
            if k == "_target_" and isinstance(node[k], str):
                found.append((key, node[k]))
            elif k != "hydra":
                found += targets(node._get_node(k), key)
    elif OmegaConf.is_list(node):
        for i in range(len(node)):
            found += targets(node._get_node(i), f"{path}[{i}]")
    return found


def target_problem(key: str, dotted: str) -> str | None:
    """Why `dotted` cannot be imported, in one line with the fix; None when it imports."""
    import difflib
    import importlib
    import traceback

    parts = dotted.split(".")
    module, depth = None, 0
    for i in range(1, len(parts) + 1):  # the longest prefix that is a module; the rest are attributes
        name = ".".join(parts[:i])
        try:
            module, depth = importlib.import_module(name), i
        except ModuleNotFoundError as e:
            if e.name == name:  # no such module: what follows names attributes
                break
            where = traceback.extract_tb(e.__traceback__)[-1]
            return (
                f"{key}: importing {name} failed at {where.filename}:{where.lineno}: no module named "
                f"{e.name!r} (install it in this environment)"
            )
        except Exception as e:  # the module itself raised (a syntax error, a failing import inside)
            where = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
            at = f" at {where.filename}:{where.lineno}" if where else ""
            return f"{key}: importing {name} failed{at} ({type(e).__name__}: {e}): fix the module"
    if module is None:
        return (
            f"{key}={dotted}: no module named {parts[0]!r}: is its folder on PYTHONPATH? e.g. "
            f"PYTHONPATH=/path/to/folder python launch.py ... (the current folder is not on it)"
        )
    obj = module
    for i, attr in enumerate(parts[depth:], start=depth):
        if not hasattr(obj, attr):
            owner = ".".join(parts[:i])
            names = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(attr, names, n=1)
            where = getattr(obj, "__file__", owner)
            hint = f" (did you mean {owner}.{close[0]}?)" if close else f" (in {where})"
            return f"{key}={dotted}: {owner} has no {attr!r}{hint}"
        obj = getattr(obj, attr)
    if not callable(obj):
        return f"{key}={dotted} is a {type(obj).__name__}, not a function or class: name one"
    return None


def check(cfg: DictConfig) -> None:
    """Checks that need no data: raise UserError with a one-line fix."""
    check_targets(cfg)
    check_values(cfg)


def check_targets(cfg: DictConfig) -> None:
    """Every `_target_` imports (which imports the modules they name: torch, the user's code)."""
    for key, dotted in targets(cfg):
        if line := target_problem(key, dotted):
            raise UserError(line)


def check_values(cfg: DictConfig) -> None:
    """The config's values, ranges and combinations, without importing the modules they name
    (torch only for `train.phases` and `device=cuda`)."""
    bad = non_finite(cfg)
    if bad is not None:
        value = OmegaConf.select(cfg, bad)
        raise UserError(f"{bad}={value} is not a finite number: give it a finite value")
    if isinstance(cfg.stages, str) or not OmegaConf.is_list(cfg.stages):
        raise UserError(
            f"stages={cfg.stages} is not a list: write stages=[{cfg.stages}], e.g. stages=[train,llc,fit]"
        )
    stages = list(cfg.stages)
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise UserError(f"stages={stages}: choose from {list(STAGES)}, e.g. stages=[train,llc,fit]")
    if [s for s in STAGES if s in stages] != stages:
        order = " (or ".join(", ".join(f) for f in FIRST_STAGES.values()) + ")"
        raise UserError(f"stages={stages} out of order: they run as {order}")
    family = FIRST_STAGES[first_stage(stages)]
    if any(s not in family for s in stages):
        raise UserError(f"stages={stages} mixes two pipelines: use [train,llc,fit] or [ensemble,posterior]")
    if family[0] == "ensemble":
        check_posterior(cfg, stages)
    if not float(cfg.lr) > 0:
        raise UserError(f"lr={cfg.lr} must be > 0, e.g. lr=1e-2")
    if int(cfg.batch) < 1:
        raise UserError(f"batch={cfg.batch} must be a positive integer, e.g. batch=64")
    if int(cfg.llc.every) < 1:  # before train.eval_every, which defaults to it
        raise UserError(f"llc.every={cfg.llc.every} must be ≥ 1, e.g. llc.every=100")
    t = cfg.train
    if t.steps is None and not int(t.epochs) >= 1:
        raise UserError(f"train.epochs={t.epochs} must be ≥ 1 (or set train.steps)")
    if t.steps is not None and int(t.steps) < 1:
        raise UserError(f"train.steps={t.steps} must be ≥ 1")
    if t.get("phases") is not None:
        from pipeline.training import phases  # (imports torch: only a phased config needs it)

        phases.check(t.phases)
    if int(t.eval_every) < 1:
        raise UserError(f"train.eval_every={t.eval_every} must be ≥ 1")
    llc = cfg.llc
    for key in ("lr", "localization"):
        if not float(llc[key]) >= 0 or (key == "lr" and float(llc.lr) == 0):
            raise UserError(f"llc.{key}={llc[key]} must be {'> 0' if key == 'lr' else '≥ 0'}")
    if llc.nbeta is not None and not float(llc.nbeta) > 0:
        raise UserError(f"llc.nbeta={llc.nbeta} must be > 0, or null for batch/log(batch)")
    for key in ("num_chains", "num_draws", "num_steps_bw_draws", "last"):
        if int(llc[key]) < 1:
            raise UserError(f"llc.{key}={llc[key]} must be ≥ 1")
    if not llc.online and not cfg.train.keep_checkpoints and "llc" in stages:
        raise UserError(
            "train.keep_checkpoints=false leaves the llc stage nothing to read: "
            "set llc.online=true to estimate during training"
        )
    if "calibrate" in stages:
        check_calibrate(cfg.calibrate)
    check_search(cfg, family[0])
    boot = cfg.fit.bootstrap
    if int(boot.samples) < 100 or not 0 < float(boot.level) < 1:
        raise UserError("fit.bootstrap needs samples ≥ 100 and 0 < level < 1, e.g. samples=1000 level=0.95")
    if boot.block is not None and int(boot.block) < 1:
        raise UserError(f"fit.bootstrap.block={boot.block} must be ≥ 1, or null for round(n^(1/3))")
    if cfg.fit.points not in ("llc", "all"):
        raise UserError(f"fit.points={cfg.fit.points}: choose llc or all")
    r = cfg.resume
    if not (float(r.every_s) >= 0 and float(r.stale_after_s) > 120):
        raise UserError(
            f"resume.every_s={r.every_s} must be ≥ 0 and "
            f"resume.stale_after_s={r.stale_after_s} > 120 (two heartbeats), "
            "e.g. resume.every_s=120 resume.stale_after_s=900"
        )
    sampler = cfg.llc.get("sampler", "sgld")
    if sampler not in SAMPLERS:
        raise UserError(
            f"llc.sampler={sampler}: choose sgld, rmsprop_sgld (preconditioned) "
            "or underdamped (Langevin with momentum)"
        )
    if sampler == "underdamped" and not float(cfg.llc.localization) > 0:
        raise UserError(
            f"llc.localization={cfg.llc.localization}: llc.sampler=underdamped needs a localization > 0 "
            "(its friction is 2√γ), e.g. llc.localization=10"
        )
    if cfg.llc.get("init_loss", "batches") not in ("batches", "full"):
        raise UserError(f"llc.init_loss={cfg.llc.init_loss}: choose batches (devinterp's) or full (L_n)")
    if cfg.llc.get("method", "batched") not in ("batched", "serial"):  # before training, not after
        raise UserError(f"llc.method={cfg.llc.method}: choose batched or serial")
    if cfg.threads is not None and int(cfg.threads) < 1:
        raise UserError(f"threads={cfg.threads} must be ≥ 1, or null for the cores available")
    if not str(cfg.tracking.experiment or "").strip():
        raise UserError(
            "tracking.experiment is empty: name the MLflow experiment, e.g. "
            "tracking.experiment=almost-bayesian"
        )
    if int(cfg.llc.num_burnin_steps) < 0:
        raise UserError(f"llc.num_burnin_steps={cfg.llc.num_burnin_steps} must be ≥ 0")
    if str(cfg.device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"device={cfg.device} but torch sees no CUDA device: use device=cpu")


def check_calibrate(c: DictConfig) -> None:
    """The calibration grid: non-empty lists of step sizes > 0, localizations ≥ 0, nβ factors > 0."""
    for key in ("lr", "localization", "nbeta_factor"):
        values = c[key]
        if not OmegaConf.is_list(values) or len(values) == 0:
            raise UserError(f"calibrate.{key}={values} must be a non-empty list, e.g. calibrate.{key}=[1,10]")
    if any(not float(v) > 0 for v in c.lr):
        raise UserError(f"calibrate.lr={list(c.lr)}: every step size must be > 0")
    if any(not float(v) >= 0 for v in c.localization):
        raise UserError(f"calibrate.localization={list(c.localization)}: every value must be ≥ 0")
    if any(not float(v) > 0 for v in c.nbeta_factor):
        raise UserError(f"calibrate.nbeta_factor={list(c.nbeta_factor)}: every factor must be > 0")
    for key in ("num_draws", "num_chains"):
        if c[key] is not None and int(c[key]) < 1:
            raise UserError(f"calibrate.{key}={c[key]} must be ≥ 1, or null for the llc setting")


def check_search(cfg: DictConfig, first: str) -> None:
    """The automatic calibration (`llc.calibration`): its ladder and lists, and that the job's λ
    comes from the llc stage's checkpoints (online and ensemble estimates take fixed settings)."""
    c = cfg.llc.get("calibration")
    if c is None or not c.get("enabled", False):
        return
    for key in ("lr", "localization", "nbeta_factor"):
        values = c.get(key)
        if values is not None and (not OmegaConf.is_list(values) or len(values) == 0):
            raise UserError(f"llc.calibration.{key}={values} must be a non-empty list, e.g. [1e-5,1e-4]")
    lrs = [float(v) for v in c.get("lr") or [1.0]]
    if any(not v > 0 for v in lrs) or lrs != sorted(lrs):
        raise UserError(f"llc.calibration.lr={lrs}: step sizes > 0, smallest first, e.g. [1e-5,1e-4,1e-3]")
    if any(not float(v) > 0 for v in c.get("localization") or []):
        raise UserError(
            f"llc.calibration.localization={list(c.localization)}: every value must be > 0 "
            "(the search times its chains by the localization's pull), e.g. [1,10,100]"
        )
    if any(not float(v) > 0 for v in c.get("nbeta_factor") or []):
        raise UserError(f"llc.calibration.nbeta_factor={list(c.nbeta_factor)}: every factor must be > 0")
    for key in ("draws", "max_draws"):
        if key in c and int(c[key]) < 4:
            raise UserError(f"llc.calibration.{key}={c[key]} must be ≥ 4 (R-hat and ESS need 4 draws)")
    if "plateau" in c and not float(c.plateau) > 0:
        raise UserError(f"llc.calibration.plateau={c.plateau} must be > 0, e.g. 0.1")
    if "max_prior" in c and not (isinstance(c.max_prior, int | float) and c.max_prior > 0):
        raise UserError(f"llc.calibration.max_prior={c.max_prior} must be a number > 0, e.g. 0.1")
    check_momentum(c.get("momentum"))
    if cfg.llc.online:
        raise UserError(
            "llc.online=true estimates during training, before any checkpoint to calibrate on: "
            "add llc=paper or llc.calibration.enabled=false"
        )
    if first == "ensemble":
        raise UserError(
            "the ensemble stage estimates λ with fixed SGLD settings, not calibrated ones: "
            "add llc=paper or llc.calibration.enabled=false"
        )


def check_momentum(m: DictConfig | None) -> None:
    """The search's second walk (`llc.calibration.momentum`): a sampler with momentum or null, and
    its own ladder and budgets."""
    if m is None:
        return
    sampler = m.get("sampler")
    if sampler is not None and sampler not in SAMPLERS:
        raise UserError(
            f"llc.calibration.momentum.sampler={sampler}: choose underdamped (Langevin with momentum), "
            "sgld, rmsprop_sgld, or null (no second walk)"
        )
    values = m.get("lr")
    if values is not None:
        lrs = [float(v) for v in values] if OmegaConf.is_list(values) else []
        if not lrs or any(not v > 0 for v in lrs) or lrs != sorted(lrs):
            raise UserError(
                f"llc.calibration.momentum.lr={values}: a non-empty list of step sizes > 0, smallest "
                "first, e.g. [1e-8,1e-7,1e-6]"
            )
    if "max_rhat" in m and not float(m.max_rhat) >= 1:
        raise UserError(f"llc.calibration.momentum.max_rhat={m.max_rhat} must be ≥ 1 (R-hat is), e.g. 1.1")
    for key in ("max_steps", "max_draws"):
        if key in m and int(m[key]) < 4:
            raise UserError(
                f"llc.calibration.momentum.{key}={m[key]} must be ≥ 4 (R-hat and ESS need 4 draws)"
            )


def check_posterior(cfg: DictConfig, stages: list[str]) -> None:
    """Checks of the ensemble and posterior settings (section 4.2 experiment)."""
    if "ensemble" not in cfg or "posterior" not in cfg:
        raise UserError(f"stages={stages} need the ensemble settings: add +experiment=moons_posterior")
    task = cfg.dataset.get("task")
    if task is not None and not str(task.get("_target_", "")).endswith("Classification"):
        raise UserError(
            f"the ensemble trains classifiers only: dataset.task={task._target_} needs stages=[train,...]"
        )
    if cfg.train.get("phases"):
        raise UserError("the ensemble trains with one optimizer: train.phases needs stages=[train,...]")
    check_elementwise(cfg)
    if cfg.ensemble.get("llc", "serial") not in ("serial", "batched"):
        raise UserError(f"ensemble.llc={cfg.ensemble.llc}: choose serial or batched")
    if not cfg.ensemble.get("seeds") and int(cfg.ensemble.members) < 1:
        raise UserError(f"ensemble.members={cfg.ensemble.members} must be ≥ 1, e.g. 500")
    p, s = cfg.posterior, cfg.posterior.sgld
    if int(p.chains) < 1:
        raise UserError(f"posterior.chains={p.chains} must be ≥ 1, e.g. 10")
    for key in ("num_samples", "num_steps_bw_samples"):
        if int(s[key]) < 1:
            raise UserError(f"posterior.sgld.{key}={s[key]} must be ≥ 1")
    if int(s.num_burnin_steps) < 0 or not float(s.lr) > 0 or not float(s.localization) >= 0:
        raise UserError(
            "posterior.sgld: num_burnin_steps ≥ 0, lr > 0 and localization ≥ 0, e.g. 200, 1e-5, 100"
        )
    if s.nbeta is not None and not float(s.nbeta) > 0:
        raise UserError(f"posterior.sgld.nbeta={s.nbeta} must be > 0, or null for n_train")
    if p.cluster_on not in ("sgd", "all"):
        raise UserError(f"posterior.cluster_on={p.cluster_on}: choose sgd or all")
    xi = list(p.tempering.xi)
    if not xi or min(float(v) for v in xi) <= 0 or not float(p.tempering.m) > 0:
        raise UserError(f"posterior.tempering.xi={xi} needs values > 0 (and tempering.m > 0)")


def total_steps(cfg: DictConfig, steps_per_epoch: int) -> int:
    """Training steps; for a phased run (`train.phases`) the most it can take (phases may stop early)."""
    if cfg.train.get("phases"):
        from pipeline.training import phases

        return phases.max_steps(cfg.train.phases, steps_per_epoch)
    return int(cfg.train.steps) if cfg.train.steps is not None else int(cfg.train.epochs) * steps_per_epoch


def check_with_data(cfg: DictConfig, n_train: int, steps_per_epoch: int) -> int:
    """Checks that need the data set's size; returns the number of training steps."""
    if int(cfg.batch) > n_train:
        raise UserError(
            f"batch={cfg.batch} is larger than the training set ({n_train} samples): use batch ≤ {n_train}"
        )
    steps = total_steps(cfg, steps_per_epoch)
    if int(cfg.llc.every) > steps:
        raise UserError(
            f"llc.every={cfg.llc.every} is longer than the run ({steps} steps): "
            f"lower llc.every or train longer (train.epochs / train.steps)"
        )
    fit = cfg.get("fit")
    if "fit" in list(cfg.stages) and fit is not None and fit.get("points", "llc") == "llc":
        # The fit regresses on the λ steps (multiples of llc.every) inside its window: 3 at least.
        every = int(cfg.llc.every)
        lo = max(every, int(fit.start_step) if fit.get("start_step") is not None else every)
        hi = min(steps, int(fit.end_step) if fit.get("end_step") is not None else steps)
        points = max(0, hi // every - (lo - 1) // every)
        bound = hi if fit.get("start_step") is None else hi - int(fit.start_step) + 1  # span for 3 points
        if points < 3:
            raise UserError(
                f"the fit would get {points} point{'s' * (points != 1)} (λ steps every llc.every={every} in "
                f"steps {lo}-{hi} of {steps}) and needs 3: lower llc.every to ≤ {max(1, bound // 3)}, "
                "train longer, or widen fit.start_step / fit.end_step"
            )
    return steps
