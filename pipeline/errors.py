"""The errors that end a job in a way of their own: a one-line `UserError` (bad config value, missing
data, unreachable store), a diverged training, an unreadable resume state. No torch here: the job's
lifecycle catches them before it knows whether it trains."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user fixes by changing input; the message names the fix."""


class Diverged(RuntimeError):
    """The training loss became non-finite."""

    @classmethod
    def at(cls, step: int, train_loss: float) -> Diverged:
        return cls(f"training loss is not finite at step {step} (train loss {train_loss}): lower lr")


class UnreadableState(UserError):
    """A resume state that cannot be read: the run stays KILLED as it was, the job stops."""
