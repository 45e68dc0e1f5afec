"""The language and modular-division experiment configs: each composes with the paper's settings,
and its model trains one step and gets one short λ estimate on tiny data, on the CPU."""

import math
from pathlib import Path

import pytest

from pipeline.tracking import Tracker
from tests.helpers.cli import launch
from tests.helpers.config import compose_cfg
from tests.helpers.jobs import execute
from tests.helpers.lm_files import write_checkpoint, write_text

OWN = [
    "tinystories_sgd",
    "tinystories_adam",
    "modular_division",
    "tinystories_sgd_cpu",
    "tinystories_adam_cpu",
    "modular_division_cpu",
]


def compose_experiment(name: str, overrides: list[str] = (), sweep: bool = False):
    """`+experiment=name` composed as launch.py does; with `sweep`, Hydra's section (sweep axes) too."""
    return compose_cfg([f"+experiment={name}", *overrides], hydra=sweep)


@pytest.mark.parametrize("name", OWN)
def test_experiment_composes_with_the_papers_settings(name: str) -> None:
    cfg = compose_experiment(name, sweep=True)
    sweep = dict(cfg.hydra.sweeper.params)
    if name.startswith("tinystories"):
        optimizer = "SGD" if "_sgd" in name else "Adam"
        assert cfg.optimizer._target_ == f"torch.optim.{optimizer}"
        assert (cfg.lr, cfg.batch, cfg.train.steps, cfg.llc.every) == (1e-5, 16, 1000, 100)  # G.3
        assert cfg.dataset.task._target_ == "pipeline.tasks.CausalLM"
        if name.endswith("_cpu"):
            assert sweep == {"dataset.tiny_model.arch": "gpt_neo,llama"}
            assert cfg.model.path == f"data/synthetic-stories-{cfg.dataset.tiny_model.arch}/model"
        else:
            assert sweep == {"model.name": "TinyStories-1M,tinyllama-15M,TinyStories-33M"}
            assert cfg.model.path.endswith("data/lm/TinyStories-1M")
            assert cfg.dataset.tokenizer == cfg.model.path  # tokenized with the model's tokenizer
    else:
        assert cfg.optimizer._target_ == "torch.optim.AdamW" and cfg.dataset.p == 53
        assert (cfg.optimizer.weight_decay, list(cfg.optimizer.betas)) == (1.0, [0.9, 0.98])
        assert cfg.train.epochs == (250 if name.endswith("_cpu") else 10_000)
        assert sweep == {"seed": "0,1" if name.endswith("_cpu") else "0,1,2"}
    llc = cfg.llc  # Table 3, whatever the experiment
    assert (llc.lr, llc.localization, llc.num_chains, llc.num_draws) == (1e-5, 100.0, 1, 400)


