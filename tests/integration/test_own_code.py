"""A data set and a model of one's own, from a folder outside the checkout (docs/bring-your-own.md):
the worked example run as the page writes it, and each mistake of the page's table through the real
command line, one line and exit status 2 before training, beside a store compared before and after."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline.tracking import Tracker
from tests.helpers.cli import environment, launch, one_line
from tests.helpers.config import ROOT, TINY
from tests.helpers.stores import snapshot

PAGE = ROOT / "docs" / "bring-your-own.md"
EXAMPLE = ROOT / "examples" / "waves"

# Mistakes a user makes in their own code (the page's table), beside the example's own files.
MINE = """
import numpy as np, torch
from torch import nn
from torch.utils.data import TensorDataset
from waves import waves


def labels_from_one(n, noise, seed, classes):
    x, y, xt, yt = waves(n=n, noise=noise, seed=seed, classes=classes)
    return x, y + 1, xt, yt + 1


def labels_float(n, noise, seed, classes):
    x, y, xt, yt = waves(n=n, noise=noise, seed=seed, classes=classes)
    return x, (y + 0.5).astype(float), xt, yt


def one_dataset(n, noise, seed, classes):
    x, y, _, _ = waves(n=n, noise=noise, seed=seed, classes=classes)
    return TensorDataset(torch.tensor(x), torch.tensor(y))


def float64_column_labels(n, noise, seed, classes):  # converted, with notes
    x, y, xt, yt = waves(n=n, noise=noise, seed=seed, classes=classes)
    return (TensorDataset(torch.tensor(x, dtype=torch.float64), torch.tensor(y[:, None])),
            TensorDataset(torch.tensor(xt, dtype=torch.float64), torch.tensor(yt[:, None])))


class Head5(nn.Module):
    def __init__(self, in_features):
        super().__init__()
        self.fc = nn.Linear(in_features, 5)

    def forward(self, x):
        return self.fc(x.flatten(1))


class Net(nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.fc = nn.Linear(n_in, n_out)

    def forward(self, x):
        return self.fc(x.flatten(1))


class Broken(nn.Module):
    def __init__(self, in_features, num_classes):
        super().__init__()
        self.fc = nn.Linear(in_features + 1, num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1))
"""

# (id, overrides after the base command, a fragment of the line, whether the folder is on PYTHONPATH)
CASES = [
    (
        "target-typo",
        ["model._target_=conv1d.Conv1dd"],
        "conv1d has no 'Conv1dd' (did you mean conv1d.Conv1d?)",
    ),
    (
        "no-pythonpath",  # a new point (seed 7): the store's finished point would print its report
        ["seed=7"],
        "error: model._target_=conv1d.Conv1d: no module named 'conv1d': is its folder on PYTHONPATH?",
    ),
    (
        "import-fails",
        ["dataset._target_=broken.data"],
        "error: dataset._target_: importing broken failed at {u}/broken.py:2 (NameError: name 'np' is "
        "not defined): fix the module",
    ),
    ("unknown-own-option", ["dataset=wave"], "error: unknown dataset 'wave': choose from cifar10, digits,"),
    (
        "searchpath-missing",
        ["hydra.searchpath=[file://{u}/cnf]"],
        "{u}/cnf is not available (no such folder)",
    ),
    (
        "labels-from-one",
        ["dataset._target_=mine.labels_from_one", "~dataset.num_classes"],
        "error: labels run 1..10 and none is 0: shift them to 0..9 in your loader",
    ),
    (
        "labels-outside-classes",
        ["dataset._target_=mine.labels_from_one"],
        "error: labels_from_one's train labels run 1..10 but num_classes is 10: labels must be 0..9: "
        "subtract 1 in your loader",
    ),
    (
        "labels-not-indices",
        ["dataset._target_=mine.labels_float"],
        ".5, not a class index: labels must be integers",
    ),
    (
        "one-dataset",
        ["dataset._target_=mine.one_dataset"],
        "error: the data set function returned one TensorDataset",
    ),
    (
        "setting-not-taken",
        ["+dataset.nois=1"],
        "error: dataset waves.waves takes no 'nois': its parameters are (n,",
    ),
    (
        "constructor-names",
        ["model._target_=mine.Net", "~model.channels", "~model.kernel"],
        "error: model mine.Net needs 'n_in', 'n_out', which neither model.* nor the data set gives: the "
        "product passes a constructor the sizes it names (in_features=64, in_shape=(1, 64), num_classes=10, "
        "out_features=10)",
    ),
    (
        "output-size",
        ["model._target_=mine.Head5", "~model.channels", "~model.kernel"],
        "error: model mine.Head5 gives outputs of shape (64, 5) on a batch of shape (64, 1, 64) float32; "
        "waves has 10 classes, so it must give (64, 10)",
    ),
    (
        "forward-fails",
        ["model._target_=mine.Broken", "~model.channels", "~model.kernel"],
        "error: model mine.Broken fails on a batch of shape (64, 1, 64) float32 of waves (RuntimeError: mat1 "
        "and mat2 shapes cannot be multiplied (64x64 and 65x10))",
    ),
]
# In the default suite: those that stop before torch is imported, and one of each other kind.
FAST = {
    "target-typo",
    "no-pythonpath",
    "unknown-own-option",
    "searchpath-missing",
    "labels-from-one",
    "output-size",
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> tuple[Path, str]:
    """A user's folder (the example, plus modules with mistakes) and a store holding a finished run
    of the example's data and model: (folder, store URI)."""
    u = tmp_path_factory.mktemp("home") / "waves"
    shutil.copytree(EXAMPLE, u)
    (u / "mine.py").write_text(MINE)
    (u / "broken.py").write_text(
        "# a data set module with a mistake\nX = np.zeros(3)\n\ndef data():\n    pass\n"
    )
    store = f"sqlite:///{u / 'mlflow.db'}"
    res = launch(base(u, store), cwd=u, env={"PYTHONPATH": str(u)})
    assert res.returncode == 0, res.stderr[-3000:]
    return u, store


