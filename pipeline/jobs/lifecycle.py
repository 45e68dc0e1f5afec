"""One Hydra job: check the config, open its runs, chain the stages, apply the failure policy.

A job works on one MLflow run, or (`seeds=...`) on one run per seed, trained at once as a batched
ensemble: a one-seed job is a one-member batch, through the same steps. A job that trains applies the
re-launch rules first (`pipeline.jobs.relaunch`): a finished point is skipped, an interrupted run is
taken over and resumed, a failed one is superseded by a new run. A failing run is marked FAILED with
its reason and never left RUNNING (a failed stage re-run puts the run back as it was); an
interrupted job (SIGTERM, Ctrl-C, Slurm preemption or time-out) marks its runs KILLED, resumable. In
a multirun the sweep goes on with the next point.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from pipeline.config import checks, hashes
from pipeline.config.members import check_batched, is_batched
from pipeline.errors import Diverged, UnreadableState, UserError
from pipeline.interrupts import INTERRUPTS, Interrupted, interruption
from pipeline.jobs import placement, relaunch, report
from pipeline.jobs.opening import JobInfo, finished, may_skip, open_members
from pipeline.stages.context import Context, Member
from pipeline.tracking import Tracker, names, open_if_exists

__all__ = ["JobInfo", "Outcome", "execute", "main"]


def stage(name: str):
    """Stage `name`'s `run(ctx, members)`, imported when used: the posterior and calibrate stages
    pull in scikit-learn's metrics and matplotlib (about a second the default job does not need)."""
    return importlib.import_module(f"pipeline.stages.{name}").run


@dataclass
class Outcome:
    """What a job did: its tracker and members (failed ones say why; a member another live job runs
    has no run of this job's)."""

    tracker: Tracker
    members: list[Member]


def execute(cfg: DictConfig, job: JobInfo) -> Outcome:
    """Run the configured stages on the job's runs."""
    start = time.perf_counter()  # the job's wall time, for the share of it spent tracking
    checks.check_values(cfg)  # cheap checks first: nothing is created for a bad config
    batched = is_batched(cfg)
    if batched:
        check_batched(cfg)
    creates = checks.first_stage(cfg.stages) in cfg.stages
    # A relaunched finished point does no work: it prints its report from the store without
    # importing torch (a second), building the optimizer (torch's compiler, another) or the data;
    # its targets imported when it ran. The look-up writes nothing to the store.
    t = cfg.tracking
    tracker = open_if_exists(t.uri, t.experiment, t.max_wait_s) if may_skip(cfg) else None
    if tracker is not None and (skipped := finished(cfg, tracker)) is not None:
        for m in skipped:
            print(m.note, flush=True)
        return Outcome(tracker, skipped)
    checks.check_targets(cfg)  # imports the model's, the data's and the optimizer's modules
    import torch

    from pipeline.config import build

    if creates:  # a bad optimizer setting: before the store or the experiment is created
        build.check_optimizer(cfg)
    if tracker is None:
        tracker = Tracker(t.uri, t.experiment, t.max_wait_s)
    else:
        tracker.use_experiment(t.experiment)
    ctx = Context(cfg, tracker)
    torch.set_num_threads(placement.threads(cfg.threads))
    if creates:  # data problems surface before a run exists
        ctx.data = build.data(cfg)
        checks.check_with_data(cfg, ctx.data.n_train, ctx.data.steps_per_epoch)
        if "train" in cfg.stages:  # missing weights, a model that fails on the data: before a run exists
            model = build.model(cfg, ctx.data)
            build.check_model(cfg, model, ctx.data, build.task(cfg))
            if not batched:  # (a batched job builds one per seed)
                ctx.model = model
    members = open_members(cfg, tracker, job)
    for m in members:
        if m.note:
            print(m.note, flush=True)
    work = [m for m in members if m.action not in ("skip", "busy")]
    if not work:
        return Outcome(tracker, members)
    owned = [m for m in work if m.owned]
    heartbeat = relaunch.Heartbeat(lambda: [tracker.beat(m.run_id) for m in owned]).start() if owned else None
    try:
        with INTERRUPTS.installed():
            # A re-run's changed settings (tags override.<key>) are logged once its first stage has
            # recorded with them: a re-run that fails before leaves them as they were.
            defer = [m for m in work if m.previous_status is not None and not m.owned]
            batch_tag = {names.BATCHED_SEEDS: _batch_tag(members)} if batched else {}
            for m in work:
                if m not in defer:
                    tracker.log_params(m.run_id, hashes.params(m.cfg))
                if m.owned:  # a claimed run may have been interrupted before it had its config
                    tracker.log_text(m.run_id, OmegaConf.to_yaml(m.cfg, resolve=True), names.CONFIG)
                if batch_tag:
                    tracker.set_tags(m.run_id, batch_tag)
            for name in cfg.stages:
                todo = [m for m in work if name not in m.done and m.failed is None]
                if not todo:
                    continue
                t0 = time.perf_counter()
                stage(name)(ctx, todo)
                seconds = (time.perf_counter() - t0) / len(todo)  # a batched job's, shared by its runs
                with INTERRUPTS.deferred():
                    for m in todo:
                        if m.failed is not None:
                            continue
                        if m in defer:
                            tracker.log_params(m.run_id, hashes.params(m.cfg))
                            defer.remove(m)
                        tracker.log_summary(m.run_id, {names.stage_seconds(name): seconds})
                        tracker.set_tags(m.run_id, {names.stage_tag(name): "done"})
                INTERRUPTS.fire()  # a signal that came while the stage or its records were written
    except BaseException as e:
        _failed(tracker, cfg, work, e)
        raise
    finally:
        if heartbeat is not None:
            heartbeat.stop()
    alive = [m for m in work if m.failed is None]
    if alive:
        tracking = {  # the job's, shared by its runs as the stage times are
            names.TRACKING_SECONDS: tracker.seconds / len(work),
            names.TRACKING_SHARE: tracker.seconds / (time.perf_counter() - start),
            names.TRACKING_RETRIES: tracker.retries,
        }
        for m in alive:
            tracker.log_summary(m.run_id, tracking)
            tracker.finish(m.run_id)
        report.describe(tracker, alive, cfg)  # after the last record: the description is the final report
    return Outcome(tracker, members)


