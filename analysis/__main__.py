"""`python -m analysis [--sweep ID ...]`: tables, checks and figures for the sweeps in a store.

For each sweep it writes under `<out>/<sweep>/`: `runs.parquet` and `runs.csv` (the tidy table,
a row per run, failed and unfinished runs included with their reason), `checks.txt` (the report),
`correlations.csv`, `violations_lemma_3_4.csv`, the tables (`*.md`, `*.tex`), for a paper experiment
the replication scorecard (`scorecard.md`, `scorecard.csv`, `figures/scorecard.png`), the figures
(`figures/*.png`, `*.pdf`) and `report.html`, the sweep on one self-contained page with every figure
embedded; then logs that folder to the sweep's analysis run in MLflow
(run name `analysis:<sweep>`, tag `analysis=true`), unless `--no-log`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from analysis import aggregate, checks, figures, page, scorecard, tables
from pipeline.errors import UserError
from pipeline.tracking import Tracker, open_existing


def analyse(tracker: Tracker, sweep: str, out: Path, log: bool = True) -> str:
    """Everything for one sweep; returns the printed report."""
    t0 = time.perf_counter()
    runs = tracker.runs_table(sweep)
    st = aggregate.tidy(runs, sweep)
    folder = out / sweep
    folder.mkdir(parents=True, exist_ok=True)
    st.table.to_parquet(folder / "runs.parquet", index=False)
    st.table.to_csv(folder / "runs.csv", index=False)
    done = st.finished()
    text = checks.report(sweep, done, st.not_finished(), st.swept)
    checks.correlations(done, st.swept).to_csv(folder / "correlations.csv", index=False)
    checks.lemma_3_4(done)[1].to_csv(folder / "violations_lemma_3_4.csv", index=False)
    checks.corollary_3_3(done)[1].to_csv(folder / "violations_corollary_3_3.csv", index=False)
    written_tables, skipped = tables.write_all(done, folder)
    series = aggregate.run_series(tracker, done["run_id"].tolist())
    written_figs, skipped_figs = figures.write_all(done, series, st.swept, folder / "figures")
    lines = [text, ""]
    for name, md in written_tables.items():
        lines += [f"{name}:", md]
    card, differ = scorecard.scorecard(done)
    card_md = None
    if len(card):  # a paper experiment: ours beside the paper's numbers
        card.to_csv(folder / "scorecard.csv", index=False)
        card_md = scorecard.markdown(card, differ)
        (folder / "scorecard.md").write_text(card_md)
        (folder / "figures").mkdir(parents=True, exist_ok=True)
        written_figs_card = scorecard.figure(card, folder / "figures" / "scorecard")
        lines += ["scorecard:", card_md, f"scorecard figure: {written_figs_card[0]}"]
    lines += [f"figures written ({len(written_figs)}): {folder / 'figures'}", *skipped, *skipped_figs]
    report = "\n".join(lines)
    (folder / "checks.txt").write_text(report + "\n")
    pngs = [folder / "figures" / f"{n}.png" for n in ([*(["scorecard"] if card_md else []), *written_figs])]
    html = page.write(
        folder / "report.html",
        sweep,
        runs,
        done,
        st.not_finished(),
        st.swept,
        text,
        written_tables,
        card_md,
        pngs,
    )
    report += f"\nreport page: {html}"
    if log:
        run_id = tracker.log_analysis(sweep, folder)
        report += f"\nlogged to MLflow run {run_id} (analysis:{sweep})"
    return report + f"\nanalysis of {sweep}: {time.perf_counter() - t0:.1f} s"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis", description=__doc__.split("\n")[0])
    p.add_argument("--uri", help="tracking store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    p.add_argument("--experiment", default="almost-bayesian", help="MLflow experiment (default: %(default)s)")
    p.add_argument("--sweep", action="append", help="sweep tag to analyse (repeatable; default: every sweep)")
    p.add_argument("--out", type=Path, default=Path("results"), help="results folder (default: %(default)s)")
    p.add_argument("--no-log", action="store_true", help="do not log the results back to MLflow")
    args = p.parse_args(argv)
    try:
        tracker = open_existing(args.uri, args.experiment)
        known = aggregate.sweeps(tracker)
        chosen = args.sweep or known
        unknown = [s for s in chosen if s not in known]
        if unknown:
            raise UserError(f"no sweep {unknown} in experiment '{args.experiment}': choose from {known}")
        if not chosen:
            raise UserError(f"experiment '{args.experiment}' has no runs yet: run python launch.py first")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for sweep in chosen:
        print(analyse(tracker, sweep, args.out, log=not args.no_log), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
