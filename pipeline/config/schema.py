"""The types of the config's values, as dataclass schemas in Hydra's ConfigStore (values stay in YAML).

`conf/config.yaml` starts its defaults list with `schema`, so Hydra checks every value below when it
composes the config (`lr=abc` is refused; a value keeps the type it was given, `Leaf`). A block is
typed leaf by leaf but stays open: experiments add keys (`train.phases`, `fit.phase`, `ensemble`)
and the schema adds none of its own, so a config holds exactly what the YAML says and the config
hash of a stored run is what it was. The command-line pre-check (`pipeline.config.overrides`) reads
the same schema to say in one line what Hydra would refuse. The llc and fit blocks are the
estimator's and the fit's own settings (`pipeline.slt.settings`) plus what the stages add.
`${runtime_keys:}` (Hydra's `override_dirname.exclude_keys`) lists the runtime keys' overrides, so
run names leave them out.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.base import Metadata
from omegaconf.errors import ValidationError
from omegaconf.nodes import ValueNode

from pipeline.slt.settings import Settings, Window
from pipeline.tracking import names


def example(value: str) -> dict:
    """Field metadata: a value to show in a message about the field (else its default in YAML)."""
    return {"example": value}


@dataclass
class Train:
    """The training run's length and what it records."""

    epochs: int = 250
    steps: int | None = field(default=None, metadata=example("1000"))
    eval_every: int = field(default=100, metadata=example("100"))
    record_every_step_up_to: int = 20_000
    record_log_points: int = 500
    keep_checkpoints: bool = True


@dataclass(frozen=True)
class LLC(Settings):
    """The llc stage: the estimator's settings, and when and how it runs."""

    every: int = 100
    online: bool = False
    last: int = 10
    method: str = "batched"
    max_stacked: int = 20_000_000
    calibration: Any = None  # the automatic calibration (`slt.settings.Search`), checked by `checks`


@dataclass(frozen=True)
class Fit(Window):
    """The fit stage's window and bootstrap, and whether it draws the run's own figures."""

    figures: bool = True


@dataclass
class Calibrate:
    """The calibrate stage (its grids, lists, are checked by `checks.check_calibrate`)."""

    step: int | None = None
    lr: Any = None
    localization: Any = None
    nbeta_factor: Any = None
    num_draws: int | None = field(default=None, metadata=example("400"))
    num_chains: int | None = 4


@dataclass
class Tracking:
    """Where runs go."""

    uri: Any = None  # checked, with the store, by `pipeline.tracking.store`
    experiment: Any = "almost-bayesian"
    max_wait_s: float = 300.0


@dataclass
class Resume:
    """The re-launch rules' settings."""

    enabled: bool = True
    every_s: float = 120.0
    stale_after_s: float = 900.0


@dataclass
class Job:
    """The top level of the config."""

    lr: float = field(default=0.1, metadata=example("1e-2"))
    batch: int = 64
    seed: int = 0
    seeds: Any = None  # null, a number or a list: checked by `members.seeds_of`
    stages: Any = None  # a list: checked by `checks.check`
    run_id: Any = None  # a run id or a sweep name typed as digits stays what it was typed as
    sweep: Any = None
    reproduces: Any = None  # the paper's tables an experiment reproduces (the analysis' scorecard)
    device: str = "cpu"
    threads: int | None = field(default=None, metadata=example("1"))
    progress: bool | None = field(default=None, metadata=example("false"))
    train: Train = field(default_factory=Train)
    llc: LLC = field(default_factory=LLC)
    fit: Fit = field(default_factory=Fit)
    calibrate: Calibrate = field(default_factory=Calibrate)
    tracking: Tracking = field(default_factory=Tracking)
    resume: Resume = field(default_factory=Resume)


