"""Entry point: `python launch.py [overrides]` runs one job; `python launch.py -m ...` sweeps.

Examples:
    python launch.py                                   # the default job, about a minute on a CPU
    python launch.py -m optimizer=sgd,adam lr=1e-3,1e-2 batch=64,256 seed=0,1
    python launch.py stages=[fit] fit.start_step=1000  # refit the newest matching run, no retraining
    python launch.py stages=[calibrate] run_id=<id>     # SGLD settings grid on the run's last checkpoint
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

warnings.filterwarnings("ignore", message=".*SGLD has been deprecated.*")

CONF = Path(__file__).resolve().parent / "conf"


def unknown_group_option(argv: list[str]) -> str | None:
    """One line for `group=name` overrides (sweeps included) naming a config that does not exist.

    Hydra refuses them too, with a multi-line report; this names the choices in one line first.
    """
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        group = CONF / key
        if not sep or not group.is_dir() or any(c in value for c in "()[]*"):
            continue
        choices = sorted(p.stem for p in group.glob("*.yaml"))
        for name in value.split(","):
            if name and name not in choices:
                return f"unknown {key} '{name}': choose from {', '.join(choices)}"
    return None


def job_info(cfg: DictConfig):
    from pipeline.run import JobInfo

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    folder = Path(hc.sweep.dir if multirun else hc.run.dir)
    sweep = cfg.sweep or ("sweep-" if multirun else "run-") + "_".join(folder.parts[-2:])
    name = hc.job.override_dirname or "default"
    return JobInfo(sweep=str(sweep), name=name, multirun=multirun)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from pipeline.run import main as run_main

    info = job_info(cfg)
    status = run_main(cfg, info)
    if status and not info.multirun:
        sys.exit(status)


if __name__ == "__main__":
    if problem := unknown_group_option(sys.argv[1:]):
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    main()
