"""The Python API: λ, R(t), α, d_s and the paper's verdicts for a model, data and training loop of
one's own, through the code the stages run (docs/api.md).

`estimate_llc` (one λ estimate, the row the llc stage writes), `Recorder` (R(t) in one's own loop:
the trajectory table the fit reads), `fit_alpha` (α in a window, from a crossover), `analyse` (what
`fit.json` holds) and `Monitor`, which does all of it around one's own loop and logs ONE MLflow run
the way `python launch.py` logs one (the same tags, params, metrics and artifacts, so the analysis,
`make figures` and the MLflow UI read it like any run). The settings are the presets of
`conf/llc/` and `conf/fit/paper.yaml`, read as they are, under keyword overrides. Reads nothing
else; writes only the monitor's run.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import inspect
import math
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from pipeline.config import hashes, schema
from pipeline.config.checks import check_search
from pipeline.data import Data, convert
from pipeline.errors import Diverged, UserError
from pipeline.interrupts import interruption
from pipeline.jobs import relaunch, report
from pipeline.jobs.opening import provenance, run_tags
from pipeline.models import num_params, num_weights
from pipeline.models.tasks import Classification, Task
from pipeline.slt import calibration, llc
from pipeline.slt.displacement import DisplacementRecorder, record_schedule
from pipeline.slt.fit import compute
from pipeline.slt.settings import SAMPLERS, Search, Settings
from pipeline.stages import calibrate, inputs
from pipeline.stages import fit as fit_stage
from pipeline.stages import llc as llc_stage
from pipeline.stages import train as train_stage
from pipeline.stages.context import Context, Member
from pipeline.tracking import Tracker, names
from pipeline.training.loop import Plan, evaluate

__all__ = [
    "Estimate",
    "Monitor",
    "Recorder",
    "analyse",
    "estimate_llc",
    "fit_alpha",
    "fit_settings",
    "llc_settings",
]

CONF = Path(__file__).resolve().parents[1] / "conf"
PRESETS = ("calibrated", "paper")  # conf/llc/<name>.yaml


# -- settings: a preset of conf/, then one's own, then keywords ------------------------------------
def _yaml(path: str | Path) -> dict:
    """A settings file as a plain dict, the files its `defaults` list names merged first (as Hydra
    does in a config group)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no settings file {path}: give the path of a YAML file such as conf/llc/paper.yaml")
    node = OmegaConf.load(path)
    merged: dict = {}
    for entry in node.get("defaults", []):
        if entry != "_self_":
            merged = _merge(merged, _yaml(path.with_name(f"{entry}.yaml")))
    return _merge(merged, {k: v for k, v in _plain(node).items() if k != "defaults"})


def _plain(values: Any) -> dict:
    """`values` (a dict, DictConfig or dataclass) as a plain dict, without the interpolations a file
    of conf/ holds (`seed: ${seed}` refers to the whole config: the API's own value stands in)."""
    if isinstance(values, DictConfig):
        values = OmegaConf.to_container(values, resolve=False)
    elif dataclasses.is_dataclass(values) and not isinstance(values, type):
        values = dataclasses.asdict(values)
    if not isinstance(values, Mapping):
        raise UserError(
            f"settings is a {type(values).__name__}: pass a dict, a Settings, or a YAML file's path "
            "(e.g. conf/llc/paper.yaml)"
        )
    out = {}
    for k, v in values.items():
        if isinstance(v, str) and v.startswith("${"):
            continue
        out[k] = _plain(v) if isinstance(v, Mapping | DictConfig) else v
    return out


def _merge(base: dict, top: Mapping) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def _check_types(cls: type, values: dict, what: str) -> None:
    """`values` against the config's schema for them (`cls`), typed as Hydra types a composed config:
    an unknown key or a value of the wrong type is one line."""
    known = [f.name for f in dataclasses.fields(cls)]
    for k in values:
        if k not in known:
            close = difflib.get_close_matches(k, known, n=1)
            hint = f"did you mean {close[0]}?" if close else f"choose from {', '.join(known)}"
            raise UserError(f"{k}: no such {what} setting: {hint}")
    try:
        OmegaConf.merge(schema.open_node(cls), values)
    except Exception as e:  # omegaconf's ValidationError: the key, and the value it refused
        raise UserError(f"{getattr(e, 'full_key', what)}: {str(e).splitlines()[0]}") from None


