"""The train stage's resume state: what continuing bit for bit needs, as one file.

It holds (see `Loop.state_dict`) the model and optimizer (or phase schedule) state, the step, the
data-order generator's state at the start of the current epoch and the batches taken in it, torch's
global RNG state, R(t) recorded so far, the evaluations and online λ rows, Σ lr, and the names of
the checkpoints the run held when it was written (the stage uploads new checkpoints first, so the
state never names a checkpoint the run lacks). The train stage keeps it as artifact
`resume/train.pt` of the run.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.errors import UnreadableState


def write(path: Path, state: dict, checkpoints: list[str]) -> None:
    """Save `state` and the names of the checkpoints the run holds to `path`."""
    torch.save({**state, "checkpoints": sorted(checkpoints)}, path)


def read(path: Path, name: str) -> dict:
    """A resume state written by `write` (`name`: how the message names the file)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        state["step"]  # noqa: B018  (a file that is not a resume state fails here)
        return state
    except Exception as e:
        raise UnreadableState(
            f"the resume state {name} is unreadable ({type(e).__name__}: {str(e)[:120]}): launch "
            "with resume.enabled=false to start the point in a new run"
        ) from None
