"""The train stage's resume state: artifact `resume/train.pt` of the run.

It holds what continuing bit-for-bit needs (on the same machine and threads): model and optimizer
(or phase schedule) state, the step, the data-order generator's state at the start of the current
epoch and the batches taken in it, torch's global RNG state, R(t) recorded so far, the evaluations
and online λ rows, and the names of the checkpoints uploaded with it (`checkpoints/step_*.pt`: each
save uploads the new ones first, so the state never names a checkpoint the run lacks).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from pipeline import resume
from pipeline.tracking import Tracker

FOLDER = "resume"
FILE = f"{FOLDER}/train.pt"


class Saver:
    """Saves the state at most every `every_s` seconds (`due`), uploading new checkpoints with it."""

    def __init__(self, every_s: float) -> None:
        self.every_s = float(every_s)
        self.last = time.monotonic()
        self.uploaded: set[str] = set()  # checkpoint files the run holds already
        self.uploaded_state = False

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.every_s

    def upload_checkpoints(self, tracker: Tracker, run_id: str, ckpt_dir: Path) -> None:
        new = sorted(f for f in ckpt_dir.glob("step_*.pt") if f.name not in self.uploaded)
        if not new:
            return
        if self.uploaded:
            tracker.log_files(run_id, new, "checkpoints")
        else:  # one upload for the lot, as a run that was never interrupted does it
            tracker.log_dir(run_id, ckpt_dir, "checkpoints")
        self.uploaded |= {f.name for f in new}

    def save(self, tracker: Tracker, run_id: str, snapshot: dict, ckpt_dir: Path) -> None:
        self.upload_checkpoints(tracker, run_id, ckpt_dir)
        with tempfile.TemporaryDirectory(prefix="ab-resume-") as d:
            path = Path(d) / "train.pt"
            torch.save({**snapshot, "checkpoints": sorted(self.uploaded)}, path)
            tracker.log_files(run_id, [path], FOLDER)
        self.uploaded_state = True
        self.last = time.monotonic()


def load(tracker: Tracker, run_id: str) -> dict | None:
    """The run's resume state, None when it has none (interrupted before the first save)."""

    with tempfile.TemporaryDirectory(prefix="ab-resume-") as d:
        path = tracker.download_file(run_id, FILE, Path(d))
        if path is None:
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
            state["step"]  # noqa: B018  (a file that is not a resume state fails here)
            return state
        except Exception as e:
            raise resume.UnreadableState(
                f"the resume state {FILE} of run {run_id} is unreadable ({type(e).__name__}: "
                f"{str(e)[:120]}): launch with resume.enabled=false to start the point in a new run"
            ) from None
