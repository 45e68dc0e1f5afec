"""One Hydra job = one MLflow run: check the config, open (or reopen) the run, chain the stages.

A job that trains first applies the re-launch rules (`pipeline/resume.py`): a finished point is
skipped, an interrupted run is taken over and resumed, a failed one is superseded by a new run.
A failing job is marked FAILED with its reason and never left RUNNING; an interrupted one
(SIGTERM, Ctrl-C, Slurm preemption or time-out) is marked KILLED, resumable; in a multirun the
sweep goes on with the next point.
"""

from __future__ import annotations

import importlib
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from pipeline import build, config, fit, llc, resume, train
from pipeline.errors import UserError
from pipeline.tracking import SUMMARY_METRICS, Tracker, ui_command

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("torch", "devinterp", "mlflow", "hydra-core", "numpy", "scikit-learn", "transformers")


@dataclass
class JobInfo:
    """What Hydra knows about the job: sweep id, run name, and whether it is one of many."""

    sweep: str
    name: str
    multirun: bool = False


def provenance() -> dict[str, str]:
    """Git commit and package versions, as tags."""
    tags = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            tags[f"version.{pkg}"] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    try:
        git = ["git", "-C", str(ROOT)]
        tags["git_commit"] = subprocess.run(
            [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True)
        tags["git_dirty"] = str(bool(dirty.stdout.strip()))
    except (OSError, subprocess.CalledProcessError):
        tags["git_commit"] = "unknown"
    return tags


@dataclass
class Opened:
    """The run a job works on, and how it came to it.

    `action`: new (a run created), claim (an interrupted run of the point taken over), rerun (a
    stage re-run on an existing run), skip (the point has finished) or busy (another live job runs
    it); `done` the requested stages the run has done already, `note` the line printed for the user,
    `previous_status` the status a reopened run is put back to when its re-run fails."""

    run_id: str | None
    action: str = "new"
    done: tuple[str, ...] = ()
    note: str = ""
    previous_status: str | None = None


def _open_run(cfg: DictConfig, tracker: Tracker, job: JobInfo) -> Opened:
    """A new run, or the point's interrupted run, when training (re-launch rules: `resume.decide`);
    else the given run_id or the newest run of the same training."""
    first = config.first_stage(cfg.stages)
    if first in cfg.stages:
        tags = {
            "sweep": job.sweep,
            "config_hash": config.config_hash(cfg),
            "train_hash": config.train_hash(cfg),
            "multirun": str(job.multirun),
            **config.placement_tags(torch.get_num_threads()),
            **provenance(),
        }
        enabled, _, stale_after_s = resume.settings(cfg)
        if first != "train" or not enabled:
            return Opened(tracker.start_run(job.name, {**tags, **resume.owner_tags()}))
        return _open_point(cfg, tracker, job, tags, stale_after_s)
    if cfg.run_id:
        run = tracker.get_run(str(cfg.run_id))
    else:
        found = tracker.find_runs({"train_hash": config.train_hash(cfg), f"stage.{first}": "done"})
        if not found:
            raise UserError(
                f"no trained run with this training config in experiment "
                f"'{cfg.tracking.experiment}': pass run_id=<id> or include train in stages"
            )
        run = found[0]
    tracker.reopen(run.info.run_id)
    return Opened(run.info.run_id, "rerun", previous_status=run.info.status)


def _open_point(cfg: DictConfig, tracker: Tracker, job: JobInfo, tags: dict, stale_after_s: float) -> Opened:
    """Look up the point's runs and create or claim one, under the store's point lock."""
    point = tags["config_hash"]
    owner = resume.owner_tags()
    with tracker.point_lock():
        d = resume.decide(tracker.point_runs(point), cfg.stages, stale_after_s)
        if d.action in ("skip", "busy"):
            return Opened(d.run.info.run_id, d.action, tuple(d.done), d.note)
        if d.action == "claim":
            run = d.run
            tracker.claim(run.info.run_id, {**owner, **config.placement_tags(torch.get_num_threads())})
            previous = "FINISHED" if run.info.status == "FINISHED" else None
            return Opened(run.info.run_id, "claim", tuple(d.done), d.note, previous)
        run_id = tracker.start_run(job.name, {**tags, **owner})
        tracker.supersede(d.superseded, run_id)
    if not tracker.uri.startswith("sqlite:"):  # no lock across hosts: the newer of two duplicates yields
        older = tracker.newest_duplicate(run_id, point)
        if older is not None:
            tracker.delete_run(run_id)
            return Opened(older, "busy", note=f"skipped: another job created run {older} for this point")
    return Opened(run_id, note=d.note)


def _stage(module: str):
    """A stage module imported when used: the posterior and calibrate stages pull in scikit-learn's
    metrics and matplotlib (about a second of start-up that the default job does not need)."""
    return importlib.import_module(f"pipeline.{module}")


def execute(cfg: DictConfig, job: JobInfo) -> tuple[Tracker, str | None, dict]:
    """Run the configured stages; returns the tracker, the run id and the run's summary metrics
    (run id None: another live job runs the point, nothing was done)."""
    start = time.perf_counter()  # the job's wall time, for the share of it spent tracking
    config.check(cfg)  # cheap checks first: nothing is created for a bad config
    torch.set_num_threads(config.threads(cfg.threads))
    tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.max_wait_s)
    data = model = None
    if config.first_stage(cfg.stages) in cfg.stages:  # data problems surface before a run exists
        data = build.data(cfg)
        config.check_with_data(cfg, data.n_train, data.steps_per_epoch)
        if "train" in cfg.stages:  # missing pretrained weights too fail before a run exists
            model = build.model(cfg, data)
    opened = _open_run(cfg, tracker, job)
    run_id = opened.run_id
    if opened.note:
        print(opened.note, flush=True)
    if opened.action in ("skip", "busy"):  # nothing to do: report the finished run, or nothing
        return tracker, (run_id if opened.action == "skip" else None), tracker.summary(run_id)
    progress = cfg.progress
    resuming = opened.action == "claim"
    stages = {
        "train": lambda: train.run(cfg, tracker, run_id, progress, data, model, resuming=resuming),
        "llc": lambda: llc.run(cfg, tracker, run_id, progress),
        "fit": lambda: fit.run(cfg, tracker, run_id),
        "calibrate": lambda: _stage("calibrate").run(cfg, tracker, run_id, progress),
        "ensemble": lambda: _stage("ensemble_stage").run(cfg, tracker, run_id, progress, data),
        "posterior": lambda: _stage("posterior_stage").run(cfg, tracker, run_id, progress),
    }
    owned = opened.action in ("new", "claim")  # this job's attempt at the point
    heartbeat = resume.Heartbeat(lambda: tracker.beat(run_id)).start() if owned else None
    try:
        with resume.INTERRUPTS.installed():
            # A re-run's changed settings (tags override.<key>) are logged once its first stage has
            # recorded with them: a re-run that fails before leaves them as they were.
            defer = opened.previous_status is not None and not owned
            if not defer:
                tracker.log_params(run_id, config.flatten(config.as_dict(cfg)))
            if owned:  # a claimed run may have been interrupted before it had its config
                tracker.log_text(run_id, OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
            for name in cfg.stages:
                if name in opened.done:  # a resumed run keeps what its stages did
                    continue
                t0 = time.perf_counter()
                stages[name]()
                if defer:
                    tracker.log_params(run_id, config.flatten(config.as_dict(cfg)))
                    defer = False
                tracker.log_summary(run_id, {f"time/{name}_s": time.perf_counter() - t0})
                tracker.set_tags(run_id, {f"stage.{name}": "done"})
                resume.INTERRUPTS.fire()  # a signal the stage deferred while it logged
    except BaseException as e:
        interrupted = resume.interruption(e)
        reason = f"{type(e).__name__}: {e}" if interrupted is None else f"interrupted ({interrupted})"
        if interrupted is not None and owned:  # resumable: the next launch goes on from here
            tracker.kill(run_id, interrupted)
        elif isinstance(e, resume.UnreadableState):  # left as it was found, for the user to decide
            tracker.restore(run_id, "KILLED", str(e))
        elif opened.previous_status is None:
            tracker.fail(run_id, reason)
        else:  # a failed re-run leaves the run as it was, with the reason beside it
            tracker.restore(run_id, opened.previous_status, f"re-run of {list(cfg.stages)} failed: {reason}")
        if interrupted is None and not isinstance(e, (UserError, train.Diverged)):
            tracker.log_text(run_id, traceback.format_exc(), "error.txt")
        raise
    finally:
        if heartbeat is not None:
            heartbeat.stop()
    tracker.log_summary(
        run_id,
        {
            "time/tracking_s": tracker.seconds,
            "tracking_share": tracker.seconds / (time.perf_counter() - start),
            "tracking_retries": tracker.retries,
        },
    )
    tracker.finish(run_id)
    return tracker, run_id, tracker.summary(run_id)


def _interval(metrics: dict) -> str:
    """' [lo, hi] (bootstrap)' when the fit stage wrote d_s's interval (level: fit.bootstrap.level)."""
    lo, hi = metrics.get("d_s_ci_low"), metrics.get("d_s_ci_high")
    return f" [{lo:.4g}, {hi:.4g}] (bootstrap)" if lo is not None and hi is not None else ""


def report(tracker: Tracker, run_id: str, metrics: dict) -> str:
    """The lines `python launch.py` prints for a run."""
    run = tracker.client.get_run(run_id)
    tags = run.data.tags
    m = {k: metrics.get(k, float("nan")) for k in SUMMARY_METRICS}
    # The λ the verdicts compared with: the llc stage's, or one training phase's (fit.phase).
    m |= {k: metrics[f"fit_{k}"] for k in ("lambda_final", "lambda_bar") if f"fit_{k}" in metrics}
    experiment = tracker.client.get_experiment(run.info.experiment_id).name
    lines = [
        f"run {run_id} ({run.info.run_name}) in experiment '{experiment}'",
        f"  λ_final = {m['lambda_final']:.4g}   λ̄ = {m['lambda_bar']:.4g}   "
        f"(devinterp SGLD, nβ = {tags.get('llc.nbeta_used', 'n/a')})",
        f"  α = {m['alpha']:.4f} ± {m['alpha_se']:.4f}   r² = {m['r2']:.4f}   "
        f"fit window: steps {tags.get('fit.window', 'n/a')}",
        f"  d_s = 2·λ_final·α = {m['d_s']:.4g}{_interval(metrics)}   d_walk = 1/α = {m['d_walk']:.4g}",
        f"  λ diagnostics: {tags.get('llc.negative_estimates', 'n/a')} negative, "
        f"{tags.get('llc.nonstationary_estimates', 'n/a')} non-stationary, "
        f"{tags.get('llc.failed_estimates', 'n/a')} failed of {tags.get('llc.estimates', 'n/a')} estimates",
        f"  test acc = {m['test_acc']:.4f}   gen error (test − train loss) = {m['gen_error']:.4g}   "
        f"parameters = {int(m['num_params']) if m['num_params'] == m['num_params'] else 'n/a'}",
        f"  Lemma 3.4      d_s ≤ λ_final: {tags.get('verdict.lemma_3_4', 'n/a')}",
        f"  Corollary 3.3  d_s ≤ λ̄:       {tags.get('verdict.corollary_3_3', 'n/a')}",
        *([f"  calibrate: use {tags['calibrate.recommended']}"] if "calibrate.recommended" in tags else []),
        "  stage times: "
        + ", ".join(f"{s} {metrics[f'time/{s}_s']:.1f} s" for s in config.STAGES if f"time/{s}_s" in metrics)
        + (
            f"; tracking {metrics['time/tracking_s']:.1f} s ({metrics['tracking_share']:.1%} of the job)"
            if "tracking_share" in metrics
            else ""
        ),
        f"browse: {ui_command(tracker.uri)}",
    ]
    return "\n".join(lines)


def main(cfg: DictConfig, job: JobInfo) -> int:
    """Entry point for one job; returns the process exit status (0 ok, 1 failed, 2 bad input)."""
    if cfg.get("seeds") is not None:  # many seeds in one batched job, one run each
        from pipeline import batched_seeds

        return batched_seeds.main(cfg, job)
    try:
        tracker, run_id, metrics = execute(cfg, job)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except resume.Interrupted as e:  # SIGTERM: the run is KILLED and resumable; stop the sweep too
        print(
            f"interrupted ({e}): the run is marked KILLED; launch the same command to resume it",
            file=sys.stderr,
        )
        raise SystemExit(143) from None
    except train.Diverged as e:
        print(f"run failed (marked FAILED in MLflow): {e}", file=sys.stderr)
        return 1
    except Exception as e:
        if not job.multirun:
            raise
        if (why := resume.interruption(e)) is not None:  # submitit gave up on a timed-out job
            print(
                f"interrupted ({why}): the run is marked KILLED; launch again to resume it", file=sys.stderr
            )
        else:
            print(f"run failed (marked FAILED in MLflow): {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if run_id is None:  # another live job runs the point
        return 0
    if config.first_stage(cfg.stages) == "ensemble":
        print(_stage("posterior_stage").report(tracker, run_id))
    else:
        print(report(tracker, run_id, metrics))
    return 0
