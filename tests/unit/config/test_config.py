"""The real config composes; the design's sweep is 16 points as typed; bad values fail in one line."""

import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pipeline.config import build, checks, hashes
from pipeline.config.overrides import problem
from pipeline.errors import UserError
from pipeline.tracking import Tracker
from tests.helpers.config import CONF, ROOT, compose_cfg


def test_default_composes_and_builds() -> None:
    cfg = compose_cfg()
    assert cfg.optimizer.lr == cfg.lr and cfg.dataset.batch_size == cfg.batch
    assert cfg.stages == ["train", "llc", "fit"]
    llc = cfg.llc  # the calibrated preset: the search sets ε, γ, nβ, burn-in and draws
    assert llc.calibration.enabled and (llc.num_chains, llc.init_loss, llc.every, llc.last) == (
        4,
        "full",
        100,
        10,
    )
    paper = compose_cfg(["llc=paper"]).llc  # Table 3
    assert (paper.lr, paper.localization, paper.num_chains, paper.num_draws) == (1e-5, 100.0, 1, 400)
    assert (paper.num_burnin_steps, paper.num_steps_bw_draws, paper.every, paper.last) == (0, 1, 100, 10)
    assert "calibration" not in paper and paper.init_loss == "batches"
    d = build.data(cfg)
    model = build.model(cfg, d)
    opt = build.optimizer(cfg, build.trainable(model))
    assert opt.param_groups[0]["lr"] == cfg.lr


@pytest.mark.parametrize(
    "override",
    [
        "optimizer=sgd",
        "optimizer=adam",
        "optimizer=adamw",
        "dataset=moons",
        "dataset=mnist",
        "fit=crossover",
        "model.batch_norm=true",
    ],
)
def test_every_option_composes(override: str) -> None:
    cfg = compose_cfg([override, "lr=3e-3", "batch=32"])
    assert cfg.optimizer.lr == 3e-3 and cfg.dataset.batch_size == 32
    if override.startswith("optimizer"):
        import torch

        opt = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))])
        assert type(opt).__name__.lower() == override.split("=")[1]
    if override == "fit=crossover":
        assert cfg.fit.crossover and cfg.fit.points == "all"


def test_design_sweep_is_sixteen_points_as_typed() -> None:
    parsed = OverridesParser.create().parse_overrides(
        ["optimizer=sgd,adam", "lr=1e-3,1e-2", "batch=64,256", "seed=0,1"]
    )
    jobs = BasicSweeper.split_arguments(parsed, None)[0]
    assert len(jobs) == 16
    seen = set()
    for job in jobs:
        cfg = compose_cfg(job)
        assert cfg.optimizer.lr == cfg.lr and cfg.dataset.batch_size == cfg.batch
        seen.add((cfg.optimizer._target_, cfg.lr, cfg.batch, cfg.seed))
    assert len(seen) == 16
    assert {s[1] for s in seen} == {1e-3, 1e-2}


def test_unknown_group_option_is_refused_by_hydra() -> None:
    with pytest.raises(ConfigCompositionException, match="optimizer"):
        compose_cfg(["optimizer=rmsprop_nonexistent"])


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("lr=0", "lr=0"),
        ("lr=-1e-3", "must be > 0"),
        ("batch=0", "batch=0"),
        ("llc.every=0", "llc.every"),
        ("llc.lr=0", "llc.lr"),
        ("llc.num_draws=0", "llc.num_draws"),
        ("stages=[train,oops]", "choose from"),
        ("stages=[fit,train]", "out of order"),
        ("train.epochs=0", "train.epochs"),
        ("fit.points=some", "fit.points"),
    ],
)
def test_bad_values_fail_in_one_line(override: str, fragment: str) -> None:
    with pytest.raises(UserError) as e:
        checks.check(compose_cfg([override]))
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_checks_that_need_the_data() -> None:
    cfg = compose_cfg(["batch=5000"])
    with pytest.raises(UserError, match="larger than the training set"):
        checks.check_with_data(cfg, n_train=898, steps_per_epoch=1)
    cfg = compose_cfg(["train.steps=50"])
    with pytest.raises(UserError, match="longer than the run"):
        checks.check_with_data(cfg, n_train=898, steps_per_epoch=15)
    assert checks.check_with_data(compose_cfg(), 898, 15) == 250 * 15


