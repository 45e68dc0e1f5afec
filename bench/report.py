"""From the measured rounds to figures (median, min, max over rounds, ratio ours / baseline), the
Markdown table, the targets, and the machine facts the JSON file carries."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from bench.cases import Mode

ROOT = Path(__file__).resolve().parent.parent
NA = "n/a (not available in this checkout)"


def stats(values: list[float | None]) -> dict:
    """Median, min, max and the values over rounds; NA when no round measured it."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"na": NA}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "values": vals}


def _get(*keys: str) -> Callable[[dict], float | None]:
    """A getter of round[k1][k2]...; None where a key is missing (a figure this checkout lacks)."""

    def get(round_: dict) -> float | None:
        x = round_
        for k in keys:
            if not isinstance(x, dict) or x.get(k) is None:
                return None
            x = x[k]
        return x

    return get


def _median_of(*keys: str) -> Callable[[dict], float | None]:
    get = _get(*keys)
    return lambda r: statistics.median(v) if (v := get(r)) else None


def _share(side: str) -> Callable[[dict], float | None]:
    def share(r: dict) -> float | None:
        job = r["jobs"].get(side) or {}
        return 100 * job["tracking_s"] / job["wall_s"] if job.get("tracking_s") is not None else None

    return share


def _batched_llc(r: dict) -> float | None:
    job = r["jobs"]["ours"]
    return job["llc_s_per_estimate"] if job.get("llc_method") == "batched" else None


def _baseline_best(r: dict) -> float | None:
    s = r.get("sweeps")
    return (
        max(s["baseline_sequential"]["runs_per_hour"], s["baseline_parallel"]["runs_per_hour"]) if s else None
    )


def _baseline_extrapolated(r: dict) -> float | None:
    s = r.get("sweeps")
    return 3600 / statistics.mean(s["baseline_sequential"]["per_run_s"]) if s else None


@dataclass(frozen=True)
class Figure:
    """One row of the table: how to read ours and the baseline's value from a round."""

    key: str
    label: str
    better: str  # "higher" or "lower"
    how: str
    ours: Callable[[dict], float | None]
    baseline: Callable[[dict], float | None]


def figures(mode: Mode, n_jobs: int, launcher: str) -> list[Figure]:
    n, big = mode.sweep_seeds, mode.big_seeds
    job = "one job (python launch.py / python bench/baseline.py), fresh store"
    return [
        Figure(
            "train_steps_per_s",
            "1. training steps/s (train stage, λ excluded)",
            "higher",
            "total_steps / time of the train stage: ours from the run's total_steps and time/train_s "
            "(SGD steps, R(t) at every step, evaluations, checkpoints, logging them); the baseline's "
            "own timer around its loop (SGD steps, R(t) and evaluations every 100 steps, logging them), "
            "its devinterp calls subtracted",
            _get("jobs", "ours", "steps_per_s"),
            _get("jobs", "baseline", "steps_per_s"),
        ),
        Figure(
            "llc_s_batched",
            "2a. s per λ estimate in the job, llc.method=batched (amortised)",
            "lower",
            "ours: the run's time/llc_s / llc.estimates (all checkpoints in batched passes, after training); "
            "baseline: its time inside estimate_learning_coeff_with_summary / number of calls",
            _batched_llc,
            _get("jobs", "baseline", "llc_s_per_estimate"),
        ),
        Figure(
            "llc_s_serial",
            "2b. s per λ estimate in the job, llc.method=serial",
            "lower",
            "as 2a, ours from a job with llc.method=serial (one devinterp call per checkpoint)",
            _get("jobs", "ours_serial", "llc_s_per_estimate"),
            _get("jobs", "baseline", "llc_s_per_estimate"),
        ),
        Figure(
            "llc_alone_serial_s",
            "2c. one λ estimate alone, serial path (s)",
            "lower",
            f"median of {mode.llc_calls} calls after a warm-up, in one process on the job's last "
            "checkpoint: pipeline.slt.llc.estimate vs the baseline's estimate_learning_coeff_with_summary "
            "on a DataLoader",
            _median_of("llc_alone", "ours_serial"),
            _median_of("llc_alone", "baseline"),
        ),
        Figure(
            "llc_alone_batched_s",
            "2d. one λ estimate alone, batched path with one checkpoint (s)",
            "lower",
            "as 2c, ours pipeline.slt.llc.estimate_many with one state",
            _median_of("llc_alone", "ours_batched_one"),
            _median_of("llc_alone", "baseline"),
        ),
        Figure(
            "job_wall_s",
            "3a. whole job, wall clock (s)",
            "lower",
            f"wall clock of the subprocess, {job}, start-up included",
            _get("jobs", "ours", "wall_s"),
            _get("jobs", "baseline", "wall_s"),
        ),
        Figure(
            "job_wall_serial_s",
            "3b. whole job with llc.method=serial, wall clock (s)",
            "lower",
            "as 3a, ours with llc.method=serial",
            _get("jobs", "ours_serial", "wall_s"),
            _get("jobs", "baseline", "wall_s"),
        ),
        Figure(
            "sweep_sequential_rph",
            f"4a. {n} seeds one after another (runs/h)",
            "higher",
            f"ours: python launch.py -m seed=0..{n - 1} (one process, Hydra's basic launcher); "
            f"baseline: {n} processes one after another",
            _get("sweeps", "ours_sequential", "runs_per_hour"),
            _get("sweeps", "baseline_sequential", "runs_per_hour"),
        ),
        Figure(
            "sweep_parallel_rph",
            f"4b. {n} seeds, {n_jobs} jobs at once (runs/h)",
            "higher",
            f"ours: -m hydra/launcher={launcher} hydra.launcher.n_jobs={n_jobs}; baseline: {n_jobs} "
            f"processes at a time; both with threads // {n_jobs} torch threads per job",
            _get("sweeps", "ours_parallel", "runs_per_hour"),
            _get("sweeps", "baseline_parallel", "runs_per_hour"),
        ),
        Figure(
            "sweep_batched_rph",
            f"4c. {n} seeds as one batched job, seeds={n} (runs/h)",
            "higher",
            "ours: python launch.py seeds=N (one job, one run per seed); the baseline has no such mode: "
            "its best of 4a and 4b",
            _get("sweeps", "ours_batched", "runs_per_hour"),
            _baseline_best,
        ),
        Figure(
            "big_batched_rph",
            f"4d. {big} seeds: seeds={big} in one job (runs/h)",
            "higher",
            f"ours: python launch.py seeds={big}, measured; baseline: {big} one after another, "
            f"EXTRAPOLATED from the mean per-run time of its {n} sequential runs (4a), not run",
            _get("sweeps", "ours_big", "runs_per_hour"),
            _baseline_extrapolated,
        ),
        Figure(
            "tracking_share_pct",
            "5. tracking: share of the job's wall time in MLflow (%)",
            "lower",
            "seconds in MLflow (its import, opening the store, every call: ours the run's time/tracking_s, "
            "the baseline its own timer) / the job's wall clock (3a)",
            _share("ours"),
            _share("baseline"),
        ),
        Figure(
            "peak_rss_job_mb",
            "6a. peak memory, one job (max RSS, MB)",
            "lower",
            "ru_maxrss of the job's process from wait4",
            _get("jobs", "ours", "max_rss_mb"),
            _get("jobs", "baseline", "max_rss_mb"),
        ),
        Figure(
            "peak_rss_sweep_mb",
            f"6b. peak memory, {n} seeds (all processes at once, MB)",
            "lower",
            f"peak of the processes' memory together (anonymous summed, libraries once), sampled from /proc "
            f"every 0.1 s: ours "
            f"seeds={n} in one job, the baseline {n_jobs} processes at a time (4b)",
            _get("sweeps", "ours_batched", "peak_mb"),
            _get("sweeps", "baseline_parallel", "peak_mb"),
        ),
    ]


