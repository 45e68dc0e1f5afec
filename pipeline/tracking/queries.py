"""Reading runs back: one run as a plain record, the runs of a point or a sweep, the tidy table the
analysis starts from, and the analysis run of a sweep. Mixed into `Tracker`; MLflow's own objects
stay inside this package (callers get `RunRecord`s and DataFrames)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import UserError

if TYPE_CHECKING:
    import pandas as pd
from pipeline.tracking import names


@dataclass(frozen=True)
class RunRecord:
    """A run as the product reads it: id, name, status, times (unix ms), tags, params, metrics."""

    run_id: str
    name: str
    status: str
    experiment_id: str
    start_time: int
    end_time: int | None
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def record(run) -> RunRecord:
    """An MLflow Run as a RunRecord."""
    return RunRecord(
        run_id=run.info.run_id,
        name=run.info.run_name,
        status=run.info.status,
        experiment_id=run.info.experiment_id,
        start_time=run.info.start_time,
        end_time=run.info.end_time,
        tags=dict(run.data.tags),
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
    )


class Queries:
    """Run look-ups (needs `Client`'s `client`, `_file_lock`, `uri`, `experiment_id`, and the
    lifecycle and artifact methods of `Runs` and `Artifacts` for the analysis run)."""

    def get_run(self, run_id: str) -> RunRecord:
        try:
            return record(self.client.get_run(run_id))
        except UserError:  # the store stayed busy: say so, not that the run is missing
            raise
        except Exception as e:
            raise UserError(
                f"no run {run_id} in {self.uri}: pass run_id=<an existing run id> "
                "(see mlflow ui) or include train in stages"
            ) from e

    def summary(self, run_id: str) -> dict[str, float]:
        """The run's metrics, the latest value of each."""
        return dict(self.client.get_run(run_id).data.metrics)

    def experiment_name(self, experiment_id: str) -> str:
        names = self.__dict__.setdefault("_experiment_names", {})  # a name never changes: read it once
        if experiment_id not in names:
            names[experiment_id] = self.client.get_experiment(experiment_id).name
        return names[experiment_id]

    def find_runs(self, tags: Mapping[str, str]) -> list[RunRecord]:
        """Runs of this experiment whose tags match, newest first."""
        clauses = [f"tags.`{k}` = '{v}'" for k, v in tags.items()]
        runs = self.client.search_runs(
            [self.experiment_id], " and ".join(clauses), order_by=["attributes.start_time DESC"]
        )
        return [record(r) for r in runs]

    def runs_table(self, sweep: str | None = None) -> pd.DataFrame:
        """One row per run of this experiment (of one sweep when given), analysis runs excluded:
        run_id, run_name, status, sweep, start_time, end_time, every param (flattened config,
        as strings), every latest metric, and the tags in `names.ANALYSIS_TAGS`.

        `df.attrs["params"]` and `df.attrs["metrics"]` name the columns of each kind."""
        import pandas as pd

        where = f"tags.`{names.SWEEP}` = '{sweep}'" if sweep is not None else ""
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
            if tags.get(names.ANALYSIS_TAG) == "true":
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
                    "sweep": tags.get(names.SWEEP),
                    "start_time": pd.to_datetime(r.info.start_time, unit="ms"),
                    "end_time": pd.to_datetime(r.info.end_time, unit="ms") if r.info.end_time else pd.NaT,
                    **{k: tags[k] for k in names.ANALYSIS_TAGS if k in tags},
                }
            )
        df = pd.DataFrame(rows)
        df.attrs["params"] = sorted(params)
        df.attrs["metrics"] = sorted(metrics)
        return df

    # -- the runs of a point (the re-launch rules in `pipeline.jobs.relaunch` decide) ----------
    def point_runs(self, config_hash: str) -> list[RunRecord]:
        """The runs of one point (tag `config_hash`) in this experiment, newest first, analysis
        runs excluded."""
        runs = self.find_runs({names.CONFIG_HASH: config_hash})
        return [r for r in runs if r.tags.get(names.ANALYSIS_TAG) != "true"]

    @contextlib.contextmanager
    def point_lock(self) -> Iterator[None]:
        """Held around looking up a point's runs and creating or claiming one, so that two jobs of
        one point started at once on this machine do not both create a run (SQLite stores: a
        file lock beside the store). Server stores have no lock: `newest_duplicate` backs off."""
        with self._file_lock("-points.lock", "point_lock", "another job looking up its run", "find it"):
            yield

    def newest_duplicate(self, run_id: str, config_hash: str) -> str | None:
        """On a server store, after creating `run_id`: the id of an older RUNNING or FINISHED run
        of the same point, if another job created one at the same time (then this one deletes its
        own and stands back); None when `run_id` is the point's only live run."""
        mine = self.get_run(run_id)
        key = (mine.start_time, run_id)
        for r in self.point_runs(config_hash):
            if r.run_id != run_id and r.status in ("RUNNING", "FINISHED"):
                if names.SUPERSEDED_BY not in r.tags and (r.start_time, r.run_id) < key:
                    return r.run_id
        return None

    # -- a sweep's analysis run -----------------------------------------------------------------
    def log_analysis(self, sweep: str, folder: Path) -> str:
        """Log an analysis folder as the artifacts of the sweep's analysis run (tagged
        `analysis=true`, reused when the analysis is re-run); returns its run id."""
        found = self.find_runs({names.ANALYSIS_TAG: "true", names.SWEEP: sweep})
        if found:
            run_id = found[0].run_id
            self.reopen(run_id)
        else:
            run_id = self.start_run(f"analysis:{sweep}", {names.ANALYSIS_TAG: "true", names.SWEEP: sweep})
        try:
            self.log_dir(run_id, folder, names.ANALYSIS)
        except BaseException as e:  # never leave the analysis run RUNNING
            self.fail(run_id, f"logging the analysis failed: {type(e).__name__}: {e}")
            raise
        self.finish(run_id)
        return run_id
