"""The batched ensemble: each member is its one-by-one train-stage twin."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.config import build, checks, members
from pipeline.errors import UserError
from pipeline.slt import llc
from pipeline.slt.stacked import Stacked
from pipeline.stages.ensemble import member_llc
from pipeline.training import ensemble
from tests.helpers.jobs import execute


def train_ensemble(cfg, data, seeds):
    """The ensemble stage's training: one stacked model per seed, the run config's optimizer."""
    steps = checks.check_with_data(cfg, data.n_train, data.steps_per_epoch)
    stacked, optimizer, plan = build.ensemble(cfg, data, seeds, steps)
    return ensemble.train(stacked, optimizer, build.task(cfg), data, seeds, plan, "cpu")


# Training only (2 λ steps: too few for a fit, which these tests do not run).
MOONS = [
    "dataset=moons",
    "model.hidden=[16,16]",
    "batch=32",
    "train.steps=40",
    "llc.every=20",
    "stages=[train]",
]


@pytest.mark.parametrize("optimizer,batch_norm", [("sgd", False), ("adam", False), ("sgd", True)])
def test_member_matches_its_one_by_one_twin(tiny_cfg, optimizer, batch_norm) -> None:
    lr = "lr=0.05" if optimizer == "sgd" else "lr=0.01"
    point = [*MOONS, f"optimizer={optimizer}", lr, "seed=5", "optimizer.weight_decay=0.01"]
    point.append(f"model.batch_norm={batch_norm}")
    cfg = tiny_cfg(*point)
    data = build.data(cfg)
    trained = train_ensemble(cfg, data, seeds=[3, 5, 11])

    tracker, run_id, _ = execute(tiny_cfg(*point, "stages=[train]"))
    twin_traj = tracker.load_table(run_id, "trajectory")
    ckpt = tracker.download_dir(run_id, "checkpoints/step_00000040.pt", None)
    twin_w = torch.load(ckpt)

    member = trained.stacked.state_dict_of(1)  # seed 5
    assert set(member) == set(twin_w)
    for k, v in twin_w.items():  # batch norm's running statistics included
        assert torch.allclose(member[k].to(v.dtype), v, atol=1e-6, rtol=1e-5), k
    # Other seeds really are other members.
    assert not torch.allclose(trained.stacked.state_dict_of(0)["net.0.weight"], twin_w["net.0.weight"])

    mine = trained.trajectory[trained.trajectory["seed"] == 5].reset_index(drop=True)
    assert mine["step"].tolist() == twin_traj["step"].tolist() == list(range(1, 41))
    np.testing.assert_allclose(mine["displacement"], twin_traj["displacement"], rtol=1e-5)
    np.testing.assert_allclose(mine["train_batch_loss"], twin_traj["train_batch_loss"], rtol=1e-4)
    cols = [c for c in twin_traj if c.startswith("displacement/")]
    np.testing.assert_allclose(mine[cols], twin_traj[cols], rtol=1e-5, atol=1e-7)
    groups = [c for c in twin_traj if c.startswith("displacement_group/")]  # the same coordinates in each
    assert len(groups) == 32
    np.testing.assert_allclose(mine[groups], twin_traj[groups], rtol=1e-4, atol=1e-9)

    # λ per member is the llc stage's estimate of the twin at that step (same seed, same settings).
    twin = build.model(cfg, data)
    twin.load_state_dict(twin_w)
    one_by_one = llc.estimate(twin, data, cfg.llc, 40, "cpu")["llc"]
    batched = member_llc(trained.stacked.select([1]), [5], data, cfg.llc, 40, "cpu")
    assert batched["llc"].iloc[0] == pytest.approx(one_by_one, rel=1e-3, abs=1e-4)
    # devinterp's sampler on the stacked ensemble: one member alone is llc.estimate's value.
    task = build.task(cfg)
    stacked = llc.estimate_members(trained.stacked.select([1]), data, cfg.llc, 40, "cpu", task)
    assert stacked["llc_batch_init"].iloc[0] == pytest.approx(one_by_one, rel=1e-3, abs=1e-4)
    # The reported λ takes the loss at w_t on the whole training set (eq. 25) instead of one batch.
    full = F.cross_entropy(trained.stacked.member_model(1)(data.x_train), data.y_train).item()
    shift = stacked["nbeta"].iloc[0] * (stacked["init_loss_batch"].iloc[0] - full)
    assert stacked["init_loss"].iloc[0] == pytest.approx(full, rel=1e-5)
    assert stacked["llc"].iloc[0] == pytest.approx(one_by_one + shift, rel=1e-3, abs=1e-4)
    all_three = llc.estimate_members(trained.stacked, data, cfg.llc, 40, "cpu", task)
    assert (all_three["status"] == "ok").all() and np.isfinite(all_three["llc"]).all()
    assert all_three["init_loss"].iloc[1] == pytest.approx(stacked["init_loss"].iloc[0], rel=1e-5)

    evals = tracker.load_table(run_id, "evals")
    e = trained.evals[trained.evals["seed"] == 5].reset_index(drop=True)
    assert e["step"].tolist() == evals["step"].tolist() == [20, 40]
    np.testing.assert_allclose(e["test_acc"], evals["test_acc"])
    np.testing.assert_allclose(e["train_loss"], evals["train_loss"], rtol=1e-5)


def test_member_module_is_a_standalone_copy(tiny_cfg) -> None:
    cfg = tiny_cfg(*MOONS)
    data = build.data(cfg)
    ens = Stacked.from_models(build.models(cfg, data, [0, 1]))
    m = ens.member_model(1)
    x = data.x_test[:7]
    assert torch.allclose(m(x), ens(x, shared=True)[1], atol=1e-6)
    with torch.no_grad():
        m.net[0].weight.zero_()
    assert ens.params["net.0.weight"][1].abs().sum() > 0


def test_bad_ensemble_settings_are_one_line(tiny_cfg) -> None:
    cfg = tiny_cfg(*MOONS, "+ensemble.members=3", "+ensemble.first_seed=7")
    assert members.ensemble_seeds(cfg) == [7, 8, 9]
    with pytest.raises(UserError, match="distinct"):
        members.ensemble_seeds(tiny_cfg(*MOONS, "+ensemble.seeds=[1,1]", "+ensemble.members=2"))
    with pytest.raises(UserError, match="elementwise"):
        members.check_elementwise(tiny_cfg(*MOONS, "optimizer._target_=torch.optim.LBFGS"))
