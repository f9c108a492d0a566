"""GRCN: the graph refinement (edge affinities, confidences, hard/soft pruning) and the routing on a
hand-computed case, no leakage, gradients, end-to-end runs on lastfm-2k and ml-100k, checkpoint
reload, any number of modalities."""

import math
import os

import numpy as np
import pytest
import torch

from conftest import BUNDLED
from model_support import (assert_checkpoint_evaluates_the_same, copy_lastfm, model_and_data, token_ids, train_step, training_pairs,
                           user_item_pairs, write_tiny_dataset)

from recbole_recgoat.quick_start import run

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = {"embedding_size": 16, "feat_embed_dim": 16, "num_routing": 1}  # the runs' sizes: keeps the file fast


def _model(dataset=None, **overrides):
    """``(GRCN, train_data)`` on ``dataset`` (None: the default, lastfm-2k), graphs not cached."""
    return model_and_data("GRCN", dataset, **{"graph_cache_dir": None, **overrides})


# ------------------------------------------------------------------------------------------ a tiny dataset
TRAIN = {0: [0, 1], 1: [0], 2: [2, 3], 3: [4]}  # users 2 and 3 keep every user short of the whole catalogue
VALID = {0: 2, 1: 1, 2: 0, 3: 0}
TEST = {0: 3, 1: 2, 2: 1, 3: 1}
FEATS = {0: [1.0, 0.0], 1: [0.0, 1.0], 2: [1.0, 1.0], 3: [1.0, 2.0], 4: [2.0, 1.0]}  # item token: content x_i (before normalize)
PREFS = {0: [1.0, 0.0], 1: [0.6, 0.8], 2: [1.0, 1.0], 3: [1.0, 0.0]}  # user token: preference P_u
CONF_U = {0: 0.5, 1: -2.0, 2: 1.0, 3: 1.0}  # per-node confidences (one modality)
CONF_I = {0: 1.0, 1: -1.0, 2: 1.0, 3: 1.0, 4: 1.0}


def _tiny(tmp_path, name="tiny", valid=VALID, test=TEST):
    """The rows above (other validation/test rows if given), random positive 2-d text features
    (replaced by FEATS in the hand cases), 2-d embeddings."""
    feats = {"text": np.random.default_rng(0).random((5, 2)).astype(np.float32) + 0.1}
    return {**write_tiny_dataset(tmp_path, name, TRAIN, valid, test, feats), "embedding_size": 2, "feat_embed_dim": 2}


def _set_hand_case(net, tr):
    """The MLP is the identity (positive features: leaky_relu changes nothing), features, preferences
    and confidences as the tables above."""
    uid, iid = token_ids(tr)
    with torch.no_grad():
        net.feature_mlp["text"].weight.copy_(torch.eye(2))
        net.feature_mlp["text"].bias.zero_()
        f = torch.zeros(net.n_items, 2)
        for t, v in FEATS.items():
            f[iid[t]] = torch.tensor(v)
        net.item_feats["text"] = f
        for t, v in PREFS.items():
            net.preference["text"][uid[t]] = torch.tensor(v)
        for t, c in CONF_U.items():
            net.confidence[uid[t], 0] = c
        for t, c in CONF_I.items():
            net.confidence[net.n_users + iid[t], 0] = c
    return uid, iid


def _edges(net, tr, values):
    """``{(user token, item token): value}`` of an edge vector ``[E]``."""
    uid, iid = token_ids(tr)
    ut, it = {v: k for k, v in uid.items()}, {v: k for k, v in iid.items()}
    return {(ut[u], it[i]): float(x) for u, i, x in zip(net.train_users.tolist(), net.train_items.tolist(), values)}


E = math.e
S = {(0, 0): 1.0, (0, 1): 0.0, (1, 0): 0.6}  # p_u . x_i (unit vectors)
A_IU = {(0, 0): E / (E + 1), (0, 1): 1 / (E + 1), (1, 0): 1.0}  # softmax over the USER's items
A_UI = {(0, 0): E / (E + math.exp(0.6)), (0, 1): 1.0, (1, 0): math.exp(0.6) / (E + math.exp(0.6))}  # over the ITEM's users
W_UI = {e: A_UI[e] * CONF_U[e[0]] for e in S}  # (1, 0): -2 * 0.401 = -0.803 -> hard pruning drops it
W_IU = {e: A_IU[e] * CONF_I[e[1]] for e in S}  # (0, 1): -1 * 0.269 -> dropped


