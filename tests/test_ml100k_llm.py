"""The bundled ml-100k-llm dataset: GroupLens fold 1, validation without the profiles' input rows,
nothing built from test rows, and a build that gives the same bytes again.

The shared source folder (``../shared/data/ml-100k-llm-profiles``) is needed only for the tests
that rebuild from it; they are skipped without it.  Everything else reads the committed files and
RecBole's own copy of MovieLens-100K.
"""

import hashlib
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import BUNDLED, REPO
from model_support import recgoat_graphs

import features_support  # noqa: F401  (the encoder is extracted into the temp folder)

DS = BUNDLED / "ml-100k-llm"
SRC = REPO / ".." / "shared" / "data" / "ml-100k-llm-profiles"
need_src = pytest.mark.skipif(not (SRC / "u1.base").is_file(), reason="shared ml-100k-llm-profiles not here")


def _script():
    spec = importlib.util.spec_from_file_location("make_ml100k_llm", REPO / "scripts" / "make_bundled_ml100k_llm.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _inter(part):
    return pd.read_csv(DS / f"ml-100k-llm.{part}.inter", sep="\t", header=0,
                       names=["user", "item", "rating", "timestamp"])


def _pairs(df):
    return set(zip(df.user, df.item))


def test_split_is_fold_1_of_all_100k_ratings():
    import recbole

    train, valid, test = _inter("train"), _inter("valid"), _inter("test")
    full = pd.read_csv(Path(recbole.__file__).parent / "dataset_example" / "ml-100k" / "ml-100k.inter", sep="\t",
                       header=0, names=["user", "item", "rating", "timestamp"])
    rows = lambda df: set(map(tuple, df.to_numpy().tolist()))  # noqa: E731
    assert len(train) + len(valid) + len(test) == 100_000
    assert rows(train) | rows(valid) | rows(test) == rows(full)  # every rating an interaction
    assert not _pairs(train) & _pairs(test) and not _pairs(valid) & _pairs(test) and not _pairs(train) & _pairs(valid)
    assert len(test) == 20_000 and test.user.max() == 462 and test.user.nunique() == 459
    assert train.user.nunique() == 943
    # user 310 has 4 u1.base ratings, all read by the profile: the one user without validation rows
    assert set(range(1, 944)) - set(valid.user) == {310} and (train.user == 310).sum() == 4
    share = valid.groupby("user").size() / (train.groupby("user").size() + valid.groupby("user").size())
    assert 0.09 < share.mean() < 0.16


@need_src
def test_test_split_is_u1_test_row_for_row():
    u1 = (SRC / "u1.test").read_text().splitlines()
    ours = (DS / "ml-100k-llm.test.inter").read_text().splitlines()[1:]
    assert ours == u1
    base = set((SRC / "u1.base").read_text().splitlines())
    assert {r for p in ("train", "valid") for r in (DS / f"ml-100k-llm.{p}.inter").read_text().splitlines()[1:]} == base


def test_validation_holds_none_of_the_profile_input_rows():
    base = pd.concat([_inter("train"), _inter("valid")]).reset_index(drop=True)
    valid = _pairs(_inter("valid"))
    read = set()
    for _, g in base.groupby("user"):  # the rule of SOURCE.md, in plain pandas (stable order on ties)
        for part in (g[g.rating == 5], g[g.rating <= 2]):
            read |= _pairs(part.sort_values("timestamp", ascending=False, kind="stable").head(5))
    assert read and not read & valid
    assert not read & _pairs(_inter("test"))  # the profiles read training rows only
    # the script's own rule (every rating tied with the fifth most recent counts as read) agrees
    mod = _script()
    rows = list(base.itertuples(index=False, name=None))
    script_read = {rows[k][:2] for k in mod.profile_input_rows(rows)}
    assert read <= script_read and not script_read & valid


def _graphs(data_path):
    from recbole_recgoat.quick_start import build_model, prepare

    cfg = {"data_path": str(data_path), "state": "WARNING", "graph_cache_dir": None, "cpu_threads": 1}
    c, ds, tr, _, _, _ = prepare("RecGOAT", "ml-100k-llm", config_dict=cfg, log=False)
    return recgoat_graphs(build_model(c, tr), tr._dataset)


def test_nothing_built_reads_test_rows(tmp_path):
    """RecGOAT on the dataset and on a copy whose test rows point at other movies: the same graphs
    (user-item, item-item per modality, user-user) and user features; the user-item graph is the
    training rows exactly."""
    copy = tmp_path / "data" / "ml-100k-llm"
    shutil.copytree(DS, copy)
    lines = (copy / "ml-100k-llm.test.inter").read_text().splitlines()
    rng = np.random.default_rng(7)
    items = rng.permutation([r.split("\t")[1] for r in lines[1:]])
    out, pairs = [lines[0]], set()
    for r, i in zip(lines[1:], items):
        u, _, rating, stamp = r.split("\t")
        if (u, i) not in pairs:  # each (user, item) pair once: the loader refuses repeated pairs
            pairs.add((u, i))
            out.append(f"{u}\t{i}\t{rating}\t{stamp}")
    (copy / "ml-100k-llm.test.inter").write_text("\n".join(out) + "\n")
    assert (copy / "ml-100k-llm.test.inter").read_text() != (DS / "ml-100k-llm.test.inter").read_text()
    a = _graphs(BUNDLED)
    b = _graphs(tmp_path / "data")
    assert a.keys() == b.keys() and {"ui", "uu", "text", "llm", "user_feats"} <= set(a)
    for key in a:
        assert a[key] == b[key], key
    assert {(int(u), int(i)) for u, i in a["ui"]} == _pairs(_inter("train"))


def test_committed_files_match_their_checksums():
    sums = dict(line.split("  ")[::-1] for line in (DS / "SHA256SUMS").read_text().splitlines())
    data_files = sorted(p.name for p in DS.iterdir() if p.suffix in (".inter", ".item", ".npy", ".ids"))
    assert sorted(sums) == data_files
    for name, digest in sums.items():
        assert hashlib.sha256((DS / name).read_bytes()).hexdigest() == digest, name
    for name in ("text_feat.npy", "llm_feat.npy", "user_feat.npy", "user_feat_lusifer.npy", "user_feat_gpt41mini.npy"):
        m = np.load(DS / name)
        n = 1682 if "feat.npy" in name and not name.startswith("user") else 943
        assert m.shape == (n, 384) and m.dtype == np.float32 and np.isfinite(m).all()
        assert np.allclose(np.linalg.norm(m, axis=1), 1, atol=1e-4)


@need_src
def test_rebuild_gives_the_same_bytes(tmp_path):
    mod = _script()
    out = tmp_path / "ml-100k-llm"
    mod.main([str(SRC), "--out", str(out), "--no-embed"])
    for p in sorted(out.iterdir()):
        assert p.read_bytes() == (DS / p.name).read_bytes(), p.name
    # the embeddings: the first batch of the encoder (the 64 longest profiles) again, bit for bit
    from recbole_recgoat.features.encoder import Encoder

    prof = pd.read_csv(SRC / "user_profiles_gpt4omini_100k.csv", dtype=str, keep_default_na=False)
    texts = [t.strip() for t in prof.sort_values("user_id", key=lambda s: s.astype(int)).summary]
    first = sorted(range(len(texts)), key=lambda i: (-len(texts[i]), i))[:64]
    emb = Encoder(device="cpu", batch_size=64).encode([texts[i] for i in first])
    assert np.array_equal(emb, np.load(DS / "user_feat.npy")[first])
