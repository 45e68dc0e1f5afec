"""Every name a run's records go under: artifacts, tags, metrics. The contract between the stages
that write a run, the stages that read it back, the analysis and the tests.

Changing a value here changes what stored runs are read as: add names, never rename them.
"""

from __future__ import annotations

from pathlib import Path

# -- artifacts (tables are `<name>.parquet`, JSON `<name>.json`) -----------------------------------
CONFIG = "config.yaml"  # the resolved config the run was trained with
ERROR = "error.txt"  # the traceback of a job that failed for a reason other than bad input
TRAJECTORY = "trajectory"  # step, displacement, displacement/<tensor>, train_batch_loss
EVALS = "evals"  # step, train/test loss and accuracy
LLC = "llc"  # λ(t): step, llc, llc_std, init_loss, nbeta, status, diagnostics
LLC_TRACES = "llc_traces"  # step, chain, draw, loss
LLC_PARTIAL = "llc_partial"  # the llc stage's estimates so far, while it runs
FIT = "fit"  # α, d_s and its interval, d_walk, the verdicts
FIGURES = "figures"  # the run's own figures (the fit stage's), previewed by the MLflow UI
FIGURE_DISPLACEMENT = "displacement.png"  # R(t), log-log, the fitted line and its window
FIGURE_LLC = "llc.png"  # λ̂(t) with its MCSE error bars, λ_final and λ̄
CHECKPOINTS = "checkpoints"  # folder of state dicts `step_<8 digits>.pt`
RESUME = "resume"  # folder of the train stage's resume state, while it runs
RESUME_STATE = f"{RESUME}/train.pt"
CALIBRATION = "calibration"  # table, JSON recommendation, and the folder of trace plots
CALIBRATION_TRACES = "calibration_traces"
LLC_CALIBRATION = "llc_calibration"  # the llc stage's own search: table, JSON choice, trace plots
LLC_CALIBRATION_TRACES = "llc_calibration_traces"
MEMBERS = "members"  # the ensemble stage: one row per member
MEMBER_TRAJECTORY = "member_trajectory"
MEMBER_EVALS = "member_evals"
ENSEMBLE_WEIGHTS = "ensemble/member_weights.pt"
POSTERIOR_MEMBERS = "posterior_members"
POSTERIOR_SAMPLES = "posterior_samples"
CLUSTERS = "clusters"
XI_SWEEP = "xi_sweep"
TABLE_2 = "table2"
FIGURES = "figures"
ANALYSIS = "analysis"  # folder of a sweep's analysis, in its analysis run


def checkpoint_name(step: int) -> str:
    """The file name of the checkpoint at training step `step` (w_0 is step 0)."""
    return f"step_{int(step):08d}.pt"


def checkpoint_files(folder: Path) -> list[Path]:
    """The checkpoint files in a local folder, by step."""
    found = [(step, f) for f in folder.iterdir() if (step := checkpoint_step(f.name)) is not None]
    return [f for _, f in sorted(found)]


def checkpoint_step(name: str) -> int | None:
    """The training step of a checkpoint file name or artifact path; None for another file."""
    stem = name.rsplit("/", 1)[-1]
    if not (stem.startswith("step_") and stem.endswith(".pt")):
        return None
    digits = stem.removeprefix("step_").removesuffix(".pt")
    return int(digits) if digits.isdigit() else None


