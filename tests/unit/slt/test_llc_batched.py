"""The batched llc path: devinterp's sampler on stacked checkpoints gives each one the estimate the
serial path gives it, up to the Gaussian noise; the in-memory batches are DataLoader's exactly."""

from itertools import islice

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from pipeline.config import build
from pipeline.data.batches import MemberBatches
from pipeline.errors import UserError
from pipeline.models.tasks import CausalLM, Classification
from pipeline.slt import llc
from pipeline.slt.llc import estimate, estimate_many, stacked_groups
from pipeline.slt.stacked import Stacked
from tests.helpers.jobs import execute


def _labels(batches) -> list[list[int]]:
    return [y.tolist() for _, y in batches]


@pytest.mark.parametrize("n,batch", [(103, 10), (100, 10), (898, 64), (5, 8)])
def test_member_batches_are_dataloader_batches(n: int, batch: int) -> None:
    x, y = torch.randn(n, 3), torch.arange(n)
    loader = DataLoader(
        TensorDataset(x, y), batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(7)
    )
    ours = MemberBatches(x, y, batch, 7)
    assert len(ours) == len(loader)
    # A pass abandoned after one batch (devinterp's init loss), then whole passes (its cycle()).
    expected = _labels(islice(loader, 1)) + [b for _ in range(3) for b in _labels(loader)]
    got = _labels(islice(ours, 1)) + [b for _ in range(3) for b in _labels(ours)]
    assert got == expected
    first_x = next(iter(MemberBatches(x, y, batch, 7)))[0]
    assert torch.equal(first_x, x[expected[0]])


def test_each_member_gets_its_own_seeds_stream() -> None:
    x, y = torch.randn(50, 2), torch.arange(50)
    both = MemberBatches(x, y, 8, [3, 4])
    xs, ys = next(iter(both))
    assert xs.shape == (2, 8, 2) and ys.shape == (2, 8)
    for i, seed in enumerate([3, 4]):
        assert ys[i].tolist() == next(iter(MemberBatches(x, y, 8, seed)))[1].tolist()


def _checkpoints(cfg, steps: list[int]):
    """Weights of the tiny model at `steps` of a plain SGD run (the train stage's data order)."""
    data = build.data(cfg)
    model = build.model(cfg, data)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen, step, states = torch.Generator().manual_seed(0), 0, []
    while step < max(steps):
        for xb, yb in data.epoch(gen):
            step += 1
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
            if step in steps:
                states.append({k: v.clone() for k, v in model.state_dict().items()})
            if step == max(steps):
                break
    return data, model, states


@pytest.mark.parametrize("sampler", ["sgld", "rmsprop_sgld", "underdamped"])
def test_one_member_is_the_serial_estimate(tiny_cfg, sampler: str) -> None:
    cfg = tiny_cfg(f"llc.sampler={sampler}")
    data, model, (state,) = _checkpoints(cfg, [60])
    task = build.task(cfg)
    (batched,) = estimate_many(model, [state], data, cfg.llc, [60], "cpu", task)
    model.load_state_dict(state)
    serial = estimate(model, data, cfg.llc, 60, "cpu", task.sgld_loss)
    # Same minibatches, same loss at w_t, and with one member the same noise draw: the same chain.
    assert batched["init_loss"] == pytest.approx(serial["init_loss"], rel=1e-6)
    np.testing.assert_allclose(batched["trace"], serial["trace"], rtol=1e-4, atol=1e-6)
    assert batched["llc"] == pytest.approx(serial["llc"], rel=1e-3, abs=1e-4)
    assert batched["status"] == serial["status"] == "ok"
    assert set(batched) == set(serial)


