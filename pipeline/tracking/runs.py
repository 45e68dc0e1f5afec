"""A run's lifecycle (created, reopened, claimed, finished, failed, killed) and its params, tags and
metrics. Mixed into `Tracker`; every call goes through the retrying client."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Mapping

from pipeline.tracking import names


class Runs:
    """Run lifecycle and records (needs `Client`'s `client`, `_client`, `_call`, `experiment_id`)."""

    # -- lifecycle ------------------------------------------------------------------------------
    def start_run(self, name: str, tags: Mapping[str, str]) -> str:
        token = uuid.uuid4().hex

        def created():  # the run an attempt whose reply was lost did create
            found = self._client.search_runs([self.experiment_id], f"tags.`{names.RUN_TOKEN}` = '{token}'")
            return found[0] if found else None

        run = self._call(
            "create_run",
            self.experiment_id,
            run_name=name,
            tags={**tags, names.RUN_TOKEN: token},
            recover=created,
        )
        return run.info.run_id

    def reopen(self, run_id: str) -> None:
        """Mark an existing run RUNNING again while a stage re-runs on it."""
        self.client.update_run(run_id, status="RUNNING")

    def finish(self, run_id: str) -> None:
        self.client.set_terminated(run_id, status="FINISHED")

    def _terminate(self, run_id: str, tag: str, note: str, status: str) -> None:
        """Set `tag` to `note` and end the run with `status`; never raises (it runs while handling
        an error, and the store itself may be what failed)."""
        try:
            self.client.set_tag(run_id, tag, note[:5000])
            self.client.set_terminated(run_id, status=status)
        except Exception as e:
            logging.getLogger(__name__).error("could not mark run %s %s: %s", run_id, status, e)

    def fail(self, run_id: str, reason: str) -> None:
        """Mark a run FAILED with its reason."""
        self._terminate(run_id, names.FAILURE_REASON, reason, "FAILED")

    def restore(self, run_id: str, status: str, note: str) -> None:
        """Put a reopened run back to its earlier status, noting why the re-run failed."""
        self._terminate(run_id, names.RERUN_FAILURE, note, status)

    def kill(self, run_id: str, reason: str) -> None:
        """Mark a run KILLED (interrupted from outside: resumable) with tag `interrupted`."""
        self._terminate(run_id, names.INTERRUPTED, reason, "KILLED")

    def claim(self, run_id: str, owner: Mapping[str, str]) -> None:
        """Take over an interrupted run: status RUNNING, owner tags of this process."""
        self.client.update_run(run_id, status="RUNNING")
        self.set_tags(run_id, owner)

    def beat(self, run_id: str) -> None:
        """Refresh the run's `heartbeat` tag (unix time): its owner is alive."""
        self.client.set_tag(run_id, names.HEARTBEAT, f"{time.time():.0f}")

    def supersede(self, old_run_ids: Iterable[str], new_run_id: str) -> None:
        """Tag failed runs of a point with the run that replaces them."""
        for old in old_run_ids:
            self.client.set_tag(old, names.SUPERSEDED_BY, new_run_id)

    def delete_run(self, run_id: str) -> None:
        self.client.delete_run(run_id)

    # -- params, tags, metrics ------------------------------------------------------------------
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
                overrides[f"{names.OVERRIDE}{k}"] = s
        for i in range(0, len(new), 100):
            self.client.log_batch(run_id, params=new[i : i + 100])
        self.set_tags(run_id, overrides)

    def log_dataset(self, run_id: str, name: str, digest: str, source: str, profile: Mapping) -> None:
        """The data a run trained on as an MLflow dataset input (the UI's Datasets box): its name, a
        digest of its tensors, where it came from, and its sizes; context `training`."""
        import json

        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(name, digest, "local", source, profile=json.dumps(dict(profile)))
        context = InputTag("mlflow.data.context", "training")
        self.client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags=[context])])

    def set_tags(self, run_id: str, tags: Mapping[str, object]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, tags=items[i : i + 100])

    def log_series(self, run_id: str, name: str, steps: Iterable[int], values: Iterable[float]) -> None:
        """A step metric, written in batches (one call per 1000 points, not one per point)."""
        self.log_metric_rows(run_id, [(name, int(s), float(v)) for s, v in zip(steps, values)])

    def log_metric_rows(self, run_id: str, rows: list[tuple[str, int, float]]) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        metrics = [Metric(k, v, ts, s) for k, s, v in rows if v == v]  # NaN is dropped
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(run_id, metrics=metrics[i : i + 1000])

    def log_summary(self, run_id: str, values: Mapping[str, float]) -> None:
        """Summary metrics (step 0); a re-run stage's newer value becomes the latest."""
        self.log_metric_rows(run_id, [(k, 0, float(v)) for k, v in values.items()])