def _batch_tag(members: list[Member]) -> str:
    seeds = [m.seed for m in members]
    return f"{len(seeds)} seeds {seeds[0]}..{seeds[-1]} in one job"


def _failed(tracker: Tracker, cfg: DictConfig, work: list[Member], e: BaseException) -> None:
    """The failure policy, for every run of the job not already failed: an interrupted attempt is
    KILLED (resumable), a run whose resume state is unreadable stays KILLED as it was found, a
    failed attempt is FAILED, a failed stage re-run puts the run back as it was (the reason beside
    it); a real error's traceback goes with the run as `error.txt`."""
    interrupted = interruption(e)
    reason = f"{type(e).__name__}: {e}" if interrupted is None else f"interrupted ({interrupted})"
    for m in work:
        if m.failed is not None:
            continue
        if interrupted is not None and m.owned:
            tracker.kill(m.run_id, interrupted)
        elif isinstance(e, UnreadableState):  # left as it was found, for the user to decide
            tracker.restore(m.run_id, "KILLED", str(e))
        elif m.previous_status is None:
            tracker.fail(m.run_id, reason)
        else:
            tracker.restore(m.run_id, m.previous_status, f"re-run of {list(cfg.stages)} failed: {reason}")
        if interrupted is None and not isinstance(e, (UserError, Diverged)):
            tracker.log_text(m.run_id, traceback.format_exc(), names.ERROR)


def main(cfg: DictConfig, job: JobInfo) -> int:
    """Entry point for one job; returns the process exit status (0 ok, 1 failed, 2 bad input)."""
    try:
        outcome = execute(cfg, job)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:  # SIGTERM: the runs are KILLED and resumable; stop the sweep too
        print(
            f"interrupted ({e}): the run is marked KILLED; launch the same command to resume it",
            file=sys.stderr,
        )
        raise SystemExit(143) from None
    except Diverged as e:
        print(f"run failed (marked FAILED in MLflow): {e}", file=sys.stderr)
        return 1
    except Exception as e:
        if not job.multirun:
            raise
        if (why := interruption(e)) is not None:  # submitit gave up on a timed-out job
            print(
                f"interrupted ({why}): the run is marked KILLED; launch again to resume it", file=sys.stderr
            )
        else:
            print(f"run failed (marked FAILED in MLflow): {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    text = report.of(outcome.tracker, outcome.members, cfg)
    if text:
        print(text)
    return 1 if any(m.failed for m in outcome.members) else 0
