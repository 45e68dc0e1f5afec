"""The measurements: every command the benchmark times, each on a fresh MLflow store of its own.

Ours is driven only through the product's command line (`python launch.py ...`) and read back from
the runs it writes (through `pipeline.tracking`); the baseline is `bench/baseline.py`, one process
per run, read back from the JSON line it prints. Keys the checkout lacks (`llc.method`, `seeds`,
the parallel launcher, `resume.enabled`) are detected from the composed config, and what needs
them is skipped (reported "n/a (not available in this checkout)").
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import proc
from bench.cases import Case, Mode

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENT = "almost-bayesian"  # conf/config.yaml's tracking.experiment
SETTINGS = re.compile(r"chains=(\d+) burn-in=(\d+) draws=(\d+) every=(\d+)")  # llc.settings_used
IMPORTS = [sys.executable, "-c", "import torch, mlflow"]  # the yardstick of a relaunch


def sgld_gflop(num_params: int, batch: int, estimates: int, chains: int, steps_per_chain: int) -> float:
    """The matrix-multiply work of the λ estimates in GFLOP: 6 flops per weight and example in every
    SGLD step (2 forward, 4 backward; exact for the weight matrices of an MLP, the biases and
    activations left out), every step of every chain (burn-in included) of every estimate."""
    return 6 * num_params * batch * estimates * chains * steps_per_chain / 1e9


def _flag(args: list[str], name: str, default: int) -> int:
    """An integer flag of baseline.py's arguments (`--name=value`), else its default."""
    for a in args:
        if a.startswith(f"--{name}="):
            return int(a.split("=", 1)[1])
    return default


