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

