"""Where and with how many threads a job runs: the cores it may use, Slurm's allocation, the jobs of
the parallel launcher sharing the machine; recorded as run tags."""

from __future__ import annotations

import os


def cores() -> int:
    """CPU cores this process may use: its CPU affinity, capped by a container's CPU quota.

    joblib's count, so that the parallel launcher's `n_jobs=-1` (one job per core) means the same cores.
    """
    from joblib import cpu_count

    return max(1, cpu_count())


def threads(setting: int | None) -> int:
    """Torch threads for one job: the setting, else the cores this process may use divided by
    the jobs sharing them (Slurm's CPUs per task, or AB_PARALLEL_JOBS set by the parallel launcher)."""
    if setting:
        return max(1, int(setting))
    if os.environ.get("SLURM_CPUS_PER_TASK"):
        return max(1, int(os.environ["SLURM_CPUS_PER_TASK"]))
    return max(1, cores() // max(1, int(os.environ.get("AB_PARALLEL_JOBS", "1"))))


def slurm_job() -> str | None:
    """The Slurm job this process runs in, as squeue and submitit name it (`<array job>_<task>`)."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def tags(torch_threads: int) -> dict[str, str]:
    """Run tags saying how the job ran: torch threads, jobs sharing the cores, the Slurm job."""
    out = {"torch_threads": str(torch_threads)}
    if os.environ.get("AB_PARALLEL_JOBS"):
        out["parallel_jobs"] = os.environ["AB_PARALLEL_JOBS"]
    if job := slurm_job():
        out["slurm_job"] = job
    return out
