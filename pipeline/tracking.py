"""The one module that talks to MLflow.

Store: `tracking.uri` in the config, else MLflow's own `MLFLOW_TRACKING_URI`, else a SQLite file
`./mlflow.db` in the working directory with artifacts under `./mlartifacts/` (MLflow 3.13+
refuses the old `./mlruns` file store). Runs are addressed by id through `MlflowClient`, never
through the fluent API's global "active run", so stages can reopen any run.

Every MLflow call goes through `Tracker._call`: it waits out a busy store (retries with jittered
backoff for up to `tracking.max_wait_s`, then one-line UserError) and adds its wall time to
`Tracker.seconds`. Retried writes are idempotent: metric points are sent with the timestamp of
their first attempt, and the SQL stores drop a point whose (key, step, timestamp, value) the run
already holds; params and tags are rewritten with the same values; a run is created with a
random `run_token` tag, so a retry after a lost reply finds the run instead of making another.
A SQLite store is switched to WAL mode, and a file lock beside it serialises opening it (MLflow
creates and migrates a fresh file without one) and creating the experiment.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd

from pipeline import concurrency
from pipeline.errors import UserError

DEFAULT_DB = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"
# How long a call may wait for a busy store, in total, before the job gives up (tracking.max_wait_s).
DEFAULT_MAX_WAIT_S = 300.0
# One /health request's patience; a slower answer counts as a busy server and is retried.
HEALTH_TIMEOUT_S = 10.0
# Tag that identifies a run to its creator (see the module docstring).
RUN_TOKEN = "run_token"
README_SECTION = "README 'Tracking under concurrency'"
# URI schemes MLflow 3.13+ stores runs in (a database, or a tracking server); `file:` is refused.
STORE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")

# Names the analysis relies on (issue contract).
SUMMARY_METRICS = (
    "lambda_final",
    "lambda_bar",
    "alpha",
    "alpha_se",
    "r2",
    "d_s",
    "d_walk",
    "test_acc",
    "gen_error",
    "num_params",
)
# Tags the analysis carries into its tables (the verdicts, flags and failure of a run).
ANALYSIS_TAGS = (
    "failure_reason",
    "rerun_failure",
    "verdict.lemma_3_4",
    "verdict.corollary_3_3",
    "fit.window",
    "llc.nbeta_used",
    "llc.failed_estimates",
    "llc.negative_estimates",
    "llc.nonstationary_estimates",
)
# An analysis run lives in the experiment it analyses, under this tag, so aggregation skips it.
ANALYSIS_TAG = "analysis"


class _ServerBusy(ConnectionError):
    """A tracking server that is there but too busy to answer its /health (retried like any
    connection error)."""


def _server_busy(error: OSError) -> str | None:
    """Why a /health request failed when the server is there but busy, else None."""
    import urllib.error

    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code}" if error.code == 429 or error.code >= 500 else None
    cause = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(cause, TimeoutError):
        return f"no answer within {HEALTH_TIMEOUT_S:g} s"
    return None


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


def unreadable_artifact(run_id: str, path: str, error: Exception, local: str | None = None) -> str:
    """The line for a recorded file a stage cannot read back (corrupted, cut short, overwritten);
    `local`: where it was downloaded to, named as the artifact instead (the download is removed)."""
    why = (str(error).strip().splitlines() or [""])[0]
    why = why.replace(local, path) if local else why
    if len(why) > 160:
        why = why[:160].rsplit(" ", 1)[0] + " ..."
    return (
        f"artifact {path} of run {run_id} is unreadable ({type(error).__name__}: {why}): re-train the "
        "point (launch it again with its first stage; the run's params hold its config)"
    )


def ui_command(uri: str) -> str:
    """The command that serves the MLflow UI on this store."""
    if uri.startswith("sqlite:///"):
        root = Path(uri.removeprefix("sqlite:///")).parent / ARTIFACT_DIR
        return (
            f"mlflow ui --backend-store-uri {uri} --default-artifact-root {root.as_uri()} "
            "--host 127.0.0.1 --port 5000"
        )
    return f"open {uri} in a browser (the tracking server's own UI)"


def _quiet_mlflow() -> None:
    # Artifact up/download bars would drown the stage's own progress bars.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # It logs a traceback for every SQL error it then raises: a lock the Tracker waits out would
    # print one per retry, and any other error reaches the job anyway.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def open_existing(uri: str | None, experiment: str, max_wait_s: float = DEFAULT_MAX_WAIT_S) -> Tracker:
    """A Tracker on a store and experiment that must already exist (for reading: the analysis).

    Unlike `Tracker(...)`, it never creates a SQLite file or an experiment."""
    resolved = resolve_uri(uri)
    if resolved.startswith("sqlite:///") and not Path(resolved.removeprefix("sqlite:///")).is_file():
        raise UserError(
            f"no tracking store at {resolved}: run an experiment first or pass --uri sqlite:///<path>.db"
        )
    tracker = Tracker(resolved, None, max_wait_s)
    exp = tracker.client.get_experiment_by_name(experiment)
    if exp is None or exp.lifecycle_stage == "deleted":
        names = sorted(e.name for e in tracker.client.search_experiments())
        raise UserError(f"no experiment '{experiment}' in {resolved}: pass --experiment with one of {names}")
    tracker.experiment_id = exp.experiment_id
    return tracker


class _Client:
    """The MlflowClient, with every method call routed through `Tracker._call` (so callers
    outside this module, such as the report, are retried and timed too)."""

    def __init__(self, tracker: Tracker) -> None:
        self._tracker = tracker

    def __getattr__(self, name: str):
        attr = getattr(self._tracker._client, name)
        if not callable(attr):
            return attr
        return lambda *args, **kwargs: self._tracker._call(name, *args, **kwargs)


class Tracker:
    """An MLflow store plus the experiment the runs go to.

    `seconds` is the wall time spent in MLflow so far (opening the store, calls, waits for a busy
    store); `call_seconds` and `calls` split it by MlflowClient method, `retries` counts the
    retried calls. `experiment=None` opens the store only (see `open_existing`)."""

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
        _quiet_mlflow()
        self.uri = resolve_uri(uri)
        self._check_reachable()
        if self.uri.startswith(("http://", "https://")):
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
            self.client = _Client(self)
            self.experiment_id = self._experiment(experiment) if experiment is not None else None

    def _account(self, label: str, seconds: float) -> None:
        self.seconds += seconds
        self.call_seconds[label] += seconds
        self.calls[label] += 1

    # -- every MLflow call ----------------------------------------------------------------------
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
            fix = f"for large parallel sweeps use a tracking server ({README_SECTION})"
        else:
            fix = f"check that the tracking server at {self.uri} is up ({README_SECTION})"
        return (
            f"tracking store {self.uri} stayed unavailable for {waited:.0f} s ({reason}): {fix}, "
            f"or raise tracking.max_wait_s (now {self.max_wait_s:g})"
        )

    def _sqlite_path(self) -> Path:
        return Path(self.uri.removeprefix("sqlite:///"))

    @contextlib.contextmanager
    def _store_lock(self) -> Iterator[None]:
        """Across the processes of this machine, one at a time opens a SQLite store and creates
        the experiment: MLflow creates and migrates a fresh file without a lock of its own."""
        if not self.uri.startswith("sqlite:///"):
            yield
            return
        db = self._sqlite_path()
        lock = concurrency.file_lock(db.with_name(db.name + "-tracker.lock"), self.max_wait_s)
        start = time.perf_counter()
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(lock)
            except TimeoutError as e:
                raise UserError(
                    f"{e} (another job opening the store {self.uri} is stuck?): find it, or raise "
                    "tracking.max_wait_s"
                ) from None
            finally:
                self._account("store_lock", time.perf_counter() - start)
            yield

    def _check_reachable(self) -> None:
        parsed = urlparse(self.uri)
        if parsed.scheme.partition("+")[0] not in STORE_SCHEMES:
            raise UserError(
                f"tracking URI {self.uri} has scheme '{parsed.scheme}', which MLflow keeps no runs in: use "
                "sqlite:///<absolute path>.db, http://host:port (a tracking server) or postgresql://..."
            )
        if parsed.scheme == "sqlite":
            folder = Path(self.uri.removeprefix("sqlite:///")).parent
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
        elif parsed.scheme in ("http", "https"):
            self._wait_for_server()

    def _wait_for_server(self) -> None:
        """Ask the server's /health before any work. Nobody listening (refused, unknown host) fails
        at once; a server that answers late or with 429/5xx is busy, not absent (eight jobs of a
        sweep starting on a two-core head node), and is waited out like any busy store."""
        self._call(self._health, label="server_health")

    def _health(self) -> None:
        """Return when the server answers /health; _ServerBusy (a transient error for `_call`) when
        it answers late or with 429/5xx; a UserError when nothing listens there."""
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.uri.rstrip('/')}/health", timeout=HEALTH_TIMEOUT_S):
                return
        except OSError as e:
            if (reason := _server_busy(e)) is not None:
                raise _ServerBusy(reason) from None
            raise UserError(
                f"cannot reach the MLflow tracking server at {self.uri} ({e}): start it "
                "(mlflow server --host 127.0.0.1 --port 5000 ...) or unset "
                "MLFLOW_TRACKING_URI / tracking.uri to use ./mlflow.db"
            ) from None

    def _experiment(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        artifact_location = None
        if self.uri.startswith("sqlite:///"):
            artifact_location = (self._sqlite_path().parent / ARTIFACT_DIR).as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=artifact_location)
        except UserError:
            raise
        except Exception:  # on a server, another job of the same sweep created it first
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    # -- runs ---------------------------------------------------------------------------------
    def start_run(self, name: str, tags: Mapping[str, str]) -> str:
        token = uuid.uuid4().hex

        def created():  # the run an attempt whose reply was lost did create
            found = self._client.search_runs([self.experiment_id], f"tags.`{RUN_TOKEN}` = '{token}'")
            return found[0] if found else None

        run = self._call(
            "create_run", self.experiment_id, run_name=name, tags={**tags, RUN_TOKEN: token}, recover=created
        )
        return run.info.run_id

    def reopen(self, run_id: str) -> None:
        """Mark an existing run RUNNING again while a stage re-runs on it."""
        self.client.update_run(run_id, status="RUNNING")

    def finish(self, run_id: str) -> None:
        self.client.set_terminated(run_id, status="FINISHED")

    def fail(self, run_id: str, reason: str) -> None:
        """Mark a run FAILED with its reason; never raises (it runs while handling an error)."""
        try:
            self.client.set_tag(run_id, "failure_reason", reason[:5000])
            self.client.set_terminated(run_id, status="FAILED")
        except Exception as e:  # the store itself may be what failed
            logging.getLogger(__name__).error("could not mark run %s FAILED: %s", run_id, e)

    def restore(self, run_id: str, status: str, note: str) -> None:
        """Put a reopened run back to its earlier status, noting why the re-run failed."""
        try:
            self.client.set_tag(run_id, "rerun_failure", note[:5000])
            self.client.set_terminated(run_id, status=status)
        except Exception as e:
            logging.getLogger(__name__).error("could not restore run %s: %s", run_id, e)

    def find_runs(self, tags: Mapping[str, str], statuses: Iterable[str] = ()) -> list:
        """Runs of this experiment whose tags match, newest first."""
        clauses = [f"tags.`{k}` = '{v}'" for k, v in tags.items()]
        runs = self.client.search_runs(
            [self.experiment_id], " and ".join(clauses), order_by=["attributes.start_time DESC"]
        )
        statuses = set(statuses)
        return [r for r in runs if not statuses or r.info.status in statuses]

    def runs_table(self, sweep: str | None = None) -> pd.DataFrame:
        """One row per run of this experiment (of one sweep when given), analysis runs excluded:
        run_id, run_name, status, sweep, start_time, end_time, every param (flattened config,
        as strings), every latest metric, and the tags in `ANALYSIS_TAGS`.

        `df.attrs["params"]` and `df.attrs["metrics"]` name the columns of each kind."""
        where = f"tags.`sweep` = '{sweep}'" if sweep is not None else ""
        runs, token = [], None
        while True:
            page = self.client.search_runs(
                [self.experiment_id],
                where,
                max_results=1000,
                page_token=token,
                order_by=["attributes.start_time ASC"],
            )
            runs.extend(page)
            token = page.token
            if not token:
                break
        rows, params, metrics = [], set(), set()
        for r in runs:
            tags = r.data.tags
            if tags.get(ANALYSIS_TAG) == "true":
                continue
            params.update(r.data.params)
            metrics.update(r.data.metrics)
            rows.append(
                {
                    **r.data.params,  # first: the config's own `run_id`/`sweep` keys must not win
                    **r.data.metrics,
                    "run_id": r.info.run_id,
                    "run_name": r.info.run_name,
                    "status": r.info.status,
                    "sweep": tags.get("sweep"),
                    "start_time": pd.to_datetime(r.info.start_time, unit="ms"),
                    "end_time": pd.to_datetime(r.info.end_time, unit="ms") if r.info.end_time else pd.NaT,
                    **{k: tags[k] for k in ANALYSIS_TAGS if k in tags},
                }
            )
        df = pd.DataFrame(rows)
        df.attrs["params"] = sorted(params)
        df.attrs["metrics"] = sorted(metrics)
        return df

    def log_analysis(self, sweep: str, folder: Path) -> str:
        """Log an analysis folder as the artifacts of the sweep's analysis run (tagged
        `analysis=true`, reused when the analysis is re-run); returns its run id."""
        found = self.find_runs({ANALYSIS_TAG: "true", "sweep": sweep})
        if found:
            run_id = found[0].info.run_id
            self.reopen(run_id)
        else:
            run_id = self.start_run(f"analysis:{sweep}", {ANALYSIS_TAG: "true", "sweep": sweep})
        try:
            self.log_dir(run_id, folder, "analysis")
        except BaseException as e:  # never leave the analysis run RUNNING
            self.fail(run_id, f"logging the analysis failed: {type(e).__name__}: {e}")
            raise
        self.finish(run_id)
        return run_id

    def get_run(self, run_id: str):
        try:
            return self.client.get_run(run_id)
        except UserError:  # the store stayed busy: say so, not that the run is missing
            raise
        except Exception as e:
            raise UserError(
                f"no run {run_id} in {self.uri}: pass run_id=<an existing run id> "
                "(see mlflow ui) or include train in stages"
            ) from e

    # -- params, tags, metrics ----------------------------------------------------------------
    def log_params(self, run_id: str, params: Mapping[str, object]) -> None:
        """Log params; a key already logged with another value (a stage re-run with new
        settings) is recorded as tag `override.<key>`, since MLflow params are immutable."""
        from mlflow.entities import Param

        existing = self.client.get_run(run_id).data.params
        new, overrides = [], {}
        for k, v in params.items():
            s = str(v)[:6000]
            if k not in existing:
                new.append(Param(k, s))
            elif existing[k] != s:
                overrides[f"override.{k}"] = s
        for i in range(0, len(new), 100):
            self.client.log_batch(run_id, params=new[i : i + 100])
        self.set_tags(run_id, overrides)

    def set_tags(self, run_id: str, tags: Mapping[str, object]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, tags=items[i : i + 100])

    def log_series(self, run_id: str, name: str, steps: Iterable[int], values: Iterable[float]):
        """A step metric, written in batches (one call per 1000 points, not one per point)."""
        self.log_metric_rows(run_id, [(name, int(s), float(v)) for s, v in zip(steps, values)])

    def log_metric_rows(self, run_id: str, rows: list[tuple[str, int, float]]) -> None:
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        metrics = [Metric(k, v, ts, s) for k, s, v in rows if v == v]  # NaN is dropped
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(run_id, metrics=metrics[i : i + 1000])

    def log_summary(self, run_id: str, values: Mapping[str, float]) -> None:
        """Summary metrics (step 0); a re-run stage's newer value becomes the latest."""
        self.log_metric_rows(run_id, [(k, 0, float(v)) for k, v in values.items()])

    def summary(self, run_id: str) -> dict[str, float]:
        return dict(self.client.get_run(run_id).data.metrics)

    # -- artifacts ----------------------------------------------------------------------------
    def log_table(self, run_id: str, df: pd.DataFrame, name: str) -> None:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / f"{name}.parquet"
            df.to_parquet(path, index=False)
            self.client.log_artifact(run_id, str(path))

    def load_table(self, run_id: str, name: str) -> pd.DataFrame | None:
        return self._read(run_id, f"{name}.parquet", pd.read_parquet)

    def log_json(self, run_id: str, obj: Mapping, name: str) -> None:
        self.client.log_dict(run_id, dict(obj), f"{name}.json")

    def load_json(self, run_id: str, name: str) -> dict | None:
        return self._read(run_id, f"{name}.json", lambda p: json.loads(Path(p).read_text()))

    def log_text(self, run_id: str, text: str, name: str) -> None:
        self.client.log_text(run_id, text, name)

    def load_text(self, run_id: str, name: str) -> str | None:
        return self._read(run_id, name, lambda p: Path(p).read_text())

    def _read(self, run_id: str, path: str, read):
        """An artifact read into memory (None when the run has none); the download is removed."""
        with tempfile.TemporaryDirectory(prefix="ab-artifact-") as d:
            local = self._download(run_id, path, Path(d))
            if not local:
                return None
            try:
                return read(local)
            except Exception as e:  # a corrupted file: one line naming it, the run left as it was
                raise UserError(unreadable_artifact(run_id, path, e, str(local))) from None

    def log_dir(self, run_id: str, local_dir: Path, artifact_path: str) -> None:
        self.client.log_artifacts(run_id, str(local_dir), artifact_path)

    def download_dir(self, run_id: str, artifact_path: str, dst: Path) -> Path | None:
        return Path(p) if (p := self._download(run_id, artifact_path, dst)) else None

    def artifact_paths(self, run_id: str, folder: str) -> list[str]:
        """Paths of the artifacts directly under `folder` (e.g. 'checkpoints')."""
        return sorted(f.path for f in self.client.list_artifacts(run_id, folder) if not f.is_dir)

    def download_file(self, run_id: str, path: str, dst: Path) -> Path | None:
        """One artifact file into `dst`; None when the run has no such file."""
        return Path(p) if (p := self._download(run_id, path, dst)) else None

    def _download(self, run_id: str, path: str, dst: Path | None = None) -> str | None:
        parent = str(Path(path).parent)
        listed = self.client.list_artifacts(run_id, None if parent == "." else parent)
        if path not in {f.path for f in listed}:
            return None
        dst = dst or Path(tempfile.mkdtemp(prefix="ab-artifact-"))
        return self.client.download_artifacts(run_id, path, str(dst))

    # -- re-launching a point (pipeline/resume.py decides; these read and write the runs) --------
    def point_runs(self, config_hash: str) -> list:
        """The runs of one point (tag `config_hash`) in this experiment, newest first, analysis
        runs excluded."""
        runs = self.find_runs({"config_hash": config_hash})
        return [r for r in runs if r.data.tags.get(ANALYSIS_TAG) != "true"]

    @contextlib.contextmanager
    def point_lock(self) -> Iterator[None]:
        """Held around looking up a point's runs and creating or claiming one, so that two jobs of
        one point started at once on this machine do not both create a run (SQLite stores: a
        file lock beside the store). Server stores have no lock: `newest_duplicate` backs off."""
        if not self.uri.startswith("sqlite:///"):
            yield
            return
        db = self._sqlite_path()
        start = time.perf_counter()
        lock = concurrency.file_lock(db.with_name(db.name + "-points.lock"), self.max_wait_s)
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(lock)
            except TimeoutError as e:
                raise UserError(f"{e} (another job looking up its run is stuck?): find it") from None
            finally:
                self._account("point_lock", time.perf_counter() - start)
            yield

    def newest_duplicate(self, run_id: str, config_hash: str) -> str | None:
        """On a server store, after creating `run_id`: the id of an older RUNNING or FINISHED run
        of the same point, if another job created one at the same time (then this one deletes its
        own and stands back); None when `run_id` is the point's only live run."""
        mine = self.client.get_run(run_id)
        key = (mine.info.start_time, run_id)
        for r in self.point_runs(config_hash):
            if r.info.run_id != run_id and r.info.status in ("RUNNING", "FINISHED"):
                if "superseded_by" not in r.data.tags and (r.info.start_time, r.info.run_id) < key:
                    return r.info.run_id
        return None

    def delete_run(self, run_id: str) -> None:
        self.client.delete_run(run_id)

    def claim(self, run_id: str, owner: Mapping[str, str]) -> None:
        """Take over an interrupted run: status RUNNING, owner tags of this process."""
        self.client.update_run(run_id, status="RUNNING")
        self.set_tags(run_id, owner)

    def beat(self, run_id: str) -> None:
        """Refresh the run's `heartbeat` tag (unix time): its owner is alive."""
        self.client.set_tag(run_id, "heartbeat", f"{time.time():.0f}")

    def kill(self, run_id: str, reason: str) -> None:
        """Mark a run KILLED (interrupted from outside: resumable) with tag `interrupted`; never
        raises (it runs while handling the interruption)."""
        try:
            self.client.set_tag(run_id, "interrupted", reason[:5000])
            self.client.set_terminated(run_id, status="KILLED")
        except Exception as e:
            logging.getLogger(__name__).error("could not mark run %s KILLED: %s", run_id, e)

    def supersede(self, old_run_ids: Iterable[str], new_run_id: str) -> None:
        """Tag failed runs of a point with the run that replaces them."""
        for old in old_run_ids:
            self.client.set_tag(old, "superseded_by", new_run_id)

    def log_files(self, run_id: str, files: Iterable[Path], artifact_path: str) -> None:
        """Upload the given local files under `artifact_path` (one call per file)."""
        for f in files:
            self.client.log_artifact(run_id, str(f), artifact_path)

    def delete_artifacts(self, run_id: str, path: str) -> bool:
        """Remove an artifact (file or folder) of a run where the artifact store allows it (local
        files, `mlflow-artifacts:` through a server); False where it does not."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        uri = self.client.get_run(run_id).info.artifact_uri
        try:
            repo = get_artifact_repository(uri, tracking_uri=self.uri)
            self._call(lambda: repo.delete_artifacts(path), label="delete_artifacts")
        except (NotImplementedError, UserError):
            return False
        return True
