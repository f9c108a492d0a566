"""The results store: torn lines, duplicates and keys (no training)."""

import json
import os

import numpy as np
import pytest

from recbole_recgoat.benchmark.spec import Cell, build_cells, build_entries, parse_seeds, parse_set
from recbole_recgoat.benchmark.store import Store, append_line, read_lines
from recbole_recgoat.errors import InputError


def _rec(key, **extra):
    return {"key": key, "model": "BPR", "dataset": "d", "seed": 1, "variant": "BPR", "test_result": {"recall@20": 0.1}, **extra}


def test_append_and_read_back(tmp_path):
    store = Store(tmp_path / "s")
    assert store.records() == []
    assert store.append_record(_rec("a"), per_user={"user": np.array(["u1", "u2"]), "recall@20": np.array([0.0, 1.0])})
    assert store.append_record(_rec("b"))
    assert not store.append_record(_rec("a"))  # a finished key is never written twice
    recs = store.records()
    assert [r["key"] for r in recs] == ["a", "b"]
    pu = store.load_per_user(recs[0])
    assert pu["user"].tolist() == ["u1", "u2"] and pu["recall@20"].tolist() == [0.0, 1.0]
    assert store.load_per_user(recs[1]) is None
    assert store.records_path.read_bytes().count(b"\n") == 2


