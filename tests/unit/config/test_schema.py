"""The schema types the config where the YAML holds the values: the two agree, Hydra enforces the
types when it composes, and the names configs give their objects resolve, stored runs' old names too."""

from __future__ import annotations

import dataclasses
import importlib
import typing

import pytest
from hydra.utils import get_object
from omegaconf import OmegaConf

from pipeline import RENAMED
from pipeline.config import schema
from pipeline.tracking import names
from tests.helpers.config import ROOT, compose_cfg


def typed_defaults(cls: type = schema.Job, prefix: str = "") -> dict[str, object]:
    """`key: default` of every typed leaf of the schema (dotted keys)."""
    hints = typing.get_type_hints(cls)
    out: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            out |= typed_defaults(kind, f"{prefix}{f.name}.")
        elif schema._leaf(kind)[0] is not None:
            out[f"{prefix}{f.name}"] = (
                f.default if f.default is not dataclasses.MISSING else f.default_factory()
            )
    return out


def test_the_schema_defaults_are_the_default_configs_values() -> None:
    """The schema's defaults are the default config's values, the llc block's those of Table 3
    (`llc=paper`, the settings' dataclass defaults); the calibrated preset sets every typed key too."""
    cfg = compose_cfg(["llc=paper"])
    assert OmegaConf.missing_keys(cfg) == set()  # the YAML sets every typed key
    assert OmegaConf.missing_keys(compose_cfg()) == set()
    defaults = typed_defaults()
    assert len(defaults) > 40
    assert {k: OmegaConf.select(cfg, k) for k in defaults} == defaults


def test_the_schema_adds_no_keys_of_its_own() -> None:
    """An open schema: the composed config holds exactly the YAML's keys (a stored run's config
    hash is what it was), and an experiment may add keys to a typed block."""
    cfg = compose_cfg(["+experiment=tinyimagenet_finetune_cpu"])
    assert "phases" in cfg.train and cfg.fit.phase == "sgd"
    assert "phases" not in compose_cfg().train


def test_a_value_keeps_the_type_it_was_given() -> None:
    """What a run records (its params, its config hash) is the value as typed, not a conversion."""
    cfg = compose_cfg(["lr=1", "llc.localization=10", "train.steps=1e4"])
    assert (cfg.lr, cfg.llc.localization, cfg.train.steps) == (1, 10, 10000.0)
    assert isinstance(cfg.lr, int) and isinstance(cfg.train.steps, float)
    assert compose_cfg().resume.every_s == 120 and isinstance(compose_cfg().resume.every_s, int)


def test_run_names_leave_out_every_runtime_key() -> None:
    keys = schema.runtime_overrides()
    assert {k.split(".")[0] for k in keys} == set(names.RUNTIME_KEYS)
    assert {"tracking.uri", "tracking.max_wait_s", "resume.stale_after_s", "seeds"} <= set(keys)
    hydra_cfg = compose_cfg(hydra=True)
    ablation = compose_cfg(["+experiment=ablation_digits"], hydra=True)
    assert list(hydra_cfg.hydra.job.config.override_dirname.exclude_keys) == keys
    assert list(ablation.hydra.job.config.override_dirname.exclude_keys) == [*keys, "experiment"]


def conf_targets() -> set[str]:
    found = set()
    for path in (ROOT / "conf").rglob("*.yaml"):
        found |= {
            line.split("_target_:")[1].split("#")[0].strip()
            for line in path.read_text().splitlines()
            if "_target_:" in line
        }
    return found


@pytest.mark.parametrize("target", sorted(conf_targets()))
def test_every_target_a_config_names_resolves(target: str) -> None:
    assert callable(get_object(target))


@pytest.mark.parametrize("old", sorted(RENAMED))
def test_old_module_names_are_their_new_homes(old: str) -> None:
    module = importlib.import_module(old)
    for home in RENAMED[old]:
        new = importlib.import_module(home)
        public = [
            n
            for n in dir(new)
            if not n.startswith("_") and getattr(getattr(new, n), "__module__", None) == home
        ]
        assert public, home
        assert all(getattr(module, n) is getattr(new, n) for n in public)
    with pytest.raises(AttributeError, match="no attribute"):
        module.no_such_name  # noqa: B018
