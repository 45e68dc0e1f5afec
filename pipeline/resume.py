"""Re-launching a point: which run it continues, who owns a run, and interruptions.

A point is identified by its `config_hash` tag. `decide` picks, from the point's runs, what a new
job does (rules in the README, "Re-launching, resuming"): skip a finished point, skip a point
another live job is running, take over (claim) an interrupted run, or start a new run (superseding
failed ones). The owner of a run is the process that runs it: tags `owner.host`, `owner.pid`,
`owner.started` (the process's start time, so a reused pid is not mistaken for it), `owner.slurm_job`,
and `heartbeat` (unix time) refreshed by a daemon thread while the job runs.

`Interrupts` turns SIGTERM / SIGINT and submitit's USR2 handler (preemption, time-out) into
exceptions that the job records as KILLED, not FAILED; inside the training loop it defers them to
the end of the step, so the resume state saved then is a consistent one. No MLflow here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from omegaconf import DictConfig

from pipeline import config
from pipeline.errors import UserError

HEARTBEAT_S = 60.0
OWNER_KEYS = ("owner.host", "owner.pid", "owner.started", "owner.slurm_job")


class UnreadableState(UserError):
    """A resume state that cannot be read: the run stays KILLED as it was, the job stops."""


class Interrupted(BaseException):
    """The job was asked to stop (SIGTERM): the run is KILLED and can be resumed.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` swallows it."""


def settings(cfg: DictConfig) -> tuple[bool, float, float]:
    """(enabled, every_s, stale_after_s) from the `resume` block; defaults where it is missing."""
    r = cfg.get("resume") or {}
    return bool(r.get("enabled", True)), float(r.get("every_s", 120)), float(r.get("stale_after_s", 900))


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
    tags = {
        "owner.host": socket.gethostname(),
        "owner.pid": str(os.getpid()),
        "owner.started": process_start(os.getpid()) or "unknown",
        "heartbeat": f"{time.time():.0f}",
    }
    tags["owner.slurm_job"] = config.slurm_job() or ""
    return tags


def owner_alive(tags: Mapping[str, str], start_time_ms: int, stale_after_s: float, now: float) -> bool:
    """Whether the process that owns a RUNNING run still runs it.

    On this host: its pid exists with the same start time. Elsewhere (or a run without owner tags,
    made before they existed): its last sign of life, the heartbeat or else the run's start, is
    younger than `stale_after_s`."""
    if tags.get("owner.host") == socket.gethostname() and tags.get("owner.pid"):
        started = process_start(int(tags["owner.pid"]))
        return started is not None and started == tags.get("owner.started")
    last = float(tags.get("heartbeat") or start_time_ms / 1000)
    return now - last < stale_after_s


def own_slurm_job(tags: Mapping[str, str]) -> bool:
    """A requeued Slurm job (same job id as the run's owner) always takes its own run back."""
    job = config.slurm_job()
    return bool(job) and tags.get("owner.slurm_job") == job


# -- the decision ---------------------------------------------------------------------------------
@dataclass
class Decision:
    """What a job does with its point: `action` is new, skip, busy or claim.

    `run` is the run skipped or claimed (an MLflow Run), `done` the requested stages it has done,
    `superseded` the FAILED runs a new run replaces, `note` the one line printed for the user."""

    action: str
    run: object | None = None
    done: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    note: str = ""


def _done(run, stages) -> list[str]:
    return [s for s in stages if run.data.tags.get(f"stage.{s}") == "done"]


def decide(runs: list, stages, stale_after_s: float, now: float | None = None) -> Decision:
    """What a job with `stages` does, given its point's runs (newest first, analysis runs excluded)."""
    now = time.time() if now is None else now
    stages = list(stages)
    live = [r for r in runs if "superseded_by" not in r.data.tags]
    for r in live:
        if r.info.status == "FINISHED" and len(_done(r, stages)) == len(stages):
            return Decision(
                "skip",
                r,
                stages,
                note=f"skipped: point already finished as run {r.info.run_id} "
                f"(stages {', '.join(stages)} done; resume.enabled=false starts a new run)",
            )
    for r in live:
        tags = r.data.tags
        if r.info.status == "RUNNING" and not own_slurm_job(tags):
            if owner_alive(tags, r.info.start_time, stale_after_s, now):
                who = f"{tags.get('owner.host', '?')} pid {tags.get('owner.pid', '?')}"
                if tags.get("owner.slurm_job"):
                    who += f", Slurm job {tags['owner.slurm_job']}"
                return Decision(
                    "busy",
                    r,
                    note=f"skipped: point is being run as run {r.info.run_id} by {who} (still alive)",
                )
    for r in live:
        if r.info.status in ("RUNNING", "KILLED") or (
            r.info.status == "FINISHED" and _done(r, stages) != stages
        ):
            done = _done(r, stages)
            was = {"RUNNING": "left RUNNING by a process that is gone", "KILLED": "interrupted"}
            why = was.get(r.info.status, "finished without all requested stages")
            if r.info.status == "RUNNING" and own_slurm_job(r.data.tags):
                why = "interrupted; requeued as the same Slurm job"
            return Decision(
                "claim",
                r,
                done,
                note=f"resuming run {r.info.run_id} ({why}); done already: {', '.join(done) or 'nothing'}",
            )
    failed = [r.info.run_id for r in live if r.info.status == "FAILED"]
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


# -- interruptions --------------------------------------------------------------------------------
def interruption(e: BaseException) -> str | None:
    """Why a job stopped when it was interrupted from outside (None for a real failure)."""
    if isinstance(e, Interrupted):
        return str(e) or "SIGTERM"
    if isinstance(e, KeyboardInterrupt):
        return "SIGINT"
    if isinstance(e, SystemExit):  # submitit's handler exits after requeueing a preempted job
        return "preempted or timed out (Slurm, requeued by submitit)"
    if type(e).__name__ == "UncompletedJobError":  # submitit gives up: timed-out too many times
        return f"Slurm: {e}"
    return None


class Interrupts:
    """SIGTERM and SIGINT as exceptions, and submitit's USR2 handler, deferred while `deferring`.

    SIGTERM is handled only where its handler is the default one (under submitit it is logged
    and ignored, and USR2 follows); USR2 only where a Python handler (submitit's) is installed, which
    is then called as it would have been, after the current training step."""

    def __init__(self) -> None:
        self.pending: tuple[int, object] | None = None
        self.deferring = False
        self._original: dict[int, object] = {}

    @contextlib.contextmanager
    def installed(self) -> Iterator[Interrupts]:
        if threading.current_thread() is not threading.main_thread():  # signals need the main thread
            yield self
            return
        wanted = {
            signal.SIGTERM: lambda h: h == signal.SIG_DFL,
            signal.SIGINT: lambda h: h is signal.default_int_handler,
            signal.SIGUSR2: lambda h: callable(h),
        }
        for sig, ours in wanted.items():
            current = signal.getsignal(sig)
            if ours(current):
                self._original[sig] = current
                signal.signal(sig, self._on_signal)
        try:
            yield self
        finally:
            for sig, handler in self._original.items():
                signal.signal(sig, handler)
            self._original.clear()
            self.deferring, self.pending = False, None

    @contextlib.contextmanager
    def deferred(self) -> Iterator[Interrupts]:
        """Signals arriving inside wait in `pending` for `fire()` (the loop calls it between steps)."""
        self.deferring = True
        try:
            yield self
        finally:
            self.deferring = False

    def _on_signal(self, signum: int, frame) -> None:
        if self.deferring:
            self.pending = (signum, frame)
            return
        self._act(signum, frame)

    def fire(self) -> None:
        """Act on a deferred signal: raise its exception (or run submitit's handler, which exits)."""
        if self.pending is not None:
            signum, frame = self.pending
            self.pending = None
            self.deferring = False
            self._act(signum, frame)

    def _act(self, signum: int, frame) -> None:
        if signum == signal.SIGTERM:
            raise Interrupted("SIGTERM")
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        handler = self._original.get(signum)
        if callable(handler):
            handler(signum, frame)


# The job's interrupts (one job per process): the train loop defers them between steps.
INTERRUPTS = Interrupts()
