"""The command-line check before Hydra (`pipeline.config.overrides`) refuses no command the docs give.

Its refusals, through the real CLI, are in tests/integration/test_bad_input.py."""

from __future__ import annotations

import re
import shlex

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


def test_help_and_other_config_flags_are_left_to_hydra() -> None:
    assert problem(["--help"], CONF) is None
    assert problem(["-cn", "other", "lr_typo=1"], CONF) is None
    assert problem(["--cfg", "job", "lr=1"], CONF) is None