def test_many_members_match_serial_paired(tiny_cfg) -> None:
    """16 estimates at one checkpoint with 16 sampler seeds, batched and serial, paired seed by seed:
    the same minibatches and loss at w_t, only the Gaussian noise differs. The paired differences
    carry no minibatch noise, so their spread is well under the spread of either side, and their
    mean is held to a fixed band of the serial λ (10 %: a 20 % bias fails it whatever the spread),
    not only to its own standard error (a noisier sampler would widen that band for itself)."""
    cfg = tiny_cfg("llc.num_draws=100", "llc.lr=1e-3")  # a step that moves: λ well away from 0
    data, model, (state,) = _checkpoints(cfg, [90])
    task = build.task(cfg)
    seeds = list(range(16))
    batched = estimate_many(model, [state] * 16, data, cfg.llc, [90] * 16, "cpu", task, seeds=seeds)
    model.load_state_dict(state)
    serial = []
    for s in seeds:
        cfg.llc.seed = s
        serial.append(estimate(model, data, cfg.llc, 90, "cpu", task.sgld_loss))
    np.testing.assert_allclose([r["init_loss"] for r in batched], [r["init_loss"] for r in serial], rtol=1e-5)
    a, b = np.array([r["llc"] for r in batched]), np.array([r["llc"] for r in serial])
    assert len(set(np.round(a, 6))) == 16  # independent noise per member
    d = a - b
    print(
        f"\nbatched {a.mean():.4f} ± {a.std(ddof=1):.4f}, serial {b.mean():.4f} ± {b.std(ddof=1):.4f}, "
        f"paired difference {d.mean():+.4f} ± {d.std(ddof=1):.4f}"
    )
    assert d.std(ddof=1) < 0.75 * b.std(ddof=1)  # pairing removes the minibatch part of the noise
    assert abs(d.mean()) <= 3 * d.std(ddof=1) / np.sqrt(len(d))
    assert abs(d.mean()) <= 0.1 * abs(b.mean())


def test_a_diverging_member_fails_alone(tiny_cfg) -> None:
    cfg = tiny_cfg()
    data, model, (s30, s60) = _checkpoints(cfg, [30, 60])
    broken = {k: v * 1e30 if k.endswith("weight") else v for k, v in s60.items()}
    rows = estimate_many(model, [s30, broken, s60], data, cfg.llc, [30, 60, 60], "cpu", build.task(cfg))
    assert [r["status"] for r in rows][0] == rows[2]["status"] == "ok"
    assert rows[1]["status"].startswith("failed: NaN detected in loss at chain 0, draw")
    assert np.isnan(rows[1]["llc"]) and rows[1]["trace"] is None and np.isfinite(rows[2]["llc"])


def test_stacked_members_are_their_checkpoints(tiny_cfg) -> None:
    cfg = tiny_cfg("model.batch_norm=true")
    data, model, states = _checkpoints(cfg, [30, 60])
    stacked = Stacked.from_states(model, states).eval()
    out = stacked(torch.stack([data.x_train[:5]] * 2))
    for i, state in enumerate(states):
        model.load_state_dict(state)
        assert torch.allclose(out[i], model.eval()(data.x_train[:5]), atol=1e-5)
        for k, v in stacked.state_dict_of(i).items():
            assert torch.equal(v, state[k]), k


def test_groups_bound_the_stacked_parameters() -> None:
    assert stacked_groups(37, 17_226, 20_000_000) == [range(0, 37)]
    assert stacked_groups(5, 1000, 2500) == [range(0, 2), range(2, 4), range(4, 5)]
    assert stacked_groups(3, 10**8, 10) == [range(0, 1), range(1, 2), range(2, 3)]  # one at least


def test_stage_batched_and_serial(tiny_cfg) -> None:
    tracker, run_id, _ = execute(tiny_cfg())
    assert tracker.get_run(run_id).tags["llc.method"] == "batched"
    batched = tracker.load_table(run_id, "llc")
    assert batched["step"].tolist() == [30, 60, 90] and (batched["status"] == "ok").all()
    traces = tracker.load_table(run_id, "llc_traces")
    assert len(traces) == 3 * 20  # steps x draws (one chain)
    # The same checkpoints re-estimated serially: same loss at w_t (same batches), other noise.
    _, _, _ = execute(tiny_cfg("stages=[llc]", "llc.method=serial", f"run_id={run_id}"))
    serial = tracker.load_table(run_id, "llc")
    assert tracker.get_run(run_id).tags["llc.method"] == "serial"
    np.testing.assert_allclose(batched["init_loss"], serial["init_loss"], rtol=1e-5)
    # The first estimate of a batched pass shares its seed with the serial one; the others do not.
    assert batched["llc"].iloc[1:].tolist() != serial["llc"].iloc[1:].tolist()


def test_language_models_are_estimated_serially() -> None:
    assert llc.method_for("batched", Classification()) == "batched"
    assert llc.method_for("batched", CausalLM()) == "serial"
    with pytest.raises(UserError, match="llc.method=vmap: choose batched or serial"):
        llc.method_for("vmap", Classification())