# -- tags -----------------------------------------------------------------------------------------
SWEEP = "sweep"
CONFIG_HASH = "config_hash"  # the point: every config value that decides the numbers
TRAIN_HASH = "train_hash"  # what decides the training trajectory and the checkpoints
RUN_TOKEN = "run_token"  # a random id the job creates its run with (a retried creation finds it)
MULTIRUN = "multirun"
BATCHED_SEEDS = "batched_seeds"  # the seeds of the batched job the run was part of
FAILURE_REASON = "failure_reason"
RERUN_FAILURE = "rerun_failure"
INTERRUPTED = "interrupted"
SUPERSEDED_BY = "superseded_by"
HEARTBEAT = "heartbeat"
OWNER_HOST, OWNER_PID, OWNER_STARTED, OWNER_SLURM_JOB = (
    "owner.host",
    "owner.pid",
    "owner.started",
    "owner.slurm_job",
)
OVERRIDE = "override."  # prefix: a setting a re-run changed (params are immutable)
ANALYSIS_TAG = "analysis"  # "true" on a sweep's analysis run (aggregation skips it)
LEMMA_3_4 = "verdict.lemma_3_4"  # holds, violated, within_error, n/a
COROLLARY_3_3 = "verdict.corollary_3_3"
FIT_WINDOW = "fit.window"
DESCRIPTION = "mlflow.note.content"  # the run's description in the MLflow UI: its printed report
EXPERIMENT_KIND = "mlflow.experimentKind"  # "custom_model_development": the UI opens on the runs table
SOURCE = "source"  # what made a run other than launch.py: "pipeline.api.Monitor" (launch.py's runs have none)
DATASET = "dataset"  # the data the run trained on, as its loader names it (e.g. a stand-in's)
LLC_METHOD = "llc.method"
LLC_NBETA = "llc.nbeta_used"
LLC_LAST = "llc.last"
LLC_MODEL_MODE = "llc.model_mode"
LLC_ESTIMATES = "llc.estimates"
LLC_FAILED = "llc.failed_estimates"
LLC_NEGATIVE = "llc.negative_estimates"
LLC_NONSTATIONARY = "llc.nonstationary_estimates"
LLC_RHAT_HIGH = "llc.rhat_high_estimates"  # R-hat above llc.diagnostics.max_rhat
LLC_ESS_LOW = "llc.ess_low_estimates"  # bulk or tail ESS below llc.diagnostics.min_ess_per_chain per chain
LLC_RHAT_MEDIAN = "llc.rhat_median"
LLC_ESS_MEDIAN = "llc.ess_bulk_median"
LLC_CALIBRATION_KEY = "llc.calibration_key"  # runs with this key share one calibration
LLC_CALIBRATION_CHOICE = "llc.calibration"  # the chosen settings (JSON), on every run that used them
LLC_CALIBRATED_FROM = "llc.calibrated_from"  # the run whose checkpoint the search ran on
LLC_SETTINGS = "llc.settings_used"  # ε, γ, nβ, chains, burn-in and draws every estimate used
CALIBRATE_RECOMMENDED = "calibrate.recommended"
CALIBRATE_STEP = "calibrate.step"
POSTERIOR_CRITERION = "posterior.converged_criterion"  # which members count as converged
POSTERIOR_CHAIN_SEEDS = "posterior.chain_seeds"
POSTERIOR_NBETA = "posterior.sgld_nbeta"
POSTERIOR_REPRESENTATION = "posterior.representation"
POSTERIOR_CLUSTERING = "posterior.clustering"
POSTERIOR_NONFINITE = "posterior.sgld_nonfinite_samples"


def stage_tag(stage: str) -> str:
    """`stage.<name>`, "done" once the stage has recorded everything."""
    return f"stage.{stage}"


# -- params ---------------------------------------------------------------------------------------
# Config keys (and blocks) that say where and how a job runs, not what it computes: left out of the
# config hash (the point) and of what a sweep varies (the analysis); runs' names leave them out too.
RUNTIME_KEYS = (
    "stages",
    "run_id",
    "tracking",
    "sweep",
    "threads",
    "progress",
    "seeds",
    "resume",
    "reproduces",  # the paper's tables the runs are set beside (the scorecard): no number depends on it
)


# -- metrics ----------------------------------------------------------------------------------------
# The summary metrics the analysis relies on.
SUMMARY_METRICS = (
    "lambda_final",
    "lambda_bar",
    "alpha",
    "alpha_se",
    "r2",
    "d_s",
    "d_walk",
    "test_acc",
    "gen_error",
    "num_params",
)
# Tags the analysis carries into its tables (the verdicts, flags and failure of a run).
ANALYSIS_TAGS = (
    FAILURE_REASON,
    DATASET,
    RERUN_FAILURE,
    LEMMA_3_4,
    COROLLARY_3_3,
    FIT_WINDOW,
    LLC_NBETA,
    LLC_FAILED,
    LLC_NEGATIVE,
    LLC_NONSTATIONARY,
    LLC_RHAT_HIGH,
    LLC_ESS_LOW,
)
TRACKING_SECONDS = "time/tracking_s"
TRACKING_SHARE = "tracking_share"
TRACKING_RETRIES = "tracking_retries"


def stage_seconds(stage: str) -> str:
    """`time/<stage>_s`: the stage's wall time (a batched job's, divided by its runs)."""
    return f"time/{stage}_s"