@pytest.fixture(scope="module")
def lm_files(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("lm")
    text = write_text(root / "TinyStories-train.txt")
    return text, write_checkpoint(root / "TinyStories-1M", text)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One store for the module's runs (creating an MLflow database takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


def tiny_overrides(name: str, lm_files: tuple[Path, Path], tmp_path: Path, store: str) -> list[str]:
    """One training step, one λ estimate of 5 draws, and data small enough for a test."""
    common = ["stages=[train,llc]", "train.steps=1", "llc.every=1", "llc.num_draws=5", "llc.last=1"]
    common += ["progress=false", "threads=1", f"tracking.uri={store}", f"tracking.experiment={name}"]
    if name.startswith("modular"):
        return common
    blocks = ["dataset.block_size=16", "dataset.train_blocks=32", "dataset.test_blocks=8"]
    blocks.append("dataset.task.eval_limit=8")
    if name.endswith("_cpu"):
        tiny = "dataset.tiny_model."
        return [
            *common,
            *blocks,
            f"dataset.folder={tmp_path / 'synthetic'}",
            "dataset.num_stories=200",
            f"{tiny}hidden_size=16",
            f"{tiny}num_heads=2",
            f"{tiny}vocab_size=300",
            f"{tiny}context=32",
        ]
    text, ckpt = lm_files
    return [*common, *blocks, f"model.path={ckpt}", f"dataset.path={text}"]


@pytest.mark.parametrize("name", OWN)
def test_experiment_trains_a_step_and_estimates_llc(name: str, lm_files, tmp_path: Path, store: str) -> None:
    cfg = compose_experiment(name, tiny_overrides(name, lm_files, tmp_path, store))
    tracker, run_id, metrics = execute(cfg)
    assert tracker.get_run(run_id).status == "FINISHED"
    llc = tracker.load_table(run_id, "llc")
    assert llc["step"].tolist() == [1] and (llc["status"] == "ok").all()
    assert math.isfinite(metrics["lambda_final"]) and metrics["num_params"] > 0
    evals = tracker.load_table(run_id, "evals")
    assert evals["step"].tolist() == [1] and 0.0 <= evals["test_acc"].iloc[0] <= 1.0
    traj = tracker.load_table(run_id, "trajectory")
    assert traj["step"].tolist() == [1] and (traj["displacement"] > 0).all()
    if name.startswith("tinystories"):
        # A randomly initialised LM predicts close to uniformly: its loss is about log(vocabulary).
        vocab = 300
        assert abs(llc["init_loss"].iloc[0] - math.log(vocab)) < 0.3
        assert abs(evals["train_loss"].iloc[0] - math.log(vocab)) < 0.3
        assert any(c.startswith("displacement/lm.") for c in traj)
    else:
        assert abs(evals["train_loss"].iloc[0] - math.log(53)) < 0.3
        assert {"displacement/embeddings.0.weight", "displacement/embeddings.1.weight"} <= set(traj)


def test_calibrate_estimates_a_language_model_with_devinterps_estimator(
    lm_files, tmp_path: Path, store: str
) -> None:
    """Language models are not stacked: the calibration grid goes through the serial estimator."""
    name = "tinystories_sgd"
    overrides = tiny_overrides(name, lm_files, tmp_path, store)
    tracker, run_id, _ = execute(compose_experiment(name, [*overrides, "stages=[train]"]))
    grid = [
        "calibrate.lr=[1e-5]",
        "calibrate.localization=[100]",
        "calibrate.nbeta_factor=[1]",
        "calibrate.num_chains=1",
    ]
    _, same, _ = execute(
        compose_experiment(name, [*overrides, "stages=[calibrate]", f"run_id={run_id}", *grid])
    )
    assert same == run_id
    table = tracker.load_table(run_id, "calibration")
    assert len(table) == 1 and (table["status"] == "ok").all() and math.isfinite(table["llc"].iloc[0])


def test_cli_sweeps_the_seeds_the_experiment_names(tmp_path: Path, store: str) -> None:
    res = launch(
        [
            "-m",
            "+experiment=modular_division_cpu",
            "train.steps=30",
            "llc.every=10",
            "llc.num_draws=5",
            "llc.last=1",
            "progress=false",
            "threads=1",
            f"tracking.uri={store}",
            "tracking.experiment=cli",
        ],
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    runs = Tracker(store, "cli").find_runs({})
    assert sorted(r.params["seed"] for r in runs) == ["0", "1"]
    assert all(r.status == "FINISHED" for r in runs)
    assert {r.params["dataset._target_"] for r in runs} == {"pipeline.modular.modular_division"}
    assert len({r.metrics["displacement"] for r in runs}) == 2  # the seeds differ


@pytest.mark.slow  # 4500 steps, 20-50 s
def test_modular_division_memorises_then_groks(tmp_path: Path, store: str) -> None:
    """The experiment's settings reproduce grokking (about 20 s on one CPU thread): the training
    half is memorised by step 1000 while test accuracy is near chance, then test accuracy jumps."""
    overrides = ["stages=[train]", "train.steps=4500", "llc.every=500", "threads=1", "progress=false"]
    cfg = compose_experiment(
        "modular_division", [*overrides, f"tracking.uri={store}", "tracking.experiment=g"]
    )
    tracker, run_id, _ = execute(cfg)
    evals = tracker.load_table(run_id, "evals").set_index("step")
    assert evals.loc[1000, "train_acc"] == 1.0 and evals.loc[1000, "test_acc"] < 0.1
    assert evals.loc[4500, "test_acc"] > 0.95
