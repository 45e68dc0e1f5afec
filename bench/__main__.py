"""`python -m bench [--quick] [--repeats N] [--cases default,mnist_mlp] ...` (or `make bench ARGS=...`).

Prints a Markdown table (figure, ours, baseline, ratio ours / baseline, whether higher or lower
is better) and the speed targets, and writes everything, per-round values and machine facts
included, to `<out>/<timestamp>.json`. `python -m bench --render <that file>` prints the Markdown
again (for the measured table of docs/benchmarks.md) without measuring anything.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import harness, report
from bench.cases import CASES, MODES

ROOT = Path(__file__).resolve().parent.parent


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", const="quick", dest="mode", help="a few minutes")
    size.add_argument(
        "--tiny", action="store_const", const="tiny", dest="mode", help="seconds per run (tests)"
    )
    p.set_defaults(mode="full")
    p.add_argument("--repeats", type=int, default=None, help="rounds per figure (full: 3, quick: 1)")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    p.add_argument("--threads", type=int, default=None, help="torch threads per job (default: usable cores)")
    p.add_argument("--n-jobs", type=int, default=2, help="jobs at once in the parallel figures")
    p.add_argument("--launcher", default="parallel", help="the parallel launcher preset (hydra/launcher=...)")
    p.add_argument("--no-sweeps", action="store_true", help="skip the sweep-throughput figures (4, 6b)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="folder for the JSON file")
    p.add_argument("--keep", action="store_true", help="keep the stores and outputs (printed at the end)")
    p.add_argument(
        "--render", type=Path, default=None, help="print the Markdown of a results JSON file, measure nothing"
    )
    args = p.parse_args(argv)
    if args.render is not None and not args.render.is_file():
        p.error(f"--render {args.render}: no such file; the results are in bench/results/<timestamp>.json")
    unknown = [c for c in args.cases.split(",") if c not in CASES]
    if unknown:
        p.error(f"unknown case {unknown[0]!r}: choose from {', '.join(CASES)}")
    if args.repeats is not None and args.repeats < 1:
        p.error("--repeats must be ≥ 1")
    return args


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> Path:
    args = parse(argv)
    if args.render is not None:
        result = json.loads(args.render.read_text())
        # The targets as the report now defines them, from the saved figures.
        result["targets"] = report.targets(result["cases"], MODES[result["mode"]])
        print(render(result))
        return args.render
    mode = MODES[args.mode]
    repeats = args.repeats or mode.repeats
    threads = args.threads or len(os.sched_getaffinity(0))
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    workdir = Path(tempfile.mkdtemp(prefix=f"ab-bench-{stamp}-"))
    features = harness.detect_features(args.launcher)
    bench = harness.Bench(workdir, threads, args.n_jobs, args.launcher, features, log)
    result = {
        "timestamp": stamp,
        "mode": mode.name,
        "settings": {**vars(mode), "repeats": repeats, "n_jobs": args.n_jobs, "launcher": args.launcher},
        "features": features,
        "machine": report.machine(threads),
        "load_average_before": os.getloadavg(),
        "cases": {},
    }
    t0 = time.perf_counter()
    log(f"bench {mode.name}: {repeats} round(s), {threads} torch threads per job, work in {workdir}")
    try:
        for name in args.cases.split(","):
            case = CASES[name]
            rounds = harness.measure(bench, case, mode, repeats, sweeps=case.sweeps and not args.no_sweeps)
            figs = report.assemble(rounds, mode, args.n_jobs, args.launcher)
            result["cases"][name] = {
                "description": case.describe(mode),
                "ours_overrides": case.ours(mode),
                "baseline_args": case.theirs(mode),
                "figures": figs,
                "rounds": rounds,
            }
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    result["load_average_after"] = os.getloadavg()
    result["duration_s"] = time.perf_counter() - t0
    result["targets"] = report.targets(result["cases"], mode)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{stamp}.json"
    path.write_text(json.dumps(result, indent=1))
    print(render(result))
    print(f"\nwritten: {path}" + (f"; stores and outputs kept in {workdir}" if args.keep else ""))
    return path


def render(result: dict) -> str:
    """The Markdown the benchmark prints: one table per case, then the targets."""
    m, load = result["machine"], (result["load_average_before"][0], result["load_average_after"][0])
    dirty = " (dirty)" if m["git_dirty"] else ""
    parts = [
        f"Benchmark ({result['mode']} mode, {result['settings']['repeats']} round(s); median (min–max)), "
        f"{m['cpu_model']}, {m['cores_usable']} usable cores, {m['torch_threads']} torch threads per job, "
        f"load average before {load[0]:.2f}, after {load[1]:.2f}, commit {m['git_commit'][:10]}{dirty}, "
        f"{result['duration_s'] / 60:.1f} min",
    ]
    for name, case in result["cases"].items():
        parts.append(report.table(name, case["description"], case["figures"]))
        if "rounds" in case:
            parts.append(report.load_note(case["rounds"]))
    if result["targets"]:
        parts.append("### targets\n\n" + report.targets_table(result["targets"]))
    return "\n\n".join(parts)


if __name__ == "__main__":
    main()