def assemble(rounds: list[dict], mode: Mode, n_jobs: int, launcher: str) -> dict:
    """Every figure of one case: ours, baseline (stats over rounds) and the ratio of the medians."""
    out = {}
    for f in figures(mode, n_jobs, launcher):
        ours, base = stats([f.ours(r) for r in rounds]), stats([f.baseline(r) for r in rounds])
        ratio = ours["median"] / base["median"] if "median" in ours and "median" in base else None
        out[f.key] = {"label": f.label, "better": f.better, "how": f.how, "ours": ours, "baseline": base}
        out[f.key]["ratio"] = ratio
    return out


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def _cell(s: dict) -> str:
    if "median" not in s:
        return s["na"]
    if len(s["values"]) == 1:
        return _fmt(s["median"])
    return f"{_fmt(s['median'])} ({_fmt(s['min'])}–{_fmt(s['max'])})"


def table(case_name: str, description: str, figs: dict) -> str:
    lines = [
        f"### {case_name}: {description}",
        "",
        "| figure | better | ours | baseline | ours / baseline |",
        "|---|---|---|---|---|",
    ]
    for f in figs.values():
        ratio = "n/a" if f["ratio"] is None else f"{f['ratio']:.3g}"
        lines.append(
            f"| {f['label']} | {f['better']} | {_cell(f['ours'])} | {_cell(f['baseline'])} | {ratio} |"
        )
    return "\n".join(lines)


def targets(cases: dict, mode: Mode) -> list[dict]:
    """The speed targets, with what this invocation reached (medians)."""
    out = []

    def med(case: str, key: str, side: str) -> float | None:
        return cases.get(case, {}).get("figures", {}).get(key, {}).get(side, {}).get("median")

    ours, base = med("default", "job_wall_s", "ours"), med("default", "job_wall_s", "baseline")
    if ours and base:
        out.append(
            {
                "target": "whole default job ≥ 5× faster than the baseline",
                "reached": base / ours,
                "met": base / ours >= 5,
                "text": f"{base / ours:.2f}× ({base:.1f} s → {ours:.1f} s)",
            }
        )
        out.append(
            {
                "target": "default job under 60 s on this machine",
                "reached": ours,
                "met": ours < 60,
                "text": f"{ours:.1f} s",
            }
        )
    for case in cases:
        r = cases[case]["figures"].get("big_batched_rph", {}).get("ratio")
        if r is not None:
            out.append(
                {
                    "target": f"{mode.big_seeds}-seed throughput ≥ 10× ({case})",
                    "reached": r,
                    "met": r >= 10,
                    "text": f"{r:.2f}×",
                }
            )
    share = med("default", "tracking_share_pct", "ours")
    if share is not None:
        out.append(
            {
                "target": "tracking overhead < 5 % (default job)",
                "reached": share,
                "met": share < 5,
                "text": f"{share:.1f} %",
            }
        )
    return out


def targets_table(rows: list[dict]) -> str:
    lines = ["| target | reached | met |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['text']} | {'yes' if t['met'] else 'no'} |" for t in rows]
    return "\n".join(lines)


def machine(threads: int) -> dict:
    """Facts about the machine and checkout the numbers were measured on."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = bool(
        subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True).stdout.strip()
    )
    versions = {}
    for pkg in ("torch", "devinterp", "mlflow", "hydra-core"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "torch_threads": threads,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": commit or "unknown",
        "git_dirty": dirty,
        "versions": versions,
    }
