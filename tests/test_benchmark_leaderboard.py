"""Leaderboard numbers equal a recomputation from the raw records; output regenerates from the store."""

import csv
import json
import math
import os
import shutil
import statistics
from collections import defaultdict

import numpy as np
import pytest
import yaml
from scipy import stats as sps

from recbole_recgoat.benchmark.cli import main
from recbole_recgoat.benchmark.leaderboard import build
from recbole_recgoat.benchmark.leaderboard import figures
from recbole_recgoat.benchmark.store import Store

SET = ["--set", "epochs=1", "--set", "train_batch_size=4096", "--set", "state=WARNING"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A finished benchmark: Pop, BPR and a variant of BPR, 2 seeds, one epoch each."""
    root = tmp_path_factory.mktemp("bench")
    old = os.getcwd()
    os.chdir(root)
    try:
        (root / "variants.yaml").write_text("variants:\n  BPR-wd: {model: BPR, weight_decay: 1.0e-03}\n")
        rc = main(["run", "--models", "Pop", "BPR", "--variants", "variants.yaml", "--seeds", "2",
                   "--store", "store", "--jobs", "1", *SET])
        assert rc == 0
    finally:
        os.chdir(old)
    return root


def raw_records(path):
    out = []
    for line in path.read_bytes().split(b"\n"):
        if line.strip():
            out.append(json.loads(line))
    return out


def test_leaderboard_equals_recomputation(bench, tmp_path):
    paths = build(bench / "store", tmp_path / "lb")
    board = json.loads(paths["json"].read_text())
    recs = raw_records(bench / "store" / "records.jsonl")
    assert len(recs) == 6
    by_row = defaultdict(list)
    for r in recs:
        by_row[r["variant"]].append(r)
    ds = board["datasets"]["lastfm-2k"]
    # which software produced the numbers, from the records themselves
    assert board["provenance"]["torch"] == sorted({r["versions"]["torch"] for r in recs})
    assert board["provenance"]["code_fingerprint"] == [recs[0]["versions"]["code_fingerprint"]]
    assert f"torch {recs[0]['versions']['torch']}" in paths["md"].read_text()
    assert [t["title"] for t in ds["tables"]] == ["Overall", "Ablation of BPR"]
    overall = ds["tables"][0]
    assert {r["name"] for r in overall["rows"]} == {"Pop", "BPR"}
    assert [r["name"] for r in ds["tables"][1]["rows"]] == sorted(
        ["BPR", "BPR-wd"], key=lambda n: -statistics.mean(x["test_result"]["recall@20"] for x in by_row[n]))

    with open(paths["csv"], newline="") as f:
        csv_rows = {(row["table"], row["name"]): row for row in csv.DictReader(f)}
    metrics = ds["metrics"]
    assert len(metrics) == 16 and "recall@20" in metrics and "map@50" in metrics
    for table in ds["tables"]:
        means = {}
        for row in table["rows"]:
            raw = by_row[row["name"]]
            assert row["seeds"] == sorted(r["seed"] for r in raw) == [999, 1000]
            for m in metrics:
                values = [r["test_result"][m] for r in sorted(raw, key=lambda r: r["seed"])]
                mean, std = statistics.mean(values), statistics.stdev(values)
                assert row["test"][m]["mean"] == pytest.approx(mean, abs=1e-15)
                assert row["test"][m]["std"] == pytest.approx(std, abs=1e-15)
                c = csv_rows[(table["title"], row["name"])]
                assert float(c[f"test_{m}_mean"]) == pytest.approx(mean, abs=1e-15)
                assert float(c[f"test_{m}_std"]) == pytest.approx(std, abs=1e-15)
                means.setdefault(m, []).append((mean, row["name"]))
            assert row["cost"]["train_time_s"]["mean"] == pytest.approx(statistics.mean(r["train_time_s"] for r in raw))
        for m, scored in means.items():
            scored.sort(key=lambda x: -x[0])
            assert table["best"][m] == scored[0][1]
            assert table["improvement_pct"][m] == pytest.approx(100 * (scored[0][0] - scored[1][0]) / scored[1][0])
        # Paired t across seeds, by hand.
        best = table["best"]["recall@20"]
        for t in table["seed_tests"]:
            a = [r["test_result"]["recall@20"] for r in sorted(by_row[best], key=lambda r: r["seed"])]
            b = [r["test_result"]["recall@20"] for r in sorted(by_row[t["other"]], key=lambda r: r["seed"])]
            d = [x - y for x, y in zip(a, b)]
            if statistics.stdev(d) > 0:
                assert t["t"] == pytest.approx(statistics.mean(d) / (statistics.stdev(d) / math.sqrt(len(d))))
    md = paths["pages"]["lastfm-2k"].read_text()  # the dataset's results page
    best = overall["best"]["recall@20"]
    row = next(r for r in overall["rows"] if r["name"] == best)
    assert f"**{row['test']['recall@20']['mean']:.4f} ± {row['test']['recall@20']['std']:.4f}**" in md
    assert "| users | items |" in md and "\nBPR-wd: {variant_of: BPR, overrides: {weight_decay: 0.001}" in md  # one line
    settings = yaml.safe_load(md.split("```yaml\n")[1].split("```")[0])  # the settings block is yaml
    assert settings["BPR-wd"]["variant_of"] == "BPR" and settings["BPR-wd"]["overrides"] == {"weight_decay": 0.001}
    assert "<details>" not in md and "eval_batch_size" not in md  # the full configs: the JSON export only
    assert row["config"]["eval_batch_size"] and "eval_batch_size" in paths["json"].read_text()
    assert "Masking at test time: a test user's training and validation items are masked" in md
    assert "(leaderboard-lastfm-2k.md)" in paths["md"].read_text()  # the overview links the page
    assert all(p.exists() and p.stat().st_size > 1000 for p in paths["figures"]) and len(paths["figures"]) == 5
    assert any(p.name == "average_rank.png" for p in paths["figures"])


def test_per_user_values(bench):
    store = Store(bench / "store")
    recs = store.records()
    for r in recs:
        pu = store.load_per_user(r)
        assert pu is not None and len(pu["user"]) == r["dataset_stats"]["test_users"] == 1858
        assert len(set(pu["user"].tolist())) == len(pu["user"])
        for m, v in r["test_result"].items():
            assert abs(float(pu[m].mean()) - v) <= 0.5e-4 + 1e-9  # RecBole's own average, rounded to 4 places
    # The per-user test of the leaderboard, recomputed with scipy from the stored arrays.
    from recbole_recgoat.benchmark.leaderboard import compute

    board = compute(store)
    table = board["datasets"]["lastfm-2k"]["tables"][0]
    best = table["best"]["recall@20"]
    test = table["per_user_tests"]["recall@20"][0]
    rows = {n: sorted((r for r in recs if r["variant"] == n), key=lambda r: r["seed"]) for n in (best, test["other"])}

    def avg(name):
        per = [dict(zip(*(lambda p: (p["user"].tolist(), p["recall@20"].tolist()))(store.load_per_user(r)))) for r in rows[name]]
        users = sorted(set.intersection(*(set(p) for p in per)))
        return users, np.array([[p[u] for p in per] for u in users]).mean(axis=1)

    users_a, a = avg(best)
    users_b, b = avg(test["other"])
    assert users_a == users_b and test["n_users"] == len(users_a) and test["n_seeds"] == 2
    expected = sps.wilcoxon(a, b, zero_method="wilcox", correction=True)
    assert test["p_wilcoxon"] == pytest.approx(expected.pvalue)
    assert test["p_t"] == pytest.approx(sps.ttest_rel(a, b).pvalue)


def test_regenerated_from_the_store_alone(bench, tmp_path):
    first = build(bench / "store", tmp_path / "one")
    copy = tmp_path / "copied_store"
    os.makedirs(copy)
    shutil.copy(bench / "store" / "records.jsonl", copy / "records.jsonl")
    shutil.copytree(bench / "store" / "per_user", copy / "per_user")  # no checkpoints, no logs
    second = build(copy, tmp_path / "two")
    a, b = json.loads(first["json"].read_text()), json.loads(second["json"].read_text())
    a.pop("store"), b.pop("store")
    assert a == b
    assert first["csv"].read_text() == second["csv"].read_text()
    assert "rows sorted by test Recall@20." in first["pages"]["lastfm-2k"].read_text()  # default tables: by score


def test_yaml_form_reuses_the_finished_cells(bench, tmp_path):
    cfg = tmp_path / "bench.yaml"
    cfg.write_text(
        f"store: {bench / 'store'}\nmodels: [Pop, BPR]\nseeds: 2\njobs: 1\n"
        "overrides: {epochs: 1, train_batch_size: 4096, state: WARNING}\n"
        "variants:\n  BPR-wd: {model: BPR, weight_decay: 1.0e-03}\n"
        f"leaderboard:\n  out: {tmp_path / 'docs'}\n  name: board\n  title: Demo\n  focus: BPR-wd\n"
        "  tables:\n    - {title: Main, rows: [BPR, Pop], sort: given}\n"
    )
    before = (bench / "store" / "records.jsonl").read_bytes()
    assert main(["--config", str(cfg)]) == 0
    assert (bench / "store" / "records.jsonl").read_bytes() == before  # every cell was already finished
    md = (tmp_path / "docs" / "board-lastfm-2k.md").read_text()
    assert md.startswith("# Demo: lastfm-2k") and "## Main" in md and "(tmp_path / 'docs' / 'board_figures')" not in md
    assert "rows in the order the table is defined in." in md and "rows sorted by" not in md  # sort: given
    board = json.loads((tmp_path / "docs" / "board.json").read_text())
    assert [r["name"] for r in board["datasets"]["lastfm-2k"]["tables"][0]["rows"]] == ["BPR", "Pop"]
    assert (tmp_path / "docs" / "board_figures").is_dir()


def test_store_and_config_before_or_after_the_subcommand(bench, tmp_path, capsys):
    """``--store S status`` and ``status --store S`` read the same store (the subcommand's own
    option once overwrote the one given before it with its default)."""
    cfg = tmp_path / "bench.yaml"
    cfg.write_text(f"store: {bench / 'store'}\nmodels: [Pop, BPR]\n")
    outs = []
    for argv in (["--store", str(bench / "store"), "status"], ["status", "--store", str(bench / "store")],
                 ["--config", str(cfg), "status"], ["status", "--config", str(cfg)]):
        capsys.readouterr()
        assert main(argv) == 0
        outs.append(capsys.readouterr().out)
    assert "6 records" in outs[0] and outs[1] == outs[0] and outs[3] == outs[2]
    assert outs[2].startswith(outs[0]) and f"what {cfg} still needs:" in outs[2]  # with a yaml: what its grid lacks


def test_per_user_tests_use_every_cell(bench):
    """No cell is dropped from the per-user significance tests (a mean that differs from the
    rounded test metric by the rounding alone is stored): the cells the tests pair are all cells."""
    from recbole_recgoat.benchmark.leaderboard import compute

    store = Store(bench / "store")
    recs = store.records()
    assert len(recs) == 6 and all(store.load_per_user(r) is not None for r in recs)
    board = compute(store)
    for table in board["datasets"]["lastfm-2k"]["tables"]:
        names = [r["name"] for r in table["rows"]]
        cells = [r for r in recs if r["variant"] in names]
        for metric, tests in table["per_user_tests"].items():
            seeds = {t["other"]: t["n_seeds"] for t in tests}
            best_seeds = len([r for r in cells if r["variant"] not in seeds])
            assert all(t["n_seeds"] == best_seeds for t in tests)
            assert best_seeds + sum(seeds.values()) == len(cells), (metric, table["title"])


def test_seed_counts_are_written_in_words_that_agree():
    from recbole_recgoat.benchmark.leaderboard.text import seeds_text

    assert seeds_text([1]) == "1 seed" and seeds_text([2]) == "2 seeds" and seeds_text([3, 5]) == "3/5 seeds"


def _ranks_by_hand(means):
    """1-based ranks, higher is better, ties sharing the mean of their positions."""
    order = sorted(means, key=lambda n: -means[n])
    out = {}
    for n in means:
        tied = [i + 1 for i, o in enumerate(order) if means[o] == means[n]]
        out[n] = sum(tied) / len(tied)
    return out


def test_average_rank_is_the_mean_of_the_per_dataset_ranks(bench, tmp_path):
    paths = build(bench / "store", tmp_path / "lb", figures=False)
    board = json.loads(paths["json"].read_text())
    ar = board["average_rank"]
    ds = board["datasets"]["lastfm-2k"]
    overall = ds["tables"][0]
    assert ar["datasets"] == ["lastfm-2k"] and ar["table"] == {"lastfm-2k": "Overall"}
    assert ar["columns"] == ["recall@20", "recall@10", "ndcg@10", "ndcg@20"]
    by_hand = {m: _ranks_by_hand({r["name"]: r["test"][m]["mean"] for r in overall["rows"]}) for m in ar["columns"]}
    for model in ar["models"]:
        assert model["mean_rank_headline"] == by_hand["recall@20"][model["name"]]
        assert model["mean_rank_all"] == pytest.approx(statistics.mean(by_hand[m][model["name"]] for m in ar["columns"]))
    assert [m["mean_rank_headline"] for m in ar["models"]] == sorted(m["mean_rank_headline"] for m in ar["models"])
    assert "## Average rank" in paths["md"].read_text()


def test_average_rank_figure_says_when_a_model_is_ranked_on_fewer_datasets():
    models = [{"name": "A", "datasets": ["x", "y", "z"]}, {"name": "B", "datasets": ["x", "y", "z"]},
              {"name": "C", "datasets": ["x"]}, {"name": "D", "datasets": ["y"]}, {"name": "E", "datasets": []}]
    labels = figures.average_rank_labels(models, 3)
    assert labels == ["A", "B", "C (1 of 3 datasets)", "D (1 of 3 datasets)", "E (0 of 3 datasets)"]
    assert figures.group_starts(models) == [2, 4]  # dashed lines before C and before E, none between C and D


def test_rows_with_fewer_seeds_than_configured_are_shown_but_not_ranked(bench, tmp_path):
    """A row whose seeds are still running is partial: its page shows "n/N" seeds, the average rank
    leaves it out (and says so) until its seeds are in; with every seed in, the ranks are unchanged."""
    full = json.loads(build(bench / "store", tmp_path / "a", figures=False)["json"].read_text())
    rows = full["datasets"]["lastfm-2k"]["tables"][0]["rows"]
    n = max(r["n"] for r in rows)
    done = json.loads(build(bench / "store", tmp_path / "b", figures=False, expected_seeds={"lastfm-2k": n})["json"].read_text())
    assert done["average_rank"]["models"] == full["average_rank"]["models"] and not done["average_rank"]["partial"]
    paths = build(bench / "store", tmp_path / "c", figures=False, expected_seeds={"lastfm-2k": n + 1})
    more = json.loads(paths["json"].read_text())
    assert more["average_rank"]["models"] == []
    assert more["average_rank"]["partial"] == {r["name"]: {"lastfm-2k": f"{r['n']}/{n + 1}"} for r in rows}
    page = (tmp_path / "c" / "leaderboard-lastfm-2k.md").read_text()
    assert f"| {n}/{n + 1} |" in page
    assert more["datasets"]["lastfm-2k"]["tables"][0]["best"] == {}  # nothing in bold while every row runs


def test_a_partial_row_is_not_the_best_of_its_table(bench, tmp_path):
    """The best row of the full store loses a seed: it is shown with "1/2" seeds, the best, the
    runner-up, the bold, the summary's rank and the average rank go to the complete rows."""
    full = json.loads(build(bench / "store", tmp_path / "a", figures=False)["json"].read_text())
    overall = full["datasets"]["lastfm-2k"]["tables"][0]
    top, second = overall["best"]["recall@20"], overall["runner_up"]["recall@20"]
    shutil.copytree(bench / "store", tmp_path / "store")
    recs = raw_records(bench / "store" / "records.jsonl")
    drop = max((r for r in recs if r["variant"] == top), key=lambda r: r["seed"])
    (tmp_path / "store" / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs if r is not drop))
    paths = build(tmp_path / "store", tmp_path / "b", figures=False, expected_seeds={"lastfm-2k": 2}, focus=top)
    board = json.loads(paths["json"].read_text())
    table = board["datasets"]["lastfm-2k"]["tables"][0]
    assert [r["partial"] for r in table["rows"] if r["name"] == top] == ["1/2"]
    assert table["best"]["recall@20"] == second and table["runner_up"].get("recall@20") != top
    assert top not in {m["name"] for m in board["average_rank"]["models"]}
    page = (tmp_path / "b" / "leaderboard-lastfm-2k.md").read_text()
    assert f"best on test Recall@20 is **{second}**" in page and f"{top} (1/2 seeds," in page
    assert f"{top} ranks" not in page  # a partial row has no rank in the summary
    # the caption names the complete rows' seeds (2), not "1/2 seeds", which reads as a partial row's n/N
    assert "## Overall\n\nTest split, mean ± std over 2 seeds;" in page
    assert "mean $\\pm$ std over 2 seeds." in (tmp_path / "b" / "leaderboard-lastfm-2k.tex").read_text()


