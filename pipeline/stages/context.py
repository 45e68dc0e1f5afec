"""What the stages of one job share: the job's config and store, and the runs (members) they work on.

A job works on one run, or, as a batched job (`seeds=...`), on one run per seed; every stage takes
the list of members it is to run for (`run(ctx, members)`), one or many alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from pipeline.config.members import is_batched
from pipeline.tracking import Tracker

if TYPE_CHECKING:  # torch is imported by the stages that use it, not by a job that only reports
    from torch import nn

    from pipeline.data import Data


@dataclass(eq=False)  # one run: compared by identity
class Member:
    """One run of the job: its seed and config (what a one-by-one job with that seed has), how the
    job came to it (`action`: new, claim, rerun, skip, busy), the requested stages it had done, the
    status a reopened run goes back to when its re-run fails, and why it failed, once it has."""

    seed: int
    cfg: DictConfig
    run_id: str | None
    action: str = "new"
    done: tuple[str, ...] = ()
    note: str = ""
    previous_status: str | None = None
    failed: str | None = None

    @property
    def owned(self) -> bool:
        """This job's attempt at the point (a new or a taken-over run), not a re-run of a stage."""
        return self.action in ("new", "claim")


@dataclass
class Context:
    """The job's config and store; `batched`: a seeds job, whose members fail one by one (a
    one-run job's failure is the job's). `data` and `model` may come built already (the job builds
    them before any run exists, so a missing data folder or weights file fails first; `model` is
    then the freshly initialised w_0 of a one-run train stage)."""

    cfg: DictConfig
    tracker: Tracker
    data: Data | None = None
    model: nn.Module | None = None

    @property
    def batched(self) -> bool:
        return is_batched(self.cfg)

    def fail(self, member: Member, reason: str) -> None:
        """Mark one member FAILED (its run keeps what it recorded); the others go on."""
        member.failed = reason
        self.tracker.fail(member.run_id, reason)
