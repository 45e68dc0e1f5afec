"""Every experiment config composes; every model of its sweep builds; one training step and one short
λ estimate run on tiny data (small files in the real formats, or the synthetic stand-in) on the CPU."""

import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

from pipeline.config import build, checks
from pipeline.data.vision import FASHION_MNIST_ROOT
from pipeline.models import num_params
from pipeline.slt import llc
from tests.helpers.config import ROOT, compose_cfg
from tests.helpers.data_files import write_cifar10, write_mnist, write_tinyimagenet, write_weights

EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
VISION = [
    "mnist_seeds",
    "mnist_architectures",
    "mnist_ablation",
    "cifar_conv",
    "cifar_residual",
    "tinyimagenet_finetune",
]


def sweep_jobs(name: str) -> list[list[str]]:
    """The override lists `python launch.py -m +experiment=NAME` runs, one per job."""
    cfg = compose_cfg([f"+experiment={name}"], hydra=True)
    params = cfg.hydra.sweeper.params or {}
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    return BasicSweeper.split_arguments(parsed, None)[0] or [[]]


# The runs each `_cpu` sweep writes (docs/experiments.md's table): jobs x seeds of a batched job.
CPU_RUNS = {
    "mnist_seeds_cpu": 3,
    "mnist_architectures_cpu": 3,
    "mnist_ablation_cpu": 4,
    "cifar_conv_cpu": 2,
    "cifar_residual_cpu": 2,
    "tinyimagenet_finetune_cpu": 1,
}


def expected_runs(name: str) -> int:
    """Runs the sweep writes: one per job, or one per seed of a batched `seeds` job."""
    seeds = compose_cfg([f"+experiment={name}"]).seeds
    per_job = 1 if seeds is None else (len(seeds) if OmegaConf.is_list(seeds) else int(seeds))
    return len(sweep_jobs(name)) * per_job


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_mnist(root)
    write_cifar10(root)
    write_tinyimagenet(root)
    write_weights(root / "resnet18.pth")
    return root


def test_every_vision_experiment_has_a_cpu_variant_with_a_header() -> None:
    for name in VISION:
        for variant in (name, f"{name}_cpu"):
            text = (ROOT / "conf" / "experiment" / f"{variant}.yaml").read_text()
            assert text.startswith("# @package _global_\n"), variant
            assert f"python launch.py -m +experiment={variant}" in text, variant
            assert "untime" in text or "Measured" in text, variant


@pytest.mark.parametrize("name", [e for e in EXPERIMENTS if e.removesuffix("_cpu") in VISION])
def test_experiment_builds_trains_one_step_and_estimates_llc(name: str, data_root: Path) -> None:
    jobs = sweep_jobs(name)
    assert jobs != [[]] or expected_runs(name) > 1, "an experiment is a sweep, or many seeds in one job"
    full = not name.endswith("_cpu")
    tiny = ["batch=4", "llc.num_draws=2", "threads=1"]
    if full:
        tiny.append(f"dataset.root={data_root}")
        if "subset" in compose_cfg([f"+experiment={name}"]).dataset:
            tiny.append("dataset.subset=40")
    else:  # the synthetic stand-in, or Fashion-MNIST (a stand-in where Debian's package is absent)
        tiny.append(
            "dataset.subset=40"
            if "subset" in compose_cfg([f"+experiment={name}"]).dataset
            else "dataset.n_samples=40"
        )
    # One job per distinct model and optimizer (seeds, lr and batch change no code path).
    distinct = {tuple(o for o in job if o.startswith(("model", "optimizer"))): job for job in reversed(jobs)}
    jobs = [j for j in jobs if j in distinct.values()]
    for i, job in enumerate(jobs):
        overrides = [f"+experiment={name}", *job, *tiny]
        if "model.arch" in str(job) and full:  # pretrained weights exist only for the test's resnet18
            arch = next(o.split("=")[1] for o in job if o.startswith("model.arch"))
            overrides += (
                [f"model.weights={data_root / 'resnet18.pth'}"]
                if arch == "resnet18"
                else ["model.pretrained=false"]
            )
        cfg = compose_cfg(overrides)
        checks.check(cfg)
        build.check_optimizer(cfg)  # every optimizer of the sweep (and of its phases) builds
        if i == 0:
            d = build.data(cfg)
        with open_dict(cfg):
            cfg.dataset.batch_size = 4
        model = build.model(cfg, d)
        assert num_params(model) > 0
        if i == 0:
            one_step_and_llc(cfg, model, d)


def one_step_and_llc(cfg, model, d) -> None:
    model.train()
    schedule = build.schedule(cfg, model, d.steps_per_epoch)
    opt = schedule.optimizer if schedule else build.optimizer(cfg, build.trainable(model))
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    xb, yb = next(d.epoch(torch.Generator().manual_seed(0)))
    loss = F.cross_entropy(model(xb), yb)
    loss.backward()
    opt.step()
    if schedule:
        schedule.after_step(1, loss.item())
    after = [p.detach() for p in model.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(after, before))  # the step moved the weights
    row = llc.estimate(model, d, cfg.llc, step=1, device="cpu")
    assert row["status"] == "ok" and math.isfinite(row["llc"]) and row["trace"].shape == (1, 2)


@pytest.mark.slow
@pytest.mark.parametrize("name", [f"{e}_cpu" for e in VISION])
def test_cpu_variant_runs_from_the_command_line(name: str, tmp_path: Path) -> None:
    """The whole `_cpu` sweep as a user runs it (36 s to 4 min each on a loaded 2-core machine)."""
    from pipeline.tracking import Tracker
    from tests.helpers.cli import launch

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = launch(
        ["-m", f"+experiment={name}", f"tracking.uri={store}", "threads=1", "progress=false"], tmp_path, 900
    )
    assert out.returncode == 0, out.stderr[-2000:]
    runs = Tracker(store, "almost-bayesian").find_runs({})
    assert len(runs) == CPU_RUNS[name] == expected_runs(name)
    assert all(r.status == "FINISHED" and "lambda_final" in r.metrics for r in runs)
    # The MNIST twins train on Fashion-MNIST's real images where Debian's package is installed (CI).
    real = name.startswith("mnist") and Path(FASHION_MNIST_ROOT).is_dir()
    assert {r.tags.get("dataset") for r in runs} == (
        {"fashion_mnist"} if real else {runs[0].tags.get("dataset")}
    )
    if name == "mnist_seeds_cpu":  # through to the sweep's report page and its scorecard against Table 8
        from analysis.__main__ import main as analysis_main

        assert analysis_main(["--uri", store, "--out", str(tmp_path / "results"), "--no-log"]) == 0
        (folder,) = (tmp_path / "results").iterdir()
        page = (folder / "report.html").read_text()
        assert (
            "Replication scorecard" in page
            and "Table 8" in page
            and page.count("data:image/png;base64,") >= 5
        )
        card = pd.read_csv(folder / "scorecard.csv")
        assert set(card["quantity"]) == {"λ_final", "d_s"} and (card["paper n"] == 50).all()
        assert (card["ours n"] == 3).all() and ("data: ours fashion_mnist" in page) == real
