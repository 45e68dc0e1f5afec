"""The analysis: aggregate on a store filled by a tiny real sweep, the checks, every table and
figure function on a fixture table, and the `python -m analysis` command."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from omegaconf import open_dict

from analysis import aggregate, checks, figures, tables
from analysis.__main__ import main as analysis_main
from pipeline.jobs.opening import JobInfo
from pipeline.tracking import Tracker, open_existing
from tests.helpers.cli import launch
from tests.helpers.config import TINY, compose_cfg
from tests.helpers.jobs import execute

SWEEP = "tiny-sweep"


# -- a store filled by a tiny real sweep ------------------------------------------------------------
@pytest.fixture(scope="module")
def sweep_store(tmp_path_factory) -> str:
    """Four finished runs (SGD and Adam x two lrs), one that diverged, one left RUNNING."""
    folder = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"

    def cfg(*overrides: str):
        c = compose_cfg([*TINY, f"tracking.uri={uri}", "llc.every=15", *overrides])
        with open_dict(c):
            c.tracking.experiment = "test"
        return c

    for opt, lrs in (("sgd", (0.05, 0.2)), ("adam", (1e-3, 3e-3))):
        for lr in lrs:
            execute(cfg(f"optimizer={opt}", f"lr={lr}"), JobInfo(SWEEP, f"optimizer={opt},lr={lr}", True))
    with pytest.raises(Exception, match="not finite"):
        execute(cfg("lr=1e12"), JobInfo(SWEEP, "lr=1e12", True))
    tracker = Tracker(uri, "test")
    tracker.start_run("still-running", {"sweep": SWEEP})
    tracker.start_run("other", {"sweep": "another-sweep"})
    return uri


def test_aggregate_lists_every_run_of_the_sweep(sweep_store: str) -> None:
    tracker = open_existing(sweep_store, "test")
    st = aggregate.sweep_table(tracker, SWEEP)
    t = st.table
    assert len(t) == 6  # the other sweep's run is not in it
    assert sorted(t["status"]) == ["FAILED", "FINISHED", "FINISHED", "FINISHED", "FINISHED", "RUNNING"]
    assert st.swept[:2] == ["optimizer", "lr"]  # llc.seed, optimizer.lr ... vary with these: not listed
    assert "seed" not in st.swept and "optimizer.lr" not in st.swept
    failed = st.not_finished().set_index("status")
    assert failed.loc["FAILED", "reason"].startswith("Diverged: training loss is not finite")
    assert failed.loc["RUNNING", "reason"] == "unfinished (RUNNING)"
    done = st.finished()
    assert sorted(done["optimizer"]) == ["adam", "adam", "sgd", "sgd"]
    assert sorted(done["lr"]) == [1e-3, 3e-3, 0.05, 0.2]
    for _, row in done.iterrows():  # every summary metric, as the run holds it
        metrics = tracker.summary(row["run_id"])
        for key in ("lambda_final", "lambda_final_std", "d_s", "alpha", "r2", "test_acc", "gen_error"):
            assert row[key] == pytest.approx(metrics[key]), key
        assert row["total_displacement"] == pytest.approx(metrics["displacement"])
        assert row["avg_lr"] == pytest.approx(row["lr"])  # logged by the train stage
        assert row["verdict.lemma_3_4"] in ("holds", "violated", "within_error")
    assert aggregate.sweeps(tracker) == [SWEEP, "another-sweep"]


def test_analysis_command_writes_results_and_logs_back(sweep_store: str, tmp_path, capsys) -> None:
    out = tmp_path / "results"
    assert (
        analysis_main(["--uri", sweep_store, "--experiment", "test", "--sweep", SWEEP, "--out", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    folder = out / SWEEP
    runs = pd.read_csv(folder / "runs.csv")
    assert len(runs) == 6 and set(runs["status"]) == {"FINISHED", "FAILED", "RUNNING"}
    assert pd.read_parquet(folder / "runs.parquet")["run_id"].tolist() == runs["run_id"].tolist()
    report = (folder / "checks.txt").read_text()
    counts, _ = checks.lemma_3_4(runs[runs["status"] == "FINISHED"])
    assert f"{counts['holds']} holds" in report and "not finished: still-running" in report
    assert "lambda_final vs lr" in report and "total_displacement vs avg_lr" in report
    corr = pd.read_csv(folder / "correlations.csv")
    assert set(corr["group"]) == {"all", "sgd", "adam"} and (corr.loc[corr["group"] == "all", "n"] == 4).all()
    assert (folder / "ablation_appendix_h.md").read_text().count("\n") == 4  # header, rule, adam, sgd
    assert "figure fig07_09_heatmaps skipped: the sweep does not vary both lr and batch" in printed
    assert (folder / "figures" / "fig01_displacement.png").stat().st_size > 10_000
    assert (folder / "figures" / "fig02a_lambda_vs_ds.pdf").stat().st_size > 1_000
    # Logged back as the sweep's analysis run, which aggregation then skips.
    tracker = open_existing(sweep_store, "test")
    found = tracker.find_runs({"analysis": "true", "sweep": SWEEP})
    assert len(found) == 1 and found[0].name == f"analysis:{SWEEP}"
    listed = {f.path for f in tracker.client.list_artifacts(found[0].run_id, "analysis")}
    assert "analysis/checks.txt" in listed and "analysis/runs.parquet" in listed
    assert len(aggregate.sweep_table(tracker, SWEEP).table) == 6
    assert (
        analysis_main(["--uri", sweep_store, "--experiment", "test", "--sweep", SWEEP, "--out", str(out)])
        == 0
    )
    assert len(tracker.find_runs({"analysis": "true", "sweep": SWEEP})) == 1  # re-run reuses it


def test_analysis_command_names_the_fix_for_bad_input(sweep_store: str, tmp_path, capsys) -> None:
    assert analysis_main(["--uri", sweep_store, "--experiment", "nope"]) == 2
    assert "no experiment 'nope'" in capsys.readouterr().err
    assert analysis_main(["--uri", sweep_store, "--experiment", "test", "--sweep", "nope"]) == 2
    assert "choose from ['tiny-sweep', 'another-sweep']" in capsys.readouterr().err
    assert analysis_main(["--uri", f"sqlite:///{tmp_path / 'missing.db'}"]) == 2
    assert "no tracking store" in capsys.readouterr().err
    assert not (tmp_path / "missing.db").exists()


def test_ablation_config_picks_each_optimizers_lr_then_make_figures_reads_it(tmp_path) -> None:
    """The real ablation config, shrunk: one point per optimizer from the command line."""
    tiny = [o for o in TINY if not o.startswith("threads")]
    res = launch(
        [
            "-m",
            "+experiment=ablation_digits",
            "ablation.lr_level=high",
            "batch=32",
            "seed=0",
            *tiny,
            "llc.every=15",
        ],
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    tracker = open_existing(f"sqlite:///{tmp_path / 'mlflow.db'}", "almost-bayesian")
    st = aggregate.sweep_table(tracker, "ablation_digits")
    done = st.finished().set_index("optimizer")
    assert done.loc["sgd", "lr"] == 0.3 and done.loc["adam", "lr"] == 3e-3  # lr_grid[optimizer][high]
    assert st.swept == ["optimizer"]  # lr moves with the optimizer here: listed once
    assert "+experiment" not in done.loc["sgd", "run_name"]
    assert analysis_main(["--uri", tracker.uri, "--out", str(tmp_path / "results"), "--no-log"]) == 0
    table = (tmp_path / "results" / "ablation_digits" / "ablation_appendix_h.md").read_text()
    assert table.splitlines()[2].startswith("| digits | adam |") and table.splitlines()[3].startswith(
        "| digits | sgd |"
    )


def test_empty_sweep_table_has_the_status_columns() -> None:
    runs = pd.DataFrame()
    st = aggregate.tidy(runs, "none")
    assert st.finished().empty and list(st.not_finished().columns) == [
        "run_id",
        "run_name",
        "status",
        "reason",
    ]
    assert aggregate.reason_for("FAILED", None) == "FAILED (no failure_reason recorded)"
    assert aggregate.reason_for("FAILED", "Diverged: x") == "Diverged: x"


# -- a fixture table: 2 optimizers x 3 lrs x 2 batches x 2 seeds ------------------------------------
def fixture_sweep() -> tuple[pd.DataFrame, aggregate.RunSeries, list[str]]:
    rng = np.random.default_rng(0)
    rows, traj, llc, fits = [], [], [], []
    t = np.arange(1, 601, dtype=float)
    i = 0
    for opt, lrs in (("sgd", (0.03, 0.1, 0.3)), ("adam", (3e-4, 1e-3, 3e-3))):
        for k, lr in enumerate(lrs):
            for batch in (32, 128):
                for seed in (0, 1):
                    rid = f"run{i:02d}"
                    alpha = 0.2 + 0.1 * k + 0.05 * rng.random()
                    lam = 1.0 + (batch == 128) + 0.2 * rng.random()
                    r = 0.1 * (1 + k) * t**alpha
                    rows.append(
                        {
                            "run_id": rid,
                            "run_name": f"optimizer={opt},lr={lr},batch={batch},seed={seed}",
                            "status": "FINISHED",
                            "optimizer": opt,
                            "lr": lr,
                            "batch": batch,
                            "seed": seed,
                            "model": "MLP 128-64",
                            "steps": 600,
                            "num_params": 17226,
                            "lambda_final": lam,
                            "lambda_final_std": 0.1,
                            "lambda_bar": 0.8 * lam,
                            "alpha": alpha,
                            "r2": 0.95 + 0.04 * rng.random(),
                            "d_s": 2 * lam * alpha,
                            "diffusion_exponent": 2 - 1 / alpha,
                            "test_acc": 0.9 + 0.05 * rng.random(),
                            "gen_error": 0.05 + 0.05 * rng.random(),
                            "avg_lr": lr,
                            "total_displacement": r[-1],
                            "fit.window": "100-600 (6 points, llc)",
                        }
                    )
                    traj.append(
                        pd.DataFrame(
                            {
                                "run_id": rid,
                                "step": t,
                                "displacement": r,
                                "displacement/net.0.weight": 0.8 * r,
                            }
                        )
                    )
                    steps = np.arange(100, 601, 100)
                    llc.append(
                        pd.DataFrame(
                            {"run_id": rid, "step": steps, "llc": lam + 0.1 * rng.standard_normal(6)}
                        ).assign(status="ok")
                    )
                    fits.append(
                        {
                            "run_id": rid,
                            "alpha": alpha,
                            "intercept": np.log(0.1 * (1 + k)),
                            "t_start": 100,
                            "t_end": 600,
                            "t_c": 0.0,
                            "shifted": False,
                        }
                    )
                    i += 1
    series = aggregate.RunSeries(pd.concat(traj), pd.concat(llc), pd.DataFrame(fits))
    return pd.DataFrame(rows), series, ["optimizer", "lr", "batch", "seed"]


@pytest.mark.parametrize("name", list(figures.FIGURES))
def test_every_figure_draws_on_the_fixture_table(name: str) -> None:
    table, series, swept = fixture_sweep()
    fig = figures.FIGURES[name](table, series, swept)
    assert isinstance(fig, Figure) and fig.axes
    labelled = [ax for ax in fig.axes if ax.get_xlabel() and ax.get_ylabel()]
    assert labelled, "every figure labels its axes"
    figures.plt.close(fig)


def test_figures_draw_what_the_data_says() -> None:
    table, series, swept = fixture_sweep()
    fig = figures.lambda_vs_spectral_dimension(table, series, swept)
    ax = fig.axes[0]
    v = checks.verdicts(table, "lambda_final")  # counted apart, as the checks count them
    counts = f"of 24 runs: {(v == 'holds').sum()} hold, {(v == 'within_error').sum()} within error, "
    assert any(t.get_text().startswith(counts) for t in ax.texts)
    fig = figures.heatmaps(table, series, swept)
    assert len(fig.axes) == 2 * 2 + 4  # (λ, d_s) x 2 optimizers, plus their colour bars
    sgd_lambda = [t.get_text() for t in fig.axes[0].texts]  # adam first (sorted), 2 batch x 3 lr
    expected = table[table["optimizer"] == "adam"].groupby(["batch", "lr"])["lambda_final"].mean()
    assert sorted(sgd_lambda) == sorted(f"{v:.3g}" for v in expected)
    fig = figures.displacement_curves(table, series, swept)
    assert [ax.get_xscale() for ax in fig.axes] == ["log", "log"]
    assert any("t^{1/2}" in line.get_label() for line in fig.axes[0].lines)


def test_figures_skip_with_one_line_when_the_sweep_lacks_data(tmp_path) -> None:
    table, series, swept = fixture_sweep()
    one_batch = table[table["batch"] == 32]
    empty = aggregate.RunSeries(pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
    written, skipped = figures.write_all(one_batch, empty, ["optimizer", "lr", "seed"], tmp_path)
    assert "fig02a_lambda_vs_ds" in written and (tmp_path / "fig02a_lambda_vs_ds.png").exists()
    assert "figure fig07_09_heatmaps skipped: the sweep does not vary both lr and batch" in skipped
    assert "figure fig01_displacement skipped: no displacement, step in the sweep" in skipped
    assert all("\n" not in s for s in skipped)
    written, skipped = figures.write_all(table, series, swept, tmp_path)
    assert len(written) == len(figures.FIGURES) and not skipped


def test_tables_match_the_fixture_numbers(tmp_path) -> None:
    table, _, _ = fixture_sweep()
    ab = tables.ablation_table(table).set_index("Optimizer")
    sgd = table[table["optimizer"] == "sgd"]
    assert ab.loc["sgd", "d_s (mean)"] == pytest.approx(sgd["d_s"].mean())
    assert ab.loc["sgd", "λ_final (std)"] == pytest.approx(sgd["lambda_final"].std())
    assert ab.loc["sgd", "Test Acc (mean)"] == pytest.approx(100 * sgd["test_acc"].mean())
    runs = tables.table_runs(table)
    assert runs["Spect. Dim"].is_monotonic_increasing and len(runs) == 24
    assert runs["LLC (final)"].str.fullmatch(r"\d\.\d{3} ± 0\.100").all() and "Steps" in runs
    t1 = tables.table_1(table)
    assert t1.loc[0, "runs"] == 24 and t1.loc[0, "λ"] == pytest.approx(table["lambda_final"].mean())
    assert t1.loc[0, "d_s ± (95 % CI or std)"] == f"± {table['d_s'].std():.3g}"
    one = tables.table_1(
        table.assign(model=[f"m{i}" for i in range(len(table))], d_s_ci_low=0.1, d_s_ci_high=0.25)
    )
    assert (one["d_s ± (95 % CI or std)"] == "[0.1, 0.25]").all()
    with_ci = tables.table_runs(table.assign(d_s_ci_low=0.1, d_s_ci_high=0.25))
    assert (with_ci["d_s 95 % CI"] == "[0.1, 0.25]").all() and (runs["d_s 95 % CI"] == "n/a").all()
    assert tables.table_4(table).loc[0, "runs"] == 12
    with pytest.raises(tables.Missing, match="no Adam runs"):
        tables.table_4(sgd)
    md = tables.to_markdown(tables.ablation_table(table))
    assert md.splitlines()[0].startswith("| Optimizer | d_s (mean)") and len(md.splitlines()) == 4
    tex = tables.to_latex(tables.table_1(table), "Table 1")
    assert r"\toprule" in tex and r"$\lambda$" in tex and "λ" not in tex
    written, skipped = tables.write_all(sgd, tmp_path)
    assert (tmp_path / "table_1.tex").exists() and skipped == [
        "table table_4_adam skipped: no Adam runs in the sweep"
    ]


# -- the checks ------------------------------------------------------------------------------------
def test_lemma_3_4_flags_a_planted_violation() -> None:
    table, _, swept = fixture_sweep()
    table = table.assign(lambda_final=10.0, d_s=1.0)
    table.loc[5, ["d_s", "alpha", "fit.window"]] = [12.5, 0.625, "200-600 (5 points, llc)"]
    table.loc[7, "d_s"] = 10.5
    table.loc[7, "margin_lemma_3_4_low"] = -0.2  # the interval of d_s − λ_final reaches 0
    table.loc[9, "lambda_final"] = np.nan
    counts, bad = checks.lemma_3_4(table)
    assert counts == {"holds": 21, "within_error": 1, "violated": 1, "n/a": 1}
    assert bad["run_id"].tolist() == ["run05", "run07"] and bad["verdict"].tolist() == [
        "violated",
        "within_error",
    ]
    text = checks.report(
        "planted", table, pd.DataFrame(columns=["run_id", "run_name", "status", "reason"]), swept
    )
    line = next(x for x in text.splitlines() if "run05" in x)
    assert "violated" in line and "d_s = 12.5 > 10" in line and "α = 0.625" in line and "200-600" in line
    assert "Lemma 3.4      d_s ≤ λ_final: 21 holds, 1 within_error, 1 violated, 1 n/a" in text
    # A phased fit compared d_s with its phase's λ (fit_lambda_final), and so does the check.
    phased = table.assign(fit_lambda_final=np.nan)
    phased.loc[3, "fit_lambda_final"] = 0.5
    assert checks.verdicts(phased, "lambda_final")[3] == "violated"


def test_each_claim_is_reported_per_sgld_preset() -> None:
    """`-m llc=paper,calibrated`: λ differs by preset, so the checks are read preset by preset."""
    table, _, swept = fixture_sweep()
    table = table.assign(lambda_final=10.0, d_s=1.0, llc=["paper"] * 12 + ["calibrated"] * 12)
    table.loc[3, "d_s"] = 12.0  # one violation, in the paper half
    text = checks.report(
        "both", table, pd.DataFrame(columns=["run_id", "run_name", "status", "reason"]), [*swept, "llc"]
    )
    lines = text.splitlines()
    paper, calibrated = (
        lines.index("SGLD preset paper (12 runs):"),
        lines.index("SGLD preset calibrated (12 runs):"),
    )
    assert calibrated < paper  # sorted by name
    assert "  Lemma 3.4      d_s ≤ λ_final: 11 holds, 0 within_error, 1 violated, 0 n/a" in lines[paper:]
    assert (
        "  Lemma 3.4      d_s ≤ λ_final: 12 holds, 0 within_error, 0 violated, 0 n/a"
        in lines[calibrated:paper]
    )
    assert sum("Correlations" in line for line in lines) == 2


def test_corollary_3_3_uses_the_time_average() -> None:
    table, _, _ = fixture_sweep()
    table = table.assign(d_s=table["lambda_bar"] + 0.01)  # above λ̄, below λ_final
    assert checks.corollary_3_3(table)[0]["violated"] == 24
    assert checks.lemma_3_4(table)[0]["holds"] == 24


def test_correlations_give_n_and_p_and_follow_the_sweep() -> None:
    x = pd.Series([1.0, 2, 3, 4, 5])
    c = checks.correlation(x, x**3)
    assert c["n"] == 5 and c["spearman_rho"] == pytest.approx(1.0) and c["pearson_r"] < 1
    assert 0 < c["pearson_p"] < 0.05
    assert np.isnan(checks.correlation(x, pd.Series([1.0] * 5))["pearson_r"])  # constant: undefined
    table, _, swept = fixture_sweep()
    corr = checks.correlations(table, swept)
    assert {"lr", "batch"} <= set(corr["y"]) and "momentum" not in set(corr["y"])
    row = corr[(corr["group"] == "all") & (corr["x"] == "lambda_final") & (corr["y"] == "batch")].iloc[0]
    assert row["n"] == 24 and row["spearman_rho"] > 0.8  # λ was planted to grow with the batch
    assert set(corr["group"]) == {"all", "sgd", "adam"}


def test_swept_params_leave_out_values_that_vary_together() -> None:
    runs = pd.DataFrame(
        {
            "lr": ["0.1", "0.1", "0.001", "0.001"],
            "optimizer.lr": ["0.1", "0.1", "0.001", "0.001"],
            "optimizer._target_": ["torch.optim.SGD"] * 2 + ["torch.optim.Adam"] * 2,
            "optimizer.momentum": ["0.0", "0.0", None, None],  # Adam has none: not a sweep of it
            "seed": ["0", "1", "0", "1"],
            "llc.seed": ["0", "1", "0", "1"],
            "run_id": ["None"] * 4,
        }
    )
    assert aggregate.swept_params(runs, list(runs.columns)) == ["optimizer._target_", "seed"]


def test_labels_tell_momentum_and_torchvision_architectures_apart() -> None:
    runs = pd.DataFrame(
        {
            "optimizer._target_": ["torch.optim.SGD", "torch.optim.SGD", "torch.optim.Adam"],
            "optimizer.momentum": ["0.0", "0.9", None],
        }
    )
    assert aggregate.optimizer_labels(runs).tolist() == ["sgd", "sgd+momentum", "adam"]
    nets = [
        {"model._target_": "pipeline.models.TorchvisionNet", "model.arch": a} for a in ("resnet18", "vgg11")
    ]
    assert [aggregate.model_label(pd.Series(r)) for r in nets] == [
        "TorchvisionNet resnet18",
        "TorchvisionNet vgg11",
    ]


def test_the_preset_axis_is_not_the_llc_metric_and_tables_keep_presets_apart() -> None:
    """The last λ estimate is a metric named `llc`; the preset axis of the same name must win, and
    the tables must not average λ over two estimators (a sweep of `-m llc=paper,calibrated`)."""
    runs = pd.DataFrame(
        {
            "run_id": ["a", "b", "c", "d"],
            "run_name": ["a", "b", "c", "d"],
            "status": ["FINISHED"] * 4,
            "llc.preset": ["paper", "calibrated", "paper", "calibrated"],
            "seed": ["0", "0", "1", "1"],
            "llc": [0.4, 50.0, 0.5, 52.0],
        }
    )
    runs.attrs = {"params": ["llc.preset", "seed"], "metrics": ["llc"]}
    tidy = aggregate.tidy(runs, "both").table
    assert list(tidy["llc"]) == ["paper", "calibrated", "paper", "calibrated"]
    table, _, _ = fixture_sweep()
    table = table.assign(llc=["paper", "calibrated"] * 12)  # both presets for every optimizer
    table.loc[table["llc"] == "calibrated", "lambda_final"] += 50.0
    h = tables.ablation_table(table)
    assert list(h.columns[:2]) == ["SGLD preset", "Optimizer"] and len(h) == 4
    assert (h.loc[h["SGLD preset"] == "calibrated", "λ_final (mean)"] > 50).all()
    assert (h.loc[h["SGLD preset"] == "paper", "λ_final (mean)"] < 50).all()
    assert sorted(set(tables.table_1(table)["SGLD preset"])) == ["calibrated", "paper"]
    assert "SGLD preset" in tables.table_runs(table)
    assert "SGLD preset" not in tables.ablation_table(table.assign(llc="paper"))


def test_tables_name_the_data_set_both_parameter_counts_and_the_length_as_trained() -> None:
    """The `dataset` tag becomes a column; Tables 5-8 give the paper's weights-only count beside every
    trainable parameter, and a run that train.steps ended is not listed with its configured epochs."""
    runs = pd.DataFrame(
        {
            "run_id": ["a", "b"],
            "run_name": ["a", "b"],
            "status": ["FINISHED"] * 2,
            "seed": ["0", "1"],
            "train.epochs": ["250", "250"],
            "train.steps": ["600", "None"],
            "dataset": ["fashion_mnist", "synthetic (stand-in: no Fashion-MNIST under /x)"],
            "lambda_final": [20.0, 3.0],
            "d_s": [10.0, 1.0],
            "alpha": [0.25, 0.2],
            "r2": [0.99, 0.98],
            "num_params": [2314.0, 2314.0],
            "num_weights": [2280.0, 2280.0],
            "total_steps": [600.0, 4000.0],
        }
    )
    runs.attrs = {
        "params": ["seed", "train.epochs", "train.steps"],
        "metrics": ["lambda_final", "d_s", "alpha", "r2", "num_params", "num_weights", "total_steps"],
    }
    tidy = aggregate.tidy(runs, "s").table
    assert tidy["epochs"].isna().tolist() == [True, False]  # 250 epochs were not what run a trained
    rows = tables.table_runs(tidy).set_index("Data set")
    assert rows.loc["fashion_mnist", "Num Params (weights)"] == 2280
    assert rows.loc["fashion_mnist", "Trainable params"] == 2314
    assert rows.loc["fashion_mnist", "Steps"] == 600 and pd.isna(rows.loc["fashion_mnist", "Epochs"])
    assert list(tables.table_1(tidy.assign(model="MLP"))["Data set"]) == sorted(set(tidy["dataset"]))


def test_the_sweeps_page_embeds_its_figures_and_names_the_checks_counts(tmp_path) -> None:
    """`report.html` is self-contained: the figures inline as base64 PNG, the verdict counts, each
    violation, what varied (with its values) and what every run shared."""
    from analysis import page

    table, series, swept = fixture_sweep()
    runs = table.assign(**{"optimizer._target_": "torch.optim.SGD", "train.epochs": "20"})
    runs.attrs = {"params": ["optimizer._target_", "train.epochs", "lr"]}
    fig = tmp_path / "fig01_displacement.png"
    figures.FIGURES["fig01_displacement"](table, series, swept).savefig(fig)
    lemma, violations = checks.lemma_3_4(table)
    out = page.write(
        tmp_path / "report.html", "s1", runs, table, table.iloc[:0], swept, "report text", {}, None, [fig]
    )
    html = out.read_text()
    assert html.count('src="data:image/png;base64,') == 1 and 'alt="fig01_displacement"' in html
    assert (
        f"violated: <b>{lemma['violated']}</b>" in html
        and f"Lemma 3.4 violations ({len(violations)})" in html
    )
    assert "<td>train.epochs</td>" in html and "<td>20</td>" in html  # held fixed
    assert all(f"<td>{s}</td>" in html for s in swept)  # varied
    assert "report text" in html and "Replication scorecard" not in html
