"""The paper's figures from a sweep table and the runs' curves (seaborn; PNG and PDF), one module per
family of figures.

One function per figure: `fn(table, series, swept) -> Figure`, where `table` holds the finished
runs, `series` their curves (`aggregate.RunSeries`) and `swept` the config values the sweep
varies. A function raises `Missing` when the sweep lacks its data; `write_all` turns that into a
one-line skip. "First version" names figures of the paper's first version.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from analysis.aggregate import RunSeries  # noqa: E402
from analysis.figures.bounds import lambda_bar_vs_spectral_dimension, lambda_vs_spectral_dimension  # noqa: E402
from analysis.figures.curves import (  # noqa: E402
    displacement_curves,
    layer_displacement,
    llc_over_training,
    predicted_displacement,
)
from analysis.figures.histograms import diffusion_exponent_histogram, r2_histogram  # noqa: E402
from analysis.figures.relations import (  # noqa: E402
    displacement_vs_learning_rate,
    generalization,
    heatmaps,
    hyperparameter_correlations,
    test_accuracy,
)
from analysis.figures.style import about  # noqa: E402
from analysis.tables import Missing  # noqa: E402

FIGURES: dict[str, Callable[[pd.DataFrame, RunSeries, list[str]], Figure]] = {
    "fig01_displacement": displacement_curves,
    "fig02a_lambda_vs_ds": lambda_vs_spectral_dimension,
    "fig02b_displacement_vs_lr": displacement_vs_learning_rate,
    "fig07_09_heatmaps": heatmaps,
    "fig08_10_11_hyperparameters": hyperparameter_correlations,
    "fig12_13_test_accuracy": test_accuracy,
    "fig14_15_predicted_displacement": predicted_displacement,
    "fig18_r2_histogram": r2_histogram,
    "fig21_lambda_bar_vs_ds": lambda_bar_vs_spectral_dimension,
    "fig000_04_diffusion_exponent": diffusion_exponent_histogram,
    "fig000_05_generalization": generalization,
    "fig000_08_llc_over_training": llc_over_training,
    "fig000_12_layer_displacement": layer_displacement,
}


COLUMN_WIDTHS = {"1col": 3.5, "2col": 7.0}  # inches: one and two columns of a two-column paper


def write_all(
    table: pd.DataFrame, series: RunSeries, swept: list[str], folder: Path
) -> tuple[list[str], list[str]]:
    """Every figure the sweep has data for, as <name>.png and <name>.pdf, and vector copies sized
    for one and for two columns (<name>_1col.pdf, <name>_2col.pdf), each captioned with the runs'
    data set, model and λ preset; returns the names written and one line per figure skipped."""
    folder.mkdir(parents=True, exist_ok=True)
    sns.set_theme(style="whitegrid", context="notebook")
    written, skipped = [], []
    for name, fn in FIGURES.items():
        if table.empty:
            skipped.append(f"figure {name} skipped: no finished runs")
            continue
        try:
            fig = fn(table, series, swept)
        except Missing as e:
            skipped.append(f"figure {name} skipped: {e}")
            continue
        # The caption every figure carries: what the runs trained on, the model, the λ preset.
        fig.text(0.01, 0.0, about(table), ha="left", va="top", fontsize=8, color="0.3")
        for ext in ("png", "pdf"):
            fig.savefig(folder / f"{name}.{ext}", dpi=150, bbox_inches="tight")
        width, height = fig.get_size_inches()
        for column, inches in COLUMN_WIDTHS.items():  # vector copies at a journal's column widths
            fig.set_size_inches(inches, inches * height / width)
            fig.savefig(folder / f"{name}_{column}.pdf", bbox_inches="tight")
        plt.close(fig)
        written.append(name)
    return written, skipped