def test_edge_pruning_is_the_hand_computed_refined_graph(tmp_path):
    """Catches: the softmax over the wrong side (user->item weights normalised over the user's items:
    (0, 0) would be 0.731 * 0.5), the confidence of the wrong node (the item's on user->item edges),
    no pruning (the disagreeing edges keep -0.803 / -0.269), pruning before the confidence (relu of the
    always-positive softmax drops nothing), and a propagation that ignores the refined weights."""
    cfg = _tiny(tmp_path)
    net, tr = _model("tiny", **cfg, num_routing=0, n_ui_layers=1)
    _set_hand_case(net, tr)
    net.eval()
    with torch.no_grad():
        users, items, parts = net.forward()
    want_ui = {e: max(w, 0.0) for e, w in W_UI.items()}
    want_iu = {e: max(w, 0.0) for e, w in W_IU.items()}
    got_ui, got_iu = _edges(net, tr, parts["w_ui"]), _edges(net, tr, parts["w_iu"])
    for e in S:
        assert got_ui[e] == pytest.approx(want_ui[e], abs=1e-6), e
        assert got_iu[e] == pytest.approx(want_iu[e], abs=1e-6), e
    assert got_ui[(1, 0)] == 0.0 and got_iu[(0, 1)] == 0.0  # hard pruning: the disagreeing edges are gone
    # the refined graph carries the ID convolution: item 0 hears user 0 only (user 1's edge is pruned)
    uid, iid = token_ids(tr)
    h = torch.nn.functional.normalize(net.ego_embeddings(), dim=1)
    want_i0 = h[net.n_users + iid[0]] + want_ui[(0, 0)] * h[uid[0]]
    assert torch.allclose(items[iid[0], :2], want_i0, atol=1e-6)
    want_u0 = h[uid[0]] + want_iu[(0, 0)] * h[net.n_users + iid[0]]  # item 1's message is pruned
    assert torch.allclose(users[uid[0], :2], want_u0, atol=1e-6)
    # the content part: c_u = p_u + sum_i alpha_{i->u} x_i
    want_c0 = torch.tensor([1.0, 0.0]) + A_IU[(0, 0)] * torch.tensor([1.0, 0.0]) + A_IU[(0, 1)] * torch.tensor([0.0, 1.0])
    assert torch.allclose(users[uid[0], 2:], want_c0, atol=1e-6)

    # soft pruning (pruning: False) keeps the signed weights
    soft, trs = _model("tiny", **cfg, num_routing=0, n_ui_layers=1, pruning=False)
    _set_hand_case(soft, trs)
    with torch.no_grad():
        _, _, p = soft.forward()
    got = _edges(soft, trs, p["w_ui"])
    assert got[(1, 0)] == pytest.approx(W_UI[(1, 0)], abs=1e-6) and got[(1, 0)] < 0
    assert _edges(soft, trs, p["w_iu"])[(0, 1)] == pytest.approx(W_IU[(0, 1)], abs=1e-6)


def test_routing_updates_the_user_preference(tmp_path):
    """One routing iteration: p_0 <- normalize(p_0 + 0.731 x_0 + 0.269 x_1). Catches: routing at the
    items (the reference's flow: users unchanged, kept behind grcn_route_to_users: False), a missing
    normalisation, softmax over the item's users instead of the user's items."""
    cfg = _tiny(tmp_path)
    net, tr = _model("tiny", **cfg, num_routing=1)
    uid, iid = _set_hand_case(net, tr)
    with torch.no_grad():
        feat = net.content_features("text")
        pref = torch.nn.functional.normalize(net.preference["text"], dim=1)
        routed = net.route(pref, feat)
    want = torch.nn.functional.normalize(torch.tensor([1 + A_IU[(0, 0)], A_IU[(0, 1)]]), dim=0)
    assert torch.allclose(routed[uid[0]], want, atol=1e-6)
    assert torch.allclose(routed[uid[1]], torch.nn.functional.normalize(torch.tensor([1.6, 0.8]), dim=0), atol=1e-6)
    ref, trr = _model("tiny", **cfg, num_routing=1, grcn_route_to_users=False)
    _set_hand_case(ref, trr)
    with torch.no_grad():
        assert torch.equal(ref.route(pref, feat), pref)


