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

import yaml

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


def _limit(side: str) -> Callable[[dict], float | None]:
    def limit(r: dict) -> float | None:
        achieved, peak = (r["jobs"].get(side) or {}).get("llc_gflops_per_s"), r.get("peak_gflops")
        return 100 * achieved / peak if achieved and peak else None

    return limit


READERS: dict[str, Callable[[dict], float | None]] = {
    "limit_ours": _limit("ours"),
    "limit_baseline": _limit("baseline"),
    "batched_llc": _batched_llc,
    "baseline_best": _baseline_best,
    "baseline_extrapolated": _baseline_extrapolated,
    "tracking_share_ours": _share("ours"),
    "tracking_share_baseline": _share("baseline"),
}


def _reader(spec: str) -> Callable[[dict], float | None]:
    """A reader named in figures.yaml: a reader's name, `median of <path>`, or a path of keys."""
    if spec in READERS:
        return READERS[spec]
    if spec.startswith("median of "):
        return _median_of(*spec.removeprefix("median of ").split("."))
    return _get(*spec.split("."))


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
    """The rows of bench/figures.yaml, their texts filled in for this mode and launcher."""
    table = yaml.safe_load((Path(__file__).parent / "figures.yaml").read_text())
    n = mode.sweep_seeds
    values = dict(n=n, n_minus_1=n - 1, big=mode.big_seeds, n_jobs=n_jobs, launcher=launcher)
    values.update(llc_calls=mode.llc_calls, job=table["job"])
    return [
        Figure(
            f["key"],
            f["label"].format(**values),
            f["better"],
            f["how"].format(**values),
            _reader(f["ours"]),
            _reader(f["baseline"]),
        )
        for f in table["figures"]
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
    """Issue 18's speed targets, with what this invocation reached (medians); a target whose case
    was not run is left out."""
    out = []

    def med(case: str, key: str, side: str = "ours") -> float | None:
        return cases.get(case, {}).get("figures", {}).get(key, {}).get(side, {}).get("median")

    def ratio(case: str, key: str) -> float | None:
        return cases.get(case, {}).get("figures", {}).get(key, {}).get("ratio")

    def add(target: str, reached: float, met: bool, text: str) -> None:
        out.append({"target": target, "reached": reached, "met": met, "text": text})

    calibrated, table3 = med("calibrated", "job_wall_s"), med("default", "job_wall_s")
    if calibrated:
        add(
            "default job, calibrated preset, calibration included: ≤ 60 s",
            calibrated,
            calibrated <= 60,
            f"{calibrated:.1f} s",
        )
        if table3:
            r = calibrated / table3
            text = f"{r:.2f}× ({table3:.1f} s → {calibrated:.1f} s)"
            add("default job, calibrated preset: ≤ 2× the Table 3 job", r, r <= 2, text)
    for case in cases:
        if case != "calibrated" and (r := ratio(case, "big_batched_rph")) is not None:
            add(
                f"{mode.big_seeds}-seed throughput at Table 3 settings ≥ 10× the baseline ({case})",
                r,
                r >= 10,
                f"{r:.2f}×",
            )
    if (pct := med("mnist_mlp", "llc_limit_pct")) is not None:
        add(
            "MNIST-sized batched λ ≥ 50 % of the measured matrix-multiply peak",
            pct,
            pct >= 50,
            f"{pct:.1f} %",
        )
    if (r := ratio("default", "relaunch_s")) is not None:
        imports, again = med("default", "relaunch_s", "baseline"), med("default", "relaunch_s")
        text = f"{r:.2f}× ({imports:.1f} s → {again:.1f} s)"
        add('relaunch of a finished point ≤ 1.5× python -c "import torch, mlflow"', r, r <= 1.5, text)
    # The default job is `python launch.py`'s, the calibrated preset since issue 16; the Table 3
    # job (case `default`) is reported beside it. Every command's store is a fresh one.
    for case, what in (("calibrated", "the default job (calibrated)"), ("default", "the Table 3 job")):
        if (share := med(case, "tracking_share_pct")) is not None:
            add(f"tracking share of {what} < 5 %", share, share < 5, f"{share:.1f} %")
    return out


def under_load(rounds: list[dict]) -> list[str]:
    """The measurements of a case's rounds taken under load (`bench.proc.Load`), as "round k: what
    (others' CPU share, steal share)"; every dict in a round with a "load" entry is one."""
    found = []

    def walk(x: object, path: str, k: int) -> None:
        if not isinstance(x, dict):
            return
        load = x.get("load")
        if isinstance(load, dict) and load.get("under_load"):
            share, steal = 100 * load["others_cpu_share"], 100 * load["steal_share"]
            found.append(f"round {k}: {path} (others {share:.0f} % of the CPUs, steal {steal:.0f} %)")
        for key, value in x.items():
            if key != "load":
                walk(value, f"{path}.{key}" if path else key, k)

    for k, r in enumerate(rounds, 1):
        walk(r, "", k)
    return found


def load_note(rounds: list[dict]) -> str:
    """One line under a case's table: which measurements were taken under load, if any."""
    found = under_load(rounds)
    if not found:
        return "Every measurement quiet: other processes under 10 % of the CPUs, steal under 10 %."
    return "Taken under load (after retries), their figures less sure: " + "; ".join(found) + "."


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
