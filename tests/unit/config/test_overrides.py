"""The command-line check before Hydra (`pipeline.config.overrides`) refuses no command the docs give.

Its refusals, through the real CLI, are in tests/integration/test_bad_input.py."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from pipeline.config.overrides import problem
from tests.helpers.config import CONF, ROOT

DOCS = [ROOT / "README.md", ROOT / "launch.py", *CONF.rglob("*.yaml"), *(ROOT / "docs").rglob("*.md")]


def documented_commands() -> list[list[str]]:
    """Every `python launch.py ...` in the README, launch.py, the configs and docs/ (placeholders
    such as <id> filled in; lines continued with a backslash cut there)."""
    commands = set()
    for doc in DOCS:
        lines = [line for line in doc.read_text().splitlines() if "error: " not in line]  # not the messages
        for m in re.finditer(r"python launch\.py([^\n`#|\\]*)", "\n".join(lines)):
            line = re.sub(r"<[^>]*>", "x", m.group(1)).replace("[overrides]", "").replace("...", "")
            if "=NAME" not in line:  # `+experiment=NAME`: a name to fill in
                commands.add(line.strip())
    return [shlex.split(c) for c in sorted(commands)]


def test_every_documented_command_passes() -> None:
    commands = documented_commands()
    assert len(commands) > 40
    refused = {" ".join(c): p for c in commands if (p := problem(c, CONF))}
    assert refused == {}


def test_sweeps_are_checked_for_every_option_of_a_group() -> None:
    # model.channels is a key of the conv model only: the mlp point of the sweep would fail in Hydra.
    line = problem(["-m", "model=conv,mlp", "model.channels=[8]"], CONF)
    assert line is not None and line.startswith("unknown key 'model.channels'")
    assert problem(["-m", "model=conv", "model.channels=[8]"], CONF) is None
    assert problem(["-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "seed=0,1"], CONF) is None
    assert problem(["+lr_typo=0.1"], CONF) is None  # adding a key is allowed


def test_help_is_left_to_hydra() -> None:
    assert problem(["--help"], CONF) is None
    assert problem(["--hydra-help", "lr_typo=1"], CONF) is None
    assert problem(["--cfg", "job", "lr=1"], CONF) is None


@pytest.fixture
def user_conf(tmp_path: Path) -> Path:
    """A user's config folder outside the checkout: a data set, a model, a primary config of its own."""
    conf = tmp_path / "conf"
    (conf / "dataset").mkdir(parents=True)
    (conf / "model").mkdir()
    (conf / "dataset" / "mnist1d.yaml").write_text("_target_: mydata.mnist1d\nn: 400\n")
    (conf / "model" / "conv1d.yaml").write_text("_target_: mymodels.Conv1d\nchannels: 8\n")
    (conf / "myexp.yaml").write_text(
        f"defaults:\n  - config\n  - override dataset: mnist1d\n  - _self_\nhydra:\n  searchpath: [file://{conf}]\n"
    )
    return conf


def test_the_users_search_path_extends_the_check(user_conf: Path) -> None:
    """hydra.searchpath (command line, primary config), -cd and -cp/-cn: the user's options are known,
    mistakes in them still get one line, sweeps mix the product's options and the user's."""
    sp = f"hydra.searchpath=[file://{user_conf}]"
    for route in ([sp], ["-cd", str(user_conf)], [f"--config-dir={user_conf}"]):
        assert problem([*route, "dataset=mnist1d", "model=conv1d", "model.channels=4"], CONF) is None
        line = problem([*route, "dataset=mnist1dd"], CONF)
        assert line.startswith("unknown dataset 'mnist1dd': choose from ") and "mnist1d," in line
        assert problem([*route, "model=conv1d", "model.chanels=4"], CONF).startswith(
            "unknown key 'model.chanels' (did you mean 'model.channels'?)"
        )
        assert problem(["-m", *route, "model=mlp,conv1d", "lr=0.1,0.2"], CONF) is None
        assert problem(["-m", *route, "model=mlp,conv1d", "model.channels=4"], CONF).startswith(
            "unknown key 'model.channels'"  # the mlp point has no channels
        )
    for route in (["-cp", str(user_conf), "-cn", "myexp"], ["-cd", str(user_conf), "-cn", "myexp"]):
        assert problem([*route, "model=conv1d", "lr=1"], CONF) is None
        assert problem([*route, "lr_typo=1"], CONF).startswith("unknown key 'lr_typo' (did you mean 'lr'?)")
        assert problem([*route, "model=conv1dd"], CONF).startswith("unknown model 'conv1dd'")
    relative = os.path.relpath(user_conf, CONF.parent)  # -cp is relative to launch.py's folder
    assert problem(["-cp", relative, "-cn", "myexp", "model=conv1d"], CONF) is None


def test_search_path_mistakes_get_one_line(user_conf: Path) -> None:
    missing = user_conf.parent / "cnf"
    assert problem([f"hydra.searchpath=[file://{missing}]", "lr=1"], CONF) == (
        f"hydra.searchpath in the command line: {missing} is not available (no such folder): write "
        "file:///absolute/path/to/conf, or file://relative/to/the/current/folder"
    )
    assert problem(["-cd", str(missing)], CONF) == (
        f"-cd {missing}: no folder {missing}: give the folder that holds your config groups"
    )
    assert problem(["-cp", str(missing), "-cn", "myexp"], CONF).startswith(f"-cp {missing}: no folder")
    assert problem(["-cn", "other", "lr=1"], CONF) == (
        f"no primary config 'other' (-cn) in {CONF}: name a .yaml file of one of them, without .yaml"
    )
    (user_conf / "myexp.yaml").write_text(
        f"defaults:\n  - config\nhydra:\n  searchpath: [file://{missing}]\n"
    )
    assert problem(["-cd", str(user_conf), "-cn", "myexp"], CONF).startswith(
        f"hydra.searchpath in the primary config myexp: {missing} is not available"
    )
