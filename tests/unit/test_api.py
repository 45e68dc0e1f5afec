"""The Python API (`pipeline.api`) against the code the stages run: R(t) by hand, λ from the sampler
core and devinterp's estimator, the fit's `compute`, and a monitor's run beside a launch.py run of
the same loop (the same numbers, tags, params, metrics and artifacts; the analysis lists it). The
examples of docs/api.md run as written."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset

from analysis.__main__ import main as analysis_main
from pipeline import api
from pipeline.config import build
from pipeline.data import Data
from pipeline.errors import UserError
from pipeline.models.tasks import Classification
from pipeline.slt import calibration, llc
from pipeline.slt.fit import compute
from pipeline.slt.settings import Search, Settings
from pipeline.stages import calibrate
from pipeline.tracking import Tracker, names
from tests.helpers.config import ROOT
from tests.helpers.jobs import JOB, execute

# Table 3's settings, shortened to seconds (as tests/helpers/config.py's TINY shortens a job).
QUICK = {"preset": "paper", "num_draws": 20}


def toy(seed: int = 0, n: int = 256) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    x = torch.randn(n, 6)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    for _ in range(40):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model, x, y


def weights(model: torch.nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


# -- settings -------------------------------------------------------------------------------------
def test_presets_are_the_files_of_conf() -> None:
    for preset in api.PRESETS:
        path = ROOT / "conf" / "llc" / f"{preset}.yaml"
        want = {**yaml.safe_load(path.read_text()), "seed": 0}
        assert api.llc_settings(preset) == want
    # The file loaded on its own, as a dict, an OmegaConf node or its path: the same settings.
    paper = ROOT / "conf" / "llc" / "paper.yaml"
    same = api.llc_settings("paper")
    for given in (yaml.safe_load(paper.read_text()), OmegaConf.load(paper), paper, str(paper)):
        assert api.llc_settings(settings=given) == same
    s = api.llc_settings("paper", {"num_draws": 50}, seed=3, lr=1e-4, calibration=False)
    assert (s["num_draws"], s["seed"], s["lr"], s["calibration"]) == (50, 3, 1e-4, {"enabled": False})
    # A Settings is taken as chosen already: no search.
    chosen = api.llc_settings("calibrated", Settings(lr=3e-3, num_chains=2))
    assert chosen["lr"] == 3e-3 and chosen["num_chains"] == 2
    assert not Search.of(chosen["calibration"]).enabled
    fit = api.fit_settings(ROOT / "conf" / "fit" / "crossover.yaml", seed=5)
    assert (fit["points"], fit["crossover"], fit["bootstrap"]["seed"]) == ("all", True, 5)


# -- R(t) -----------------------------------------------------------------------------------------
def test_recorder_is_the_displacement_by_hand() -> None:
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    w0 = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    recorder = api.Recorder(model, steps=25)
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    by_hand, losses = [], []
    for step in range(1, 26):
        x = torch.randn(16, 4)
        loss = model(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        recorder(step, loss if step % 2 else loss.item())  # a tensor or a float
        w = torch.cat([p.detach().flatten() for p in model.parameters()])
        by_hand.append(float((w - w0).norm()))
        losses.append(loss.item())
    table = recorder.table()
    assert table["step"].tolist() == list(range(1, 26))
    assert np.allclose(table["displacement"], by_hand, rtol=1e-6, atol=0)
    assert np.allclose(table["train_batch_loss"], losses, rtol=1e-6)
    groups = [c for c in table if c.startswith("displacement_group/")]
    assert np.allclose(table[groups].sum(axis=1), np.square(by_hand), rtol=1e-5)


def test_recorder_keeps_the_schedule_of_a_long_loop() -> None:
    model = torch.nn.Linear(2, 1)
    recorder = api.Recorder(model, steps=100_000, log_points=50, extra=[100, 200])
    assert recorder.core.wants(100) and recorder.core.wants(100_000) and not recorder.core.wants(99)


# -- λ ----------------------------------------------------------------------------------------------
def test_estimate_llc_is_the_sampler_core_on_the_same_settings_and_seed() -> None:
    model, x, y = toy()
    before = weights(model)
    got = api.estimate_llc(model, (x, y), batch_size=32, step=7, **QUICK)
    data = Data("data", x, y, x[:0], y[:0], 3, 32)
    settings = Settings.of(api.llc_settings(**QUICK))
    (want,) = llc.estimate_many(model, [weights(model)], data, settings, [7], "cpu", Classification())
    assert got.method == "batched" and got.ok and got.llc == want["llc"]
    assert got.row == {"step": 7, **{k: v for k, v in want.items() if k != "trace"}}
    assert np.array_equal(got.trace, want["trace"])
    # The same data as a DataLoader or a Dataset: the same estimate, bit for bit.
    for same in (DataLoader(TensorDataset(x, y), batch_size=32), TensorDataset(x, y)):
        kw = {} if isinstance(same, DataLoader) else {"batch_size": 32}
        assert api.estimate_llc(model, same, step=7, **QUICK, **kw).llc == got.llc
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the model as it was


def test_a_loss_of_ones_own_is_devinterps_estimator_with_it() -> None:
    model, x, y = toy()
    target = torch.nn.functional.one_hot(y, 3).float()

    def mse(output: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (output - t).square().mean()

    got = api.estimate_llc(model, (x, target), mse, batch_size=32, step=3, **QUICK)
    data = Data("data", x, target, x[:0], target[:0], 0, 32)
    settings = Settings.of(api.llc_settings(**QUICK))
    want = llc.estimate(model, data, settings, 3, "cpu", lambda m, b: mse(m(b[0]), b[1]))
    assert got.method == "serial" and got.llc == want["llc"] and got.row["init_loss"] == want["init_loss"]
    hook = api.estimate_llc(
        model, (x, target), evaluate=lambda m, b: mse(m(b[0]), b[1]), batch_size=32, step=3, **QUICK
    )
    assert hook.llc == got.llc


def test_the_calibrated_preset_searches_as_the_llc_stage_does() -> None:
    model, x, y = toy()
    search = {"lr": [1e-3, 1e-2], "localization": [1.0], "relaxations": 0.5, "draws": 40, "max_draws": 200}
    got = api.estimate_llc(
        model, (x, y), batch_size=32, num_draws=40, num_burnin_steps=20, calibration=search
    )
    values = api.llc_settings(num_draws=40, num_burnin_steps=20, calibration=search)
    base, data = Settings.of(values), Data("data", x, y, x[:0], y[:0], 3, 32)
    estimate = calibrate.estimator(model, weights(model), data, 0, "cpu", Classification(), True)
    _, choice = calibration.search(estimate, base, Search.of(search), llc.nbeta(None, 32))
    assert got.calibration == choice and got.settings == calibration.apply(base, choice)
    (want,) = llc.estimate_many(model, [weights(model)], data, got.settings, [0], "cpu", Classification())
    assert got.llc == want["llc"] and got.ok


# -- α, d_s -------------------------------------------------------------------------------------------
def test_fit_and_analysis_are_the_fit_stages_compute() -> None:
    t = np.arange(1, 301)
    r = 0.05 * t**0.4 * np.exp(0.01 * np.random.default_rng(0).normal(size=len(t)))
    traj = pd.DataFrame({"step": t, "displacement": r})
    alpha = api.fit_alpha((t, r), points="all")
    assert abs(alpha["alpha"] - 0.4) < 0.005 and alpha["n_points"] == 300
    assert api.fit_alpha(traj, every=30)["n_points"] == 10  # the λ steps, 30..300
    rows = [{"step": s, "llc": 2.0 + 0.01 * k, "status": "ok"} for k, s in enumerate(range(30, 301, 30))]
    table = pd.DataFrame(rows)
    got = api.analyse(traj, table, last=4)
    want = compute(traj, table, llc.summarize(table, 4), api.fit_settings(), 30, 4)
    assert got == want
    # λ_final = mean of 2.06..2.09 = 2.075, λ̄ = 2.045; d_s = 2·2.075·0.4 ≈ 1.66: both bounds hold.
    assert (got["lambda_final"], got["lambda_bar"]) == (pytest.approx(2.075), pytest.approx(2.045))
    assert got["d_s"] == pytest.approx(2 * 2.075 * got["alpha"]) and got["d_s"] == pytest.approx(
        1.66, abs=0.02
    )
    assert (got["lemma_3_4"], got["corollary_3_3"]) == ("holds", "holds")
    # Without coordinate groups the crossover is the detected breakpoint, untested (fit.json says so).
    crossover = api.fit_alpha(traj, points="all", crossover=True)
    assert crossover["t_c"] > 0 and crossover["crossover_test"]["supported"] is None


@pytest.mark.parametrize(
    ("call", "says"),
    [
        (lambda: api.llc_settings("papers"), "preset='papers': choose one of"),
        (lambda: api.llc_settings(num_draw=5), "num_draw: no such λ setting: did you mean num_draws?"),
        (lambda: api.llc_settings(num_draws="many"), "num_draws: "),
        (lambda: api.llc_settings(lr=0), "lr=0 must be > 0"),
        (lambda: api.llc_settings(settings=3), "settings is a int: pass a dict"),
        (lambda: api.llc_settings(settings="no/such.yaml"), "no settings file no/such.yaml"),
        (lambda: api.llc_settings(online=True), "online=True estimates λ during training"),
        (lambda: api.fit_settings(points="some"), "points='some': choose 'llc'"),
        (
            lambda: api.estimate_llc("model", ([1.0], [0]), batch_size=1),
            "model is a str: pass a torch.nn.Module",
        ),
        (lambda: api.estimate_llc(toy()[0], "data.csv"), "data is a str: pass a DataLoader"),
        (lambda: api.estimate_llc(toy()[0], toy()[1:]), "batch_size=None: pass batch_size="),
        (
            lambda: api.estimate_llc(toy()[0], (torch.randn(8, 5), torch.zeros(8).long()), batch_size=4),
            "the loss on a batch of shape (4, 5) float32 failed",
        ),
        (
            lambda: api.estimate_llc(
                toy()[0], toy()[1:], lambda o, t: (o - o).sum(1), batch_size=8, preset="paper"
            ),
            "the loss of a batch is (8,), not one number",
        ),
        (lambda: api.estimate_llc(toy()[0], toy()[1:], loss_fn=3, batch_size=8), "loss_fn is a int"),
        (lambda: api.Recorder(torch.nn.Linear(2, 1), steps=0), "steps=0: pass the number of optimizer steps"),
        (lambda: api.Recorder(torch.nn.Linear(2, 1), steps=5)(6, 0.1), "step 6 is outside 1..5"),
        (lambda: api.Recorder(torch.nn.Linear(2, 1), steps=5)(1, "low"), "loss is a str"),
        (lambda: api.fit_alpha(([1, 2], [0.1, 0.2]), points="all"), "only 2 usable points in the fit window"),
        (lambda: api.fit_alpha(pd.DataFrame({"t": [1]})), "trajectory: pass a Recorder"),
        (lambda: api.fit_alpha(([1, 2, 3, 4], [1, 2, 3, 4])), "pass every=<the λ interval> or points='all'"),
        (lambda: api.analyse(([1, 2, 3], [1, 2, 3]), "llc.parquet"), "llc: pass the λ(t) table"),
        (lambda: api.fit_alpha(([1, 2, 3], [1, 2, 3]), windw=3), "windw: no such fit setting"),
        (
            lambda: api.Monitor(toy()[0], toy()[1:], batch_size=8, steps=9, tracking_url="x"),
            "tracking_url: no such keyword of Monitor or λ setting: did you mean tracking_uri?",
        ),
    ],
)
def test_mistakes_are_one_line_naming_the_fix(call, says: str) -> None:
    with pytest.raises(UserError) as e:
        call()
    assert says in str(e.value) and "\n" not in str(e.value)


# -- the monitor ------------------------------------------------------------------------------------
def launch_loop(cfg, monitor_kw: dict) -> api.Monitor:
    """The loop launch.py runs for `cfg` (`pipeline.training.loop.Loop`: the same w_0, batches and
    steps), written by hand around a Monitor."""
    data = build.data(cfg)
    model = build.model(cfg, data)
    optimizer = build.optimizer(cfg, build.trainable(model))
    steps, task = int(cfg.train.steps), Classification()
    generator = torch.Generator().manual_seed(int(cfg.seed))
    with api.Monitor(
        model, data, steps=steps, every=int(cfg.llc.every), optimizer=optimizer, **monitor_kw
    ) as m:
        step = 0
        while step < steps:
            for xb, yb in data.epoch(generator):
                step += 1
                optimizer.zero_grad(set_to_none=True)
                loss = task.loss(model(xb), yb)
                loss.backward()
                optimizer.step()
                m.step(step, loss)
                if step == steps:
                    break
    return m


def artifacts(tracker: Tracker, run_id: str, folder: str | None = None) -> set[str]:
    found = set()
    for f in tracker.client.list_artifacts(run_id, folder):
        found |= artifacts(tracker, run_id, f.path) if f.is_dir else {f.path}
    return found


def test_a_monitors_run_is_a_launch_run_of_the_same_loop(
    tiny_cfg, store: str, tmp_path: Path, capsys
) -> None:
    cfg = tiny_cfg()
    tracker, launched, _ = execute(cfg, JOB)
    kw = {"preset": "paper", "num_draws": 20, "last": 2, "window": {"figures": False}, "name": "mine"}
    kw |= {"tracking_uri": store, "experiment": "test", "sweep": JOB.sweep, "data_name": "digits"}
    monitor = launch_loop(cfg, kw)
    theirs, mine = tracker.get_run(launched), tracker.get_run(monitor.run_id)
    assert mine.status == "FINISHED" and mine.tags[names.SOURCE] == "pipeline.api.Monitor"
    # The same records under the same names ...
    assert artifacts(tracker, launched) == artifacts(tracker, monitor.run_id)
    assert set(theirs.metrics) == set(mine.metrics)
    assert set(theirs.tags) == set(mine.tags) - {names.SOURCE}
    blocks = ("llc.", "fit.", "train.steps", "model._target_", "optimizer.", "lr", "batch", "seed")
    hydras = {"optimizer._partial_"}  # how Hydra builds the optimizer: one's own is built already
    assert {p for p in theirs.params if p.startswith(blocks)} - hydras <= set(mine.params)
    # ... and the same numbers: trajectory, λ(t), fit.json, the summary.
    for table in (names.TRAJECTORY, names.EVALS, names.LLC):
        pd.testing.assert_frame_equal(
            tracker.load_table(launched, table), tracker.load_table(monitor.run_id, table)
        )
    assert (
        tracker.load_json(monitor.run_id, names.FIT)
        == tracker.load_json(launched, names.FIT)
        == monitor.result
    )
    timing = ("time/", "tracking_")
    assert {k: v for k, v in mine.metrics.items() if not k.startswith(timing)} == {
        k: v for k, v in theirs.metrics.items() if not k.startswith(timing)
    }
    for tag in (names.LEMMA_3_4, names.COROLLARY_3_3, names.FIT_WINDOW, names.LLC_SETTINGS, names.DATASET):
        assert mine.tags[tag] == theirs.tags[tag]
    assert monitor.report.startswith(f"run {monitor.run_id} (mine)")

    # `python -m analysis` lists it beside the launch.py run, with its λ, α and d_s.
    out = tmp_path / "results"
    args = ["--uri", store, "--experiment", "test", "--sweep", JOB.sweep, "--out", str(out), "--no-log"]
    assert analysis_main(args) == 0
    runs = pd.read_csv(out / JOB.sweep / "runs.csv").set_index("run_id")
    assert set(runs.index) == {launched, monitor.run_id}
    row = runs.loc[monitor.run_id]
    assert (row["status"], row["run_name"]) == ("FINISHED", "mine")
    for key in ("lambda_final", "alpha", "d_s"):
        assert row[key] == pytest.approx(monitor.result[key], rel=1e-12)
    assert row[names.LEMMA_3_4] == monitor.result["lemma_3_4"]
    capsys.readouterr()

    # A stage re-run takes it as any run: refit with the crossover window, no retraining.
    refit = tiny_cfg("stages=[fit]", f"run_id={monitor.run_id}", "fit=crossover")
    _, again, metrics = execute(refit, JOB)
    assert again == monitor.run_id and metrics["alpha"] == tracker.load_json(again, names.FIT)["alpha"]
    # The llc stage would rebuild the data: one line says they are not stored; the run stays as it was.
    with pytest.raises(UserError, match="logged by pipeline.api.Monitor and its data are not stored"):
        execute(tiny_cfg("stages=[llc]", f"run_id={monitor.run_id}"), JOB)
    assert tracker.get_run(monitor.run_id).status == "FINISHED"


def test_a_monitor_estimates_every_k_steps_online_and_with_the_calibrated_preset(store: str) -> None:
    model, x, y = toy()
    train = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    where = {"tracking_uri": store, "experiment": "test", "window": {"figures": False}}

    def loop(m: api.Monitor, steps: int) -> list:
        opt, found, step = torch.optim.SGD(model.parameters(), lr=0.05), [], 0
        while step < steps:
            for xb, yb in train:
                step += 1
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(xb), yb)
                loss.backward()
                opt.step()
                found.append(m(step, loss))
                if step == steps:
                    break
        m.close()
        return found

    online = api.Monitor(model, train, steps=40, every=10, online=True, **QUICK, **where)
    found = loop(online, 40)
    assert [e.row["step"] for e in found if e is not None] == [10, 20, 30, 40]
    assert online.llc["llc"].tolist() == [e.llc for e in found if e is not None]
    assert set(artifacts(Tracker(store, "test"), online.run_id)) >= {"llc.parquet", "fit.json"}

    search = {"lr": [1e-3, 1e-2], "localization": [1.0], "relaxations": 0.5, "draws": 40, "max_draws": 100}
    calibrated = api.Monitor(
        model, train, steps=30, every=10, num_draws=40, num_burnin_steps=20, calibration=search, **where
    )
    loop(calibrated, 30)
    tags = Tracker(store, "test").get_run(calibrated.run_id).tags
    assert tags[names.LLC_CALIBRATED_FROM] == calibrated.run_id and len(calibrated.llc) == 3
    assert "llc_calibration.json" in artifacts(Tracker(store, "test"), calibrated.run_id)


def test_a_loop_that_fails_leaves_a_failed_run_with_what_it_recorded(store: str) -> None:
    model, x, y = toy()
    with pytest.raises(RuntimeError, match="out of memory, say"):
        with api.Monitor(
            model, (x, y), batch_size=32, steps=50, every=10, tracking_uri=store, experiment="t"
        ) as m:
            for step in range(1, 8):
                m.step(step, torch.tensor(1.0))
            raise RuntimeError("out of memory, say")
    tracker = Tracker(store, "t")
    run = tracker.get_run(m.run_id)
    assert run.status == "FAILED" and run.tags[names.FAILURE_REASON] == "RuntimeError: out of memory, say"
    assert tracker.load_table(m.run_id, names.TRAJECTORY)["step"].tolist() == list(range(1, 8))
    with pytest.raises(UserError, match="call it after every optimizer step"):
        api.Monitor(model, (x, y), batch_size=32, steps=50, tracking_uri=store).step(2, 1.0)


# -- docs/api.md ------------------------------------------------------------------------------------
@pytest.mark.slow  # about 30 s: the page's seven blocks, the calibrated estimate among them
def test_the_examples_of_docs_api_run_as_written(tmp_path: Path, monkeypatch, capsys) -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    scope: dict = {"__name__": "__docs__"}
    took = []
    for block in blocks:
        start = time.perf_counter()
        exec(compile(block, "docs/api.md", "exec"), scope)
        took.append(time.perf_counter() - start)
    print(capsys.readouterr().out)
    print("seconds per block:", [round(t, 1) for t in took])  # about 20 s at most on 2 loaded cores
