"""Answers and item texts produced elsewhere: ``user-profiles --backend import`` and ``item-text --texts``.

Real data: the GPT-4o-mini MovieLens-100K profiles of users 1, 2, 5-12 and the TMDB overviews of
movies 1-60 (tests/fixtures/ml100k_llm_slice, provenance in tests/fixtures/README.md), over a
slice of the bundled ml-100k-llm split (users 1-12, movies 1-60: users 3 and 4 have no rating of
those movies and are not in it).
"""

import csv
import json

import numpy as np
import pytest
from conftest import BUNDLED, FIXTURES, snapshot_files

import features_support  # noqa: F401  (the encoder is extracted into the temp folder)
from recbole_recgoat.features.cli import main

SLICE = FIXTURES / "ml100k_llm_slice"
PROFILES = SLICE / "user_profiles_gpt4omini_slice.csv"
OVERVIEWS = SLICE / "movies_tmdb_overview_slice.csv"
USERS = ["1", "2", "5", "6", "7", "8", "9", "10", "11", "12"]
N_ITEMS = 60


def _small_data(root):
    """``root/ml-100k-llm``: the bundled split and item file restricted to USERS (the users <= 12 with a
    training rating of a movie <= 60) and movies <= 60."""
    src, d = BUNDLED / "ml-100k-llm", root / "ml-100k-llm"
    d.mkdir(parents=True)
    for part in ("train", "valid", "test"):
        lines = (src / f"ml-100k-llm.{part}.inter").read_text().splitlines()
        keep = [r for r in lines[1:] if r.split("\t")[0] in USERS and int(r.split("\t")[1]) <= N_ITEMS]
        (d / f"ml-100k-llm.{part}.inter").write_text("\n".join([lines[0], *keep]) + "\n")
    items = (src / "ml-100k-llm.item").read_text(encoding="utf-8").splitlines()
    (d / "ml-100k-llm.item").write_text("\n".join(items[: N_ITEMS + 1]) + "\n", encoding="utf-8")
    return root


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def _write(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    return path


def _users(data, out, answers, *extra):
    return ["user-profiles", "--dataset", "ml-100k-llm", "--data-path", str(data), "--out", str(out),
            "--backend", "import", "--answers", str(answers), "--text-column", "summary", "--device", "cpu",
            "--no-progress", *extra]


@pytest.fixture
def data(isolated_run):
    return _small_data(isolated_run / "data")


def _encode(texts):
    from recbole_recgoat.features.encoder import Encoder

    return Encoder(device="cpu").encode(texts)


def test_real_profiles_are_embedded_row_per_user_through_the_cache(data, isolated_run, capsys):
    out = isolated_run / "u.npy"
    assert main(_users(data, out, PROFILES)) == 0
    emb = np.load(out)
    ids = (isolated_run / "u.npy.ids").read_text().split()
    assert ids == USERS
    texts = {r[0]: r[1].strip() for r in _rows(PROFILES)[1:]}
    assert emb.shape == (10, 384) and emb.dtype == np.float32
    assert np.array_equal(emb, _encode([texts[u] for u in USERS]))  # the file's text, user by user
    cache = [json.loads(line) for line in (isolated_run / "u.npy.cache.jsonl").read_text().splitlines()]
    assert sorted(r["user"] for r in cache) == sorted(USERS) and {r["status"] for r in cache} == {"ok"}
    assert {r["answer"] for r in cache} == set(texts.values())
    meta = json.loads((isolated_run / "u.npy.meta.json").read_text())
    assert meta["answered"] == 10 and meta["failures"] == [] and meta["answers"]["unknown_ids"] == []
    assert meta["identity"]["backend"] == "import" and meta["answers"]["rows"] == 10
    # a second run answers from the cache and leaves the identical file alone
    capsys.readouterr()
    assert main(_users(data, out, PROFILES)) == 0
    assert "10 answers cached" in capsys.readouterr().err


def test_jsonl_with_other_column_names_gives_the_same_matrix(data, isolated_run):
    rows = _rows(PROFILES)[1:]
    jl = isolated_run / "answers.jsonl"
    jl.write_text("".join(json.dumps({"uid": int(u), "profile": t}) + "\n" for u, t in reversed(rows)))
    assert main(_users(data, isolated_run / "a.npy", PROFILES)) == 0
    assert main(_users(data, isolated_run / "b.npy", jl, "--id-column", "uid", "--text-column", "profile")) == 0
    assert np.array_equal(np.load(isolated_run / "a.npy"), np.load(isolated_run / "b.npy"))


@pytest.mark.parametrize("case, edit, expect", [
    ("unknown id", lambda rows: rows + [["999", "Likes quiet documentaries."]], "1 ids of"),
    ("duplicate id", lambda rows: rows + [["7", "Likes loud action films."]], "1 x duplicate id"),
    ("empty text", lambda rows: [r if r[0] != "9" else ["9", "  "] for r in rows], "1 x empty text"),
])
def test_bad_rows_are_counted_reported_and_nothing_is_written(data, isolated_run, capsys, case, edit, expect):
    answers = _write(isolated_run / "answers.csv", edit(_rows(PROFILES)))
    before = snapshot_files(data)
    assert main(_users(data, isolated_run / "u.npy", answers)) == 3
    err = capsys.readouterr().err
    assert expect in err and "nothing written" in err
    if case == "unknown id":
        assert "not users of ml-100k-llm (not used): 999" in err
    else:
        assert "users: " + ("7" if case == "duplicate id" else "9") in err
    assert not (isolated_run / "u.npy").exists() and not (isolated_run / "u.npy.ids").exists()
    assert not (isolated_run / "u.npy.meta.json").exists() and not (isolated_run / "u.npy.cache.jsonl").exists()
    assert snapshot_files(data) == before


def test_allow_failures_writes_and_lists_them(data, isolated_run):
    rows = [r if r[0] != "9" else ["9", ""] for r in _rows(PROFILES)] + [["999", "Likes quiet documentaries."]]
    answers = _write(isolated_run / "answers.csv", rows)
    assert main(_users(data, isolated_run / "u.npy", answers, "--allow-failures")) == 0
    meta = json.loads((isolated_run / "u.npy.meta.json").read_text())
    assert [f["user"] for f in meta["failures"]] == ["9"] and "empty text" in meta["failures"][0]["reason"]
    assert meta["answers"]["unknown_ids"] == ["999"] and meta["answered"] == 9


def test_missing_column_is_one_line_error(data, isolated_run, capsys):
    assert main(_users(data, isolated_run / "u.npy", PROFILES, "--text-column", "answer")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "no column 'answer'" in err[0] and "summary" in err[0]
    assert not (isolated_run / "u.npy").exists()


def _items(data, out, texts, *extra):
    return ["item-text", "--dataset", "ml-100k-llm", "--data-path", str(data), "--out", str(out), "--texts", str(texts),
            "--id-column", "movie_id", "--text-column", "overview", "--device", "cpu", "--no-progress", *extra]


def test_item_texts_from_a_real_file(data, isolated_run, capsys):
    out = isolated_run / "t.npy"
    # movies 6 and 44 have no TMDB row: reported, nothing written
    assert main(_items(data, out, OVERVIEWS)) == 3
    err = capsys.readouterr().err
    assert "2 of 60 items have no usable text" in err and "items: 6, 44" in err and "nothing written" in err
    assert not out.exists()
    # with --allow-failures they get the recipe's text (title, year, genres), listed in the meta
    assert main(_items(data, out, OVERVIEWS, "--allow-failures")) == 0
    emb = np.load(out)
    overview = {r[0]: r[2] for r in _rows(OVERVIEWS)[1:]}
    assert len(overview) == 58
    assert np.allclose(emb[0], _encode([overview["1"]])[0], atol=1e-5)
    meta = json.loads((isolated_run / "t.npy.meta.json").read_text())
    assert [f["item"] for f in meta["texts"]["recipe_text"]] == ["6", "44"] and meta["texts"]["imported"] == 58
    recipe_six = "Shanghai Triad (Yao a yao yao dao waipo qiao) (1995). Genres: Drama."
    assert (data / "ml-100k-llm" / "ml-100k-llm.item").read_text().splitlines()[6] == \
        "6\tShanghai Triad (Yao a yao yao dao waipo qiao)\t1995\tDrama"
    assert np.allclose(emb[5], _encode([recipe_six])[0], atol=1e-5)
    # a duplicate row is a failure too
    rows = _rows(OVERVIEWS) + [["3", "Four Rooms (1995)", "Another overview."]]
    dup = _write(isolated_run / "dup.csv", rows)
    capsys.readouterr()
    assert main(_items(data, isolated_run / "d.npy", dup)) == 3
    assert "1 x duplicate id" in capsys.readouterr().err and not (isolated_run / "d.npy").exists()


def test_allow_failures_needs_texts(data, isolated_run, capsys):
    args = ["item-text", "--dataset", "ml-100k-llm", "--data-path", str(data), "--out", "t.npy", "--allow-failures"]
    assert main(args) == 2
    assert capsys.readouterr().err.startswith("error: --allow-failures")


def test_answers_only_with_the_import_backend(data, isolated_run, capsys):
    args = _users(data, isolated_run / "u.npy", PROFILES)
    args[args.index("import")] = "offline"
    assert main(args) == 2
    assert capsys.readouterr().err.startswith("error: --answers=")
    assert not (isolated_run / "u.npy").exists()


def test_answer_tags_take_the_answer_block_of_raw_responses(data, isolated_run, capsys):
    rows = _rows(PROFILES)[1:]
    raw = isolated_run / "raw.jsonl"
    raw.write_text("".join(json.dumps({"user_id": u, "text": f"<think>reasoning {u}</think>\n<answer>\n{t}\n</answer>"}) + "\n"
                           for u, t in rows))
    assert main(_users(data, isolated_run / "raw.npy", raw, "--text-column", "text", "--answer-tags")) == 0
    assert main(_users(data, isolated_run / "plain.npy", PROFILES)) == 0
    assert np.array_equal(np.load(isolated_run / "raw.npy"), np.load(isolated_run / "plain.npy"))
    # a response without its <answer> block is a failure, never embedded whole
    broken = [json.dumps({"user_id": u, "text": f"<answer>{t}</answer>" if u != "5" else f"<think>{t}"}) for u, t in rows]
    (isolated_run / "broken.jsonl").write_text("\n".join(broken) + "\n")
    capsys.readouterr()
    args = _users(data, isolated_run / "b.npy", isolated_run / "broken.jsonl", "--text-column", "text", "--answer-tags")
    assert main(args) == 3
    err = capsys.readouterr().err
    assert "1 of 10 users have no usable answer (1 x no <answer>...</answer> in the response); users: 5" in err
    assert not (isolated_run / "b.npy").exists()
