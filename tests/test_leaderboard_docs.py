"""docs/leaderboard.{md,json,csv} are what the committed store gives: recomputed here by the
leaderboard command of benchmarks/leaderboard.yaml (no training), and compared number for number.

While the grid is still tuning (the store has tuned parameters but no finished cell yet),
docs/leaderboard.md is the in-progress page: it names every tuned file of the store and shows
no test number."""

import json
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
    assert fresh == committed  # every mean, std, test and cost: recompute with the yaml's leaderboard command
    assert new.with_suffix(".csv").read_text() == DOCS.with_suffix(".csv").read_text()
    assert _comparable_md(new.with_suffix(".md").read_text()) == _comparable_md(md)
    assert committed["records"] == len(records)
    commits = committed["provenance"].get("git_commit") or committed["provenance"].get("code_fingerprint")
    assert commits and all(str(c) in md for c in commits)  # the page names the code that made its numbers
