"""A job run in-process, as `launch.py` runs it, for tests that look at one run."""

from __future__ import annotations

from omegaconf import DictConfig

from pipeline.jobs import lifecycle
from pipeline.jobs.opening import JobInfo
from pipeline.tracking import Tracker

JOB = JobInfo(sweep="test-sweep", name="tiny")


def execute(cfg: DictConfig, job: JobInfo = JOB) -> tuple[Tracker, str | None, dict]:
    """Run the job; (its tracker, its run id, the run's metrics): run id None when another live job
    runs the point."""
    outcome = lifecycle.execute(cfg, job)
    (member,) = outcome.members
    if member.action == "busy":
        return outcome.tracker, None, {}
    return outcome.tracker, member.run_id, outcome.tracker.summary(member.run_id)