def llc_settings(preset: str = "calibrated", settings: Any = None, seed: int = 0, **options: Any) -> dict:
    """The λ settings `estimate_llc` and `Monitor` use: preset `calibrated` (the default: the
    automatic calibration, then 4 chains with a burn-in) or `paper` (Table 3), read from
    `conf/llc/<preset>.yaml`, then `settings` (a dict, a `Settings` — taken as chosen already, so no
    search — or a YAML file such as `conf/llc/paper.yaml`; one that names its `preset` goes over
    that preset), then the keywords (any key of those
    files: `num_draws=100`, `lr=1e-4`, `every=50`, `calibration=False` ...); the seed where neither
    sets one. Returned as the llc block of a run's config."""
    if isinstance(settings, str | Path):
        settings = _yaml(settings)
    own = _plain(settings) if settings is not None else {}
    preset = own.get("preset", preset)  # a file of conf/llc/ (or one like it) names its own preset
    if preset not in PRESETS:
        raise UserError(f"preset={preset!r}: choose one of {', '.join(map(repr, PRESETS))}")
    values = _merge(_yaml(CONF / "llc" / f"{preset}.yaml"), own)
    if isinstance(settings, Settings):  # settings found already (e.g. by a search): used as they are
        values["calibration"] = {**values.get("calibration", {}), "enabled": False}
    if isinstance(options.get("calibration"), bool):
        options["calibration"] = {"enabled": options["calibration"]}
    values = _merge(values, options)
    values.setdefault("seed", int(seed))
    name = values.pop("preset", preset)
    _check_types(schema.LLC, values, "λ")
    _check_llc(values)
    return {"preset": name, **values}


def _check_llc(v: dict) -> None:
    """Ranges and choices of the λ settings (their types are the schema's), one line each."""
    if not float(v["lr"]) > 0:
        raise UserError(f"lr={v['lr']} must be > 0, e.g. lr=1e-4")
    if not float(v["localization"]) >= 0:
        raise UserError(f"localization={v['localization']} must be ≥ 0, e.g. localization=100")
    if v.get("nbeta") is not None and not float(v["nbeta"]) > 0:
        raise UserError(f"nbeta={v['nbeta']} must be > 0, or None for batch/log(batch)")
    for key in ("num_chains", "num_draws", "num_steps_bw_draws", "last", "every", "max_stacked"):
        if key in v and int(v[key]) < 1:
            raise UserError(f"{key}={v[key]} must be ≥ 1")
    if int(v.get("num_burnin_steps", 0)) < 0:
        raise UserError(f"num_burnin_steps={v['num_burnin_steps']} must be ≥ 0")
    for key, choices in (
        ("sampler", SAMPLERS),
        ("init_loss", ("batches", "full")),
        ("method", ("batched", "serial")),
    ):
        if v.get(key, choices[0]) not in choices:
            raise UserError(f"{key}={v[key]!r}: choose one of {', '.join(map(repr, choices))}")
    if v.get("sampler") == "underdamped" and not float(v["localization"]) > 0:
        raise UserError(
            f"localization={v['localization']}: sampler='underdamped' needs one > 0 (its friction is 2√γ)"
        )
    if v.get("online") and Search.of(v.get("calibration")).enabled:
        raise UserError(
            "online=True estimates λ during training, before any checkpoint to calibrate on: "
            "pass preset='paper' or calibration=False"
        )
    check_search(OmegaConf.create({"llc": v}), "train")


def fit_settings(window: Any = None, seed: int = 0, **options: Any) -> dict:
    """The fit's settings: `conf/fit/paper.yaml` (the paper's window: the λ steps, the whole run),
    then `window` (a dict, a `Window`, or a YAML file such as `conf/fit/crossover.yaml`), then the
    keywords (`points`, `start_step`, `end_step`, `crossover`, `shift`, `bootstrap`, `figures`)."""
    values = _yaml(CONF / "fit" / "paper.yaml")
    if isinstance(window, str | Path):
        window = _yaml(window)
    if window is not None:
        values = _merge(values, _plain(window))
    values = _merge(values, {k: v for k, v in options.items() if v is not None})
    values.setdefault("bootstrap", {}).setdefault("seed", int(seed))
    _check_types(schema.Fit, values, "fit")
    if values["points"] not in ("llc", "all"):
        raise UserError(
            f"points={values['points']!r}: choose 'llc' (the λ steps) or 'all' (every recorded step)"
        )
    boot = values["bootstrap"]
    if int(boot.get("samples", 1000)) < 100 or not 0 < float(boot.get("level", 0.95)) < 1:
        raise UserError("bootstrap needs samples ≥ 100 and 0 < level < 1, e.g. bootstrap={'samples': 1000}")
    return values


# -- data and loss ---------------------------------------------------------------------------------
def _tensors(data: Any, what: str) -> tuple[torch.Tensor, torch.Tensor, int | None]:
    """(x, y) and the batch size a DataLoader names, from a DataLoader, a Dataset of (x, y) pairs or
    a pair of tensors or arrays."""
    batch = None
    if isinstance(data, DataLoader):
        batch, data = data.batch_size, data.dataset
    if isinstance(data, TensorDataset) and len(data.tensors) == 2:
        return (*data.tensors, batch)
    if isinstance(data, Dataset):  # its items stacked, as a data-set function's Datasets are
        return (*convert.dataset_tensors(data, what), batch)
    if isinstance(data, tuple | list) and len(data) == 2:
        try:
            x, y = (d if isinstance(d, torch.Tensor) else torch.as_tensor(np.asarray(d)) for d in data)
        except (TypeError, ValueError, RuntimeError):
            raise UserError(f"{what} holds no arrays: pass tensors or arrays (x, y)") from None
        return x, y, batch
    raise UserError(
        f"{what} is a {type(data).__name__}: pass a DataLoader, a Dataset of (x, y) pairs or tensors (x, y)"
    )


