"""The benchmark harness: its memory measurements on real processes, its figures and targets from
measured rounds, and (slow) the whole harness in --tiny mode through its command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import harness, proc, report
from bench.cases import CASES, MODES
from tests.helpers.config import ROOT


def hog(mb: int, seconds: float) -> list[str]:
    """A child that holds `mb` MB of written (so resident) memory for `seconds`."""
    return [sys.executable, "-c", f"import time; b = b'x' * ({mb} << 20); time.sleep({seconds})"]


def test_one_process_peak_memory_and_wall_clock(tmp_path: Path):
    res = proc.run(hog(300, 0.5), tmp_path)
    assert res.returncode == 0
    assert res.wall_s >= 0.5
    assert 300 <= res.max_rss_mb < 400  # wait4's ru_maxrss of that child alone
    assert 250 <= res.tree_peak_mb < 400  # sampled while it slept


@pytest.mark.alone  # two sleeps at once must take less than 2 s of wall time
def test_processes_at_once_add_up_and_one_after_another_do_not(tmp_path: Path):
    cmds = [(hog(200, 1.0), tmp_path) for _ in range(2)]
    together = proc.run_many(cmds, at_once=2)
    apart = proc.run_many(cmds, at_once=1)
    assert [r.max_rss_mb >= 200 for r in together.results + apart.results] == [True] * 4
    assert together.peak_mb >= 350  # both held 200 MB at the same time
    assert 150 <= apart.peak_mb < 300
    assert apart.wall_s >= 2.0 > together.wall_s


def test_a_failing_command_says_why(tmp_path: Path):
    res = proc.run([sys.executable, "-c", "import sys; sys.exit('bad input')"], tmp_path)
    with pytest.raises(RuntimeError, match="exited with 1:\nbad input"):
        res.check()


def test_the_memory_sampler_survives_processes_ending_mid_read(monkeypatch: pytest.MonkeyPatch):
    """A sweep's jobs end while the sampler lists /proc: a pid that is gone counts as nothing."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: /proc/<pid> and its task folder no longer exist
    assert proc._descendants(gone.pid) == []
    assert proc.tree_memory_mb(gone.pid) == 0.0
    with monkeypatch.context() as m:  # the crash seen: the task folder vanished while it was listed
        m.setattr(Path, "glob", lambda self, _: (_ for _ in ()).throw(FileNotFoundError(str(self))))
        assert proc._descendants(os.getpid()) == []
    # Many short children ending while the tree is sampled every millisecond.
    with proc.TreeSampler(os.getpid(), include_root=False, interval=0.001) as sampler:
        for _ in range(30):
            subprocess.run([sys.executable, "-S", "-c", "pass"], check=True)
    assert sampler.error is None and sampler.peak_mb > 0


