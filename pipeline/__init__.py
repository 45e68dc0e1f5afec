"""almost-bayesian: train -> llc -> fit on MLflow runs, and the analysis of the paper.

Folders by role, each importing only those above it in this list (`tests/unit/test_layering.py`):
`errors`, `progress`, `interrupts` (the base); `models/`, `data/`; `slt/` (the science: stacked
models, the SGLD core, λ, displacement, exponents, tempering, clusters, the posterior); `training/`;
`tracking/` (the only door to MLflow); `config/` (schema, checks, hashes, the command line, config ->
objects); `stages/` (each reads its inputs back from the run and writes its records); `jobs/` (one
job's lifecycle); `api` (the Python API, docs/api.md). The manual's "Layout" page (docs/layout.md)
has the full map.

Configs of stored runs name some objects by the modules they lived in before this layout
(`_target_: pipeline.language.causal_lm`, `pipeline.tasks.CausalLM`, ...): those module names still
import, as aliases of the modules the objects live in now (`RENAMED`).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types

# Old module name -> the modules its names live in now (looked up in order).
RENAMED: dict[str, tuple[str, ...]] = {
    "pipeline.language": ("pipeline.models.language", "pipeline.data.text"),
    "pipeline.modular": ("pipeline.data.modular", "pipeline.models.embedding"),
    "pipeline.tasks": ("pipeline.models.tasks",),
    "pipeline.posterior": ("pipeline.slt.posterior",),
}


class _Renamed(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module name as a module whose attributes are those of its new homes."""

    def find_spec(self, name: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        return importlib.machinery.ModuleSpec(name, self) if name in RENAMED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None  # the default module object

    def exec_module(self, module: types.ModuleType) -> None:
        homes = RENAMED[module.__name__]

        def __getattr__(attr: str) -> object:
            # Dunder look-ups are other code probing every loaded module (torch's import does), not
            # a config's name: answering them would import the new homes mid-import of another.
            if attr.startswith("__"):
                raise AttributeError(attr)
            for home in homes:
                found = importlib.import_module(home)
                if hasattr(found, attr):
                    return getattr(found, attr)
            raise AttributeError(f"module {module.__name__} (now {', '.join(homes)}) has no attribute {attr}")

        module.__doc__ = f"Former name of {', '.join(homes)}, for configs of stored runs."
        module.__getattr__ = __getattr__


if not any(isinstance(finder, _Renamed) for finder in sys.meta_path):
    sys.meta_path.append(_Renamed())