def as_data(
    data: Any, batch_size: int | None = None, test: Any = None, name: str = "data", dtype=torch.float32
) -> Data:
    """One's own data as the product's `Data` (a `Data` passes as it is): a DataLoader's dataset and
    batch size (its sampler and transforms are not used: the chains draw shuffled minibatches as
    `DataLoader(..., shuffle=True)` does), a Dataset or tensors with `batch_size`; `test` likewise,
    or none. Float inputs take the model's dtype, integer labels int64."""
    if isinstance(data, Data):
        if test is not None:
            raise UserError(
                "a Data holds its test split already: pass test=None, or the train tensors (x, y)"
            )
        return data if batch_size is None else dataclasses.replace(data, batch_size=int(batch_size))
    x, y, batch = _tensors(data, "data")
    batch = batch_size if batch_size is not None else batch
    if batch is None or isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise UserError(
            f"batch_size={batch}: pass batch_size=<the minibatch size of the chains>, e.g. your training "
            "batch size (64), or a DataLoader"
        )
    x_test, y_test = (x[:0], y[:0]) if test is None else _tensors(test, "test")[:2]
    for a, b, split in ((x, y, "data"), (x_test, y_test, "test")):
        if len(a) != len(b):
            raise UserError(f"{split} has {len(a)} inputs and {len(b)} targets: give one target per input")
    if not len(y):
        raise UserError("the data hold no samples")
    fix = lambda t: t.to(dtype) if t.is_floating_point() else t  # noqa: E731
    label = lambda t: t.long() if not t.is_floating_point() and t.dtype != torch.bool else t  # noqa: E731
    classes = int(y.max()) + 1 if not y.is_floating_point() and y.ndim == 1 else 0
    return Data(name, fix(x), label(y), fix(x_test), label(y_test), classes, int(batch))


class OwnLoss(Task):
    """The task of a loss of one's own: `loss_fn(output, y)`, the mean over a batch, or devinterp's
    `evaluate(model, batch) -> loss` (then no stacked passes: λ is devinterp's serial estimate).
    Accuracy is argmax accuracy for class logits against integer labels, NaN otherwise."""

    name = "own_loss"

    def __init__(self, loss_fn: Callable | None = None, evaluate: Callable | None = None) -> None:
        super().__init__()
        self.loss_fn, self.hook = loss_fn, evaluate

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(output, y)

    def sgld_loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return self.hook(model, batch) if self.hook is not None else super().sgld_loss(model, batch)

    def _sums(self, output: torch.Tensor, y: torch.Tensor) -> tuple[float, int, int]:
        classes = output.ndim == 2 and y.ndim == 1 and not y.is_floating_point()
        correct = int((output.argmax(1) == y).sum()) if classes else math.nan
        return float(self.loss(output, y)) * len(y), correct, len(y)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        if self.hook is None:
            return super().evaluate(model, x, y)
        was = model.training
        model.eval()
        losses = [
            (float(self._hook_loss(model, (x[i : i + 4096], y[i : i + 4096]))), len(y[i : i + 4096]))
            for i in range(0, len(y), 4096)
        ]
        model.train(was)
        return sum(v * n for v, n in losses) / len(y), math.nan

    def _hook_loss(self, model: nn.Module, batch) -> torch.Tensor:
        out = self.hook(model, batch)
        return out[0] if isinstance(out, tuple | list) else out


def task_of(loss_fn: Callable | None, evaluate: Callable | None) -> Task:
    """Cross-entropy (the product's `Classification`) unless a loss of one's own is given."""
    if loss_fn is not None and evaluate is not None:
        raise UserError("pass loss_fn(output, y) or evaluate(model, batch), not both")
    for what, f in (("loss_fn", loss_fn), ("evaluate", evaluate)):
        if f is not None and not callable(f):
            raise UserError(f"{what} is a {type(f).__name__}, not a function: pass {what}=<a function>")
    return Classification() if loss_fn is None and evaluate is None else OwnLoss(loss_fn, evaluate)


def _check_model(model: Any, data: Data, task: Task, device: str) -> None:
    """One forward pass and loss on a training batch: a model that fails on the data or a loss that
    is not one number is one line, before any sampling."""
    batch = (data.x_train[: data.batch_size].to(device), data.y_train[: data.batch_size].to(device))
    was = model.training
    try:
        with torch.no_grad():
            loss = task.sgld_loss(model, batch)
    except Exception as e:
        shape = f"a batch of shape {tuple(batch[0].shape)} {str(batch[0].dtype).removeprefix('torch.')}"
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(
            f"the loss on {shape} failed ({type(e).__name__}: {why}): make model and loss take it"
        ) from None
    finally:
        model.train(was)
    loss = loss[0] if isinstance(loss, tuple | list) else loss
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        got = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise UserError(
            f"the loss of a batch is {got}, not one number: return the batch mean (reduction='mean')"
        )


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _model(model: Any) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise UserError(f"model is a {type(model).__name__}: pass a torch.nn.Module")
    if not any(p.requires_grad for p in model.parameters()):
        raise UserError("the model has no trainable parameters: R(t) and λ live on them")
    return model


