"""Entry point: `python launch.py [overrides]` runs one job; `python launch.py -m ...` sweeps.

Examples:
    python launch.py                                   # the default job, about 52 s on 2 CPU cores
    python launch.py llc=paper                         # ... with Table 3's SGLD settings, about 14 s
    python launch.py -m optimizer=sgd,adam lr=1e-3,1e-2 batch=64,256 seed=0,1
    python launch.py stages=[fit] fit.start_step=1000  # refit the newest matching run, no retraining
    python launch.py stages=[calibrate] run_id=<id>     # SGLD settings grid on the run's last checkpoint
    python launch.py -m hydra/launcher=parallel seed=0,1,2,3            # jobs at once on this machine
    python launch.py -m hydra/launcher=slurm hydra.launcher.partition=P seed=0,1,2,3   # on Slurm
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

import pipeline.config  # noqa: F401  (the config's schema, registered with Hydra before it composes)

warnings.filterwarnings("ignore", message=".*SGLD has been deprecated.*")

CONF = Path(__file__).resolve().parent / "conf"
# The Python environment that launched the sweep: the Slurm preset's setup line activates it on the nodes.
OmegaConf.register_new_resolver("python_prefix", lambda: sys.prefix, replace=True)


def share_cores(hc) -> None:
    """Under a launcher that runs `n_jobs` at once on this machine (hydra/launcher=parallel), tell
    the jobs how many of them share the cores, so that they do not oversubscribe them."""
    n_jobs = hc.launcher.get("n_jobs")
    if n_jobs is not None:
        from pipeline.jobs.placement import cores

        # joblib's reading of n_jobs for its loky processes: -1 is one per core, -2 all but one, ...
        n = int(n_jobs)
        os.environ["AB_PARALLEL_JOBS"] = str(n if n > 0 else max(cores() + 1 + n, 1))


def job_info(cfg: DictConfig):
    from pipeline.jobs.opening import JobInfo

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    folder = Path(hc.sweep.dir if multirun else hc.run.dir)
    sweep = cfg.sweep or ("sweep-" if multirun else "run-") + "_".join(folder.parts[-2:])
    name = hc.job.override_dirname or "default"
    return JobInfo(sweep=str(sweep), name=name, multirun=multirun)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from pipeline.jobs.lifecycle import main as run_main

    share_cores(HydraConfig.get())
    info = job_info(cfg)
    status = run_main(cfg, info)
    if status and not info.multirun:
        sys.exit(status)


if __name__ == "__main__":
    from pipeline.config.overrides import problem  # also registers the config's schema with Hydra

    if line := problem(sys.argv[1:], CONF):
        print(f"error: {line}", file=sys.stderr)
        sys.exit(2)
    main()
