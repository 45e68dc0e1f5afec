"""One self-contained HTML page per sweep (`report.html`): what the sweep varied and held fixed, the
paper's two checks with their counts and every violation, λ's diagnostics per run, the tables, the
replication scorecard and every figure, embedded (base64 PNG), so the file is the whole report: it
opens from disk, from the MLflow UI (the sweep's analysis run), or attached to an e-mail."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from analysis import checks
from pipeline.tracking import names

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:12.5px}th,td{border:1px solid #ddd;padding:3px 7px}
th{background:#f4f4f4;text-align:left}td{text-align:right}td:first-child{text-align:left}
.counts span{display:inline-block;margin-right:1.2em}.holds{color:#1a7f37}.violated{color:#c62828}
.within_error{color:#9a6700}figure{display:inline-block;margin:.5em 1em 1em 0;vertical-align:top}
figure img{max-width:520px;border:1px solid #eee}figcaption{font-size:12px;color:#555}
.wide{overflow-x:auto}pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:12px}
"""
FIXED_SHOWN = 40  # the held-fixed settings listed before the rest fold away


def _table(df: pd.DataFrame) -> str:
    table = df.to_html(index=False, na_rep="n/a", float_format=lambda v: f"{v:.4g}", border=0, escape=True)
    return f'<div class="wide">{table}</div>'  # a wide table scrolls, the page does not


def _markdown_table(md: str) -> str:
    """A GitHub Markdown table (what `tables.to_markdown` writes) as HTML."""
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in md.splitlines()
        if line.startswith("|")
    ]
    if len(rows) < 2:
        return f"<pre>{html.escape(md)}</pre>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[2:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (
        f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(path.stem)} (vector: {html.escape(path.stem)}.pdf)</figcaption></figure>"
    )


def varied_and_fixed(
    runs: pd.DataFrame, table: pd.DataFrame, swept: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What the sweep varied (the tidy table's short names and their values) and the settings every
    run shared (the params with one value; runtime keys left out)."""
    from analysis.aggregate import ignored

    params = [p for p in runs.attrs.get("params", []) if p in runs and not ignored(p)]
    shared = [p for p in sorted(params) if runs[p].dropna().astype(str).nunique() == 1]
    fixed = pd.DataFrame([(p, str(runs[p].dropna().iloc[0])) for p in shared], columns=["setting", "value"])
    values = [", ".join(sorted({str(v) for v in table[s].dropna()})) if s in table else "" for s in swept]
    return pd.DataFrame({"setting": list(swept), "values": values}), fixed


def diagnostics(done: pd.DataFrame) -> pd.DataFrame:
    """λ's diagnostics per run: the flag counts the llc stage tagged, with λ_final and its errors."""
    cols = {
        "run_name": "run",
        names.LLC_ESTIMATES: "estimates",
        names.LLC_NEGATIVE: "negative",
        names.LLC_NONSTATIONARY: "non-stationary",
        names.LLC_RHAT_HIGH: "R-hat high",
        names.LLC_ESS_LOW: "ESS low",
        names.LLC_FAILED: "failed",
        names.LLC_RHAT_MEDIAN: "median R-hat",
        names.LLC_ESS_MEDIAN: "median bulk ESS",
        "lambda_final": "λ_final",
        "lambda_final_mcse": "± MCSE",
        "lambda_final_std": "± sd of last",
    }
    present = [c for c in cols if c in done]
    return done[present].rename(columns=cols)


def _counts(summary: dict[str, int], label: str) -> str:
    spans = "".join(f'<span class="{k}">{html.escape(k)}: <b>{v}</b></span>' for k, v in summary.items())
    return f'<p class="counts"><b>{html.escape(label)}</b> {spans}</p>'


def write(
    path: Path,
    sweep: str,
    runs: pd.DataFrame,
    done: pd.DataFrame,
    not_finished: pd.DataFrame,
    swept: list[str],
    report: str,
    written_tables: dict[str, str],
    scorecard_md: str | None,
    figures: list[Path],
) -> Path:
    """The sweep's page, every figure in `figures` embedded."""
    lemma, lemma_v = checks.lemma_3_4(done)
    cor, cor_v = checks.corollary_3_3(done)
    varied, fixed = varied_and_fixed(runs, done, swept)
    data = sorted({str(v) for v in done.get("dataset", pd.Series(dtype=object)).dropna()}) or ["n/a"]
    presets = (
        sorted({str(v) for v in done.get("llc", pd.Series(dtype=object)).dropna()}) if "llc" in done else []
    )
    models = sorted({str(v) for v in done.get("model", pd.Series(dtype=object)).dropna()})
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(sweep)}: almost-bayesian</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Sweep {html.escape(sweep)}</h1>",
        f"<p>{len(done)} finished runs, {len(not_finished)} not finished"
        f" · data: {html.escape(', '.join(data))}"
        f" · model: {html.escape('; '.join(models) or 'n/a')}"
        + (f" · SGLD preset: {html.escape(', '.join(presets))}" if presets else "")
        + "</p>",
        "<h2>What the sweep varied, and what it held fixed</h2>",
        _table(varied) if len(varied) else "<p>nothing varied: a single configuration</p>",
        f"<details><summary>{len(fixed)} settings every run shared</summary>{_table(fixed)}</details>",
        "<h2>The paper's checks</h2>",
        _counts(lemma, "Lemma 3.4 (d_s ≤ λ_final)"),
        _counts(cor, "Corollary 3.3 (d_s ≤ λ̄)"),
    ]
    for title, v in (("Lemma 3.4 violations", lemma_v), ("Corollary 3.3 violations", cor_v)):
        parts += [f"<h3>{title} ({len(v)})</h3>", _table(v) if len(v) else "<p>none</p>"]
    if len(not_finished):
        parts += ["<h3>Runs not finished</h3>", _table(not_finished)]
    parts += ["<h2>λ's diagnostics per run</h2>", _table(diagnostics(done))]
    if scorecard_md:
        head, _, rest = scorecard_md.partition("\n\n")
        table_md, _, differ = rest.partition("\n\n")
        parts += ["<h2>Replication scorecard</h2>", f"<p>{html.escape(head)}</p>", _markdown_table(table_md)]
        parts += [f"<pre>{html.escape(differ.strip())}</pre>"] if differ.strip() else []
    parts += ["<h2>Tables</h2>"]
    for name, md in written_tables.items():
        parts += [f"<h3>{html.escape(name)}</h3>", _markdown_table(md)]
    parts += ["<h2>Figures</h2>", *(_figure(f) for f in figures if f.suffix == ".png" and f.is_file())]
    parts += ["<h2>The text report</h2>", f"<pre>{html.escape(report)}</pre>", "</body></html>"]
    path.write_text("\n".join(parts))
    return path
