"""docs/recgoat-findings.md: its tables are what ``benchmarks/recgoat_findings.py`` prints from the
committed store, number for number (the prose above the tables quotes them by hand; the tables are never edited)."""

import contextlib
import io
import re
from pathlib import Path

import pytest
from script_support import load_benchmark_script

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "recgoat-findings.md"
BEGIN, END = "<!-- begin: python benchmarks/recgoat_findings.py", "<!-- end: recgoat_findings.py -->"


def _without_figures(text):
    """``text`` without its figure links and the blank line each brings (the test draws no figures)."""
    return re.sub(r"\n\n!\[[^\n]*", "", text).strip()


def generated_block(text):
    """The part of the page between the markers."""
    start, end = text.index(BEGIN), text.index(END)
    return _without_figures(text[text.index("\n", start) + 1 : end])


def printed(store):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert load_benchmark_script("recgoat_findings").main(["--store", str(store)]) == 0
    return _without_figures(out.getvalue())


@pytest.mark.skipif(not (ROOT / "benchmarks" / "results" / "records.jsonl").exists(), reason="no committed store")
def test_findings_tables_are_the_scripts_output_on_the_committed_store():
    assert generated_block(DOC.read_text()) == printed(ROOT / "benchmarks" / "results")



def test_a_baseline_with_seeds_still_running_is_named_not_ranked():
    """RecGOAT's rank among the baselines counts rows with all seeds only: a baseline with a higher
    mean over fewer seeds is listed under the table, as the leaderboard lists partial rows."""
    def recs(name, values):
        return [{"variant": name, "model": name, "seed": 999 + i, "test_result": {"recall@20": v, "ndcg@20": v}}
                for i, v in enumerate(values)]

    rows = {"RecGOAT": recs("RecGOAT", [0.40, 0.41, 0.42]), "BPR": recs("BPR", [0.30, 0.31, 0.33]),
            "MGCN": recs("MGCN", [0.50, 0.52])}
    table = load_benchmark_script("recgoat_findings").versus_baselines(rows)
    assert table[2].startswith("| recall@20 | 0.4100 | BPR |") and table[2].endswith("| 1 of 2 |")
    assert table[-1] == "Not ranked yet, seeds still running: MGCN (2/3)."
    rows["MGCN"] += recs("MGCN", [0.0, 0.0, 0.51])[2:]
    table = load_benchmark_script("recgoat_findings").versus_baselines(rows)
    assert table[2].startswith("| recall@20 | 0.4100 | MGCN |") and table[2].endswith("| 2 of 3 |")
