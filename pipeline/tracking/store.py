"""Which store a job writes to, and whether it can: checked before any MLflow call is made.

Store: `tracking.uri` in the config, else MLflow's own `MLFLOW_TRACKING_URI`, else a SQLite file
`./mlflow.db` in the working directory with artifacts under `./mlartifacts/` (MLflow 3.13+ refuses
the old `./mlruns` file store). A SQLite store's folder must exist and be writable; a tracking
server must answer its `/health` (a late answer or HTTP 429/5xx is a busy server, waited out by
the client, not a missing one).
"""

from __future__ import annotations

import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from pipeline.errors import UserError

DEFAULT_DB = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"
# One /health request's patience; a slower answer counts as a busy server and is retried.
HEALTH_TIMEOUT_S = 10.0
# Where the manual explains stores under concurrency (named by the messages that send users there).
DOCS = "docs/tracking.md"
# URI schemes MLflow 3.13+ stores runs in (a database, or a tracking server); `file:` is refused.
STORE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")


class ServerBusy(ConnectionError):
    """A tracking server that is there but too busy to answer its /health (retried like any
    connection error)."""


def resolve_uri(uri: str | None) -> str:
    """The tracking URI to use, with a relative SQLite path made absolute."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / DEFAULT_DB}"
    if uri.startswith("sqlite:") and not uri.startswith("sqlite:///"):
        raise UserError(f"tracking URI {uri!r} is not a SQLite file: use sqlite:///<path>.db (three slashes)")
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_absolute():
            path = Path.cwd() / path
        uri = f"sqlite:///{path}"
    elif "://" not in uri:
        raise UserError(
            f"tracking URI {uri!r} is not a URI: use sqlite:///<absolute path>.db or "
            "http://host:port (MLflow 3.13+ refuses plain folders)"
        )
    return uri


def sqlite_path(uri: str) -> Path:
    return Path(uri.removeprefix("sqlite:///"))


def artifact_root(uri: str) -> Path:
    """Where a SQLite store keeps its runs' artifacts: `mlartifacts/` beside the database file."""
    return sqlite_path(uri).parent / ARTIFACT_DIR


def ui_command(uri: str) -> str:
    """The command that serves the MLflow UI on this store."""
    if uri.startswith("sqlite:///"):
        return (
            f"mlflow ui --backend-store-uri {uri} --default-artifact-root {artifact_root(uri).as_uri()} "
            "--host 127.0.0.1 --port 5000"
        )
    return f"open {uri} in a browser (the tracking server's own UI)"


def ui_url(uri: str, experiment_id: str, run_id: str | None = None, port: int = 5000) -> str:
    """The UI's page of an experiment (or of one run) on `ui_command`'s server, or on the tracking
    server itself. `workflowType=machine_learning`: MLflow 3's UI keeps a global GenAI/model-training
    switch (GenAI on a fresh browser) that would otherwise land on the traces overview."""
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else f"http://127.0.0.1:{port}"
    page = f"#/experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")
    return f"{base}/{page}?workflowType=machine_learning"


def quiet_mlflow() -> None:
    # Artifact up/download bars would drown the stage's own progress bars.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # It logs a traceback for every SQL error it then raises: a lock the Tracker waits out would
    # print one per retry, and any other error reaches the job anyway.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def check_writable(uri: str) -> None:
    """A URI MLflow keeps runs in; for SQLite, a folder that exists and takes a write."""
    parsed = urlparse(uri)
    if parsed.scheme.partition("+")[0] not in STORE_SCHEMES:
        raise UserError(
            f"tracking URI {uri} has scheme '{parsed.scheme}', which MLflow keeps no runs in: use "
            "sqlite:///<absolute path>.db, http://host:port (a tracking server) or postgresql://..."
        )
    if parsed.scheme == "sqlite":
        folder = sqlite_path(uri).parent
        if not folder.is_dir():
            raise UserError(
                f"tracking store folder {folder} does not exist: create it or set "
                "tracking.uri=sqlite:///<existing folder>/mlflow.db"
            )
        try:  # a write, not os.access: root passes os.access on a read-only mount
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as e:
            raise UserError(
                f"tracking store folder {folder} is not writable ({e.strerror}): set "
                "tracking.uri=sqlite:///<writable folder>/mlflow.db"
            ) from None


def _server_busy(error: OSError) -> str | None:
    """Why a /health request failed when the server is there but busy, else None."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code}" if error.code == 429 or error.code >= 500 else None
    cause = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(cause, TimeoutError):
        return f"no answer within {HEALTH_TIMEOUT_S:g} s"
    return None


def health(uri: str) -> None:
    """Return when the server answers /health; ServerBusy (a transient error for the client's
    retries) when it answers late or with 429/5xx; a UserError when nothing listens there."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=HEALTH_TIMEOUT_S):
            return
    except OSError as e:
        if (reason := _server_busy(e)) is not None:
            raise ServerBusy(reason) from None
        raise UserError(
            f"cannot reach the MLflow tracking server at {uri} ({e}): start it "
            "(mlflow server --host 127.0.0.1 --port 5000 ...) or unset "
            "MLFLOW_TRACKING_URI / tracking.uri to use ./mlflow.db"
        ) from None