def test_torn_line_is_dropped_and_never_swallows_the_next_record(tmp_path):
    store = Store(tmp_path / "s")
    store.append_record(_rec("a"))
    full = store.records_path.read_bytes()
    # A writer killed in the middle of its write: half a line, no newline.
    line = append_line(tmp_path / "other.jsonl", _rec("torn"))
    with open(store.records_path, "ab") as f:
        f.write(line[: len(line) // 2])
    recs, stats = store.records(with_stats=True)
    assert [r["key"] for r in recs] == ["a"] and stats["torn"] == 1
    assert store.append_record(_rec("c"))  # starts on a fresh line
    recs, stats = store.records(with_stats=True)
    assert [r["key"] for r in recs] == ["a", "c"] and stats["torn"] == 1
    assert store.records_path.read_bytes().startswith(full)
    # The key of the torn record is not finished: a rerun writes it.
    assert store.append_record(_rec("torn"))
    assert [r["key"] for r in store.records()] == ["a", "c", "torn"]


def test_checksum_mismatch_and_duplicates(tmp_path):
    path = tmp_path / "r.jsonl"
    append_line(path, _rec("a"))
    text = path.read_text().replace('"recall@20": 0.1', '"recall@20": 0.9')  # a silently changed line
    path.write_text(text)
    recs, stats = read_lines(path)
    assert recs == [] and stats["torn"] == 1
    store = Store(tmp_path / "s")
    append_line(store.records_path, _rec("a", seed=1))
    append_line(store.records_path, _rec("a", seed=2))  # e.g. two benchmarks racing on one store
    recs, stats = store.records(with_stats=True)
    assert len(recs) == 1 and recs[0]["seed"] == 1 and stats["duplicates"] == 1


def test_cell_keys(tmp_path):
    entries = build_entries(["bpr", "Pop"], {"BPR-wd": {"model": "BPR", "weight_decay": 0.001}})
    assert [e.name for e in entries] == ["BPR", "Pop", "BPR-wd"] and entries[2].model == "BPR"
    seeds = parse_seeds(3)
    assert seeds == [999, 1000, 1001] and parse_seeds([5, 7]) == [5, 7]
    cells = build_cells(entries, ["lastfm-2k"], seeds, overrides={"epochs": 2})
    assert len(cells) == 9 and len({c.key for c in cells}) == 9
    assert len({c.setting for c in cells}) == 3  # one setting per row, shared by its seeds
    # Display-only keys do not change a key; result-changing ones do.
    same = build_cells(entries, ["lastfm-2k"], seeds, overrides={"epochs": 2, "state": "WARNING", "gpu_id": "1"})
    assert [c.key for c in same] == [c.key for c in cells]
    other = build_cells(entries, ["lastfm-2k"], seeds, overrides={"epochs": 3})
    assert not {c.key for c in other} & {c.key for c in cells}
    # Config files count by content, not by path.
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("embedding_size: 32\n")
    b.write_text("embedding_size: 32\n")
    ka = build_cells(entries[:1], ["d"], [1], config_files=[str(a)])[0]
    kb = build_cells(entries[:1], ["d"], [1], config_files=[str(b)])[0]
    assert ka.key == kb.key
    b.write_text("embedding_size: 16\n")
    assert build_cells(entries[:1], ["d"], [1], config_files=[str(b)])[0].key != ka.key
    # A cell survives the trip to another process.
    assert Cell.from_dict(json.loads(json.dumps(cells[0].as_dict()))).finalize().key == cells[0].key
    # Run arguments: the same layering as run_recbole.py, plus seed and the cell's checkpoint_dir.
    kw = cells[2 * 3].run_kwargs("/x/ckpt")
    assert kw["config_dict"] == {"weight_decay": 0.001}
    assert kw["cmd_args"] == {"epochs": 2, "seed": 999, "checkpoint_dir": "/x/ckpt"}


def test_seeds_per_dataset_variants_per_dataset_and_grids_per_dataset(tmp_path):
    from recbole_recgoat.benchmark.grid import search_space_for

    seeds = parse_seeds({"a": 2, "b": [7]}, datasets=["a", "b"])
    assert seeds == {"a": [999, 1000], "b": [7]}
    with pytest.raises(InputError, match="no entry for b"):
        parse_seeds({"a": 2}, datasets=["a", "b"])
    entries = build_entries(["BPR"], {"BPR-wd": {"model": "BPR", "weight_decay": 0.1, "datasets": ["a"]}})
    assert entries[1].overrides == {"weight_decay": 0.1}  # `datasets` limits the variant, it is no config key
    cells = build_cells(entries, ["a", "b"], seeds)
    assert [(c.entry, c.dataset, c.seed) for c in cells] == [
        ("BPR", "a", 999), ("BPR", "a", 1000), ("BPR", "b", 7), ("BPR-wd", "a", 999), ("BPR-wd", "a", 1000)]
    # a variant limited to datasets the benchmark does not have is refused, not silently dropped
    with pytest.raises(InputError, match="BPR-wd: datasets c"):
        build_cells(build_entries([], {"BPR-wd": {"model": "BPR", "datasets": ["c"]}}), ["a"], [1])
    # the keys of existing cells do not move (no `datasets` in the identity)
    plain = build_cells(build_entries(["BPR"]), ["a"], [999])[0]
    assert plain.key == cells[0].key
    spaces = {"BPR": {"weight_decay": [0.0, 0.1]}, "BPR@b": {"weight_decay": [1.0]}}
    assert search_space_for(spaces, "BPR", "a") == {"weight_decay": [0.0, 0.1]}
    assert search_space_for(spaces, "BPR", "b") == {"weight_decay": [1.0]}
    assert search_space_for({}, "BPR", "a")["weight_decay"][0] == 0.0  # properties/model/BPR.yaml's grid


def test_bad_input():
    assert parse_set(["lr=1e-3", "name=abc", "flag=true", "l=[1, 2]"]) == {"lr": 0.001, "name": "abc", "flag": True, "l": [1, 2]}
    with pytest.raises(InputError):
        parse_set(["novalue"])
    with pytest.raises(InputError):
        build_entries(["NoSuchModel"])
    with pytest.raises(InputError):
        build_entries(["BPR"], {"BPR": {"model": "BPR"}})
    with pytest.raises(InputError):
        parse_seeds(0)
    assert os.environ.get("HYPEROPT_FMIN_SEED") is None


def test_misspelt_variant_or_grid_key_is_refused(tmp_path):
    from recbole_recgoat.benchmark.cli import main

    (tmp_path / "v.yaml").write_text("variants:\n  BPR-typo: {model: BPR, wieght_decay: 0.1}\n")
    assert main(["run", "--models", "BPR", "--variants", str(tmp_path / "v.yaml"), "--store", "s", "--dry-run"]) == 2
    (tmp_path / "v.yaml").write_text("variants:\n  BPR-wd: {model: BPR, weight_decay: 0.1}\n")
    assert main(["run", "--models", "BPR", "--variants", str(tmp_path / "v.yaml"), "--store", "s", "--dry-run"]) == 0
    (tmp_path / "b.yaml").write_text("models: [BPR]\nsearch_space:\n  BPR: {n_layer: [1, 2]}\n")
    assert main(["tune", "--config", str(tmp_path / "b.yaml"), "--store", "s"]) == 2


def test_failed_cell_is_reported_and_retried(tmp_path):
    from recbole_recgoat.benchmark.cli import main

    (tmp_path / "v.yaml").write_text("variants:\n  BPR-bad: {model: BPR, embedding_size: -1}\n")
    args = ["run", "--models", "Pop", "--variants", str(tmp_path / "v.yaml"), "--store", "s", "--jobs", "1",
            "--set", "state=WARNING"]
    assert main(args) == 1  # Pop finishes, the broken variant fails, the benchmark goes on
    store = Store("s")
    assert [r["variant"] for r in store.records()] == ["Pop"]
    failures = read_lines(store.root / "failures.jsonl")[0]
    assert len(failures) == 1 and failures[0]["cell"]["entry"] == "BPR-bad" and "Traceback" in failures[0]["error"]
    assert main(args) == 1  # retried, Pop not re-run
    assert [e[0] for e in store.run_events()].count("start") == 3
    assert len(store.records()) == 1


def test_rerun_of_a_cell_removes_what_a_killed_attempt_left(tmp_path, monkeypatch):
    """A killed cell leaves its checkpoint behind; the next attempt of the cell removes it first
    (a file whose writer still runs is kept), so no stale .pth is mistaken for the new one."""
    import subprocess
    import sys

    from recbole_recgoat import quick_start
    from recbole_recgoat.benchmark.spec import Cell
    from recbole_recgoat.benchmark.worker import run_cell

    store = Store(tmp_path / "store")
    cell = Cell("BPR", "BPR", "lastfm-2k", 999, [], {}, {}).finalize()
    folder = store.checkpoint_dir(cell.key)
    folder.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = folder / f"BPR-lastfm-2k-Dec-01-2026_13-50-29-{int(dead.stdout)}-abc123.pth"
        running = folder / f"BPR-lastfm-2k-Dec-01-2026_13-50-29-{live.pid}-def456.pth"
        stale.write_bytes(b"old")
        running.write_bytes(b"in use")
        seen = {}

        def fake_run(**kwargs):
            seen["files"] = sorted(p.name for p in folder.iterdir())
            return {"per_user": None, "valid_curve": []}

        monkeypatch.setattr(quick_start, "run", fake_run)
        out = run_cell(cell, str(store.root))
        assert out["error"] is None
        assert seen["files"] == [running.name]  # removed before the run started, the live writer's kept
        assert [e[2]["files"] for e in store.run_events() if e[0] == "cleaned"] == [stale.name]
    finally:
        live.kill()
        live.wait()


def test_dry_run_counts_the_seeds_of_each_dataset(tmp_path, capsys, monkeypatch):
    """With seeds per dataset the plan line names each dataset's count (it said "2 seeds" for 2 datasets)."""
    from recbole_recgoat.benchmark.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "b.yaml").write_text("models: [BPR]\ndatasets: [lastfm-2k, ml-100k]\nseeds: {lastfm-2k: 2, ml-100k: 1}\n")
    assert main(["run", "--config", "b.yaml", "--store", "s", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "3 cells (1 rows x 2 datasets, seeds: lastfm-2k 2, ml-100k 1)" in out
    assert out.count("todo  ") == 3


def test_part_of_a_grid_runs_alone(tmp_path, capsys, monkeypatch):
    """--rows and --datasets pick a part of a benchmark yaml (a variant limited to another dataset
    is skipped, not refused); a misspelt row or a variant's unknown dataset is still one line."""
    from recbole_recgoat.benchmark.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "b.yaml").write_text(
        "models: [BPR, Pop]\ndatasets: [lastfm-2k, ml-100k]\nseeds: 2\nvariants:\n"
        "  BPR-wd: {model: BPR, weight_decay: 0.1, datasets: [lastfm-2k]}\n"
        "  BPR-ml: {model: BPR, weight_decay: 0.2, datasets: [ml-100k]}\n")
    assert main(["run", "--config", "b.yaml", "--store", "s", "--dry-run", "--datasets", "ml-100k"]) == 0
    todo = [line for line in capsys.readouterr().out.splitlines() if line.startswith("todo")]
    assert len(todo) == 6 and not any("BPR-wd" in line or "lastfm" in line for line in todo)
    assert main(["run", "--config", "b.yaml", "--store", "s", "--dry-run", "--rows", "BPR-wd", "Pop"]) == 0
    todo = [line.split()[1] for line in capsys.readouterr().out.splitlines() if line.startswith("todo")]
    assert sorted(todo) == ["BPR-wd"] * 2 + ["Pop"] * 4
    assert main(["run", "--config", "b.yaml", "--store", "s", "--dry-run", "--rows", "BPR-typo"]) == 2
    assert "--rows BPR-typo: not a row of this grid" in capsys.readouterr().err
    (tmp_path / "b.yaml").write_text("models: [BPR]\ndatasets: [lastfm-2k]\n"
                                     "variants:\n  BPR-wd: {model: BPR, weight_decay: 0.1, datasets: [ml-10m]}\n")
    assert main(["run", "--config", "b.yaml", "--store", "s", "--dry-run"]) == 2


def test_rows_with_equal_settings_train_once(tmp_path, capsys, monkeypatch):
    """Two rows whose settings are equal as written (tuned parameters + overrides; e.g. an ablation
    switch the tuning had already chosen) are one run: trained once, stored for both rows with
    ``same_run_as``, per-user values equal; a row that changes a value trains."""
    from recbole_recgoat.benchmark.cli import main

    monkeypatch.chdir(tmp_path)
    head = "models: [BPR]\ndatasets: [lastfm-2k]\nseeds: 1\noverrides: {epochs: 1, state: WARNING}\nvariants:\n"
    rows = "  BPR-a: {model: BPR, weight_decay: 0.5}\n  BPR-same: {model: BPR, weight_decay: 0.5}\n"
    (tmp_path / "b.yaml").write_text(head + rows)
    assert main(["run", "--config", "b.yaml", "--store", "s", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "0 finished, 2 to run, 1 the same run as another row" in out
    assert "BPR-same on lastfm-2k seed 999" in out.split("(same run as BPR-a on lastfm-2k")[0]
    assert main(["run", "--config", "b.yaml", "--store", "s", "--jobs", "1"]) == 0
    store = Store("s")
    recs = {r["variant"]: r for r in store.records()}
    assert set(recs) == {"BPR", "BPR-a", "BPR-same"}
    assert [e[2]["entry"] for e in store.run_events() if e[0] == "start"] == ["BPR", "BPR-a"]  # BPR-same copied
    assert recs["BPR-same"]["same_run_as"] == {"key": recs["BPR-a"]["key"], "variant": "BPR-a"}
    assert recs["BPR-same"]["test_result"] == recs["BPR-a"]["test_result"] and "same_run_as" not in recs["BPR"]
    assert recs["BPR-same"]["key"] != recs["BPR-a"]["key"]
    a, b = store.load_per_user(recs["BPR-a"]), store.load_per_user(recs["BPR-same"])
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    # a row added later, equal to a stored record, is copied without training; another value trains
    (tmp_path / "b.yaml").write_text(head + rows + "  BPR-later: {model: BPR, weight_decay: 0.5}\n"
                                     "  BPR-other: {model: BPR, weight_decay: 0.25}\n")
    assert main(["run", "--config", "b.yaml", "--store", "s", "--jobs", "1"]) == 0
    assert [e[2]["entry"] for e in store.run_events() if e[0] == "start"] == ["BPR", "BPR-a", "BPR-other"]
    recs = {r["variant"]: r for r in Store("s").records()}
    assert recs["BPR-later"]["same_run_as"]["variant"] == "BPR-a"
    # the leaderboard says which rows are the same runs, and builds with them (identical rows' tests)
    from recbole_recgoat.benchmark.leaderboard import build

    paths = build(Store("s"), tmp_path / "board", figures=False,
                  tables=[{"title": "T", "rows": ["BPR", "BPR-a", "BPR-same", "BPR-later", "BPR-other"]}])
    page = (tmp_path / "board" / "leaderboard-lastfm-2k.md").read_text()
    assert "BPR-same = BPR-a" in page and "BPR-later = BPR-a" in page and paths["md"].exists()
