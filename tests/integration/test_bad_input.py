"""Bad input through the real CLI: one line `error: <what>: <fix>` on stderr, exit status 2, and
nothing already recorded is lost (docs/bad-input.md: one case per row of its table).

Every case runs beside a store holding a finished run, and compares that store before and after:
its runs, statuses, params, tags, every metric's history and every artifact file's bytes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from pipeline.tracking import Tracker
from tests.helpers.cli import launch, one_line
from tests.helpers.config import TINY
from tests.helpers.stores import hold_lock, snapshot

EXPERIMENT = "bad-input"
# The tiny job without its length: cases that set train.steps or llc.every keep theirs.
SHRINK = [a for a in TINY if not a.startswith(("train.steps", "llc.every"))]
NO_GPU = not torch.cuda.is_available()

# (id, arguments, a fragment of the one line). {d}: a folder of this module; {run}: the recorded run.
BEFORE_ANY_RUN = [
    # config values
    ("lr-negative", ["lr=-1"], "error: lr=-1 must be > 0, e.g. lr=1e-2"),
    ("lr-not-a-number", ["lr=abc"], "error: lr=abc is not a number: e.g. lr=1e-2"),
    ("lr-infinite", ["lr=inf"], "error: lr=inf is not a finite number: give it a finite value"),
    (
        "nested-nan",
        ["llc.localization=nan"],
        "error: llc.localization=nan is not a finite number: give it a finite value",
    ),
    ("batch-zero", ["batch=0"], "error: batch=0 must be a positive integer, e.g. batch=64"),
    ("batch-not-an-integer", ["batch=1.5"], "error: batch=1.5 is not an integer: e.g. batch=64"),
    ("batch-above-n", ["batch=100000"], "larger than the training set (898 samples): use batch ≤ 898"),
    ("llc-draws-zero", ["llc.num_draws=0"], "error: llc.num_draws=0 must be ≥ 1"),
    ("llc-lr-zero", ["llc.lr=0"], "error: llc.lr=0 must be > 0"),
    ("llc-every-too-long", ["train.steps=50"], "llc.every=100 is longer than the run (50 steps)"),
    (
        "too-few-fit-points",
        ["train.steps=100", "llc.every=50"],
        "error: the fit would get 2 points (λ steps every llc.every=50 in steps 50-100 of 100) and needs 3: "
        "lower llc.every to ≤ 33",
    ),
    ("llc-online-not-bool", ["llc.online=yes"], "error: llc.online=yes is not true or false"),
    ("llc-method", ["llc.method=bad"], "error: llc.method=bad: choose batched or serial"),
    ("llc-sampler", ["llc.sampler=sgnht"], "error: llc.sampler=sgnht: choose sgld, rmsprop_sgld"),
    (
        "underdamped-without-localization",
        ["llc.sampler=underdamped", "llc.localization=0"],
        "error: llc.localization=0: llc.sampler=underdamped needs a localization > 0",
    ),
    ("fit-points", ["fit.points=bad"], "error: fit.points=bad: choose llc or all"),
    (
        "optimizer-setting",
        ["optimizer.weight_decay=-1"],
        "error: optimizer torch.optim.SGD refused its settings (ValueError: Invalid weight_decay value: -1): "
        "check the optimizer.* values",
    ),
    (
        "model-setting",
        ["model.hidden=abc"],
        "error: model pipeline.models.MLP refused its settings (ValueError: ",
    ),
    ("seeds-zero", ["seeds=0"], "error: seeds=0: give a number of seeds ≥ 1"),
    ("max-wait-negative", ["tracking.max_wait_s=-1"], "error: tracking.max_wait_s=-1 must be ≥ 0 seconds"),
    ("stages-order", ["stages=[fit,train]"], "error: stages=['fit', 'train'] out of order"),
    ("stages-not-a-list", ["stages=train"], "error: stages=train is not a list: write stages=[train]"),
    ("device-cuda", ["device=cuda"], "error: device=cuda but torch sees no CUDA device: use device=cpu"),
    # the command line
    (
        "unknown-key",
        ["lr_typo=0.1"],
        "error: unknown key 'lr_typo' (did you mean 'lr'?): write lr=0.1, or +lr_typo",
    ),
    ("unknown-nested-key", ["llc.drawz=5"], "(did you mean 'llc.num_draws'?): write llc.num_draws=5"),
    ("malformed-override", ["lr=["], "error: malformed override 'lr=['"),
    ("sweep-unknown-key", ["-m", "lr=0.1,0.2", "nonexistent=1,2"], "error: unknown key 'nonexistent'"),
    (
        "sweep-unknown-option",
        ["-m", "optimizer=sgd,rmsprop"],
        "unknown optimizer 'rmsprop': choose from adam,",
    ),
    (
        "unknown-group-option",
        ["model=resnet_nonexistent"],
        "error: unknown model 'resnet_nonexistent': choose",
    ),
    ("sweep-without-m", ["lr=0.1,0.2"], "error: lr=0.1,0.2 is a sweep: add -m"),
    (
        "option-between-overrides",
        ["lr=0.1", "-m", "seed=0,1"],
        "error: option -m stands between overrides: put options first, e.g. python launch.py -m ",
    ),
    ("group-not-added", ["experiment=moons_posterior"], "add it with +experiment=moons_posterior"),
    ("key-added-twice", ["+lr=0.1"], "error: key 'lr' exists already: write lr=0.1"),
    # paths
    (
        "mnist-missing",
        ["dataset=mnist", "dataset.root={d}/no-mnist"],
        "error: MNIST not found under {d}/no-mnist",
    ),
    (
        "cifar10-missing",
        ["dataset=cifar10", "dataset.root={d}/no-cifar"],
        "error: CIFAR10 not found under {d}/no-cifar",
    ),
    (
        "tinyimagenet-missing",
        ["dataset=tinyimagenet", "dataset.root={d}/no-tin"],
        "error: Tiny ImageNet not found under {d}/no-tin",
    ),
    (
        "tinystories-missing",
        ["+experiment=tinystories_sgd", "dataset.path={d}/no-stories.txt"],
        "error: TinyStories text not found at {d}/no-stories.txt",
    ),
    (
        "lm-checkpoint-missing",
        ["+experiment=tinystories_sgd", "dataset.path={d}/stories.txt", "model.path={d}/no-lm"],
        "error: no causal LM checkpoint at {d}/no-lm",
    ),
    (
        "torchvision-weights-missing",
        ["model=torchvision", "model.weights={d}/no.pth", "dataset=synthetic", "dataset.shape=[3,8,8]"],
        "error: no pretrained resnet18 weights at {d}/no.pth",
    ),
    (
        "run-id-missing",
        ["stages=[fit]", "run_id=0123456789abcdef"],
        "error: no run 0123456789abcdef in sqlite:///",
    ),
    # tracking URIs
    (
        "uri-not-a-uri",
        ["tracking.uri=mlflow.db"],
        "error: tracking URI 'mlflow.db' is not a URI: use sqlite:///",
    ),
    (
        "uri-folder-missing",
        ["tracking.uri=sqlite:///{d}/no-folder/mlflow.db"],
        "error: tracking store folder {d}/no-folder does not exist: create it",
    ),
    (
        "uri-server-unreachable",
        ["tracking.uri=http://127.0.0.1:9"],
        "error: cannot reach the MLflow tracking server at http://127.0.0.1:9",
    ),
    ("uri-unknown-scheme", ["tracking.uri=foo://x"], "error: tracking URI foo://x has scheme 'foo'"),
    (
        "uri-file-store",
        ["tracking.uri=file://{d}/mlruns"],
        "has scheme 'file', which MLflow keeps no runs in",
    ),
]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Path, str, str]:
    """A folder with a store holding one finished tiny run: (folder, store URI, run id)."""
    folder = tmp_path_factory.mktemp("bad-input")
    store = f"sqlite:///{folder / 'mlflow.db'}"
    res = launch([*TINY, f"tracking.uri={store}", f"tracking.experiment={EXPERIMENT}"], cwd=folder)
    assert res.returncode == 0, res.stderr[-3000:]
    (folder / "stories.txt").write_text("Once upon a time.\n<|endoftext|>\n")
    [run] = Tracker(store, EXPERIMENT).find_runs({})
    assert run.status == "FINISHED"
    return folder, store, run.run_id


def command(args: list[str], store: str) -> list[str]:
    """The case's options, the tiny job's settings, the recorded store, the case's overrides."""
    flags = [a for a in args if a.startswith("-")]
    if flags and args[0] not in flags:  # a case about where options go keeps its order
        return [*SHRINK, *args]
    overrides = [a for a in args if not a.startswith("-")]
    tracking = [] if any(a.startswith("tracking.uri") for a in overrides) else [f"tracking.uri={store}"]
    return [*flags, *SHRINK, *tracking, *overrides]