def _device(model: nn.Module, device: str | None) -> str:
    return str(device) if device is not None else str(next(model.parameters()).device)


def _dtype(model: nn.Module) -> torch.dtype:
    return next(p for p in model.parameters() if p.requires_grad).dtype


# -- λ ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """One λ estimate. `row`: the row the llc stage writes to `llc.parquet` (step, llc, llc_std,
    init_loss, nbeta, status, the diagnostics rhat, ess_bulk, ess_tail, llc_mcse, trace_drift,
    trace_drift_z and the flags negative, nonstationary, rhat_high, ess_low); `trace`: the loss at
    every draw (chains x draws); `settings`: the sampler's settings; `calibration`: the automatic
    calibration's choice (None without a search); `method`: batched (the sampler core on stacked
    copies) or serial (devinterp's own estimator)."""

    row: dict
    trace: np.ndarray | None
    settings: Settings
    calibration: dict | None
    method: str

    @property
    def llc(self) -> float:
        return float(self.row["llc"])

    @property
    def llc_std(self) -> float:
        return float(self.row["llc_std"])

    @property
    def ok(self) -> bool:
        return self.row["status"] == "ok"


def estimates(
    work: list[tuple[int, int, Any]],
    model: nn.Module,
    data: Data,
    task: Task,
    method: str,
    settings: Settings,
    device: str,
    max_stacked: int = 20_000_000,
    load: Callable = lambda state: state,
) -> list[dict]:
    """λ at each (sampler seed, step, weights) of `work` as the llc stage makes its estimates
    (`pipeline.stages.llc.passes`), on a copy of `model`; rows with their step and trace, in order."""
    rows: list[dict] = [{} for _ in work]
    own = copy.deepcopy(model)  # the serial path loads the weights into the model it is given
    for found in llc_stage.passes(work, own, data, task, method, settings, device, max_stacked, load):
        for k, row in found:
            rows[k] = {"step": work[k][1], **row}
    return rows


def estimate_llc(
    model: nn.Module,
    data: Any,
    loss_fn: Callable | None = None,
    *,
    evaluate: Callable | None = None,
    batch_size: int | None = None,
    preset: str = "calibrated",
    settings: Any = None,
    step: int = 0,
    device: str | None = None,
    **options: Any,
) -> Estimate:
    """λ at the model's current weights on `data` (a DataLoader, a Dataset or tensors (x, y), with
    `batch_size`), with the loss the model trains on: cross-entropy, `loss_fn(output, y)` or
    devinterp's `evaluate(model, batch)`. The settings: `llc_settings(preset, settings, **options)`;
    under the calibrated preset the automatic calibration runs at these weights first, as the llc
    stage runs it on a run's last checkpoint. `step` names the estimate and seeds its sampler
    (`llc.sampler_seed`). The model is left as it was."""
    values = llc_settings(preset, settings, **options)
    task = task_of(loss_fn, evaluate)
    device = _device(_model(model), device)
    data = as_data(data, batch_size, dtype=_dtype(model)).to(device)
    _check_model(model, data, task, device)
    method = llc.method_for(values["method"], task)
    chosen = Settings.of(values)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    choice = None
    search = Search.of(values.get("calibration"))
    if search.enabled:
        estimator = calibrate.estimator(
            copy.deepcopy(model), state, data, int(step), device, task, method == "batched"
        )
        nb = llc.nbeta(chosen.nbeta, data.batch_size)
        _, choice = calibration.search(estimator, chosen, search, nb, exact=data.full_batch)
        chosen = calibration.apply(chosen, choice)
    (row,) = estimates([(chosen.seed, int(step), state)], model, data, task, method, chosen, device)
    trace = row.pop("trace")
    return Estimate(row, trace, chosen, choice, method)


# -- R(t) ------------------------------------------------------------------------------------------
def _step_loss(step: Any, loss: Any, total: int, after: int | None) -> tuple[int, torch.Tensor]:
    if isinstance(step, bool) or not isinstance(step, int | np.integer):
        raise UserError(f"step={step!r} is a {type(step).__name__}: pass the step number, an int (1, 2, ...)")
    step = int(step)
    if step < 1 or step > total:
        raise UserError(
            f"step {step} is outside 1..{total}: count optimizer steps from 1; steps= is the loop's length"
        )
    if after is not None and step != after + 1:
        raise UserError(
            f"step {step} {f'after step {after}' if after else 'first'}: call it after every optimizer "
            "step, steps 1, 2, 3, ..."
        )
    if not isinstance(loss, torch.Tensor):
        try:
            loss = torch.tensor(float(loss))
        except (TypeError, ValueError):
            raise UserError(
                f"loss is a {type(loss).__name__}: pass the batch loss, a tensor or a float"
            ) from None
    if loss.numel() != 1:
        raise UserError(f"loss has shape {tuple(loss.shape)}: pass the batch's mean loss, one number")
    return step, loss.detach().reshape(())


def _steps(steps: Any) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise UserError(f"steps={steps!r}: pass the number of optimizer steps the loop takes, e.g. steps=500")
    return int(steps)


class Recorder:
    """R(t) = ‖w_t − w_0‖ of `model` in one's own loop (`pipeline.slt.displacement`): made before the
    first step (w_0 is the weights then), called after each optimizer step as `recorder(step, loss)`,
    steps counted from 1 up to `steps`, the loop's length. It records every step for loops of at most
    `every_step_up_to` steps, else `log_points` log-spaced ones, plus the steps in `extra` and the
    last; `table()` is the trajectory table the fit reads (`trajectory.parquet`'s columns)."""

    def __init__(
        self,
        model: nn.Module,
        steps: int,
        *,
        every_step_up_to: int = 20_000,
        log_points: int = 500,
        extra: Sequence[int] = (),
    ) -> None:
        _model(model)
        self.steps = _steps(steps)
        self.core = DisplacementRecorder(model, record_schedule(steps, every_step_up_to, log_points, extra))
        self.last: int | None = None

    def __call__(self, step: int, loss: Any) -> None:
        step, loss = _step_loss(step, loss, self.steps, None)
        if self.core.wants(step) or step == self.steps:
            self.core.record(step, loss)
        self.last = step

    def table(self) -> pd.DataFrame:
        """step, displacement (R(t)), train_batch_loss, displacement/<tensor>, displacement_group/<g>."""
        if self.last is None:
            raise UserError("nothing recorded yet: call recorder(step, loss) after each optimizer step")
        return self.core.table(upto=self.last)


# -- α, d_s, the verdicts --------------------------------------------------------------------------
def _trajectory(traj: Any) -> pd.DataFrame:
    if hasattr(traj, "table") and callable(traj.table):
        traj = traj.table()
    elif isinstance(traj, tuple | list) and len(traj) == 2:
        traj = pd.DataFrame({"step": np.asarray(traj[0]), "displacement": np.asarray(traj[1], dtype=float)})
    if not isinstance(traj, pd.DataFrame) or not {"step", "displacement"} <= set(traj.columns):
        raise UserError(
            "trajectory: pass a Recorder, its table (columns step, displacement) or (steps, R) arrays"
        )
    return traj


def _llc_table(table: Any) -> pd.DataFrame | None:
    if table is None or isinstance(table, pd.DataFrame) and table.empty:
        return None
    if isinstance(table, Sequence) and not isinstance(table, str):
        rows = [e.row if isinstance(e, Estimate) else e for e in table]
        table = llc.tables([{"trace": None, **r} for r in rows])[0]
    if not isinstance(table, pd.DataFrame) or not {"step", "llc", "status"} <= set(table.columns):
        raise UserError(
            "llc: pass the λ(t) table (columns step, llc, status) or a list of Estimates with steps"
        )
    return table


ALPHA_KEYS = (
    "alpha", "alpha_se", "intercept", "r2", "t_start", "t_end", "n_points", "t_c", "shifted", "points",
    "crossover", "crossover_test", "alpha_ci_low", "alpha_ci_high", "points_dropped", "d_walk",
    "diffusion_exponent",
)  # fmt: skip


def fit_alpha(
    trajectory: Any, llc_table: Any = None, *, every: int | None = None, window: Any = None, **options: Any
) -> dict:
    """α of R(t) ~ t^α, the fit stage's (`pipeline.slt.fit.compute`): on the λ steps of `llc_table` (or
    every `every` steps) or on every recorded step (`points='all'`), between `start_step` and
    `end_step`, from a detected crossover t_c (`crossover=True`, `shift=True`: eq. 32). Returns α, its
    standard error and bootstrap interval, r², the window, t_c and its test, d_walk."""
    result = analyse(trajectory, llc_table, every=every, window=window, **options)
    return {k: result[k] for k in ALPHA_KEYS}


def analyse(
    trajectory: Any,
    llc_table: Any,
    *,
    last: int = 10,
    every: int | None = None,
    window: Any = None,
    **options: Any,
) -> dict:
    """Everything `fit.json` holds, from a trajectory and a λ(t) table: α, λ_final (the mean of the
    last `last` estimates) and λ̄, d_s = 2·λ_final·α with its bootstrap interval, d_walk and the
    verdicts `lemma_3_4` (d_s ≤ λ_final) and `corollary_3_3` (d_s ≤ λ̄): holds, within_error,
    violated or n/a. The fit's settings: `fit_settings(window, **options)`."""
    window = fit_settings(window, **options)
    traj, table = _trajectory(trajectory), _llc_table(llc_table)
    if table is None and window["points"] == "llc" and every is None:
        raise UserError(
            "no λ table to take the fit's steps from: pass every=<the λ interval> or points='all'"
        )
    lambdas = llc.summarize(table, int(last)) if table is not None else {}
    try:
        return compute(traj, table, lambdas, window, int(every or 1), int(last))
    except ValueError as e:  # too few points in the window: the message names the fix
        raise UserError(str(e)) from None


# -- the monitor: one's own loop as one run ---------------------------------------------------------
def _path(obj: Any) -> str:
    """`torch.optim.SGD` for torch's own classes (as the configs name them), else module.qualname."""
    cls = obj if isinstance(obj, type) else type(obj)
    if getattr(torch.optim, cls.__name__, None) is cls:
        return f"torch.optim.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def own_data(**recorded: Any) -> Data:
    """The data set of a monitor's run, as its config names it: not stored with the run, so a stage
    re-run that would rebuild it (llc, calibrate) says so."""
    raise UserError(
        "this run was logged by pipeline.api.Monitor and its data are not stored with it: re-estimate λ "
        "with pipeline.api.estimate_llc on your model and data (stages=[fit] re-runs on it as it is)"
    )


class Monitor:
    """One's own training loop as one run: made before the first step with the model and the data λ
    is estimated on (as `estimate_llc` takes them), called after each optimizer step as
    `monitor.step(step, loss)` (or `monitor(step, loss)`), steps 1, 2, ... up to `steps`. It records
    R(t), evaluates train (and `test`) loss and accuracy every `every` steps, keeps w_0, the weights
    every `every` steps and the last. `close()` (or leaving a `with` block) estimates λ at those
    weights as the llc stage does (the calibrated preset: the automatic calibration on the last
    first; `online=True`: λ during the loop instead, with fixed settings), fits α as the fit stage
    does, and logs ONE MLflow run as `python launch.py` logs one: experiment `experiment` of store
    `tracking_uri` (default $MLFLOW_TRACKING_URI, else ./mlflow.db), run name `name`, sweep tag
    `sweep` (default `run-<time>`); `optimizer` (optional) is recorded as the run's optimizer and
    learning rate. After close: `run_id`, `result` (what fit.json holds), `llc` (the λ(t) table),
    `trajectory`, `report` (the lines launch.py prints). A loop that raises leaves the run FAILED
    with its reason and what was recorded."""

    def __init__(
        self,
        model: nn.Module,
        data: Any,
        loss_fn: Callable | None = None,
        *,
        steps: int,
        every: int | None = None,
        test: Any = None,
        evaluate: Callable | None = None,
        batch_size: int | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        preset: str = "calibrated",
        settings: Any = None,
        window: Any = None,
        seed: int = 0,
        name: str = "monitor",
        experiment: str = "almost-bayesian",
        tracking_uri: str | None = None,
        sweep: str | None = None,
        data_name: str = "data",
        device: str | None = None,
        **options: Any,
    ) -> None:
        self.start = time.perf_counter()
        self.model = _model(model)
        self.device = _device(model, device)
        self.task = task_of(loss_fn, evaluate)
        self.data = as_data(data, batch_size, test, data_name, _dtype(model)).to(self.device)
        _check_model(model, self.data, self.task, self.device)
        own = [f.name for f in dataclasses.fields(schema.LLC)]
        for key in options:  # a misspelled keyword of the monitor is no λ setting either
            if key not in own:
                mine = [*inspect.signature(Monitor.__init__).parameters, *own]
                close = difflib.get_close_matches(key, mine, n=1)
                raise UserError(
                    f"{key}: no such keyword of Monitor or λ setting"
                    + (f": did you mean {close[0]}?" if close else "")
                )
        if every is not None:
            options["every"] = every
        self.llc_cfg = llc_settings(preset, settings, seed, **options)
        self.fit_cfg = fit_settings(window, seed)
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise UserError(f"optimizer is a {type(optimizer).__name__}: pass the torch optimizer, or None")
        _steps(steps)
        every = int(self.llc_cfg["every"])
        self.online = bool(self.llc_cfg["online"])
        self.plan = Plan(int(steps), every, every, keep_checkpoints=not self.online)
        self.recorder = Recorder(model, steps, extra=[*self.plan.llc_steps, *self.plan.eval_steps])
        self.settings = Settings.of(self.llc_cfg)
        self.optimizer, self.seed, self.name, self.data_type = optimizer, int(seed), str(name), _path(data)
        self.where = {"uri": tracking_uri, "experiment": str(experiment)}
        self.sweep = sweep or f"run-{time.strftime('%Y-%m-%d_%H-%M-%S')}"
        self.lr_sum, self.loss = 0.0, None
        self.evals: list[dict] = []
        self.rows: list[dict] = []
        self.folder = tempfile.TemporaryDirectory(prefix="ab-monitor-")
        self.checkpoints = Path(self.folder.name) / names.CHECKPOINTS
        self.checkpoints.mkdir()
        self._checkpoint(0)
        self.tracker: Tracker | None = None
        self.run_id: str | None = None
        self.result: dict | None = None
        self.llc: pd.DataFrame | None = None
        self.trajectory: pd.DataFrame | None = None
        self.report: str | None = None
        self.closed = False

    # -- in the loop --
    def step(self, step: int, loss: Any) -> Estimate | None:
        """Record step `step` (its batch loss `loss`); with `online=True`, the λ estimate of a λ step."""
        if self.closed:
            raise UserError("the monitor is closed: make a new Monitor for another run")
        step, loss = _step_loss(step, loss, self.plan.steps, self.recorder.last or 0)
        self.recorder(step, loss)
        self.loss = loss
        if self.optimizer is not None:
            self.lr_sum += float(self.optimizer.param_groups[0]["lr"])
        if step in self.plan.eval_steps:
            self.evals.append(self._evaluate(step, loss))
        found = None
        if self.online and step % self.plan.llc_every == 0:  # the train stage's online λ
            was = self.model.training
            row = llc.estimate(self.model, self.data, self.settings, step, self.device, self.task.sgld_loss)
            self.model.train(was)
            self.rows.append({"step": step, **row})
            shown = {"step": step, **{k: v for k, v in row.items() if k != "trace"}}
            found = Estimate(shown, row["trace"], self.settings, None, "serial")
        if step in self.plan.checkpoint_steps:
            self._checkpoint(step)
        return found

    __call__ = step

    def _evaluate(self, step: int, loss: torch.Tensor) -> dict:
        if len(self.data.y_test):
            return evaluate(self.task, self.model, self.data, step, loss)  # the loop's own (Diverged)
        train_loss, train_acc = self.task.evaluate(self.model, self.data.x_train, self.data.y_train)
        if not (math.isfinite(train_loss) and math.isfinite(loss.item())):
            raise Diverged.at(step, train_loss)
        nan = math.nan
        return {
            "step": step,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "test_loss": nan,
            "test_acc": nan,
        }

    def _checkpoint(self, step: int) -> None:
        torch.save(self.model.state_dict(), self.checkpoints / names.checkpoint_name(step))

    # -- the run --
    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, kind, error, tb) -> bool:
        if error is None:
            self.close()
        elif not self.closed:
            self._abandon(error)
        return False

    def config(self) -> DictConfig:
        """The run's config (`config.yaml`, its params): the blocks a launch.py run's has, with one's
        own model, data and optimizer named by their classes."""
        d, opt = self.data, self.optimizer
        optimizer = {}
        if opt is not None:
            group = opt.param_groups[0]
            optimizer = {"_target_": _path(opt)} | {
                k: v for k, v in group.items() if isinstance(v, int | float | bool) or k == "betas"
            }
            optimizer["betas"] = list(optimizer["betas"]) if "betas" in optimizer else None
            optimizer = {k: v for k, v in optimizer.items() if v is not None}
        return OmegaConf.create(
            {
                "model": {"_target_": _path(self.model), "architecture": _sha(repr(self.model))},
                "dataset": {
                    "_target_": "pipeline.api.own_data",
                    "type": self.data_type,
                    "name": d.name,
                    "batch_size": d.batch_size,
                },
                **({"optimizer": optimizer} if optimizer else {}),
                "lr": optimizer.get("lr"),
                "batch": d.batch_size,
                "seed": self.seed,
                "seeds": None,
                "train": {
                    "epochs": None,
                    "steps": self.plan.steps,
                    "eval_every": self.plan.eval_every,
                    "record_every_step_up_to": self.plan.record_every_step_up_to,
                    "record_log_points": self.plan.record_log_points,
                    "keep_checkpoints": self.plan.keep_checkpoints,
                },
                "llc": self.llc_cfg,
                "fit": self.fit_cfg,
                "stages": ["train", "llc", "fit"],
                "run_id": None,
                "sweep": self.sweep,
                "tracking": self.where,
                "device": self.device,
            }
        )

    def close(self) -> dict:
        """Estimate λ, fit α and log the run (once); returns what fit.json holds."""
        if self.closed:
            return self.result
        last = self.recorder.last
        if last is None:
            raise UserError(
                "the monitor saw no step: call monitor.step(step, loss) after each optimizer step"
            )
        self.closed = True
        self._end_early(last)
        train_s = time.perf_counter() - self.start
        try:
            tracker, cfg = self._open()
            member = Member(self.seed, cfg, self.run_id)
            self._record_train(tracker, cfg, last)
            self._done(tracker, "train", train_s)
            t0 = time.perf_counter()
            if not self.online:
                self._estimate(tracker, cfg, member)
            self.llc = tracker.load_table(self.run_id, names.LLC)
            self._done(tracker, "llc", time.perf_counter() - t0)
            t0 = time.perf_counter()
            self.result = fit_stage.fit_run(cfg, tracker, self.run_id)
            self._done(tracker, "fit", time.perf_counter() - t0)
            tracker.log_summary(
                self.run_id,
                {
                    names.TRACKING_SECONDS: tracker.seconds,
                    names.TRACKING_SHARE: tracker.seconds / (time.perf_counter() - self.start),
                    names.TRACKING_RETRIES: tracker.retries,
                },
            )
            tracker.finish(self.run_id)
            report.describe(tracker, [member], cfg)
            self.report = report.run(tracker, self.run_id)
        except BaseException as e:
            if self.run_id is not None:
                self._failed(self.tracker, e)
            raise
        finally:
            self.folder.cleanup()
        return self.result

    def _end_early(self, last: int) -> None:
        """A loop that stopped before `steps`: its last step recorded, evaluated and kept, as a
        phase that ends a run early is."""
        if last == self.plan.steps:
            return
        if not self.recorder.core.wants(last):
            self.recorder.core.record(last, self.loss)
        if not self.evals or self.evals[-1]["step"] != last:
            self.evals.append(self._evaluate(last, self.loss))
        self._checkpoint(last)

    def _open(self) -> tuple[Tracker, DictConfig]:
        """The run, with the tags, params and config.yaml a launch.py job gives its run."""
        tracker = self.tracker = Tracker(self.where["uri"], self.where["experiment"])
        cfg = self.config()
        tags = {
            **run_tags(cfg, self.sweep, False, provenance()),
            **relaunch.owner_tags(),
            names.SOURCE: "pipeline.api.Monitor",
        }
        self.run_id = tracker.start_run(self.name, tags)
        tracker.log_params(self.run_id, hashes.params(cfg))
        tracker.log_text(self.run_id, OmegaConf.to_yaml(cfg, resolve=True), names.CONFIG)
        return tracker, cfg

    def _record_train(self, tracker: Tracker, cfg: DictConfig, last: int) -> None:
        """What the train stage records: trajectory, evaluations, checkpoints, the data, the sizes."""
        run_id = self.run_id
        self.trajectory = self.recorder.table()
        train_stage.record_data(tracker, run_id, cfg, self.data)
        train_stage.log_records(tracker, run_id, self.trajectory, self.evals)
        sizes = {
            "num_params": num_params(self.model),
            "num_weights": num_weights(self.model),
            "total_steps": last,
        }
        tracker.log_summary(run_id, sizes | ({"avg_lr": self.lr_sum / last} if self.optimizer else {}))
        if self.rows:
            llc_stage.record(tracker, run_id, self.rows, cfg, self.settings)
        tracker.log_dir(run_id, self.checkpoints, names.CHECKPOINTS)
        if self.evals:
            tracker.log_summary(
                run_id, train_stage.summarize_evals(pd.DataFrame(self.evals), int(cfg.llc.last))
            )

    def _estimate(self, tracker: Tracker, cfg: DictConfig, member: Member) -> None:
        """What the llc stage does: the calibration, then λ at every kept λ step, recorded."""
        every = int(cfg.llc.every)
        kept = [(names.checkpoint_step(f.name), f) for f in names.checkpoint_files(self.checkpoints)]
        chosen = [(s, f) for s, f in kept if s > 0 and s % every == 0]
        if not chosen:
            raise UserError(
                f"the loop took {self.recorder.last} steps, fewer than every={every}: lower every"
            )
        model = copy.deepcopy(self.model)
        method = llc.method_for(cfg.llc.method, self.task)
        tracker.set_tags(self.run_id, {names.LLC_METHOD: method})
        settings = self.settings
        if Search.of(cfg.llc.get("calibration")).enabled:
            ctx = Context(cfg, tracker, self.data)
            settings = calibrate.automatic(ctx, [member], kept, self.data, model, self.task, settings)
        load = lambda f: inputs.load_checkpoint(self.run_id, f, self.device)  # noqa: E731
        work = [(settings.seed, s, f) for s, f in chosen]
        rows = estimates(
            work, model, self.data, self.task, method, settings, self.device, cfg.llc.max_stacked, load
        )
        llc_stage.record(tracker, self.run_id, rows, cfg, settings)
        if all(r["status"] != "ok" for r in rows):
            raise UserError(llc_stage.all_failed(rows, settings))

    def _done(self, tracker: Tracker, stage: str, seconds: float) -> None:
        tracker.log_summary(self.run_id, {names.stage_seconds(stage): seconds})
        tracker.set_tags(self.run_id, {names.stage_tag(stage): "done"})

    def _failed(self, tracker: Tracker, e: BaseException) -> None:
        """The failure policy of a job: FAILED with its reason (KILLED when interrupted), the
        traceback as error.txt for an error that is not bad input."""
        why = interruption(e)
        if why is not None:
            tracker.kill(self.run_id, why)
            return
        tracker.fail(self.run_id, f"{type(e).__name__}: {e}")
        if not isinstance(e, UserError | Diverged):
            tracker.log_text(self.run_id, "".join(traceback.format_exception(e)), names.ERROR)

    def _abandon(self, error: BaseException) -> None:
        """The loop raised: what was recorded goes to a run marked FAILED (nothing when no step ran);
        the loop's own error is the one that propagates, whatever happens here."""
        self.closed = True
        try:
            if self.recorder.last is not None:
                tracker, cfg = self._open()
                self._record_train(tracker, cfg, self.recorder.last)
        except Exception as e:
            print(f"could not record the failed run: {type(e).__name__}: {e}", file=sys.stderr)
        finally:
            if self.run_id is not None:
                self._failed(self.tracker, error)
            self.folder.cleanup()
