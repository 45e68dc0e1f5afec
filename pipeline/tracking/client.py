"""The retrying MLflow client: every MLflow call of the product goes through `Client._call`.

Runs are addressed by id through `MlflowClient`, never through the fluent API's global "active
run", so stages can reopen any run. `_call` waits out a busy store (retries with jittered backoff
for up to `tracking.max_wait_s`, then one-line UserError) and adds its wall time to `seconds`.
Retried writes are idempotent: metric points are sent with the timestamp of their first attempt,
and the SQL stores drop a point whose (key, step, timestamp, value) the run already holds; params
and tags are rewritten with the same values; a run is created with a random `run_token` tag, so a
retry after a lost reply finds the run instead of making another. A SQLite store is switched to WAL
mode, and a file lock beside it serialises opening it (MLflow creates and migrates a fresh file
without one) and creating the experiment.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

from pipeline.errors import UserError
from pipeline.tracking import concurrency, names, store

# How long a call may wait for a busy store, in total, before the job gives up (tracking.max_wait_s).
DEFAULT_MAX_WAIT_S = 300.0


class _Retried:
    """The MlflowClient, with every method call routed through `Client._call` (so tests and tools
    that read the store directly are retried and timed too)."""

    def __init__(self, client: Client) -> None:
        self._owner = client

    def __getattr__(self, name: str):
        attr = getattr(self._owner._client, name)
        if not callable(attr):
            return attr
        return lambda *args, **kwargs: self._owner._call(name, *args, **kwargs)


class Client:
    """An MLflow store plus the experiment the runs go to (`experiment=None`: the store only).

    `seconds` is the wall time spent in MLflow so far (opening the store, calls, waits for a busy
    store); `call_seconds` and `calls` split it by MlflowClient method, `retries` counts the
    retried calls. `client` is the raw MlflowClient, retried (for tests and tools; the product's
    code reads and writes runs through the methods of `Tracker`)."""

    def __init__(
        self, uri: str | None, experiment: str | None, max_wait_s: float = DEFAULT_MAX_WAIT_S
    ) -> None:
        start = time.perf_counter()
        if not float(max_wait_s) >= 0:
            raise UserError(f"tracking.max_wait_s={max_wait_s} must be ≥ 0 seconds, e.g. 300")
        self.max_wait_s = float(max_wait_s)
        self.seconds = 0.0
        self.call_seconds: dict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()
        self.retries = 0
        store.quiet_mlflow()
        self.uri = store.resolve_uri(uri)
        store.check_writable(self.uri)
        if self.uri.startswith(("http://", "https://")):
            # Ask the server's /health before any work. Nobody listening (refused, unknown host) fails
            # at once; a server that answers late or with 429/5xx is busy, not absent (eight jobs of a
            # sweep starting on a two-core head node), and is waited out like any busy store.
            self._call(lambda: store.health(self.uri), label="server_health")
            # One retry policy, ours, bounded in total and aware of what a retry may repeat; the
            # REST client's own (7 retries, about 4 minutes per call) would multiply the wait.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        # Imports first, outside the lock: a second or two of CPU that needs no store.
        from mlflow.tracking import MlflowClient

        if self.uri.startswith("sqlite:"):
            import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
        self._account("import_mlflow", time.perf_counter() - start)

        with self._store_lock():
            if self.uri.startswith("sqlite:///"):
                concurrency.use_wal(self._sqlite_path())
            self._client = self._call(lambda: MlflowClient(tracking_uri=self.uri), label="open_store")
            self.client = _Retried(self)
            self.experiment_id = self._experiment(experiment) if experiment is not None else None

    def _account(self, label: str, seconds: float) -> None:
        self.seconds += seconds
        self.call_seconds[label] += seconds
        self.calls[label] += 1

    def _call(
        self,
        method: str | Callable,
        *args,
        label: str | None = None,
        recover: Callable[[], object] | None = None,
        **kwargs,
    ):
        """Call MlflowClient `method` (or a callable), waiting out a busy store, and time it.

        A transient error (`concurrency.transient`) is retried after a jittered, doubling delay
        until `max_wait_s` in total has passed, then becomes a one-line UserError. `recover`, asked
        before each retry, returns the result when the failed attempt had in fact succeeded (a
        reply lost after the store committed), else None."""
        fn = getattr(self._client, method) if isinstance(method, str) else method
        label = label or (method if isinstance(method, str) else getattr(method, "__name__", "call"))
        start = time.perf_counter()
        attempt = 0
        try:
            while True:
                try:
                    return fn(*args, **kwargs)
                except UserError:  # a verdict already, whatever words it quotes
                    raise
                except Exception as e:
                    reason = concurrency.transient(e)
                    if reason is None:
                        raise
                    waited = time.perf_counter() - start
                    pause = concurrency.delay(attempt)
                    if waited + pause > self.max_wait_s:
                        raise UserError(self._busy_message(reason, waited)) from e
                    logging.getLogger(__name__).warning(
                        "tracking store busy (%s) during %s: retry %d in %.1f s",
                        reason,
                        label,
                        attempt + 1,
                        pause,
                    )
                    time.sleep(pause)
                    attempt += 1
                    self.retries += 1
                    if recover is not None and (found := self._recovered(recover)) is not None:
                        return found
        finally:
            self._account(label, time.perf_counter() - start)

    @staticmethod
    def _recovered(recover: Callable[[], object]) -> object | None:
        try:
            return recover()
        except Exception as e:
            if concurrency.transient(e) is None:
                raise
            return None  # the store is still busy: the next attempt finds out again

    def _busy_message(self, reason: str, waited: float) -> str:
        if self.uri.startswith("sqlite:"):
            fix = f"for large parallel sweeps use a tracking server ({store.DOCS})"
        else:
            fix = f"check that the tracking server at {self.uri} is up ({store.DOCS})"
        return (
            f"tracking store {self.uri} stayed unavailable for {waited:.0f} s ({reason}): {fix}, "
            f"or raise tracking.max_wait_s (now {self.max_wait_s:g})"
        )

    def _sqlite_path(self) -> Path:
        return store.sqlite_path(self.uri)

    @contextlib.contextmanager
    def _file_lock(self, suffix: str, label: str, holder: str, fix: str) -> Iterator[None]:
        """A lock file beside a SQLite store, held across the processes of this machine (a server
        store has none); one line when another process holds it past `max_wait_s`."""
        if not self.uri.startswith("sqlite:///"):
            yield
            return
        db = self._sqlite_path()
        lock = concurrency.file_lock(db.with_name(db.name + suffix), self.max_wait_s)
        start = time.perf_counter()
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(lock)
            except TimeoutError as e:
                raise UserError(f"{e} ({holder} is stuck?): {fix}") from None
            finally:
                self._account(label, time.perf_counter() - start)
            yield

    def _store_lock(self) -> contextlib.AbstractContextManager[None]:
        """One process at a time opens a SQLite store and creates the experiment: MLflow creates and
        migrates a fresh file without a lock of its own."""
        holder = f"another job opening the store {self.uri}"
        return self._file_lock("-tracker.lock", "store_lock", holder, "find it, or raise tracking.max_wait_s")

    def use_experiment(self, name: str, create: bool = True) -> bool:
        """Send the runs to experiment `name`, created (or restored, if deleted) when missing, as
        `Client(uri, name)` does. With `create=False` nothing is written: False when it does not
        exist or is deleted."""
        if not create:
            exp = self.client.get_experiment_by_name(name)
            if exp is None or exp.lifecycle_stage == "deleted":
                return False
            self.experiment_id = exp.experiment_id
            return True
        with self._store_lock():
            self.experiment_id = self._experiment(name)
        return True

    def _experiment(self, name: str) -> str:
        # Marked as model training: MLflow 3's UI then opens on the runs table, not on GenAI traces.
        kind = {names.EXPERIMENT_KIND: "custom_model_development"}
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            if names.EXPERIMENT_KIND not in exp.tags:  # a store from before the mark
                self.client.set_experiment_tag(
                    exp.experiment_id, names.EXPERIMENT_KIND, kind[names.EXPERIMENT_KIND]
                )
            return exp.experiment_id
        artifact_location = None
        if self.uri.startswith("sqlite:///"):
            artifact_location = store.artifact_root(self.uri).as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=artifact_location, tags=kind)
        except UserError:
            raise
        except Exception:  # on a server, another job of the same sweep created it first
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id
