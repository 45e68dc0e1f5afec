"""Interruptions from outside (SIGTERM, Ctrl-C, Slurm's USR2) as exceptions a job records as KILLED.

`INTERRUPTS` (one per process) turns SIGTERM and SIGINT into exceptions and wraps submitit's USR2
handler (preemption, time-out); while `deferring` (inside a `deferred()` block: a training step; or
after `hold()`: a stage writing its records, until the job has marked the stage done) a signal waits
in `pending` until `fire()`, so a resume state saved then is consistent and a run never holds half
of a stage's records.
Plain Python: the training loop, the stages and the job lifecycle all use it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Interrupted(BaseException):
    """The job was asked to stop (SIGTERM): the run is KILLED and can be resumed.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` swallows it."""


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
        self._depth = 0  # open `deferred()` blocks
        self._held = False  # `hold()` called, not yet `fire()`d
        # A deferred signal was acted on: while its exception unwinds, a second signal acts at once.
        self._acted = False
        self._original: dict[int, object] = {}

    @property
    def deferring(self) -> bool:
        return (self._depth > 0 or self._held) and not self._acted

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
            self._depth, self._held, self._acted, self.pending = 0, False, False, None

    @contextlib.contextmanager
    def deferred(self) -> Iterator[Interrupts]:
        """Signals arriving inside wait in `pending` for `fire()` (the loop calls it between steps)."""
        self._depth += 1
        self._acted = False
        try:
            yield self
        finally:
            self._depth -= 1

    def hold(self) -> None:
        """From now until the next `fire()`, signals wait: a stage that starts writing its records
        holds them until the job has marked the stage done, so a run never holds half of them."""
        self._held, self._acted = True, False

    def _on_signal(self, signum: int, frame) -> None:
        if self.deferring:
            self.pending = (signum, frame)
            return
        self._act(signum, frame)

    def fire(self) -> None:
        """End a `hold()`, and act on a deferred signal: raise its exception (or run submitit's
        handler, which exits)."""
        self._held = False
        if self.pending is not None:
            signum, frame = self.pending
            self.pending = None
            self._acted = True
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
