"""The straightforward way a careful researcher writes the paper's experiment: ONE script, one run.

    python bench/baseline.py --store sqlite:////abs/path/mlflow.db --seed 0        # the default job
    python bench/baseline.py --dataset synthetic --n-samples 10000 --hidden 128 64 32 --batch-norm \
        --lr 1e-3 --batch 256 --epochs 100 --store sqlite:////abs/path/mlflow.db  # the MNIST-sized MLP

Same data split and same model class and initialisation as the pipeline (`pipeline.data`,
`pipeline.models`, seeded as `pipeline.config.build.model` seeds it), so the numbers compare. Then: a
`torch.utils.data.DataLoader(TensorDataset, shuffle=True)`, a plain SGD loop that records
R(t) = ||w_t - w_0|| at every LLC step and evaluates train/test loss and accuracy every
`--eval-every` steps, devinterp's `estimate_learning_coeff_with_summary` every `--llc-every` steps
with Table 3's settings (SGLD lr 1e-5, localization 100, 1 chain, 400 draws, 0 burn-in, 1 step
between draws; `--sgld-lr`, `--localization`, `--chains`, `--burnin`, `--draws` change them) and
devinterp's defaults for the rest (its `SGLD` sampler, nβ = batch/log batch,
init loss from its own batches, no seed, progress bars on), the α fit (OLS of log R on log t at the
LLC steps), λ_final (mean of the last 10 estimates), λ̄, d_s = 2·λ_final·α, and MLflow's fluent API
(start_run, log_params, one log_metric per value as it is produced, summary metrics and the
trajectory as an artifact at the end). It times its stages and its MLflow calls (importing MLflow
included) and prints one JSON line of results on stdout.

What it does differently from the pipeline (on purpose: this is the reference, not a copy):
- the data order and the SGLD noise come from torch's global generator (seeded once with `--seed`);
  the pipeline seeds a generator per run and per estimate, so single runs differ, their
  distribution over seeds does not (`tests/integration/test_bench_agreement.py`);
- devinterp iterates the training DataLoader itself (collating sample by sample, deep-copying the
  model per chain); the pipeline slices minibatches from memory and, by default, estimates all
  checkpoints in one batched pass after training;
- R(t) only at the LLC steps (the pipeline records it at every step, and per tensor);
- no checkpoints, loss traces, diagnostics, bootstrap or verdicts; one process per run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

T_START = time.perf_counter()

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from devinterp.slt.sampler import estimate_learning_coeff_with_summary  # noqa: E402
from devinterp.utils import evaluate_ce  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository, for `pipeline`
from pipeline.data import Data, digits, synthetic  # noqa: E402
from pipeline.models import MLP  # noqa: E402

TRACKING_S = 0.0  # wall time inside MLflow: its import and every call


@contextmanager
def tracking():
    """Adds the block's wall time to TRACKING_S."""
    global TRACKING_S
    t0 = time.perf_counter()
    try:
        yield
    finally:
        TRACKING_S += time.perf_counter() - t0