def test_unreachable_tracking_server_is_one_line(tmp_path) -> None:
    with pytest.raises(UserError, match="cannot reach the MLflow tracking server") as e:
        Tracker("http://127.0.0.1:9", "x")  # port 9 (discard): nothing listens
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="does not exist"):
        Tracker(f"sqlite:///{tmp_path}/missing/mlflow.db", "x")


def test_hashes_ignore_where_a_run_goes_but_not_what_it_computes() -> None:
    a = compose_cfg()
    b = compose_cfg(["tracking.uri=sqlite:////tmp/other.db", "stages=[fit]", "threads=1"])
    c = compose_cfg(["fit.start_step=500"])
    d = compose_cfg(["lr=0.05"])
    assert hashes.config_hash(a) == hashes.config_hash(b)
    assert hashes.train_hash(a) == hashes.train_hash(c) != hashes.train_hash(d)
    assert hashes.config_hash(a) != hashes.config_hash(c)


@pytest.mark.parametrize(
    "override, line",
    [
        ("lr=abc", "lr=abc is not a number: e.g. lr=1e-2"),
        ("lr=null", "lr=null is not a number: e.g. lr=1e-2"),
        ("batch=1.5", "batch=1.5 is not an integer: e.g. batch=64"),
        ("llc.online=yes", "llc.online=yes is not true or false: e.g. llc.online=false"),
        ("llc.num_draws=true", "llc.num_draws=true is not an integer: e.g. llc.num_draws=200"),
        ("threads=abc", "threads=abc is not an integer or null: e.g. threads=1"),
        ("train.steps=1.5", "train.steps=1.5 is not an integer or null: e.g. train.steps=1000"),
        ("device=1", "device=1 is not a name: e.g. device=cpu"),
        ("resume.every_s=soon", "resume.every_s=soon is not a number: e.g. resume.every_s=120"),
    ],
)
def test_values_of_the_wrong_type_are_one_line_before_hydra(override: str, line: str) -> None:
    """The schema's types, as Hydra would refuse them when it composes, said in one line first."""
    assert problem([override], CONF) == line
    with pytest.raises(ConfigCompositionException):
        compose_cfg([override])


def test_a_sweep_is_checked_value_by_value() -> None:
    assert problem(["-m", "lr=0.1,abc"], CONF) == "lr=abc is not a number: e.g. lr=1e-2"
    assert problem(["-m", "lr=0.1,0.2", "seed=range(3)"], CONF) is None


@pytest.mark.parametrize(
    "override, line",
    [
        ("threads=0", "threads=0 must be ≥ 1, or null for the cores available"),
        ("lr=-1", "lr=-1 must be > 0, e.g. lr=1e-2"),
        ("stages=train", "stages=train is not a list: write stages=[train], e.g. stages=[train,llc,fit]"),
        ("llc.method=bad", "llc.method=bad: choose batched or serial"),
        (
            "tracking.experiment=''",
            "tracking.experiment is empty: name the MLflow experiment, e.g. "
            "tracking.experiment=almost-bayesian",
        ),
    ],
)
def test_values_out_of_range_fail_in_one_line(override: str, line: str) -> None:
    with pytest.raises(UserError) as e:
        checks.check(compose_cfg([override]))
    assert str(e.value) == line


def test_optimizer_settings_torch_refuses_fail_in_one_line() -> None:
    """Checked by building the optimizer once on a one-element parameter, when the job trains
    (`build.check_optimizer`; a relaunched finished point skips it)."""
    with pytest.raises(UserError) as e:
        build.check_optimizer(compose_cfg(["optimizer.weight_decay=-1"]))
    assert str(e.value) == (
        "optimizer torch.optim.SGD refused its settings (ValueError: Invalid weight_decay value: -1): "
        "check the optimizer.* values (python launch.py --cfg job shows them)"
    )
    build.check_optimizer(compose_cfg([]))


def test_every_experiment_composes_with_values_of_their_types() -> None:
    """Composing checks the schema's types (a YAML value of another type would fail here)."""
    checks.check(compose_cfg(["train.steps=1e4", "threads=2", "llc.nbeta=null"]))  # 1e4: an integer
    for path in sorted((ROOT / "conf" / "experiment").glob("*.yaml")):
        if "${hydra:" in path.read_text():  # composes only inside a Hydra job (test_experiments)
            continue
        cfg = compose_cfg([f"+experiment={path.stem}"])
        assert OmegaConf.missing_keys(cfg) == set(), path.stem