# ------------------------------------------------------------------------------------------ leakage
def test_nothing_built_from_validation_or_test_rows(tmp_path):
    """GRCN builds from the data only the training edge list (the refinement and the convolution
    run over ``train_users`` / ``train_items``) and the inherited adjacency: both are exactly the
    training file's pairs, the same whatever the validation/test rows (tiny and Last.fm copies
    with their evaluation items permuted)."""
    a, tra = _model("tiny", **_tiny(tmp_path / "a"))
    b, trb = _model("tiny", **_tiny(tmp_path / "b", valid={0: 4, 1: 2, 2: 4, 3: 2}, test={0: 2, 1: 3, 2: 0, 3: 3}))
    assert _built(a, tra) == _built(b, trb)
    assert _built(a, tra)["edges"] == {(u, i) for u, its in TRAIN.items() for i in its}
    cfgs = [copy_lastfm(tmp_path / name, name, permute_eval=permute) for name, permute in (("la", False), ("lb", True))]
    (ma, ta), (mb, tb) = _model("la", **cfgs[0]), _model("lb", **cfgs[1])
    ga = _built(ma, ta)
    assert ga == _built(mb, tb)
    lfm = BUNDLED / "lastfm-2k"
    train = {(int(u), int(i)) for u, i in training_pairs(lfm / "lastfm-2k.train.inter")}
    assert ga["edges"] == train
    # no other data-derived structure: the buffers are the features, the edge list (and its CSR
    # kernels' index arrays, ``edges``, and its per-modality copies, ``modal_edges``) and the adjacency
    names = {n.split(".")[0] for n, _ in ma.named_buffers()}
    assert names <= {"item_feats", "user_feats", "train_users", "train_items", "adj_op", "edges", "modal_edges"}, names
    e, pairs = ma.edges, set(zip(ma.train_users.tolist(), ma.train_items.tolist()))
    rows = torch.repeat_interleave(torch.arange(e.n_users), e.user_ptr.diff())
    assert set(zip(rows.tolist(), e.user_cols.tolist())) == pairs
    rows = torch.repeat_interleave(torch.arange(e.n_items), e.item_ptr.diff())
    assert set(zip(e.item_cols.tolist(), rows.tolist())) == pairs
    g, n = ma.modal_edges, len(ma.modalities)
    assert set(zip(g.users.tolist(), g.items.tolist())) == {
        (u + k * ma.n_users, i + k * ma.n_items) for k in range(n) for u, i in pairs
    }


def _built(net, train_data):
    ds = train_data._dataset
    utok, itok = ds.field2id_token[ds.uid_field], ds.field2id_token[ds.iid_field]
    return {
        "edges": {(int(utok[u]), int(itok[i])) for u, i in zip(net.train_users.tolist(), net.train_items.tolist())},
        "adj": {(int(u), int(i)) for u, i in user_item_pairs(net, ds)},
    }


# ------------------------------------------------------------------------------------------ training
def test_one_step_gradients_reach_trained_parameters_only():
    net, tr = _model()
    feats = {m: f.clone() for m, f in net.item_feats.items()}
    edges = (net.train_users.clone(), net.train_items.clone())
    batch = next(iter(tr)).to(net.device)
    loss = train_step(net, batch)
    assert torch.isfinite(loss)
    names = {n for n, _ in net.named_parameters()}
    assert names == ({"user_embedding.weight", "item_embedding.weight", "confidence"}
                     | {f"preference.{m}" for m in net.modalities}
                     | {f"feature_mlp.{m}.{p}" for m in net.modalities for p in ("weight", "bias")})
    for n, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, n
    assert all(not b.requires_grad for b in net.buffers())
    assert all(torch.equal(feats[m], net.item_feats[m]) for m in feats)
    assert torch.equal(edges[0], net.train_users) and torch.equal(edges[1], net.train_items)
    # the loss is the reference's arithmetic
    net.eval()
    with torch.no_grad():
        users, items, _ = net.forward()
        u, p, n = batch[net.USER_ID], batch[net.ITEM_ID], batch[net.NEG_ITEM_ID]
        diff = (users[u] * items[p]).sum(1) - (users[u] * items[n]).sum(1)
        eu, ei = net.user_embedding.weight[u.repeat_interleave(2)], net.item_embedding.weight[torch.stack([p, n], 1).reshape(-1)]
        reg = (eu**2 + ei**2).mean() + (net.preference[net.modalities[0]] ** 2).mean()
        reg = reg + sum((net.preference[m][u] ** 2).mean() for m in net.modalities)
        want = -torch.log(torch.sigmoid(diff)).mean() + net.reg_weight * reg
        assert torch.allclose(net.calculate_loss(batch), want, atol=1e-5)


@pytest.mark.parametrize("modalities", [["text"], ["text", "audio"], ["text", "audio", "whisper"]])
def test_any_number_of_modalities(modalities):
    net, tr = _model(modalities=modalities, item_feature_norm={"audio": "l2", "whisper": "l2"})
    assert net.modalities == modalities and net.confidence.shape == (net.n_users + net.n_items, len(modalities))
    loss = train_step(net, next(iter(tr)).to(net.device))
    assert torch.isfinite(loss)
    net.eval()
    scores = net.full_sort_predict({net.USER_ID: torch.arange(1, 6, device=net.device)})
    assert net.inference_embeddings()[0].shape == (net.n_users, net.embedding_size + net.feat_embed_dim * len(modalities))
    assert scores.shape == (5, net.n_items) and torch.isfinite(scores).all()


# ------------------------------------------------------------------------------------------ runs
@pytest.mark.parametrize("dataset", ["lastfm-2k", "ml-100k"])
def test_one_epoch_end_to_end(dataset, fast):
    result = run("GRCN", dataset, config_dict=dict(fast, epochs=1, **SMALL))
    assert result["epochs_run"] == 1
    assert 0.0 < result["test_result"]["recall@20"] <= 1.0


def test_checkpoint_reloads_for_evaluation(fast):
    result = run("GRCN", config_dict=dict(fast, **SMALL))
    assert os.path.isfile(result["checkpoint"])
    assert_checkpoint_evaluates_the_same(result)
