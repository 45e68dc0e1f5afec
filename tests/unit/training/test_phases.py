"""Phase schedules: optimizer switches, early stopping, and a phased run whose fit uses one phase."""

from functools import partial

import pytest
import torch

from pipeline.errors import UserError
from pipeline.jobs.opening import JobInfo
from pipeline.training.phases import Phase, PhaseSchedule, max_steps
from tests.helpers.jobs import execute

JOB = JobInfo(sweep="test-sweep", name="phases")


def two_phases(**head) -> list[Phase]:
    return [
        Phase(
            "head",
            partial(torch.optim.Adam, lr=1e-3, weight_decay=1e-4),
            **({"max_epochs": 20, "min_delta": 1e-4, "patience": 3} | head),
        ),
        Phase("sgd", partial(torch.optim.SGD, lr=1e-5), steps=5),
    ]


def feed(schedule: PhaseSchedule, epoch_losses: list[float], steps_per_epoch: int) -> int:
    """Report each epoch's loss at every one of its steps; returns the step the schedule ended at."""
    step = 0
    for loss in epoch_losses:
        for _ in range(steps_per_epoch):
            step += 1
            if schedule.after_step(step, loss):
                return step
    return step


def test_early_stop_after_three_epochs_without_enough_improvement() -> None:
    model = torch.nn.Linear(3, 2)
    s = PhaseSchedule(two_phases(), model, steps_per_epoch=4)
    assert isinstance(s.optimizer, torch.optim.Adam) and s.optimizer.defaults["weight_decay"] == 1e-4
    # Improves by 0.5, then by less than 1e-4 three epochs running: stops after epoch 5.
    losses = [1.0, 0.5, 0.49995, 0.49991, 0.49992] + [0.4] * 10
    end = feed(s, losses, steps_per_epoch=4)
    assert end == 20 + 5
    head, sgd = s.records
    assert (head["start_step"], head["end_step"], head["stopped_by"]) == (1, 20, "early_stop")
    assert (sgd["start_step"], sgd["end_step"], sgd["stopped_by"]) == (21, 25, "steps")
    assert s.summary()["phase/sgd/start_step"] == 21.0 and s.done
    assert s.tags() == {"phase.head": "steps 1-20, early_stop", "phase.sgd": "steps 21-25, steps"}


def test_head_phase_runs_to_max_epochs_while_it_improves() -> None:
    s = PhaseSchedule(two_phases(max_epochs=3), torch.nn.Linear(3, 2), steps_per_epoch=2)
    end = feed(s, [1.0, 0.9, 0.8, 0.7, 0.7, 0.7, 0.7], steps_per_epoch=2)
    assert s.records[0]["stopped_by"] == "max_epochs" and s.records[0]["end_step"] == 6
    assert end == 11 and isinstance(s.optimizer, torch.optim.SGD)


def test_only_trainable_parameters_reach_the_optimizer() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    model[0].requires_grad_(False)
    s = PhaseSchedule(two_phases(), model, steps_per_epoch=1)
    params = s.optimizer.param_groups[0]["params"]
    assert len(params) == 2 and all(p.requires_grad for p in params)


@pytest.mark.parametrize(
    "phases,message",
    [
        ({}, "empty"),
        ({"a": {"steps": 3}}, "no optimizer"),
        ({"a": {"optimizer": {}, "steps": 3, "max_epochs": 2}}, "exactly one"),
        ({"a": {"optimizer": {}, "steps": 0}}, "≥ 1"),
        ({"a": {"optimizer": {}, "steps": 3, "min_delta": 1e-4}}, "needs max_epochs"),
    ],
)
def test_bad_phase_tables_fail_in_one_line(phases, message) -> None:
    with pytest.raises(UserError, match=message):
        max_steps(phases, 10)


def test_max_steps_bounds_the_run() -> None:
    phases = {
        "head": {"optimizer": {}, "max_epochs": 20, "min_delta": 1e-4},
        "sgd": {"optimizer": {}, "steps": 2000},
    }
    assert max_steps(phases, 782) == 20 * 782 + 2000  # Tiny ImageNet: 100 000 / 128 per epoch


def test_phased_run_records_phases_and_fits_the_sgd_phase(tiny_cfg) -> None:
    cfg = tiny_cfg(
        "+experiment=tinyimagenet_finetune_cpu",
        "dataset.n_samples=96",
        "dataset.shape=[3,32,32]",
        "dataset.num_classes=4",
        "batch=16",
        "train.phases.head.max_epochs=2",
        "train.phases.sgd.steps=12",
        "llc.every=6",
        "llc.num_draws=5",
    )
    tracker, run_id, metrics = execute(cfg, JOB)
    tags = tracker.get_run(run_id).tags
    assert tags["phase.head"] == "steps 1-6, max_epochs" and tags["phase.sgd"] == "steps 7-18, steps"
    assert metrics["phase/sgd/start_step"] == 7 and metrics["total_steps"] == 18
    assert metrics["num_params"] == 512 * 4 + 4 and metrics["num_weights"] == 512 * 4
    fit = tracker.load_json(run_id, "fit")
    assert (fit["t_start"], fit["t_end"]) == (7, 18)
    llc = tracker.load_table(run_id, "llc")
    assert llc["step"].tolist() == [6, 12, 18]
    assert fit["lambda_bar"] == pytest.approx(llc["llc"].iloc[1:].mean())  # λ̄ over the SGD phase
    files = {f.path for f in tracker.client.list_artifacts(run_id, "checkpoints")}
    assert files == {"checkpoints/step_00000000.pt", "checkpoints/step_00000018.pt"}

    with pytest.raises(UserError, match="no such phase"):
        execute(
            tiny_cfg(
                "+experiment=tinyimagenet_finetune_cpu", "stages=[fit]", "fit.phase=adam", f"run_id={run_id}"
            ),
            JOB,
        )


def test_a_schedule_restored_from_its_state_goes_on_as_the_original() -> None:
    """The phase, its optimizer's state and the early-stopping counters survive a resume."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    losses = [1.0, 0.5, 0.49995, 0.49991, 0.49992] + [0.4] * 10

    def run_steps(s: PhaseSchedule, m: torch.nn.Module, steps: range) -> None:
        for step in steps:
            m(torch.ones(1, 3)).sum().backward()
            s.optimizer.step()
            s.optimizer.zero_grad()
            s.after_step(step, losses[(step - 1) // 4])

    original = PhaseSchedule(two_phases(), model, steps_per_epoch=4)
    run_steps(original, model, range(1, 11))  # mid-epoch, mid-phase: Adam has moments
    state = original.state_dict()
    copy = torch.nn.Linear(3, 2)
    copy.load_state_dict(model.state_dict())
    restored = PhaseSchedule(two_phases(), copy, steps_per_epoch=4)
    restored.load_state_dict(state)
    run_steps(original, model, range(11, 26))
    run_steps(restored, copy, range(11, 26))
    assert restored.done and restored.records == original.records and len(original.records) == 2
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), copy.state_dict().values()))
