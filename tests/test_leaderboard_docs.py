"""docs/leaderboard.{md,json,csv} are what the committed store gives: recomputed here by the
leaderboard command of benchmarks/leaderboard.yaml (no training), and compared number for number."""

import json
from pathlib import Path

import pytest

from recbole_recgoat.benchmark.cli import main
from recbole_recgoat.benchmark.store import Store
from recbole_recgoat.config import load_yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "benchmarks" / "leaderboard.yaml"


def _comparable_md(text):
    """The Markdown without what depends on where it was written (figure links, the command)."""
    return [line for line in text.splitlines() if not line.startswith("![") and "recbole_recgoat.benchmark leaderboard" not in line]


@pytest.fixture(scope="module")
def recomputed(tmp_path_factory):
    out = tmp_path_factory.mktemp("board")
    doc = load_yaml(CONFIG)
    import os

    cwd = os.getcwd()
    os.chdir(ROOT)  # the yaml's store and note_file are relative to the repository root
    try:
        assert main(["leaderboard", "--config", str(CONFIG), "--out", str(out), "--no-figures"]) == 0
    finally:
        os.chdir(cwd)
    return out / f"{doc['leaderboard']['name']}", ROOT / doc["leaderboard"]["out"] / doc["leaderboard"]["name"], doc


def test_docs_leaderboard_is_the_committed_store(recomputed):
    new, docs, doc = recomputed
    fresh = json.loads(new.with_suffix(".json").read_text())
    committed = json.loads(docs.with_suffix(".json").read_text())
    for board in (fresh, committed):
        board.pop("store"), board.pop("figures")
    assert fresh == committed  # every mean, std, test and cost: recompute with the yaml's leaderboard command
    assert new.with_suffix(".csv").read_text() == docs.with_suffix(".csv").read_text()
    assert _comparable_md(new.with_suffix(".md").read_text()) == _comparable_md(docs.with_suffix(".md").read_text())
    n = len(Store(ROOT / doc["store"]).records())
    assert committed["records"] == n > 0


def test_docs_leaderboard_names_its_commit(recomputed):
    _, docs, _ = recomputed
    board = json.loads(docs.with_suffix(".json").read_text())
    commits = board["provenance"].get("git_commit") or board["provenance"].get("code_fingerprint")
    assert commits, "records carry no code identity"
    md = docs.with_suffix(".md").read_text()
    assert all(str(c) in md for c in commits)
