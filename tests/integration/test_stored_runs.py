"""Runs stored before the role-folder layout keep working: the configs they hold (`tests/fixtures/stored`,
each a `config.yaml` as main wrote it then) name objects by their old modules, and those names still
resolve to the same objects; a stage re-run reads such a config back and rebuilds data and model."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from pipeline.config import build
from pipeline.stages import inputs
from pipeline.tracking import Tracker, names
from tests.helpers.cli import launch
from tests.helpers.config import ROOT, TINY

STORED = sorted((ROOT / "tests" / "fixtures" / "stored").glob("*.yaml"))
EXPERIMENT = "stored"


def targets(node) -> set[str]:
    """Every `_target_` in a config, at any depth."""
    if isinstance(node, DictConfig):
        found = {str(node._target_)} if "_target_" in node else set()
        return found | {t for k in node for t in targets(node._get_node(k))}
    return set()


@pytest.mark.parametrize("path", STORED, ids=[p.stem for p in STORED])
def test_every_target_a_stored_config_names_resolves(path: Path) -> None:
    cfg = OmegaConf.load(path)
    found = targets(cfg)
    assert found and all(callable(get_object(t)) for t in found)


@pytest.mark.parametrize("name", ["digits_mlp", "modular_division", "moons_ensemble"])
def test_a_stored_config_rebuilds_its_data_and_model(name: str) -> None:
    cfg = OmegaConf.load(ROOT / "tests" / "fixtures" / "stored" / f"{name}.yaml")
    data = build.data(cfg)
    model = build.model(cfg, data)
    out = model(data.x_train[:3])
    assert out.shape == (3, data.num_classes)
    assert build.task(cfg).loss(out, data.y_train[:3]).isfinite()


def test_stage_reruns_on_a_run_holding_a_stored_config(tmp_path: Path, store: str) -> None:
    """A run trained now with the stored config's training settings, its config.yaml replaced by the
    stored one; `stages=[fit]` and `stages=[llc,fit]` re-run on it and give the run's own numbers."""
    common = [*TINY, f"tracking.uri={store}", f"tracking.experiment={EXPERIMENT}"]
    first = launch(common, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    tracker = Tracker(store, EXPERIMENT)
    (run,) = tracker.find_runs({})
    stored = (ROOT / "tests" / "fixtures" / "stored" / "digits_mlp.yaml").read_text()
    tracker.log_text(run.run_id, stored, names.CONFIG)
    assert inputs.trained_config(tracker, run.run_id).dataset._target_ == "pipeline.data.digits"

    for stages in ("[fit]", "[llc,fit]"):
        res = launch([*common, f"stages={stages}", f"run_id={run.run_id}"], cwd=tmp_path)
        assert res.returncode == 0, res.stderr[-3000:]
        after = tracker.get_run(run.run_id)
        assert after.status == "FINISHED" and after.tags[names.stage_tag("fit")] == "done"
        # The stored config holds the same training settings: the same checkpoints, λ and α.
        for key in ("lambda_final", "lambda_bar", "alpha", "d_s"):
            assert after.metrics[key] == run.metrics[key], (stages, key)
    assert len(tracker.find_runs({})) == 1