class Leaf(ValueNode):
    """A typed leaf that keeps a value as it is given: `lr=1` stays the integer 1 and `1e4` for an
    integer key stays 10000.0, so the params and config hash a run records are what they always
    were; OmegaConf's own nodes would convert them (and take `yes` for true)."""

    kind = ""  # as a message names the type
    python: type = object  # the type OmegaConf is told the value has

    def __init__(
        self, value: Any = MISSING, key: Any = None, parent=None, is_optional: bool = True, flags=None
    ) -> None:
        metadata = Metadata(
            key=key, optional=is_optional, ref_type=self.python, object_type=self.python, flags=flags
        )
        super().__init__(parent=parent, value=value, metadata=metadata)

    @staticmethod
    def accepts(value: object) -> bool:
        raise NotImplementedError

    def _validate_and_convert_impl(self, value: Any) -> Any:
        if not self.accepts(value):
            raise ValidationError(f"Value '$VALUE' of type '$VALUE_TYPE' is not {self.kind}")
        return value

    def __deepcopy__(self, memo: dict) -> Leaf:
        copied = type(self)()
        self._deepcopy_impl(copied, memo)
        return copied


class Integer(Leaf):
    kind, python = "an integer", int

    @staticmethod
    def accepts(value: object) -> bool:  # True is an int to Python, not to a user; 1e4 is one
        return not isinstance(value, bool) and (
            isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        )


class Number(Leaf):
    kind, python = "a number", float

    @staticmethod
    def accepts(value: object) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)


class Boolean(Leaf):
    kind, python = "true or false", bool

    @staticmethod
    def accepts(value: object) -> bool:
        return isinstance(value, bool)


class Name(Leaf):
    kind, python = "a name", str

    @staticmethod
    def accepts(value: object) -> bool:
        return isinstance(value, str)


_NODES: dict[type, type[Leaf]] = {int: Integer, float: Number, bool: Boolean, str: Name}


def _leaf(annotation: object) -> tuple[type | None, bool]:
    """(the leaf's type, whether null is allowed); type None for an untyped leaf (Any)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 and args[0] in _NODES else None), True
    return (annotation if annotation in _NODES else None), False


def open_node(schema: type) -> DictConfig:
    """The dataclass's fields as typed leaves (values MISSING, to be set by YAML) of an untyped node;
    nested dataclasses alike. Untyped fields are left out: the node takes any key the YAML has."""
    hints = typing.get_type_hints(schema)
    items: dict[str, object] = {}
    for f in dataclasses.fields(schema):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            items[f.name] = open_node(kind)
            continue
        leaf, optional = _leaf(kind)
        if leaf is not None:
            items[f.name] = _NODES[leaf](MISSING, is_optional=optional)
    return OmegaConf.create(items)


def examples(schema: type = Job, prefix: str = "") -> dict[str, str]:
    """`key: example` for the fields whose metadata names one (dotted keys)."""
    hints = typing.get_type_hints(schema)
    out: dict[str, str] = {}
    for f in dataclasses.fields(schema):
        if dataclasses.is_dataclass(hints[f.name]):
            out |= examples(hints[f.name], f"{prefix}{f.name}.")
        elif "example" in f.metadata:
            out[f"{prefix}{f.name}"] = f.metadata["example"]
    return out


def typed_leaf(cfg: DictConfig, key: str) -> Leaf | None:
    """The typed leaf at dotted `key` of a composed config, or None (an untyped or absent key)."""
    node: object = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return None
        node = node._get_node(part)
    return node if isinstance(node, Leaf) else None


def refuses(leaf: Leaf, value: object) -> bool:
    """Whether Hydra would refuse `value` for `leaf` when it composes (interpolations pass)."""
    trial = type(leaf)(MISSING, is_optional=leaf._is_optional())
    try:
        trial._set_value(value)
    except Exception:
        return True
    return False


def runtime_overrides() -> list[str]:
    """Every key of `names.RUNTIME_KEYS` as a command line overrides it (`tracking.uri`, ...)."""
    hints = typing.get_type_hints(Job)
    keys = []
    for key in names.RUNTIME_KEYS:
        block = hints[key]
        keys += (
            [f"{key}.{f.name}" for f in dataclasses.fields(block)]
            if dataclasses.is_dataclass(block)
            else [key]
        )
    return keys


def register() -> None:
    """Put the schema in Hydra's ConfigStore as `schema` (the first entry of the defaults list), and
    the resolver `${runtime_keys:extra,...}`: the runtime keys' overrides and the extra keys."""
    ConfigStore.instance().store(name="schema", node=open_node(Job))
    OmegaConf.register_new_resolver(
        "runtime_keys", lambda *extra: [*runtime_overrides(), *extra], replace=True
    )


register()