# In the default suite: the command-line cases (no torch import, a third of a second each) and one
# case of each other kind; the rest (2-5 s each, a CLI start with torch) run with -m slow.
FAST = {
    "lr-negative",
    "lr-infinite",
    "batch-above-n",
    "llc-every-too-long",
    "too-few-fit-points",
    "unknown-key",
    "unknown-nested-key",
    "malformed-override",
    "sweep-unknown-key",
    "sweep-unknown-option",
    "unknown-group-option",
    "sweep-without-m",
    "option-between-overrides",
    "group-not-added",
    "key-added-twice",
    "mnist-missing",
    "lm-checkpoint-missing",
    "torchvision-weights-missing",
    "uri-server-unreachable",
}


def _params() -> list:
    gpu = pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
    return [
        pytest.param(
            a,
            f,
            id=i,
            marks=([] if i in FAST else [pytest.mark.slow]) + ([gpu] if i == "device-cuda" else []),
        )
        for i, a, f in BEFORE_ANY_RUN
    ]


@pytest.mark.parametrize(("args", "fragment"), _params())
def test_refused_before_any_run(recorded, args: list[str], fragment: str) -> None:
    folder, store, run_id = recorded
    args = [a.format(d=folder, run=run_id) for a in args]
    before = snapshot(store)
    one_line(launch(command(args, store), cwd=folder), fragment.format(d=folder))
    assert snapshot(store) == before  # no run created, nothing recorded changed