def test_configured_rows_without_records_are_pending(bench, tmp_path):
    """A model added to the yaml before its cells ran: its rows read "pending" (Markdown and LaTeX),
    a dataset without any record gets a page of pending rows, and the numbers of the others stand."""
    cfg = tmp_path / "bench.yaml"
    cfg.write_text(
        f"store: {bench / 'store'}\nmodels: [Pop, BPR, LightGCN]\ndatasets: [lastfm-2k, ml-100k]\nseeds: 2\n"
        "variants:\n  BPR-wd: {model: BPR, weight_decay: 1.0e-03}\n"
        f"leaderboard:\n  out: {tmp_path / 'docs'}\n  name: board\n"
        "  tables:\n    - {title: Main, rows: [Pop, BPR, LightGCN]}\n    - {title: Ablation, rows: [BPR, BPR-wd]}\n"
        "    - {title: Only ml, rows: [BPR, BPR-wd], datasets: [ml-100k]}\n")
    assert main(["leaderboard", "--config", str(cfg)]) == 0  # figures too: a dataset without records has none
    page = (tmp_path / "docs" / "board-lastfm-2k.md").read_text()
    assert "| LightGCN | pending | pending | pending | pending | 0 | pending |" in page
    assert "LightGCN & pending & pending & pending & pending \\\\" in (tmp_path / "docs" / "board-lastfm-2k.tex").read_text()
    board = json.loads((tmp_path / "docs" / "board.json").read_text())
    main_table = board["datasets"]["lastfm-2k"]["tables"][0]
    assert main_table["pending"] == ["LightGCN"] and {r["name"] for r in main_table["rows"]} == {"Pop", "BPR"}
    reference = json.loads(build(bench / "store", tmp_path / "plain", figures=False,
                                 tables=[{"title": "Main", "rows": ["Pop", "BPR", "LightGCN"]}])["json"].read_text())
    assert main_table["rows"] == reference["datasets"]["lastfm-2k"]["tables"][0]["rows"]  # same numbers
    ml = board["datasets"]["ml-100k"]
    assert [t["pending"] for t in ml["tables"]] == [["Pop", "BPR", "LightGCN"], ["BPR", "BPR-wd"], ["BPR", "BPR-wd"]]
    assert [t["title"] for t in board["datasets"]["lastfm-2k"]["tables"]] == ["Main", "Ablation"]  # its datasets: only
    assert "## Only ml" in (tmp_path / "docs" / "board-ml-100k.md").read_text() and "Only ml" not in page
    assert not list((tmp_path / "docs" / "board_figures").glob("ml_100k*"))
    assert "Every row is pending" in (tmp_path / "docs" / "board-ml-100k.md").read_text()
    assert ("Pending (configured, no finished cell for its current tuning yet; not ranked there): "
            "LightGCN (lastfm-2k, ml-100k), Pop (ml-100k), BPR (ml-100k).") in (tmp_path / "docs" / "board.md").read_text()
    assert [m["name"] for m in board["average_rank"]["models"]] == [m["name"] for m in reference["average_rank"]["models"]]