with tracking():
    import mlflow


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=["digits", "synthetic"], default="digits")
    p.add_argument("--n-samples", type=int, default=1000, help="synthetic: inputs, train and test together")
    p.add_argument("--shape", type=int, nargs="+", default=[1, 28, 28], help="synthetic: input shape")
    p.add_argument("--hidden", type=int, nargs="+", default=[128, 64])
    p.add_argument("--batch-norm", action="store_true")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--epochs", type=int, default=250)
    p.add_argument("--steps", type=int, default=None, help="train this many steps instead of --epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--llc-every", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--draws", type=int, default=400, help="SGLD draws per chain (Table 3: 400)")
    p.add_argument("--sgld-lr", type=float, default=1e-5, help="SGLD step size ε (Table 3: 1e-5)")
    p.add_argument("--localization", type=float, default=100.0, help="SGLD localization γ (Table 3: 100)")
    p.add_argument("--chains", type=int, default=1, help="SGLD chains per estimate (Table 3: 1)")
    p.add_argument("--burnin", type=int, default=0, help="SGLD burn-in steps per chain (Table 3: 0)")
    p.add_argument("--last", type=int, default=10, help="λ_final = mean of the last this many estimates")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--store", required=True, help="MLflow tracking URI, e.g. sqlite:////abs/mlflow.db")
    p.add_argument("--experiment", default="baseline")
    return p.parse_args(argv)


def load_data(args: argparse.Namespace) -> Data:
    if args.dataset == "digits":
        return digits(args.batch)
    return synthetic(args.batch, shape=tuple(args.shape), n_samples=args.n_samples)


def llc_estimate(
    model: torch.nn.Module,
    loader: DataLoader,
    draws: int = 400,
    lr: float = 1e-5,
    localization: float = 100.0,
    chains: int = 1,
    burnin: int = 0,
) -> float:
    """One λ estimate at the model's weights: these SGLD settings (Table 3's by default),
    devinterp's defaults otherwise."""
    out = estimate_learning_coeff_with_summary(
        model,
        loader,
        evaluate=evaluate_ce,
        optimizer_kwargs=dict(lr=lr, localization=localization),
        num_chains=chains,
        num_draws=draws,
        num_burnin_steps=burnin,
        num_steps_bw_draws=1,
    )
    return float(out["llc/mean"])


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    out = model(x)
    model.train()
    return F.cross_entropy(out, y).item(), (out.argmax(1) == y).float().mean().item()


def fit_alpha(steps: np.ndarray, r: np.ndarray) -> float:
    """Slope of log R on log t (ordinary least squares)."""
    keep = r > 0
    return float(np.polyfit(np.log(steps[keep]), np.log(r[keep]), 1)[0])


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_data(args)
    # Fixes w_0 (as pipeline.config.build.model), then the data order and SGLD noise.
    torch.manual_seed(args.seed)
    model = MLP(data.in_features, data.num_classes, args.hidden, batch_norm=args.batch_norm)
    w0 = [p.detach().clone() for p in model.parameters()]

    with tracking():
        mlflow.set_tracking_uri(args.store)
        mlflow.set_experiment(args.experiment)
        run = mlflow.start_run(run_name=f"seed={args.seed}")
        mlflow.log_params(vars(args))

    # The training time starts where the pipeline's train stage starts: before the loader and the
    # optimizer are built (torch's first optimizer imports torch._dynamo, about a second).
    t_loop = time.perf_counter()
    loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=args.batch, shuffle=True)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    total = args.steps or args.epochs * len(loader)
    sgld = {"draws": args.draws, "lr": args.sgld_lr, "localization": args.localization}
    sgld |= {"chains": args.chains, "burnin": args.burnin}
    llc_s, step, rows, test_acc = 0.0, 0, [], float("nan")
    model.train()
    while step < total:
        for x, y in loader:
            step += 1
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            if step % args.eval_every == 0:
                train_loss, train_acc = evaluate(model, data.x_train, data.y_train)
                test_loss, test_acc = evaluate(model, data.x_test, data.y_test)
                with tracking():
                    mlflow.log_metric("train/loss", train_loss, step=step)
                    mlflow.log_metric("train/acc", train_acc, step=step)
                    mlflow.log_metric("test/loss", test_loss, step=step)
                    mlflow.log_metric("test/acc", test_acc, step=step)
            if step % args.llc_every == 0:
                with torch.no_grad():
                    r = math.sqrt(sum(((p - p0) ** 2).sum().item() for p, p0 in zip(model.parameters(), w0)))
                with tracking():
                    mlflow.log_metric("displacement", r, step=step)
                t0 = time.perf_counter()
                lam = llc_estimate(model, loader, **sgld)
                with tracking():
                    mlflow.log_metric("llc", lam, step=step)
                llc_s += time.perf_counter() - t0
                rows.append((step, r, lam))
            if step == total:
                break
    train_s = time.perf_counter() - t_loop - llc_s

    t0 = time.perf_counter()
    steps, r, lam = (np.array(c, dtype=float) for c in zip(*rows))
    alpha = fit_alpha(steps, r)
    lambda_final = float(lam[-args.last :].mean())
    summary = {
        "lambda_final": lambda_final,
        "lambda_bar": float(lam.mean()),
        "alpha": alpha,
        "d_s": 2 * lambda_final * alpha,
        "test_acc": test_acc,
    }
    fit_s = time.perf_counter() - t0
    with tracking(), tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trajectory.csv"
        np.savetxt(path, np.column_stack([steps, r, lam]), delimiter=",", header="step,R,llc", comments="")
        mlflow.log_artifact(str(path))
        mlflow.log_metrics(summary)
        mlflow.log_metrics({"time/train_s": train_s, "time/llc_s": llc_s, "time/tracking_s": TRACKING_S})
        mlflow.end_run()
    total_s = time.perf_counter() - T_START
    return {
        **summary,
        "run_id": run.info.run_id,
        "seed": args.seed,
        "steps": step,
        "llc_estimates": len(rows),
        "steps_per_s": step / train_s,
        "llc_s_per_estimate": llc_s / len(rows),
        "time": {
            "train_s": train_s,
            "llc_s": llc_s,
            "fit_s": fit_s,
            "tracking_s": TRACKING_S,
            "total_s": total_s,
        },
        "tracking_share": TRACKING_S / total_s,
        "torch_threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    print(json.dumps(main()), flush=True)