# (id, the artifact overwritten with garbage, the stages re-run on the run)
CORRUPTED = [
    ("checkpoint", "checkpoints/step_00000060.pt", "[llc]"),
    ("trajectory", "trajectory.parquet", "[fit]"),
    ("llc-table", "llc.parquet", "[fit]"),
    ("config", "config.yaml", "[llc,fit]"),
]


@pytest.mark.parametrize(
    ("path", "stages"),
    [
        pytest.param(p, s, id=i, marks=[] if i == "checkpoint" else [pytest.mark.slow])
        for i, p, s in CORRUPTED
    ],
)
def test_corrupted_artifact_ends_the_rerun_in_one_line_and_the_run_keeps_everything(
    recorded, path: str, stages: str
) -> None:
    folder, store, run_id = recorded
    [file] = (folder / "mlartifacts").glob(f"**/{run_id}/artifacts/{path}")
    original = file.read_bytes()
    try:
        file.write_bytes(b"\x00garbage\xff" * 64)  # a disk error, a copy cut short, an overwrite
        before = snapshot(store)
        args = [f"stages={stages}", f"run_id={run_id}", *SHRINK, f"tracking.uri={store}"]
        line = one_line(launch(args, cwd=folder), f"error: artifact {path} of run {run_id} is unreadable (")
        assert line.endswith(
            "re-train the point (launch it again with its first stage; the run's params hold its config)"
        )
        after = snapshot(store)
        tags_before, tags_after = before["runs"][run_id].pop("tags"), after["runs"][run_id].pop("tags")
        assert after == before  # status FINISHED again, params, every metric point, every file's bytes
        note = tags_after.pop("rerun_failure")  # the one tag written: why this re-run failed
        tags_before.pop("rerun_failure", None)  # (an earlier case's note, replaced)
        assert tags_after == tags_before  # no override.<key> tag claims settings that recorded nothing
        assert note.startswith(
            f"re-run of {stages.strip('[]').split(',')} failed: UserError: artifact {path}"
        )
    finally:
        file.write_bytes(original)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[list[str]]:
    """`folder`, read-only to the CLI; yields the prefix to launch it with.

    Root ignores file permissions, so: a read-only tmpfs mounted on the folder where this process
    may mount (root with CAP_SYS_ADMIN, as on this machine), else the folder chmod 555 and the CLI
    run without CAP_DAC_OVERRIDE (setpriv, as in an unprivileged container), so that root too is
    refused the write."""
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode == 0:
        try:
            yield []
        finally:
            subprocess.run(["umount", str(folder)], check=True)
        return
    folder.chmod(0o555)
    prefix = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("root without mount rights nor setpriv: no way to make a folder read-only to root")
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]
    try:
        yield prefix
    finally:
        folder.chmod(0o755)


