"""The tiny dataset and helpers shared by the tests of the user-preference graph models (DRAGON,
DualGNN: ``PreferenceGraphRecommender``): a hand-computable user co-occurrence graph in which some
pairs of users share items only through validation/test rows."""

import math

import numpy as np
import pytest

# ------------------------------------------------------------------------------------------ a tiny dataset
# training rows (user: items); users 3 and 4 share items 4 and 5 ONLY through validation/test rows,
# and so do users 0 and 3 (item 4), 0 and 4 (item 5), and user 5 with users 0-4 (items 0, 1)
TRAIN = {0: [0, 1, 2, 3], 1: [0, 1], 2: [1, 2, 3], 3: [4], 4: [5], 5: [6, 7]}
VALID = {0: 4, 1: 2, 2: 0, 3: 5, 4: 4, 5: 0}
TEST = {0: 5, 1: 3, 2: 4, 3: 0, 4: 1, 5: 1}
# shared TRAINING items: C(0,1) = |{0,1}| = 2, C(0,2) = |{1,2,3}| = 3, C(1,2) = |{1}| = 1; no other pair
SIG = lambda a: 1.0 / (1.0 + math.exp(-a))  # noqa: E731  softmax over two counts (a, b) = (sig(a - b), sig(b - a))
EXPECTED_K2 = {  # user: {co-user: weight}, softmax over the kept counts
    0: {2: SIG(3 - 2), 1: SIG(2 - 3)},  # counts (3, 2): 0.7311, 0.2689
    1: {0: SIG(2 - 1), 2: SIG(1 - 2)},  # counts (2, 1): 0.7311, 0.2689
    2: {0: SIG(3 - 1), 1: SIG(1 - 3)},  # counts (3, 1): 0.8808, 0.1192
}
EXPECTED_K1 = {0: {2: 1.0}, 1: {0: 1.0}, 2: {0: 1.0}}  # the single most co-occurring user


def _tiny(tmp_path, name="tiny", valid=VALID, test=TEST, modalities=("text",)):
    d = tmp_path / "data" / name
    d.mkdir(parents=True)
    for split, rows in (("train", [(u, i) for u, its in TRAIN.items() for i in its]),
                        ("valid", list(valid.items())), ("test", list(test.items()))):
        lines = ["user_id:token\titem_id:token"] + [f"{u}\t{i}" for u, i in rows]
        (d / f"{name}.{split}.inter").write_text("\n".join(lines) + "\n")
    rng = np.random.default_rng(0)
    files = {}
    for m in modalities:
        np.save(d / f"{m}_feat.npy", rng.standard_normal((8, 8)).astype(np.float32))
        files[m] = f"{m}_feat.npy"
    return {
        "data_path": str(tmp_path / "data"),
        "load_col": {"inter": ["user_id", "item_id"]},
        "benchmark_filename": ["train", "valid", "test"],
        "item_feature_files": files,
        "modalities": list(modalities),
        "train_batch_size": 16,
    }


def _user_graph(net, train_data):
    """``{user token: {co-user token: weight}}`` of the model's user-user graph."""
    tok = train_data._dataset.field2id_token[train_data._dataset.uid_field]
    out = {}
    for (u, v), w in zip(net.user_edges.t().tolist(), net.user_edge_weights.tolist()):
        out.setdefault(int(tok[u]), {})[int(tok[v])] = w
    return out


def _approx(graph, expected):
    assert graph.keys() == expected.keys()
    for u in expected:
        assert graph[u].keys() == expected[u].keys(), u
        for v in expected[u]:
            assert graph[u][v] == pytest.approx(expected[u][v], abs=1e-6), (u, v)
