"""The one door to MLflow: the store, the retrying client, runs, artifacts, queries, and the names
of everything a run records (`names`). Nothing outside this package imports mlflow."""

from __future__ import annotations

from pipeline.errors import UserError
from pipeline.tracking import names, store
from pipeline.tracking.artifacts import Artifacts, unreadable_artifact
from pipeline.tracking.client import DEFAULT_MAX_WAIT_S, Client
from pipeline.tracking.queries import Queries, RunRecord
from pipeline.tracking.runs import Runs
from pipeline.tracking.store import ui_command, ui_url


class Tracker(Client, Runs, Artifacts, Queries):
    """An MLflow store plus the experiment the runs go to: every read and write of a run."""


def open_if_exists(
    uri: str | None, experiment: str, max_wait_s: float = DEFAULT_MAX_WAIT_S
) -> Tracker | None:
    """A Tracker on a store and experiment that exist already, else None. Unlike `Tracker(...)`, it
    never creates a SQLite file or an experiment, nor writes anything."""
    resolved = store.resolve_uri(uri)
    if resolved.startswith("sqlite:///") and not store.sqlite_path(resolved).is_file():
        return None
    tracker = Tracker(resolved, None, max_wait_s)
    return tracker if tracker.use_experiment(experiment, create=False) else None


def open_existing(uri: str | None, experiment: str, max_wait_s: float = DEFAULT_MAX_WAIT_S) -> Tracker:
    """`open_if_exists`, for a store and experiment that must exist (for reading: the analysis):
    one line naming what is missing."""
    if (tracker := open_if_exists(uri, experiment, max_wait_s)) is not None:
        return tracker
    resolved = store.resolve_uri(uri)
    if resolved.startswith("sqlite:///") and not store.sqlite_path(resolved).is_file():
        raise UserError(
            f"no tracking store at {resolved}: run an experiment first or pass --uri sqlite:///<path>.db"
        )
    names_ = sorted(e.name for e in Tracker(resolved, None, max_wait_s).client.search_experiments())
    raise UserError(f"no experiment '{experiment}' in {resolved}: pass --experiment with one of {names_}")


__all__ = [
    "Tracker",
    "RunRecord",
    "names",
    "open_existing",
    "open_if_exists",
    "ui_command",
    "ui_url",
    "unreadable_artifact",
]
