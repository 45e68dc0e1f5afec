"""R(t) from the recorder equals ||w_t - w_0|| computed directly; the schedule is what it says."""

import numpy as np
import pytest
import torch

from pipeline.models import MLP
from pipeline.slt.displacement import GROUPS, DisplacementRecorder, group_sums, record_schedule


def test_schedule_every_step_for_short_runs() -> None:
    s = record_schedule(300, every_step_up_to=1000, log_points=50, extra=[100, 200])
    assert np.array_equal(s, np.arange(1, 301))


def test_schedule_log_spaced_for_long_runs_keeps_llc_steps() -> None:
    llc_steps = range(1000, 1_000_001, 1000)
    s = record_schedule(1_000_000, every_step_up_to=20_000, log_points=500, extra=llc_steps)
    assert s[0] == 1 and s[-1] == 1_000_000
    assert set(llc_steps) <= set(s.tolist())
    assert np.all(np.diff(s) > 0)
    log_only = record_schedule(1_000_000, every_step_up_to=20_000, log_points=500)
    assert len(log_only) >= 200
    late = log_only[log_only > 100]  # past the integer rounding, a constant ratio
    ratios = late[1:] / late[:-1]
    assert ratios.max() / ratios.min() < 1.2


def test_recorder_matches_direct_norms() -> None:
    torch.manual_seed(0)
    model = MLP(4, 3, hidden=[5], batch_norm=True)
    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    rec = DisplacementRecorder(model, np.array([1, 2]))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in (1, 2):
        loss = model(torch.randn(8, 4)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        rec.record(step, loss)
    table = rec.table()
    total = torch.sqrt(sum(((p - w0[n]) ** 2).sum() for n, p in model.named_parameters()))
    assert np.isclose(table["displacement"].iloc[-1], total.item(), rtol=1e-6)
    for n, p in model.named_parameters():
        assert np.isclose(table[f"displacement/{n}"].iloc[-1], (p - w0[n]).norm().item(), rtol=1e-6)
    per_tensor = table.filter(like="displacement/").iloc[-1].to_numpy()
    assert np.isclose(np.sqrt((per_tensor**2).sum()), table["displacement"].iloc[-1])


def test_a_step_off_the_schedule_gets_its_own_row() -> None:
    """A phased run that ends early records its last step even when the schedule skipped it."""
    model = torch.nn.Linear(2, 1)
    rec = DisplacementRecorder(model, np.array([1, 10, 100]))
    with torch.no_grad():
        model.weight.add_(3.0)
    rec.record(10, torch.tensor(0.5))
    with torch.no_grad():
        model.bias.add_(4.0)
    rec.record(37, torch.tensor(0.25))
    t = rec.table(upto=37)
    assert t["step"].tolist() == [1, 10, 37]
    assert t["displacement"].iloc[1] == pytest.approx(np.sqrt(2 * 9.0))
    assert t["displacement"].iloc[2] == pytest.approx(np.sqrt(2 * 9.0 + 16.0))
    assert t["train_batch_loss"].iloc[2] == pytest.approx(0.25) and np.isnan(t["displacement"].iloc[0])


def test_displacement_metric_keeps_evaluations_and_log_spaced_steps() -> None:
    from pipeline.stages.train import metric_steps

    steps = np.arange(1, 3751)
    shown = metric_steps(steps, range(100, 3751, 100))
    assert set(range(100, 3751, 100)) | {1, 2, 3750} <= set(shown.tolist())
    assert 150 < len(shown) < 250 and np.all(np.diff(shown) > 0)
    ratios = shown[1:] / shown[:-1]
    assert ratios[shown[:-1] >= 20].max() < 1.1  # no wider gap than a log-spaced grid of ~200 points
    assert metric_steps(np.arange(1, 91), [30]).tolist() == list(range(1, 91))  # short runs: every step


def test_coordinate_groups_are_round_robin_and_sum_to_r_squared() -> None:
    """Element k of every tensor, flattened, goes to group k mod 32; the groups' squared
    displacements add up to R(t)² (the fit resamples them for α's interval)."""
    d2 = torch.arange(70.0)
    g = group_sums(d2)
    assert g.shape == (GROUPS,) and g.sum() == d2.sum()
    assert g[0] == 0 + 32 + 64 and g[5] == 5 + 37 + 69 and g[6] == 6 + 38  # 70 = 2·32 + 6
    assert torch.equal(group_sums(torch.stack([d2, 2 * d2]))[1], 2 * g)  # leading dims kept
    torch.manual_seed(0)
    model = MLP(4, 3, hidden=[50], batch_norm=False)
    w0 = [p.detach().clone() for p in model.parameters()]
    rec = DisplacementRecorder(model, np.array([1]))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    rec.record(1, torch.tensor(0.0))
    table = rec.table()
    columns = [c for c in table if c.startswith("displacement_group/")]
    assert columns == [f"displacement_group/{k:02d}" for k in range(GROUPS)]
    assert np.isclose(table[columns].iloc[0].sum(), table["displacement"].iloc[0] ** 2, rtol=1e-6)
    expected = sum(group_sums((p - p0).flatten().square()) for p, p0 in zip(model.parameters(), w0))
    np.testing.assert_allclose(table[columns].iloc[0].to_numpy(), expected.detach().numpy(), rtol=1e-5)
