"""The tiny dataset and helpers shared by the tests of the user-preference graph models (DRAGON,
DualGNN: ``PreferenceGraphRecommender``): a hand-computable user co-occurrence graph in which some
pairs of users share items only through validation/test rows."""

import math

import numpy as np
import pytest
import torch

from model_support import write_tiny_dataset

from recbole_recgoat.model.layers.graph import user_cooccurrence_topk

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
    """The rows above (other validation/test rows if given), 8 items, random 8-d features per modality."""
    rng = np.random.default_rng(0)
    feats = {m: rng.standard_normal((8, 8)).astype(np.float32) for m in modalities}
    return write_tiny_dataset(tmp_path, name, TRAIN, valid, test, feats)


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


def _builder_user_graph(pairs, n_users, n_items, topk):
    """``{(user token, co-user token, weight to 6 places)}``: the shared builder's top-k user graph on
    the ``(user token, item token)`` string pairs of a dataset whose tokens are its ids (Last.fm-2K)."""
    arr = np.array(sorted((int(u), int(i)) for u, i in pairs))
    e, w = user_cooccurrence_topk(torch.from_numpy(arr[:, 0]), torch.from_numpy(arr[:, 1]), n_users, n_items, topk)
    return {(str(u), str(v), round(x, 6)) for (u, v), x in zip(e.t().tolist(), w.tolist())}


def _reference_loss(net, batch):
    """The reference's loss recomputed from the model's forward pass (call it under ``torch.no_grad``):
    -mean log2 sigmoid(s+ - s-) + reg_weight * (sum_m mean(P_m[u]^2) + mean(alpha^2))."""
    users, items, _ = net.forward()
    u, p, n = batch[net.USER_ID], batch[net.ITEM_ID], batch[net.NEG_ITEM_ID]
    diff = (users[u] * items[p]).sum(1) - (users[u] * items[n]).sum(1)
    reg = sum((net.preference[m][u] ** 2).mean() for m in net.modalities) + (net.user_modality_weight**2).mean()
    return -torch.log2(torch.sigmoid(diff)).mean() + net.reg_weight * reg