def base(u: Path, store: str) -> list[str]:
    return [
        f"hydra.searchpath=[file://{u}/conf]",
        "dataset=waves",
        "model=conv1d",
        *TINY,
        f"tracking.uri={store}",
    ]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [pytest.param(a, f, id=i, marks=[] if i in FAST else [pytest.mark.slow]) for i, a, f in CASES],
)
def test_own_code_mistakes_are_one_line_before_any_run(
    folder, request, args: list[str], fragment: str
) -> None:
    u, store = folder
    args = [a.format(u=u) for a in args]
    command = base(u, store)
    if any(a.startswith("hydra.searchpath=") for a in args):
        command = command[1:]
    env = {"PYTHONPATH": "" if request.node.callspec.id == "no-pythonpath" else str(u)}
    before = snapshot(store)
    one_line(launch([*command, *args], cwd=u, env=env), fragment.format(u=u))
    assert snapshot(store) == before  # no run created, nothing recorded changed


@pytest.mark.slow
def test_unambiguous_forms_are_converted_with_notes(folder) -> None:
    u, store = folder
    res = launch(
        [*base(u, store), "dataset._target_=mine.float64_column_labels", "stages=[train]"],
        cwd=u,
        env={"PYTHONPATH": str(u)},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "note: x_train is float64: converted to float32" in res.stdout
    assert "note: y_train has shape (1000, 1): flattened to (1000,)" in res.stdout
    [run] = [
        r
        for r in Tracker(store, "almost-bayesian").find_runs({})
        if r.params["dataset._target_"].startswith("mine")
    ]
    assert run.status == "FINISHED" and run.tags["dataset"] == "float64_column_labels"


def shell_blocks(page: Path) -> tuple[str, str]:
    """The page's setup block (the first bash block) and the block marked as run by this test."""
    text = page.read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    marked = re.search(
        r"<!-- tests/integration/test_own_code.py runs the next block.*?-->\n```bash\n(.*?)```", text, re.S
    )
    assert blocks and marked
    return blocks[0], marked.group(1)


@pytest.mark.slow  # three jobs with the calibrated λ and the analysis: about 4 minutes on 2 cores
def test_the_worked_example_runs_as_the_page_writes_it(tmp_path: Path) -> None:
    setup, example = shell_blocks(PAGE)
    # The checkout and its environment are this test's; everything else as written.
    setup = setup.replace("AB=/path/to/almost-bayesian", f"AB={ROOT}").replace(
        "source $AB/.venv/bin/activate", f"export PATH={Path(sys.executable).parent}:$PATH"
    )
    env = environment({"HOME": str(tmp_path)})
    env.pop("PYTHONPATH", None)
    res = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", setup + example],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    assert res.returncode == 0, (res.stdout[-3000:], res.stderr[-3000:])
    home = tmp_path / "waves"
    runs = Tracker(f"sqlite:///{home / 'mlflow.db'}", "almost-bayesian").find_runs({"sweep": "waves"})
    runs = [r for r in runs if r.tags.get("analysis") != "true"]  # the analysis's own run aside
    assert len(runs) == 3 and {r.status for r in runs} == {"FINISHED"}
    assert {r.tags["dataset"] for r in runs} == {"waves"}
    assert sorted(r.params["model._target_"] for r in runs) == [
        "conv1d.Conv1d", "conv1d.Conv1d", "pipeline.models.MLP"
    ]  # fmt: skip
    table = pd.read_csv(home / "results" / "waves" / "runs.csv")
    assert len(table) == 3 and (table["lambda_final"] > 0).all() and table["d_s"].notna().all()
    assert (home / "results" / "waves" / "report.html").stat().st_size > 10_000
    assert "Lemma 3.4" in res.stdout and "data: waves" in res.stdout
    assert not (ROOT / "examples" / "waves" / "mlflow.db").exists()  # nothing written into the checkout