def test_features_column_names_the_user_feature_file():
    """Rows that read another user feature file (a profile set) say which one."""
    from recbole_recgoat.benchmark.leaderboard.compute import feature_label

    labels = {"text": "overview", "user": "GPT-4o-mini", "user:user_feat_b.npy": "GPT-4.1-mini"}
    rec = {"features": {"items": ["text"], "users": True}, "config": {"user_feature_file": "user_feat.npy"}}
    assert feature_label(rec, labels) == "overview; users: GPT-4o-mini"
    rec["config"]["user_feature_file"] = "/data/ml/user_feat_b.npy"
    assert feature_label(rec, labels) == "overview; users: GPT-4.1-mini"
    rec["features"]["users"] = False
    assert feature_label(rec, labels) == "overview"


def test_rows_that_kept_their_first_epoch_are_named():
    """A row whose seeds kept the model after epoch 1 (best epoch 0: validation never beat its first
    score within the patience) is named under the dataset's summary, with how many seeds did."""
    from recbole_recgoat.benchmark.leaderboard.summary import summary_lines

    def row(name, kept):
        return {"name": name, "n": 3, "first_epoch_kept": kept, "test": {"recall@20": {"mean": 0.1, "std": 0.0}}}

    ds = {"headline": "recall@20", "tables": [{"title": "T", "rows": [row("A", 0), row("B", 2)], "best": {}},
                                               {"title": "U", "rows": [row("B", 2)], "best": {}}]}
    assert summary_lines(ds) == ["- **Kept the model after its first epoch** (early stopping: validation never beat that "
                                 "first score within the patience): B (2 of 3 seeds)."]
    ds["tables"][0]["rows"][1]["first_epoch_kept"] = 0
    ds["tables"][1]["rows"][0]["first_epoch_kept"] = 0
    assert summary_lines(ds) == []
