"""docs/leaderboard.{md,json,csv} and every dataset's results page docs/leaderboard-<dataset>.{md,tex}
are what the committed store gives: recomputed here by the leaderboard command of
benchmarks/leaderboard.yaml (no training), and compared number for number.

While the grid is still tuning (the store has tuned parameters but no finished cell yet),
docs/leaderboard.md is the in-progress page: it names every tuned file of the store and shows
no test number."""

import csv
import io
import json
import math
import os
import re
from pathlib import Path

from recbole_recgoat.benchmark.cli import main
from recbole_recgoat.benchmark.store import Store
from recbole_recgoat.config import load_yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "benchmarks" / "leaderboard.yaml"
DOC = load_yaml(CONFIG)
STORE = Store(ROOT / DOC["store"])
DOCS = ROOT / DOC["leaderboard"]["out"] / DOC["leaderboard"]["name"]


def _comparable_md(text):
    """The Markdown without what depends on where it was written (figure links and the blank lines
    around them, the command)."""
    return [line for line in text.splitlines()
            if line.strip() and not line.startswith("![") and "recbole_recgoat.benchmark leaderboard" not in line]


def _same(a, b, path="board"):
    """a == b, except that floats agree to 1e-9 relative: scipy's p-values differ in the last digit
    between machines (CI's libm against this one's), which is not a different result."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)), f"{path}: {a!r} != {b!r}"
        both_nan = math.isnan(a) and math.isnan(b)
        assert both_nan or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15), f"{path}: {a!r} != {b!r}"
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            _same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{path}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def _csv_cells(text):
    """The CSV's cells, numbers parsed (so that they compare by _same)."""
    def cell(value):
        try:
            return float(value)
        except ValueError:
            return value
    return [[cell(v) for v in row] for row in csv.reader(io.StringIO(text))]


def _records():
    return STORE.records() if STORE.records_path.exists() else []


def _recompute(out):
    cwd = os.getcwd()
    os.chdir(ROOT)  # the yaml's store and note_file are relative to the repository root
    try:
        assert main(["leaderboard", "--config", str(CONFIG), "--out", str(out), "--no-figures"]) == 0
    finally:
        os.chdir(cwd)
    return out / DOC["leaderboard"]["name"]


def test_docs_leaderboard_is_the_committed_store(tmp_path):
    records = _records()
    md = DOCS.with_suffix(".md").read_text()
    if not records:  # still tuning: the in-progress page, without numbers it cannot have
        tuned = sorted(p.name for p in (STORE.root / "tuned").glob("*.yaml"))
        assert "in progress" in md.lower() and not DOCS.with_suffix(".json").exists()
        assert tuned and all(name in md for name in tuned)
        assert not re.search(r"\|\s*(test|Recall@20 \(test\))", md)
        return
    new = _recompute(tmp_path)
    fresh = json.loads(new.with_suffix(".json").read_text())
    committed = json.loads(DOCS.with_suffix(".json").read_text())
    for board in (fresh, committed):
        board.pop("store"), board.pop("figures")
    _same(fresh, committed)  # every mean, std, test and cost: recompute with the yaml's leaderboard command
    _same(_csv_cells(new.with_suffix(".csv").read_text()), _csv_cells(DOCS.with_suffix(".csv").read_text()))
    assert _comparable_md(new.with_suffix(".md").read_text()) == _comparable_md(md)
    for dataset in fresh["datasets"]:  # each dataset's results page and its LaTeX
        page = DOCS.with_name(f"{DOCS.name}-{dataset}")
        fresh_page = new.with_name(f"{new.name}-{dataset}")
        assert _comparable_md(fresh_page.with_suffix(".md").read_text()) == _comparable_md(page.with_suffix(".md").read_text())
        assert fresh_page.with_suffix(".tex").read_text() == page.with_suffix(".tex").read_text()
        assert len(page.with_suffix(".md").read_text().splitlines()) < 300, page
    assert committed["records"] == len(records)
    commits = committed["provenance"].get("git_commit") or committed["provenance"].get("code_fingerprint")
    assert commits and all(str(c) in md for c in commits)  # the page names the code that made its numbers


def test_the_comparison_forgives_the_last_digit_and_nothing_more():
    board = {"p_t": 0.04829161030226159, "n": 3, "tests": [{"other": "BPR", "W": None}]}
    _same(board, {"p_t": 0.0482916103022616, "n": 3, "tests": [{"other": "BPR", "W": None}]})
    for changed in ({"p_t": 0.04829161, "n": 3, "tests": [{"other": "BPR", "W": None}]},
                    {"p_t": 0.04829161030226159, "n": 4, "tests": [{"other": "BPR", "W": None}]},
                    {"p_t": 0.04829161030226159, "n": 3, "tests": [{"other": "LightGCN", "W": None}]},
                    {"p_t": 0.04829161030226159, "n": 3, "tests": []}):
        try:
            _same(board, changed)
        except AssertionError:
            continue
        raise AssertionError(f"{changed} passed as the same board")
