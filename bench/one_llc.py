"""One λ estimate alone, ours and the baseline's, side by side in one process on one trained model.

    python -m bench.one_llc --checkpoint step_00003750.pt --calls 5 --threads 2 -- <launch.py overrides>

Builds the case's data and model as the pipeline does (the real config, composed with Hydra), loads
the checkpoint, and times, after one warm-up call of each, `--calls` rounds of: the llc stage's
serial estimate (`pipeline.slt.llc.estimate`), its batched pass with this one checkpoint
(`pipeline.slt.llc.estimate_many`) and the baseline's devinterp call (`bench.baseline.llc_estimate`, a
`DataLoader(TensorDataset, shuffle=True)` and devinterp's defaults). Prints one JSON line: the
seconds of every call, per variant.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--calls", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")  # devinterp's per-call advice; the settings are fixed here

    from bench.baseline import llc_estimate
    from pipeline.config import build
    from pipeline.slt import llc
    from pipeline.tracking import names

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=args.overrides)
    data = build.data(cfg)
    model = build.model(cfg, data)
    state = torch.load(args.checkpoint, map_location="cpu")
    model.load_state_dict(state)
    step = names.checkpoint_step(args.checkpoint.name)
    task = build.task(cfg)
    loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=data.batch_size, shuffle=True)
    variants = {"ours_serial": lambda: llc.estimate(model, data, cfg.llc, step, "cpu", task.sgld_loss)}
    if hasattr(llc, "estimate_many"):  # the batched path, where this checkout has it
        variants["ours_batched_one"] = lambda: llc.estimate_many(
            model, [state], data, cfg.llc, [step], "cpu", task
        )
    variants["baseline"] = lambda: llc_estimate(
        model,
        loader,
        int(cfg.llc.num_draws),
        float(cfg.llc.lr),
        float(cfg.llc.localization),
        int(cfg.llc.num_chains),
        int(cfg.llc.num_burnin_steps),
    )
    seconds: dict[str, list[float]] = {k: [] for k in variants}
    for call in range(args.calls + 1):  # the first round warms up (lazy imports, allocations)
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            if call:
                seconds[name].append(time.perf_counter() - t0)
    return {"step": step, "threads": torch.get_num_threads(), "seconds": seconds}


if __name__ == "__main__":
    print(json.dumps(main()), flush=True)
