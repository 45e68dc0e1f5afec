"""The layering, read from the imports themselves (every `import` and `from ... import`, at the top of
a module or inside a function): each folder of `pipeline/` imports only the folders below it
(`tracking/` only the base; `api.py`, the Python API, is the top: all of them, mlflow only through
`tracking/`), the science and training know neither MLflow nor Hydra, only `tracking/` imports
mlflow, the analysis reads runs through `tracking/` only, and no modules import each other in a
circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers.config import ROOT

# Lowest first: a folder may import the folders before it (and itself).
LAYERS = ["base", "models", "data", "slt", "training", "tracking", "config", "stages", "jobs", "api"]
BASE = {"pipeline.errors", "pipeline.progress", "pipeline.interrupts"}
ALLOWED = {name: set(LAYERS[: i + 1]) for i, name in enumerate(LAYERS)}
ALLOWED["tracking"] = {"base", "tracking"}  # the door to MLflow knows nothing of the science
# What a folder may not import from outside the project.
FORBIDDEN = {
    "base": ("mlflow", "hydra", "omegaconf"),
    "models": ("mlflow", "hydra", "omegaconf"),
    "data": ("mlflow", "hydra", "omegaconf"),
    "slt": ("mlflow", "hydra", "omegaconf"),
    "training": ("mlflow", "hydra", "omegaconf"),
    "config": ("mlflow",),
    "stages": ("mlflow",),
    "jobs": ("mlflow",),
    "api": ("mlflow",),  # the Python API (`api.py`, on top of everything): MLflow through tracking/
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The modules a file imports, absolute (a `from pkg import name` of a submodule counts as it)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def sources(*folders: str) -> dict[str, set[str]]:
    files = [p for folder in folders for p in sorted((ROOT / folder).rglob("*.py"))]
    return {module_name(p): imports(p) for p in files}


MODULES = sources("pipeline")
PROJECT = set(MODULES)


def layer(module: str) -> str | None:
    """The layer of a pipeline module (None: the package itself, whose old names alias the layers)."""
    if module == "pipeline":
        return None
    if module in BASE:
        return "base"
    return module.split(".")[1]


def test_every_module_is_in_a_layer() -> None:
    assert {layer(m) for m in PROJECT} - {None} == set(LAYERS)


@pytest.mark.parametrize("name", LAYERS)
def test_a_layer_imports_only_layers_below_it(name: str) -> None:
    allowed = ALLOWED[name]
    wrong = {
        (m, imp)
        for m, found in MODULES.items()
        if layer(m) == name
        for imp in found
        if imp in PROJECT and layer(imp) not in allowed
    }
    assert wrong == set()


@pytest.mark.parametrize("name", sorted(FORBIDDEN))
def test_a_layer_keeps_out_of_what_it_must_not_know(name: str) -> None:
    wrong = {
        (m, imp)
        for m, found in MODULES.items()
        if layer(m) == name
        for imp in found
        if imp.split(".")[0] in FORBIDDEN[name]
    }
    assert wrong == set()


def test_only_tracking_talks_to_mlflow() -> None:
    everything = {**MODULES, **sources("analysis", "bench")}
    talking = {m for m, found in everything.items() if any(i.split(".")[0] == "mlflow" for i in found)}
    # bench/baseline.py is the straightforward script ours is measured against: MLflow's fluent API.
    assert {m for m in talking if not m.startswith("pipeline.tracking")} == {"bench.baseline"}


def test_analysis_reads_runs_through_tracking_only() -> None:
    used = {imp for found in sources("analysis").values() for imp in found if imp.startswith("pipeline.")}
    assert {layer(m) for m in used if m in PROJECT} <= {"base", "tracking"}


def test_outside_tracking_nothing_reaches_for_mlflow_objects() -> None:
    """The retried raw client (`tracker.client`) is for tests and tools: the product's code reads and
    writes runs through the Tracker's own methods, which hand back plain records."""
    users = [
        p
        for p in sorted((ROOT / "pipeline").rglob("*.py")) + sorted((ROOT / "analysis").rglob("*.py"))
        if "tracking" not in p.parts and ".client." in p.read_text()
    ]
    assert users == []


def test_no_modules_import_each_other_in_a_circle() -> None:
    graph = {m: {i for i in found if i in PROJECT and i != m} for m, found in MODULES.items()}
    # A package's __init__ re-exporting its modules is not a dependency of those modules on it.
    graph = {m: {i for i in deps if not m.startswith(i + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(m: str, path: list[str]) -> bool:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle.extend(path[path.index(n) :] + [m, n] if n in path else [m, n])
                return True
            if state.get(n) is None and visit(n, [*path, m]):
                return True
        state[m] = 2
        return False

    assert not any(visit(m, []) for m in sorted(graph) if state.get(m) is None), cycle
