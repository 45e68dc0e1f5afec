"""Re-launching a point: which run it continues, and who owns a run.

A point is identified by its `config_hash` tag. `decide` picks, from the point's runs, what a new
job does (the rules: docs/relaunch.md): skip a finished point, skip a point another live job is
running, take over (claim) an interrupted run, or start a new run (superseding failed ones). The
owner of a run is the process that runs it: tags `owner.host`, `owner.pid`, `owner.started` (the
process's start time, so a reused pid is not mistaken for it), `owner.slurm_job`, and `heartbeat`
(unix time) refreshed by a daemon thread (`Heartbeat`) while the job runs. No MLflow here: the runs
are the tracker's plain records.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pipeline.jobs import placement
from pipeline.tracking import RunRecord, names

HEARTBEAT_S = 60.0


# -- owners ---------------------------------------------------------------------------------------
def process_start(pid: int) -> str | None:
    """The start time of process `pid` (clock ticks since boot, /proc/<pid>/stat field 22), or None
    when no such process exists. With the pid it names one process, even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after its last ')'.
    return stat.rsplit(")", 1)[1].split()[19]


def owner_tags() -> dict[str, str]:
    """This process as the owner of a run."""
    return {
        names.OWNER_HOST: socket.gethostname(),
        names.OWNER_PID: str(os.getpid()),
        names.OWNER_STARTED: process_start(os.getpid()) or "unknown",
        names.HEARTBEAT: f"{time.time():.0f}",
        names.OWNER_SLURM_JOB: placement.slurm_job() or "",
    }


def owner_alive(tags: Mapping[str, str], start_time_ms: int, stale_after_s: float, now: float) -> bool:
    """Whether the process that owns a RUNNING run still runs it.

    On this host: its pid exists with the same start time. Elsewhere (or a run without owner tags,
    made before they existed): its last sign of life, the heartbeat or else the run's start, is
    younger than `stale_after_s`."""
    if tags.get(names.OWNER_HOST) == socket.gethostname() and tags.get(names.OWNER_PID):
        started = process_start(int(tags[names.OWNER_PID]))
        return started is not None and started == tags.get(names.OWNER_STARTED)
    last = float(tags.get(names.HEARTBEAT) or start_time_ms / 1000)
    return now - last < stale_after_s


def own_slurm_job(tags: Mapping[str, str]) -> bool:
    """A requeued Slurm job (same job id as the run's owner) always takes its own run back."""
    job = placement.slurm_job()
    return bool(job) and tags.get(names.OWNER_SLURM_JOB) == job


# -- the decision ---------------------------------------------------------------------------------
@dataclass
class Decision:
    """What a job does with its point: `action` is new, skip, busy or claim.

    `run` is the run skipped or claimed, `done` the requested stages it has done,
    `superseded` the FAILED runs a new run replaces, `note` the one line printed for the user."""

    action: str
    run: RunRecord | None = None
    done: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    note: str = ""


def _done(run: RunRecord, stages) -> list[str]:
    return [s for s in stages if run.tags.get(names.stage_tag(s)) == "done"]


def decide(runs: list[RunRecord], stages, stale_after_s: float, now: float | None = None) -> Decision:
    """What a job with `stages` does, given its point's runs (newest first, analysis runs excluded)."""
    now = time.time() if now is None else now
    stages = list(stages)
    live = [r for r in runs if names.SUPERSEDED_BY not in r.tags]
    for r in live:
        if r.status == "FINISHED" and len(_done(r, stages)) == len(stages):
            return Decision(
                "skip",
                r,
                stages,
                note=f"skipped: point already finished as run {r.run_id} "
                f"(stages {', '.join(stages)} done; resume.enabled=false starts a new run)",
            )
    for r in live:
        tags = r.tags
        if r.status == "RUNNING" and not own_slurm_job(tags):
            if owner_alive(tags, r.start_time, stale_after_s, now):
                who = f"{tags.get(names.OWNER_HOST, '?')} pid {tags.get(names.OWNER_PID, '?')}"
                if tags.get(names.OWNER_SLURM_JOB):
                    who += f", Slurm job {tags[names.OWNER_SLURM_JOB]}"
                return Decision(
                    "busy",
                    r,
                    note=f"skipped: point is being run as run {r.run_id} by {who} (still alive)",
                )
    for r in live:
        if r.status in ("RUNNING", "KILLED") or (r.status == "FINISHED" and _done(r, stages) != stages):
            done = _done(r, stages)
            was = {"RUNNING": "left RUNNING by a process that is gone", "KILLED": "interrupted"}
            why = was.get(r.status, "finished without all requested stages")
            if r.status == "RUNNING" and own_slurm_job(r.tags):
                why = "interrupted; requeued as the same Slurm job"
            return Decision(
                "claim",
                r,
                done,
                note=f"resuming run {r.run_id} ({why}); done already: {', '.join(done) or 'nothing'}",
            )
    failed = [r.run_id for r in live if r.status == "FAILED"]
    note = f"new run: the point's run {', '.join(failed)} failed (tagged superseded_by)" if failed else ""
    return Decision("new", superseded=failed, note=note)


# -- heartbeat ------------------------------------------------------------------------------------
class Heartbeat:
    """A daemon thread that calls `beat()` every `every_s` seconds until stopped."""

    def __init__(self, beat: Callable[[], None], every_s: float = HEARTBEAT_S) -> None:
        self._beat, self._every = beat, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ab-heartbeat", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            with contextlib.suppress(Exception):  # a missed beat only makes the run look older
                self._beat()

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
