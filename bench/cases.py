"""What the benchmark runs: the two cases, each as pipeline overrides and as baseline.py arguments,
and the three modes (full, quick, tiny) that shrink them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Mode:
    """How much of each case is run, and how often."""

    name: str
    repeats: int  # every figure is measured this many times (median, min, max)
    sweep_seeds: int  # seeds of the sweep-throughput figures (one after another, parallel, batched)
    big_seeds: int  # seeds of the large batched ensemble (the 50-seed figure)
    steps: int | None = None  # train this many steps instead of the case's epochs
    llc_every: int = 100  # λ every this many steps (Table 3: 100)
    draws: int = 400  # SGLD draws per estimate (Table 3: 400)
    last: int = 10  # λ_final over the last this many estimates (G.1: 10)
    llc_calls: int = 5  # timed calls per repeat of the one-estimate-alone figure (after one warm-up)


MODES = {
    # The cases as stated; 62 min for 2 rounds on 2 quiet cores, ~1.5 h for 3 (docs/benchmarks.md).
    "full": Mode("full", repeats=3, sweep_seeds=8, big_seeds=50),
    # 20 min on 2 loaded cores: fewer steps, seeds and repeats; λ still with Table 3's settings.
    "quick": Mode("quick", repeats=1, sweep_seeds=4, big_seeds=8, steps=300, llc_calls=3),
    # Seconds per run, for the harness's own test: tests/helpers/config.py TINY's sizes.
    "tiny": Mode(
        "tiny", repeats=1, sweep_seeds=2, big_seeds=3, steps=90, llc_every=30, draws=20, last=2, llc_calls=2
    ),
}


@dataclass(frozen=True)
class Case:
    """One workload, written twice: for `launch.py` (overrides) and for `bench/baseline.py` (flags)."""

    name: str
    description: str
    overrides: list[str] = field(default_factory=list)
    baseline: list[str] = field(default_factory=list)
    preset: str = "paper"  # conf/llc/<preset>: Table 3's settings, or the calibrated default
    sweeps: bool = True  # the sweep-throughput figures (4a-4d, 6b) for this case

    def describe(self, mode: Mode) -> str:
        """The description, with what `mode` changes."""
        if mode.steps is None:
            return self.description
        return (
            f"{self.description}; {mode.name} mode: {mode.steps} steps, λ every {mode.llc_every} "
            f"with {mode.draws} draws, λ_final over the last {mode.last}"
        )

    def ours(self, mode: Mode) -> list[str]:
        """launch.py overrides of this case in `mode`: its SGLD preset (Table 3's, `llc=paper`, the
        baseline's, whatever the product's default preset; or `calibrated`, whose draws the
        calibration chooses)."""
        sizes = {"train.steps": mode.steps, "llc.every": mode.llc_every}
        if self.preset == "paper":
            sizes["llc.num_draws"] = mode.draws
        return [f"llc={self.preset}"] + self._sized(
            self.overrides, mode, [f"{k}={v}" for k, v in sizes.items()] + [f"llc.last={mode.last}"]
        )

    def theirs(self, mode: Mode) -> list[str]:
        """baseline.py flags of this case in `mode` (evaluation every LLC step, as the pipeline's default)."""
        sizes = {"steps": mode.steps, "llc-every": mode.llc_every, "eval-every": mode.llc_every}
        if self.preset == "paper":
            sizes["draws"] = mode.draws
        return self._sized(
            self.baseline, mode, [f"--{k}={v}" for k, v in sizes.items()] + [f"--last={mode.last}"]
        )

    @staticmethod
    def _sized(base: list[str], mode: Mode, sizes: list[str]) -> list[str]:
        """`base` with the mode's sizes, or as it is in a mode that runs each case as stated."""
        return list(base) if mode.steps is None else [*base, *sizes]


DEFAULT_BASELINE = ["--dataset=digits", "--hidden", "128", "64", "--lr=0.1", "--batch=64", "--epochs=250"]
# The default job's calibrated choice on the project's machines (docs/trustworthy-numbers.md): the
# baseline runs it as a researcher would who knows it, without a search.
CALIBRATED_SGLD = ["--sgld-lr=0.01", "--localization=1", "--chains=4", "--burnin=600", "--draws=500"]
MNIST_EPOCHS = 25  # of the paper's 100: 500 steps, 5 λ estimates; keeps the 50-seed job to minutes

CASES = {
    "default": Case(
        "default",
        "the default job: digits, MLP 64-128-64-10, SGD lr 0.1, batch 64, 3750 steps, λ every 100 (Table 3)",
        overrides=[],
        baseline=DEFAULT_BASELINE,
    ),
    "calibrated": Case(
        "calibrated",
        "the default job as `python launch.py` runs it: the calibrated preset (its search included: "
        "4 chains, burn-in, draws for ESS 100), λ every 100; the baseline with the search's choice "
        "(ε 1e-2, γ 1, 4 chains, 600 burn-in steps, 500 draws)",
        overrides=[],
        baseline=[*DEFAULT_BASELINE, *CALIBRATED_SGLD],
        preset="calibrated",
        sweeps=False,
    ),
    "mnist_mlp": Case(
        "mnist_mlp",
        f"MLP 784-128-64-32-10 with batch norm on 10 000 synthetic 1x28x28 inputs (5 000 train, as the "
        f"paper's MNIST subset), SGD lr 1e-3, batch 256, {MNIST_EPOCHS} epochs (500 steps), λ every 100",
        overrides=[
            "dataset=synthetic",
            "dataset.n_samples=10000",
            "model.hidden=[128,64,32]",
            "model.batch_norm=true",
            "lr=0.001",
            "batch=256",
            f"train.epochs={MNIST_EPOCHS}",
        ],
        baseline=[
            "--dataset=synthetic",
            "--n-samples=10000",
            "--hidden",
            "128",
            "64",
            "32",
            "--batch-norm",
            "--lr=0.001",
            "--batch=256",
            f"--epochs={MNIST_EPOCHS}",
        ],
    ),
}