def test_read_only_store_folder_is_one_line(recorded, tmp_path: Path) -> None:
    folder, store, _ = recorded
    before = snapshot(store)
    with read_only(tmp_path / "ro") as prefix:
        args = [*SHRINK, f"tracking.uri=sqlite:///{tmp_path}/ro/mlflow.db"]
        res = launch(args, cwd=folder, prefix=prefix)
        assert list((tmp_path / "ro").iterdir()) == []
    one_line(res, f"error: tracking store folder {tmp_path}/ro is not writable (")
    assert snapshot(store) == before


@pytest.mark.parametrize(
    ("args", "where", "fragment"),
    [
        pytest.param([], "cwd", "error: cannot write Hydra's output folder outputs/", id="cwd-outputs"),
        pytest.param(["hydra.run.dir={ro}/out"], "tmp", "set hydra.run.dir=<writable folder>", id="run-dir"),
        pytest.param(
            ["-m", "hydra.sweep.dir={ro}/sweep", "seed=0,1"], "tmp", "set hydra.sweep.dir=", id="sweep-dir"
        ),
    ],
)
def test_read_only_output_folder_is_one_line(
    recorded, tmp_path: Path, args, where: str, fragment: str
) -> None:
    _, store, _ = recorded
    before = snapshot(store)
    ro = tmp_path / "ro"
    with read_only(ro) as prefix:
        cwd = ro if where == "cwd" else tmp_path
        res = launch(command([a.format(ro=ro) for a in args], store), cwd=cwd, prefix=prefix)
        assert list(ro.iterdir()) == []
    one_line(res, fragment)
    assert snapshot(store) == before


@pytest.mark.slow  # SQLite's own busy wait makes one attempt last 20 s, whatever tracking.max_wait_s
def test_busy_store_is_one_line_and_loses_nothing(recorded) -> None:
    folder, store, _ = recorded
    before = snapshot(store)
    holder = hold_lock(Path(store.removeprefix("sqlite:///")), 60)
    try:
        res = launch([*SHRINK, f"tracking.uri={store}", "tracking.max_wait_s=1"], cwd=folder)
    finally:
        holder.kill()
        holder.wait()
    one_line(res, "stayed unavailable for ")
    assert "raise tracking.max_wait_s (now 1)" in res.stderr
    assert snapshot(store) == before


def test_a_job_whose_every_estimate_failed_ends_in_one_line_and_keeps_its_records(tmp_path: Path) -> None:
    """`llc.lr=10` makes every chain diverge: the job does not finish as if all went well (it used to
    exit 0 with λ = nan): one line naming the setting to change, exit 2, the run FAILED with what it
    recorded (trajectory, checkpoints, the failed estimates' table), and no fit on λ = nan."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = launch(
        [*TINY, f"tracking.uri={store}", f"tracking.experiment={EXPERIMENT}", "llc.lr=10"], cwd=tmp_path
    )
    line = one_line(res, "error: all 3 λ estimates failed (first, at step 30: NaN detected in loss")
    assert "lower it, e.g. llc.lr=0.1, or use llc=calibrated" in line
    [run] = Tracker(store, EXPERIMENT).find_runs({})
    assert run.status == "FAILED" and run.tags["failure_reason"].startswith(
        "UserError: all 3 λ estimates failed"
    )
    client = MlflowClient(store)
    kept = {a.path for a in client.list_artifacts(run.run_id)}
    assert {"trajectory.parquet", "llc.parquet", "checkpoints", "config.yaml"} <= kept
    assert "fit.json" not in kept and run.tags.get("stage.train") == "done" and "stage.llc" not in run.tags