def detect_features(launcher: str) -> dict[str, bool]:
    """Which of the product's keys this checkout has (composing the real config)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import pipeline.config  # noqa: F401  (the config's schema, registered with Hydra)

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config")
    return {
        "llc.method": OmegaConf.select(cfg, "llc.method") is not None,
        "seeds": "seeds" in cfg,
        "launcher": (ROOT / "conf" / "hydra" / "launcher" / f"{launcher}.yaml").is_file(),
        "resume.enabled": OmegaConf.select(cfg, "resume.enabled") is not None,
    }


@dataclass
class Bench:
    """Where and how the commands run."""

    workdir: Path
    threads: int  # torch threads of one job (both sides); parallel jobs get threads // n_jobs each
    n_jobs: int  # processes at once in the parallel figures
    launcher: str  # the parallel launcher preset (hydra/launcher=<launcher>)
    features: dict[str, bool]
    log: Callable[[str], None] = print
    retries: int = 2  # a one-job measurement taken under load (proc.Load) is taken again, this often
    _count: itertools.count = field(default_factory=itertools.count)

    def env(self) -> dict[str, str]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        for key in ("MLFLOW_TRACKING_URI", "AB_PARALLEL_JOBS"):  # each command gets its own store
            env.pop(key, None)
        return env

    def fresh(self, label: str) -> Path:
        """A new, empty folder for one command's store and outputs."""
        folder = self.workdir / f"{next(self._count):03d}-{label}"
        folder.mkdir(parents=True)
        return folder

    # -- ours ---------------------------------------------------------------------------------
    def quiet(self, measure: Callable[[], tuple[dict, proc.Result]]) -> dict:
        """A measurement's row, taken again (up to `retries` times) while it is under load; the
        quietest try is kept, its load in the row ("load": others' CPU share, steal, tries)."""
        tries = []
        for _ in range(1 + self.retries):
            row, res = measure()
            tries.append((res.load.others + res.load.steal, row, res))
            if not res.load.under_load:
                break
            self.log(f"    under load ({res.load.row()}): measured again")
        _, row, res = min(tries, key=lambda t: t[0])
        return row | {"load": res.load.row() | {"tries": len(tries)}}

    def launch(
        self, folder: Path, overrides: list[str], multirun: bool = False, resume: bool = False
    ) -> proc.Result:
        cmd = [sys.executable, str(ROOT / "launch.py"), *(["-m"] if multirun else []), *overrides]
        cmd += [
            f"tracking.uri=sqlite:///{folder / 'mlflow.db'}",
            "progress=false",
            f"hydra.run.dir={folder / 'outputs'}",
            f"hydra.sweep.dir={folder / 'multirun'}",
        ]
        if self.features["resume.enabled"] and not resume:  # a re-launched point must run, not be skipped
            cmd.append("resume.enabled=false")
        return proc.run(cmd, folder, self.env()).check()

    @staticmethod
    def runs(folder: Path, expected: int, checkpoint: bool = False) -> list[dict]:
        """The finished runs in a folder's store; fails unless there are `expected` of them. With
        `checkpoint`, each run's last checkpoint is fetched into the folder (its path: "checkpoint")."""
        from pipeline.tracking import open_existing

        tracker = open_existing(f"sqlite:///{folder / 'mlflow.db'}", EXPERIMENT)
        found = tracker.find_runs({})
        done = [r for r in found if r.status == "FINISHED"]
        if len(done) != expected:
            raise RuntimeError(f"{folder}: {len(done)} finished runs of {len(found)}, expected {expected}")
        rows = []
        for r in done:
            row = {"metrics": r.metrics, "tags": r.tags, "params": r.params, "checkpoint": None}
            if checkpoint and (paths := tracker.artifact_paths(r.run_id, "checkpoints")):
                row["checkpoint"] = str(tracker.download_file(r.run_id, paths[-1], folder / "last"))
            rows.append(row)
        return rows

    def ours_job(self, case: Case, mode: Mode, method: str | None) -> dict:
        """One `python launch.py` job: wall clock, peak memory and what its run says about itself."""
        return self.quiet(lambda: self._ours_job(case, mode, method))

    def _ours_job(self, case: Case, mode: Mode, method: str | None) -> tuple[dict, proc.Result]:
        folder = self.fresh(f"{case.name}-ours-{method or 'job'}")
        extra = [f"llc.method={method}"] if method and self.features["llc.method"] else []
        overrides = [*case.ours(mode), f"threads={self.threads}", *extra]
        res = self.launch(folder, overrides)
        run = self.runs(folder, 1, checkpoint=True)[0]
        m, tags = run["metrics"], run["tags"]
        estimates = int(tags.get("llc.estimates", m["total_steps"] // mode.llc_every))
        gflop = None
        if (found := SETTINGS.search(tags.get("llc.settings_used", ""))) and "num_params" in m:
            chains, burnin, draws, every = (int(g) for g in found.groups())
            batch = int(run["params"].get("batch", 0))
            gflop = sgld_gflop(int(m["num_params"]), batch, estimates, chains, burnin + draws * every) or None
        row = {
            "wall_s": res.wall_s,
            "max_rss_mb": res.max_rss_mb,
            "steps": m["total_steps"],
            "train_s": m["time/train_s"],
            "steps_per_s": m["total_steps"] / m["time/train_s"],
            "llc_s": m["time/llc_s"],
            "llc_estimates": estimates,
            "llc_s_per_estimate": m["time/llc_s"] / estimates,
            "llc_method": tags.get("llc.method", "serial"),
            "tracking_s": m.get("time/tracking_s"),
            "tracking_share_in_job": m.get("tracking_share"),
            "lambda_final": m.get("lambda_final"),
            "alpha": m.get("alpha"),
            "checkpoint": run["checkpoint"],
            "num_params": m.get("num_params"),
            "llc_gflop": gflop,
            "llc_gflops_per_s": gflop / m["time/llc_s"] if gflop else None,
            "folder": str(folder),
            "overrides": overrides,
        }
        return row, res

    def relaunch(self, job: dict) -> dict:
        """The finished point launched again (resume on: nothing to train, its report printed) and
        the yardstick `python -c "import torch, mlflow"`, each taken again while under load (`quiet`)."""

        def again() -> tuple[dict, proc.Result]:
            res = self.launch(Path(job["folder"]), job["overrides"], resume=True)
            return {"wall_s": res.wall_s}, res

        def imports() -> tuple[dict, proc.Result]:
            res = proc.run(IMPORTS, self.workdir, self.env()).check()
            return {"wall_s": res.wall_s}, res

        return {"ours_s": self.quiet(again)["wall_s"], "imports_s": self.quiet(imports)["wall_s"]}

    def peak_gflops(self) -> float:
        """The machine's fp32 matrix-multiply peak with the jobs' threads (`bench/matmul.py`)."""
        cmd = [sys.executable, "-m", "bench.matmul", f"--threads={self.threads}"]
        res = proc.run(cmd, ROOT, self.env()).check()
        return json.loads(res.stdout.strip().splitlines()[-1])["gflops"]

    # -- the baseline -------------------------------------------------------------------------
    def baseline_cmd(self, folder: Path, case: Case, mode: Mode, seed: int, threads: int) -> list[str]:
        store = f"sqlite:///{folder / 'mlflow.db'}"
        return [
            sys.executable,
            str(ROOT / "bench" / "baseline.py"),
            *case.theirs(mode),
            f"--seed={seed}",
            f"--threads={threads}",
            f"--store={store}",
        ]

    @staticmethod
    def baseline_row(res: proc.Result) -> dict:
        out = json.loads(res.check().stdout.strip().splitlines()[-1])
        return {
            "wall_s": res.wall_s,
            "max_rss_mb": res.max_rss_mb,
            "steps": out["steps"],
            "train_s": out["time"]["train_s"],
            "steps_per_s": out["steps_per_s"],
            "llc_s": out["time"]["llc_s"],
            "llc_estimates": out["llc_estimates"],
            "llc_s_per_estimate": out["llc_s_per_estimate"],
            "tracking_s": out["time"]["tracking_s"],
            "tracking_share_in_job": out["tracking_share"],
            "lambda_final": out["lambda_final"],
            "alpha": out["alpha"],
        }

    def baseline_job(self, case: Case, mode: Mode) -> dict:
        def once() -> tuple[dict, proc.Result]:
            folder = self.fresh(f"{case.name}-baseline-job")
            res = proc.run(self.baseline_cmd(folder, case, mode, 0, self.threads), folder, self.env())
            return self.baseline_row(res), res

        return self.quiet(once)

    # -- one estimate alone -------------------------------------------------------------------
    def llc_alone(self, case: Case, mode: Mode, checkpoint: str) -> dict:
        cmd = [sys.executable, "-m", "bench.one_llc", f"--checkpoint={checkpoint}"]
        cmd += [f"--calls={mode.llc_calls}", f"--threads={self.threads}", "--", *case.ours(mode)]
        res = proc.run(cmd, ROOT, self.env()).check()  # writes nothing: the estimates are timed in memory
        return json.loads(res.stdout.strip().splitlines()[-1])["seconds"] | {"load": res.load.row()}

    # -- sweeps -------------------------------------------------------------------------------
    def sweeps(self, case: Case, mode: Mode) -> dict:
        """Runs per hour of `sweep_seeds` seeds: one after another, in parallel, batched; and of the
        large batched ensemble (`big_seeds`). Each entry: wall, runs, runs_per_hour, peak memory."""
        n, jobs = mode.sweep_seeds, self.n_jobs
        seeds = ",".join(str(s) for s in range(n))
        ours = case.ours(mode)
        out: dict[str, dict] = {}

        def entry(wall: float, runs: int, peak: float, load: proc.Load, **extra) -> dict:
            return {
                "wall_s": wall,
                "runs": runs,
                "runs_per_hour": runs / wall * 3600,
                "peak_mb": peak,
                "load": load.row(),
                **extra,
            }

        self.log(f"  baseline: {n} runs one after another")
        batch = self._baseline_many(case, mode, n, 1, self.threads)
        walls = [r.wall_s for r in batch.results]
        out["baseline_sequential"] = entry(batch.wall_s, n, batch.peak_mb, batch.load, per_run_s=walls)
        self.log(f"  ours: {n} seeds one after another (-m seed=...)")
        folder = self.fresh(f"{case.name}-ours-sequential")
        res = self.launch(folder, [*ours, f"threads={self.threads}", f"seed={seeds}"], multirun=True)
        self.runs(folder, n)
        out["ours_sequential"] = entry(res.wall_s, n, res.tree_peak_mb, res.load)
        each = max(1, self.threads // jobs)
        if self.features["launcher"]:
            self.log(f"  ours: {n} seeds, {jobs} at once (hydra/launcher={self.launcher})")
            folder = self.fresh(f"{case.name}-ours-parallel")
            par = [f"hydra/launcher={self.launcher}", f"hydra.launcher.n_jobs={jobs}"]
            res = self.launch(folder, [*ours, *par, f"threads={each}", f"seed={seeds}"], multirun=True)
            self.runs(folder, n)
            out["ours_parallel"] = entry(res.wall_s, n, res.tree_peak_mb, res.load, threads_per_job=each)
        self.log(f"  baseline: {n} runs, {jobs} processes at once")
        batch = self._baseline_many(case, mode, n, jobs, each)
        out["baseline_parallel"] = entry(batch.wall_s, n, batch.peak_mb, batch.load, threads_per_job=each)
        if self.features["seeds"]:
            for key, count in (("ours_batched", n), ("ours_big", mode.big_seeds)):
                self.log(f"  ours: seeds={count} in one job")
                folder = self.fresh(f"{case.name}-ours-seeds{count}")
                res = self.launch(folder, [*ours, f"threads={self.threads}", f"seeds={count}"])
                self.runs(folder, count)
                out[key] = entry(res.wall_s, count, res.tree_peak_mb, res.load, max_rss_mb=res.max_rss_mb)
        return out

    def _baseline_many(self, case: Case, mode: Mode, n: int, at_once: int, threads: int) -> proc.Batch:
        folders = [self.fresh(f"{case.name}-baseline-seed{s}-of{at_once}") for s in range(n)]
        cmds = [(self.baseline_cmd(f, case, mode, s, threads), f) for s, f in enumerate(folders)]
        batch = proc.run_many(cmds, at_once, self.env())
        for r in batch.results:
            r.check()
        return batch


def measure(bench: Bench, case: Case, mode: Mode, repeats: int, sweeps: bool = True) -> list[dict]:
    """`repeats` rounds of every measurement of one case; ours and the baseline side by side in each
    round (their order alternates between rounds, so a slow drift of the machine favours neither)."""
    rounds = []
    for r in range(repeats):
        tag = f"[{case.name} {r + 1}/{repeats}]"
        jobs: dict[str, dict] = {}
        order = ["ours", "baseline"] if r % 2 == 0 else ["baseline", "ours"]
        for side in order:
            bench.log(f"{tag} {side}: one job")
            jobs[side] = (
                bench.ours_job(case, mode, "batched") if side == "ours" else bench.baseline_job(case, mode)
            )
        base, args = jobs["baseline"], case.theirs(mode)
        if jobs["ours"].get("num_params"):  # the same model: its size from ours' run
            chains, burnin, draws = (
                _flag(args, "chains", 1),
                _flag(args, "burnin", 0),
                _flag(args, "draws", 400),
            )
            batch = _flag(args, "batch", 64)
            gflop = sgld_gflop(
                int(jobs["ours"]["num_params"]), batch, base["llc_estimates"], chains, burnin + draws
            )
            base["llc_gflop"], base["llc_gflops_per_s"] = gflop, gflop / base["llc_s"]
        bench.log(f"{tag} ours: relaunch of the finished point; python -c 'import torch, mlflow'")
        relaunch = bench.relaunch(jobs["ours"])
        if bench.features["llc.method"]:
            bench.log(f"{tag} ours: one job, llc.method=serial")
            jobs["ours_serial"] = bench.ours_job(case, mode, "serial")
        bench.log(f"{tag} one λ estimate alone, ours and baseline")
        alone = bench.llc_alone(case, mode, jobs["ours"]["checkpoint"])
        round_ = {"jobs": jobs, "llc_alone": alone, "relaunch": relaunch, "peak_gflops": bench.peak_gflops()}
        if sweeps:
            bench.log(f"{tag} sweeps")
            round_["sweeps"] = bench.sweeps(case, mode)
        rounds.append(round_)
    return rounds
