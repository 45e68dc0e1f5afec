"""A run's files: tables (parquet), JSON, text, folders; read back into memory, with one line for a
file that is unreadable (corrupted, cut short, overwritten). Mixed into `Tracker`."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import UserError

if TYPE_CHECKING:
    import pandas as pd


def unreadable_artifact(run_id: str, path: str, error: Exception, local: str | None = None) -> str:
    """The line for a recorded file a stage cannot read back; `local`: where it was downloaded to,
    named as the artifact instead (the download is removed)."""
    why = (str(error).strip().splitlines() or [""])[0]
    why = why.replace(local, path) if local else why
    if len(why) > 160:
        why = why[:160].rsplit(" ", 1)[0] + " ..."
    return (
        f"artifact {path} of run {run_id} is unreadable ({type(error).__name__}: {why}): re-train the "
        "point (launch it again with its first stage; the run's params hold its config)"
    )


class Artifacts:
    """Artifact I/O (needs `Client`'s `client`, `_call` and `uri`)."""

    def log_table(self, run_id: str, df: pd.DataFrame, name: str) -> None:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / f"{name}.parquet"
            df.to_parquet(path, index=False)
            self.client.log_artifact(run_id, str(path))

    def load_table(self, run_id: str, name: str) -> pd.DataFrame | None:
        import pandas as pd

        return self._read(run_id, f"{name}.parquet", pd.read_parquet)

    def log_json(self, run_id: str, obj: Mapping, name: str) -> None:
        self.client.log_dict(run_id, dict(obj), f"{name}.json")

    def load_json(self, run_id: str, name: str) -> dict | None:
        return self._read(run_id, f"{name}.json", lambda p: json.loads(Path(p).read_text()))

    def log_text(self, run_id: str, text: str, name: str) -> None:
        self.client.log_text(run_id, text, name)

    def load_text(self, run_id: str, name: str) -> str | None:
        return self._read(run_id, name, lambda p: Path(p).read_text())

    def _read(self, run_id: str, path: str, read):
        """An artifact read into memory (None when the run has none); the download is removed."""
        with tempfile.TemporaryDirectory(prefix="ab-artifact-") as d:
            local = self._download(run_id, path, Path(d))
            if not local:
                return None
            try:
                return read(local)
            except Exception as e:  # a corrupted file: one line naming it, the run left as it was
                raise UserError(unreadable_artifact(run_id, path, e, str(local))) from None

    def log_dir(self, run_id: str, local_dir: Path, artifact_path: str) -> None:
        self.client.log_artifacts(run_id, str(local_dir), artifact_path)

    def log_files(self, run_id: str, files: Iterable[Path], artifact_path: str) -> None:
        """Upload the given local files under `artifact_path` (one call per file)."""
        for f in files:
            self.client.log_artifact(run_id, str(f), artifact_path)

    def download_dir(self, run_id: str, artifact_path: str, dst: Path) -> Path | None:
        """A file or folder of the run into `dst`; None when the run has no such artifact."""
        return Path(p) if (p := self._download(run_id, artifact_path, dst)) else None

    download_file = download_dir

    def artifact_paths(self, run_id: str, folder: str) -> list[str]:
        """Paths of the artifacts directly under `folder` (e.g. 'checkpoints')."""
        return sorted(f.path for f in self.client.list_artifacts(run_id, folder) if not f.is_dir)

    def _download(self, run_id: str, path: str, dst: Path | None = None) -> str | None:
        parent = str(Path(path).parent)
        listed = self.client.list_artifacts(run_id, None if parent == "." else parent)
        if path not in {f.path for f in listed}:
            return None
        dst = dst or Path(tempfile.mkdtemp(prefix="ab-artifact-"))
        return self.client.download_artifacts(run_id, path, str(dst))

    def delete_artifacts(self, run_id: str, path: str) -> bool:
        """Remove an artifact (file or folder) of a run where the artifact store allows it (local
        files, `mlflow-artifacts:` through a server); False where it does not."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        uri = self.client.get_run(run_id).info.artifact_uri
        try:
            repo = get_artifact_repository(uri, tracking_uri=self.uri)
            self._call(lambda: repo.delete_artifacts(path), label="delete_artifacts")
        except (NotImplementedError, UserError):
            return False
        return True
