"""The committed LaTeX table of Last.fm-2K (docs/leaderboard-lastfm-2k.tex, recomputed from the store
by tests/test_leaderboard_docs.py): its bold, underline and significance marks are where the numbers
of docs/leaderboard.json put them, and the file compiles where a LaTeX engine is installed."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from recbole_recgoat.benchmark.leaderboard.latex import render_latex
from recbole_recgoat.benchmark.leaderboard.text import pretty

ROOT = Path(__file__).resolve().parents[1]
TEX = ROOT / "docs" / "leaderboard-lastfm-2k.tex"
BOARD = ROOT / "docs" / "leaderboard.json"
CELL = re.compile(r"^(?P<bold>\{\\boldmath)?(?P<under>\\underline\{)?\$(?P<mean>[0-9.]+) \\pm (?P<std>[0-9.]+)\$\}?"
                  r"(?P<mark>\$\^\{\*\}\$)?$")


def parse_tables(text):
    """``[(header, {model: [cells]}, improvement cells)]`` of every tabular in ``text``."""
    out = []
    for body in re.findall(r"\\begin\{tabular\}\{[^}]*\}\n(.*?)\\end\{tabular\}", text, re.S):
        lines = [ln.strip() for ln in body.splitlines()]
        assert lines[0] == r"\toprule" and lines[2] == r"\midrule" and lines[-1] == r"\bottomrule"  # booktabs
        rows = [[c.strip() for c in ln.removesuffix(r"\\").split(" & ")] for ln in lines if ln.endswith(r"\\")]
        header, body_rows = rows[0], rows[1:]
        improvement = body_rows.pop()[1:] if body_rows and body_rows[-1][0] == "Improv." else None
        out.append((header[1:], {r[0]: r[1:] for r in body_rows}, improvement))
    return out


@pytest.mark.skipif(not TEX.exists(), reason="no committed LaTeX table")
def test_bold_underline_and_marks_follow_the_numbers():
    board = json.loads(BOARD.read_text())
    ds = board["datasets"]["lastfm-2k"]
    tables = parse_tables(TEX.read_text())
    assert len(tables) == len(ds["tables"])
    for (header, cells, improvement), table in zip(tables, ds["tables"]):
        cols = [m for m in ds["metrics"] if pretty(m) in header]
        assert [pretty(m) for m in cols] == header
        printed_names = {r["name"].replace("_", r"\_") + (f" ({r['partial']} seeds)" if r.get("partial") else ""): r["name"]
                         for r in table["rows"]}  # a partial row says how many seeds it has
        assert list(cells) == list(printed_names) + table.get("pending", [])
        partial = {r["name"] for r in table["rows"] if r.get("partial")}
        for j, metric in enumerate(cols):
            parsed = {}
            for name, row in cells.items():
                if name in table.get("pending", []):  # configured, not yet run: no number, no mark
                    assert row[j] == "pending"
                    continue
                m = CELL.match(row[j])
                assert m, row[j]
                parsed[printed_names[name]] = m
            means = {n: float(m["mean"]) for n, m in parsed.items()}
            ranked = sorted((n for n in means if n not in partial), key=lambda n: -means[n])  # partial rows: no bold
            bold = [n for n, m in parsed.items() if m["bold"]]
            under = [n for n, m in parsed.items() if m["under"]]
            assert bold == ranked[:1] and under == ranked[1:2], (table["title"], metric)
            if len(ranked) < 2:  # one complete row, the others pending: no second, no test, no improvement row
                assert improvement is None and not any(m["mark"] for m in parsed.values())
                continue
            assert means[ranked[0]] > means[ranked[1]]
            by_name = {r["name"]: r for r in table["rows"]}
            for n, v in means.items():  # the printed values are the board's, rounded
                assert f"{by_name[n]['test'][metric]['mean']:.4f}" == parsed[n]["mean"]
                assert f"{by_name[n]['test'][metric]['std']:.4f}" == parsed[n]["std"]
            p = table["column_tests"][metric]["p_t"]
            assert bool(parsed[ranked[0]]["mark"]) == (p is not None and p < 0.05), (table["title"], metric, p)
            assert not any(m["mark"] for n, m in parsed.items() if n != ranked[0])
            expected = 100 * (means[ranked[0]] - means[ranked[1]]) / means[ranked[1]]
            printed = improvement[j].strip("$").replace(r"\%", "")
            assert printed == f"{table['improvement_pct'][metric]:+.2f}"
            assert float(printed) == pytest.approx(expected, abs=0.1)  # of the printed (rounded) means


def test_latex_escapes_and_pending_rows():
    row = {"name": "A_b&c", "n": 2, "test": {"recall@20": {"mean": 0.5, "std": 0.01}}}
    other = {"name": "B", "n": 2, "test": {"recall@20": {"mean": 0.25, "std": 0.02}}}
    table = {"title": "T%1", "rows": [row, other], "pending": ["New_model"], "best": {"recall@20": "A_b&c"},
             "runner_up": {"recall@20": "B"}, "improvement_pct": {"recall@20": 100.0},
             "column_tests": {"recall@20": {"p_t": 0.01}}}
    board = {"datasets": {"d_1": {"metrics": ["recall@20"], "tables": [table]}}}
    text = render_latex(board, "d_1", columns=["recall@20"])
    assert r"A\_b\&c & {\boldmath$0.5000 \pm 0.0100$}$^{*}$ \\" in text
    assert r"B & \underline{$0.2500 \pm 0.0200$} \\" in text
    assert r"New\_model & pending \\" in text and r"Improv. & $+100.00\%$ \\" in text
    assert r"d\_1, T\%1:" in text


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no LaTeX engine (apt-get install texlive-latex-base)")
@pytest.mark.skipif(not TEX.exists(), reason="no committed LaTeX table")
def test_committed_latex_compiles(tmp_path):
    shutil.copy(TEX, tmp_path / "t.tex")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "t.pdf").stat().st_size > 1000