def test_a_child_not_yet_execd_is_its_parents_memory_not_counted_twice():
    """Between fork and exec a child is its parent under another pid, sharing its pages (seen: the
    sampler caught the harness's go-between there and counted the harness's 500 MB once more, so
    two 200 MB commands run one after the other peaked at 769 MB). A parent holding 200 MB forks
    a child that does not exec: the tree holds 200 MB, not 400."""
    script = (
        "import os, sys; b = b'x' * (200 << 20); pid = os.fork()\n"
        "if pid: print('forked', flush=True); sys.stdin.read(); os.waitpid(pid, 0)\n"
        "else: sys.stdin.read()"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout.readline() == "forked\n"
        (child,) = proc._descendants(parent.pid)
        assert proc._memory_kb(child)[0] >= 200 << 10  # it does show the shared pages as its own
        assert proc.tree_memory_mb(parent.pid, include_root=False) == 0.0
        assert 200 <= proc.tree_memory_mb(parent.pid) < 300
    finally:
        parent.communicate("")


@pytest.mark.alone  # the quiet measurement must see no other test's load
def test_the_load_around_a_command_is_what_else_ran(tmp_path: Path):
    """Others' CPU share: all CPUs' busy time minus the command's own; a busy neighbour shows."""
    quiet = proc.run([sys.executable, "-c", "sum(range(10**7))"], tmp_path)
    assert quiet.cpu_s > 0.1 and 0 <= quiet.load.steal <= 1
    spin = "import time; t = time.time()\nwhile time.time() - t < 3: pass"
    neighbour = subprocess.Popen([sys.executable, "-c", spin])  # one core busy, not the command's
    try:
        busy = proc.run([sys.executable, "-c", "import time; time.sleep(1.5)"], tmp_path)
    finally:
        neighbour.wait()
    cores = os.cpu_count() or 1
    assert busy.load.others >= 0.6 / cores  # the spinning neighbour's core, shared over all CPUs
    assert busy.load.others - quiet.load.others > 0.3 / cores
    assert busy.load.row()["under_load"] == busy.load.under_load


def test_a_measurement_under_load_is_taken_again_and_marked():
    bench = harness.Bench(Path("."), 1, 1, "parallel", {}, log=lambda _: None, retries=2)
    loads = iter([0.5, 0.3, 0.2])  # others' share in three tries: all above the 10 % limit

    def measure():
        res = proc.Result([], 0, 1.0, 1.0, "", "", load=proc.Load(next(loads), 0.0, 1.0))
        return {"wall_s": res.load.others}, res

    row = bench.quiet(measure)
    assert row["wall_s"] == 0.2 and row["load"]["tries"] == 3 and row["load"]["under_load"]
    once = bench.quiet(lambda: ({"x": 1}, proc.Result([], 0, 1.0, 1.0, "", "", load=proc.Load(0.01, 0, 0))))
    assert once["load"]["tries"] == 1 and not once["load"]["under_load"]
    rounds = [{"jobs": {"ours": row, "baseline": once}}]
    assert report.under_load(rounds) == ["round 1: jobs.ours (others 20 % of the CPUs, steal 0 %)"]
    assert report.load_note([{"jobs": {"baseline": once}}]).startswith("Every measurement quiet")


def test_the_sgld_work_of_a_job():
    # The default job at Table 3: 17 226 weights, batch 64, 37 estimates, 1 chain of 400 steps.
    assert harness.sgld_gflop(17_226, 64, 37, 1, 400) == pytest.approx(97.9, rel=1e-3)
    assert harness._flag(["--chains=4", "--batch=64"], "chains", 1) == 4
    assert harness._flag(["--batch=64"], "burnin", 0) == 0


def _round(scale: float, batched: bool = True, sweeps: bool = True) -> dict:
    """A measured round as harness.measure returns it, with ours `scale` times the baseline's values."""
    base = {
        "wall_s": 20.0,
        "max_rss_mb": 1000.0,
        "steps_per_s": 1000.0,
        "llc_s_per_estimate": 0.4,
        "tracking_s": 2.0,
        "llc_gflops_per_s": 10.0,
    }
    ours = {k: v * scale for k, v in base.items()} | {"llc_method": "batched" if batched else "serial"}
    r = {
        "jobs": {"ours": ours, "baseline": base, "ours_serial": dict(ours, llc_method="serial")},
        "relaunch": {"ours_s": 6.0 * scale, "imports_s": 3.0},
        "peak_gflops": 100.0,
        "llc_alone": {"ours_serial": [0.2, 0.3, 0.25], "ours_batched_one": [0.3], "baseline": [0.5, 0.4]},
    }
    if sweeps:
        r["sweeps"] = {
            "baseline_sequential": {"runs_per_hour": 100.0, "per_run_s": [36.0, 36.0], "peak_mb": 900.0},
            "baseline_parallel": {"runs_per_hour": 180.0, "peak_mb": 1500.0},
            "ours_sequential": {"runs_per_hour": 200.0},
            "ours_parallel": {"runs_per_hour": 300.0},
            "ours_batched": {"runs_per_hour": 900.0, "peak_mb": 1200.0},
            "ours_big": {"runs_per_hour": 1500.0},
        }
    return r


def test_figures_are_medians_over_rounds_and_ratios_of_medians():
    mode = MODES["full"]
    figs = report.assemble([_round(0.5), _round(0.2), _round(0.4)], mode, 2, "parallel")
    assert set(figs) == {f.key for f in report.figures(mode, 2, "parallel")}
    wall = figs["job_wall_s"]
    assert wall["ours"] == {"median": 8.0, "min": 4.0, "max": 10.0, "values": [10.0, 4.0, 8.0]}
    assert wall["baseline"]["median"] == 20.0 and wall["ratio"] == pytest.approx(0.4)
    assert wall["better"] == "lower"
    assert figs["train_steps_per_s"]["better"] == "higher"
    assert figs["llc_alone_serial_s"]["ours"]["median"] == 0.25  # each round: the median of its calls
    assert figs["llc_alone_serial_s"]["baseline"]["median"] == 0.45
    assert figs["tracking_share_pct"]["ours"]["median"] == pytest.approx(10.0)  # 2 s of 20 s, any scale
    assert figs["sweep_batched_rph"]["ratio"] == pytest.approx(5.0)  # vs the baseline's best (parallel)
    assert figs["big_batched_rph"]["baseline"]["median"] == pytest.approx(100.0)  # 3600 / 36 s
    assert figs["big_batched_rph"]["ratio"] == pytest.approx(15.0)
    assert figs["llc_limit_pct"]["ours"]["median"] == pytest.approx(4.0)  # 4 GFLOP/s of a 100 peak
    assert figs["llc_limit_pct"]["baseline"]["median"] == pytest.approx(10.0)
    assert figs["relaunch_s"]["ours"]["median"] == pytest.approx(2.4)
    calibrated = report.assemble([_round(3.0)], mode, 2, "parallel")  # 60 s: 3x the baseline's 20 s
    cases = {"default": {"figures": figs}, "calibrated": {"figures": calibrated}}
    targets = {t["target"]: t for t in report.targets(cases, mode)}
    assert targets["default job, calibrated preset, calibration included: ≤ 60 s"]["met"]
    assert targets["default job, calibrated preset: ≤ 2× the Table 3 job"]["reached"] == pytest.approx(7.5)
    assert targets["50-seed throughput at Table 3 settings ≥ 10× the baseline (default)"]["met"]
    assert not any("throughput" in t and "(calibrated)" in t for t in targets)  # no sweeps there
    relaunch = targets['relaunch of a finished point ≤ 1.5× python -c "import torch, mlflow"']
    assert relaunch["reached"] == pytest.approx(0.8) and relaunch["met"]
    assert not targets["tracking share of the Table 3 job < 5 %"]["met"]
    assert not targets["tracking share of the default job (calibrated) < 5 %"]["met"]


def test_a_figure_the_checkout_lacks_is_not_available_not_a_crash():
    figs = report.assemble([_round(0.5, batched=False, sweeps=False)], MODES["quick"], 2, "parallel")
    assert figs["llc_s_batched"]["ours"] == {"na": report.NA} and figs["llc_s_batched"]["ratio"] is None
    assert figs["sweep_parallel_rph"]["ours"] == {"na": report.NA}
    assert figs["llc_s_serial"]["ratio"] == pytest.approx(0.5)
    text = report.table("default", "d", figs)
    assert "| 2a. s per λ estimate in the job, llc.method=batched (amortised) | lower | n/a (not" in text


def test_cases_shrink_both_sides_alike():
    tiny = MODES["tiny"]
    for case in CASES.values():
        ours, theirs = case.ours(tiny), case.theirs(tiny)
        assert f"train.steps={tiny.steps}" in ours and f"--steps={tiny.steps}" in theirs
        if case.preset == "paper":  # Table 3: the mode's draws; calibrated: the search's, both sides'
            assert f"llc.num_draws={tiny.draws}" in ours and f"--draws={tiny.draws}" in theirs
        else:
            assert not any(o.startswith("llc.num_draws") for o in ours) and "--draws=500" in theirs
        full = [f"llc={case.preset}", *case.overrides]
        assert case.ours(MODES["full"]) == full  # full mode: the case as stated


@pytest.mark.slow
@pytest.mark.alone  # the harness measures the load around each command and takes it again under load
def test_harness_tiny_mode_end_to_end(tmp_path: Path):
    """`python -m bench --tiny` (about 2 minutes here): every figure for both sides, positive, the
    ratios those of the medians, the targets and the machine facts in the JSON file."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny", "--cases", "default", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = tmp_path.glob("*.json")
    result = json.loads(path.read_text())
    figs = result["cases"]["default"]["figures"]
    assert set(figs) == {f.key for f in report.figures(MODES["tiny"], 2, "parallel")}
    for key, f in figs.items():
        for side in ("ours", "baseline"):
            assert f[side]["median"] > 0, (key, side)
            assert len(f[side]["values"]) == 1
        assert f["ratio"] == pytest.approx(f["ours"]["median"] / f["baseline"]["median"]), key
        assert f"| {f['label']} | {f['better']} |" in done.stdout
    # The whole job includes its train and llc stages.
    for r in result["cases"]["default"]["rounds"]:
        for job in r["jobs"].values():
            assert job["wall_s"] > job["train_s"] + job["llc_s"]
            assert job["steps"] == MODES["tiny"].steps
    assert {t["target"] for t in result["targets"]} >= {"tracking share of the Table 3 job < 5 %"}
    assert "Every measurement quiet" in done.stdout or "Taken under load" in done.stdout
    m = result["machine"]
    assert m["cores"] >= 1 and m["torch_threads"] >= 1 and len(m["git_commit"]) == 40
    assert len(result["load_average_before"]) == 3 and len(result["load_average_after"]) == 3


def test_render_prints_a_saved_result_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """`python -m bench --render <json>`: a saved result's tables (for docs/benchmarks.md), nothing
    measured."""
    from bench.__main__ import main

    mode = MODES["full"]
    figs = report.assemble([_round(0.5)], mode, 2, "parallel")
    result = {
        "mode": "full",
        "settings": {"repeats": 1},
        "machine": report.machine(2),
        "load_average_before": [0.5, 0.4, 0.3],
        "load_average_after": [1.0, 0.8, 0.6],
        "duration_s": 600.0,
        "cases": {"default": {"description": "the default job", "figures": figs}},
        "targets": report.targets({"default": {"figures": figs}}, mode),
    }
    path = tmp_path / "result.json"
    path.write_text(json.dumps(result))
    assert main(["--render", str(path)]) == path
    out = capsys.readouterr().out
    assert "load average before 0.50, after 1.00" in out and "10.0 min" in out
    assert "| 3a. whole job, wall clock (s) | lower | 10 | 20 | 0.5 |" in out
    assert "| tracking share of the Table 3 job < 5 % | 10.0 % | no |" in out
    with pytest.raises(SystemExit):
        main(["--render", str(tmp_path / "missing.json")])
