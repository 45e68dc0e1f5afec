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


def open_existing(uri: str | None, experiment: str, max_wait_s: float = DEFAULT_MAX_WAIT_S) -> Tracker:
    """A Tracker on a store and experiment that must already exist (for reading: the analysis).

    Unlike `Tracker(...)`, it never creates a SQLite file or an experiment."""
    resolved = store.resolve_uri(uri)
    if resolved.startswith("sqlite:///") and not store.sqlite_path(resolved).is_file():
        raise UserError(
            f"no tracking store at {resolved}: run an experiment first or pass --uri sqlite:///<path>.db"
        )
    tracker = Tracker(resolved, None, max_wait_s)
    if not tracker.use_experiment(experiment, create=False):
        names_ = sorted(e.name for e in tracker.client.search_experiments())
        raise UserError(f"no experiment '{experiment}' in {resolved}: pass --experiment with one of {names_}")
    return tracker


__all__ = ["Tracker", "RunRecord", "names", "open_existing", "ui_command", "ui_url", "unreadable_artifact"]
