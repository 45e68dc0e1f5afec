"""The replication scorecard: the paper's numbers as typed in, and ours set beside them per row and
quantity, with the settings that differ."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import scorecard
from tests.helpers.config import ROOT, compose_cfg

ROWS = {"table_1": 6, "table_2": 3, "table_4": 3, "table_5": 4, "table_6": 5, "table_7": 17, "table_8": 50,
        "appendix_h": 2}  # fmt: skip


@pytest.mark.parametrize("table, rows", ROWS.items())
def test_the_reference_tables_hold_the_papers_rows_each_citing_its_table(table: str, rows: int) -> None:
    ref = scorecard.reference(table)
    assert len(ref) == rows
    assert set(ref["source"]) == {scorecard.TITLES[table]}
    assert ref.select_dtypes("number").notna().all().all()


def test_spot_values_of_the_reference_tables() -> None:
    """A few numbers read off the paper (later version) by eye, against the files."""
    t8 = scorecard.reference("table_8")
    assert (
        (t8["num_params"] == 110912).all() and t8["d_s"].iloc[0] == -0.327 and t8["lambda"].iloc[-1] == 23.590
    )
    t1 = scorecard.reference("table_1").set_index("model")
    assert t1.loc["TinyLlama-15M", "lambda"] == 76.1 and t1.loc["VGG16", "d_s"] == 0.14
    t6 = scorecard.reference("table_6").set_index("channels")
    assert t6.loc["16, 32, 64, 128", "lambda"] == 37.731 and t6.loc["16, 32, 64, 128", "lambda_pm"] == 8.332
    h = scorecard.reference("appendix_h").set_index("optimizer")
    assert h.loc["sgd", "d_s_mean"] == 7.8165 and h.loc["adam", "test_acc_mean"] == 90.4297


def test_every_paper_experiment_names_the_tables_it_reproduces() -> None:
    for path in sorted((ROOT / "conf" / "experiment").glob("*.yaml")):
        cfg = compose_cfg([f"+experiment={path.stem}"])
        # The CPU ablation on digits and the first version's modular division are no table of the paper.
        if path.stem != "ablation_digits" and not path.stem.startswith("modular_division"):
            assert scorecard.reproduced(pd.DataFrame({"reproduces": [str(list(cfg.reproduces))]})), path.stem


def runs(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {"run_id": [f"r{i}" for i in range(n)], "llc": ["paper"] * n, "device": ["cpu"] * n}
    return pd.DataFrame(base | columns)


def test_table_8_all_runs_against_all_rows_in_units_of_the_papers_spread() -> None:
    done = runs(
        reproduces=["['table_8']"] * 3,
        lambda_final=[20.0, 21.0, 22.0],
        d_s=[24.0, 25.0, 26.0],
        dataset=["fashion_mnist"] * 3,
        epochs=[100.0] * 3,
        total_steps=[400.0] * 3,
        llc=["calibrated"] * 3,
    )
    card, differ = scorecard.scorecard(done)
    ref = scorecard.reference("table_8")
    row = card.set_index("quantity").loc["λ_final"]
    assert row["paper"] == pytest.approx(ref["lambda"].mean()) and row["paper n"] == 50
    assert row["paper sd"] == pytest.approx(ref["lambda"].std(ddof=1))
    assert row["ours"] == 21.0 and row["ours sd"] == 1.0 and row["ours n"] == 3
    assert row["in spreads"] == pytest.approx((21.0 - ref["lambda"].mean()) / ref["lambda"].std(ddof=1))
    what = differ["Table 8"]
    assert what[0].startswith("data: ours fashion_mnist; the paper's MNIST")
    assert "λ preset: ours calibrated" in what[1]
    assert "ours 100 epochs (400 steps)" in what[2] and "2000 steps of batch 256 on 5000 images" in what[2]
    assert "runs: ours 3; the paper's 50" in what[3] and what[4].startswith("hardware: ours cpu")


def test_rows_matched_by_architecture_model_name_and_optimizer() -> None:
    t7 = runs(reproduces=["['table_7']"] * 3, **{"model.hidden": ["[128, 64]", "[128, 64]", "[256, 128]"]},
              lambda_final=[20.0, 22.0, 25.0], d_s=[13.0, 15.0, 14.0])  # fmt: skip
    card, _ = scorecard.scorecard(t7)
    lam = card[card["quantity"] == "λ_final"].set_index("row")
    assert lam.loc["MLP 784, 128, 64", "paper"] == 20.324 and lam.loc["MLP 784, 128, 64", "ours"] == 21.0
    assert lam.loc["MLP 784, 256, 128", "ours n"] == 1 and np.isnan(
        lam.loc["MLP 784, 256, 128", "in spreads"]
    )
    assert lam.loc["MLP 784, 128, 64", "spread"] == "our sd"  # one paper run: the spread is ours
    t1 = runs(reproduces=["['table_1']"], model=["TorchvisionNet resnet18"], **{"model.arch": ["resnet18"]},
              lambda_final=[70.0], d_s=[0.5], alpha=[0.004], r2=[0.99])  # fmt: skip
    card, _ = scorecard.scorecard(t1)
    assert set(card["row"]) == {"ResNet18"} and len(card) == 4  # not ResNet34 nor the language models
    h = runs(reproduces=["['appendix_h']"] * 2, optimizer=["sgd", "adam"], d_s=[7.0, 0.5],
             lambda_final=[12.0, 3.0], test_acc=[0.94, 0.90])  # fmt: skip
    card, _ = scorecard.scorecard(h)
    acc = card[card["quantity"] == "test acc (%)"].set_index("row")
    assert acc.loc["sgd", "ours"] == pytest.approx(94.0) and acc.loc["sgd", "paper"] == 94.0592
    assert card.set_index(["row", "quantity"]).loc[("adam", "d_s"), "paper sd"] == 0.9068


def test_no_scorecard_for_runs_of_no_paper_table() -> None:
    card, differ = scorecard.scorecard(runs(reproduces=["None"], lambda_final=[1.0]))
    assert card.empty and differ == {}
