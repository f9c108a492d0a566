"""MGCN: the purifier and the fuser against hand-computed cases, the frozen graphs, the loss against the
reference's arithmetic, no leakage, gradients, end to end, checkpoint reload, any number of modalities."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from model_support import (assert_checkpoint_evaluates_the_same, assert_gradients_only_on, assert_same_built, model_and_data,
                           quiet_lastfm_copy, train_step, training_pairs)

from recbole_recgoat.model.mgcn import fuse, purify
from recbole_recgoat.quick_start import build_model, prepare, run

pytestmark = pytest.mark.usefixtures("one_thread")


def build(dataset="lastfm-2k", **overrides):
    """``(MGCN, train_data)`` on ``dataset``, graphs cached in the test's folder."""
    return model_and_data("MGCN", dataset, **overrides)


def linear(weight, bias=None):
    w = torch.tensor(weight, dtype=torch.float32)
    layer = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(w)
        if bias is not None:
            layer.bias.copy_(torch.tensor(bias, dtype=torch.float32))
    return layer


# ------------------------------------------------------------------------ (a) the distinctive operations
def test_purifier_gates_the_id_embedding_with_the_feature():
    """E~ = E_id * sigmoid(W x + b). Caught: gating the feature instead of the ID embedding, a missing
    sigmoid, the gate reading E_id instead of the feature, a dropped bias."""
    e_id = torch.tensor([[1.0, 2.0], [-4.0, 1.0]])
    x = torch.tensor([[0.0, math.log(3.0)], [math.log(3.0), 1.0]])
    gate = linear([[1.0, 0.0], [0.0, 1.0]], bias=[0.0, -1.0])
    # by hand: sigmoid(0) = 1/2, sigmoid(log 3 - 1) = 1/(1 + e/3), sigmoid(log 3) = 3/4, sigmoid(0) = 1/2
    s = 1.0 / (1.0 + math.e / 3.0)
    expected = torch.tensor([[0.5 * 1.0, s * 2.0], [0.75 * -4.0, 0.5 * 1.0]])
    assert torch.allclose(purify(e_id, x, gate), expected, atol=1e-6)


def test_fuser_common_and_specific_parts_by_hand():
    """Two modalities, two nodes, d = 2. Node 0: views e1 = [2, 0], e2 = [0, 4]; the query gives logits
    (w . e) = (log 3, 0), so alpha = (3/4, 1/4) (softmax over the MODALITIES of the node);
    E_c = 3/4 e1 + 1/4 e2 = [1.5, 1]; the preference gates read the behaviour view b = 0, so
    P1 = sigmoid(0) = 1/2, P2 = sigmoid(log 3) = 3/4; specific = 1/2 (e1 - E_c) + 3/4 (e2 - E_c)
    = [0.25, -0.5] + [-1.125, 2.25]; side = (E_c + specific) / 3 = [0.625, 2.75] / 3.
    Caught: the softmax over nodes (the authors' dim=0), the specific part without "- E_c", gates fed
    the modality views instead of the behaviour, swapped gates, a mean over M instead of M + 1 parts."""
    w = math.log(3.0) / 2.0
    query = linear([[w, 0.0]])  # stands in for q^T tanh(W_q . + b_q): the fuser takes any d -> 1 map
    gates = [linear([[1.0, 0.0], [0.0, 1.0]], bias=[0.0, 0.0]), linear([[1.0, -1.0], [2.0, 1.0]], bias=[math.log(3.0)] * 2)]
    views = torch.tensor([[[2.0, 0.0], [2.0, 0.0]], [[0.0, 4.0], [2.0, 0.0]]])  # [M=2, N=2, d=2]
    behaviour = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    side, alpha = fuse(views, behaviour, query, gates)
    assert torch.allclose(alpha[:, 0], torch.tensor([0.75, 0.25]), atol=1e-6)
    assert torch.allclose(side[0], torch.tensor([0.625, 2.75]) / 3.0, atol=1e-6)
    # node 1: equal views -> alpha 1/2 each, E_c = the view, specific parts 0, side = E_c / 3
    assert torch.allclose(alpha[:, 1], torch.tensor([0.5, 0.5]), atol=1e-6)
    assert torch.allclose(side[1], torch.tensor([2.0, 0.0]) / 3.0, atol=1e-6)
    # the authors' axis: per modality over the nodes (columns of alpha sum to 1 across nodes, not modalities)
    _, alpha_nodes = fuse(views, behaviour, query, gates, softmax_over="nodes")
    assert torch.allclose(alpha_nodes.sum(dim=1), torch.ones(2)) and not torch.allclose(alpha_nodes, alpha)
    # M = 1: alpha = 1, common part = the view, no specific part, side = view / 2
    one, a1 = fuse(views[:1], behaviour, query, gates[:1])
    assert torch.allclose(a1, torch.ones(1, 2)) and torch.allclose(one, views[0] / 2.0)


def test_model_forward_composes_the_views():
    """E = E_bar_id + fuse([R_hat S^L E~_m; S^L E~_m]); E_bar_id is LightGCN; alpha sums to 1 per node."""
    net, _ = build(modalities=["text", "audio"])
    net.eval()
    with torch.no_grad():
        users, items, parts = net.forward()
        behaviour = net.propagate_ui()
        views = []
        for m in net.modalities:
            gated = net.item_embedding.weight * torch.sigmoid(net.purifier_gate[m](net.feature_proj[m](net.feature_table(m))))
            h = torch.sparse.mm(net.mm_ops[m].coo, gated)  # n_mm_layers = 1
            views.append(torch.cat([torch.sparse.mm(net.r_op.coo, h), h]))
        side, _ = fuse(torch.stack(views), behaviour, net.query_common, [net.prefer_gate[m] for m in net.modalities])
    assert torch.allclose(parts["behaviour"], behaviour)
    assert torch.allclose(torch.cat([users, items]), behaviour + side, atol=1e-6)
    assert torch.allclose(parts["alpha"].sum(dim=0), torch.ones(net.n_users + net.n_items))


def test_item_graphs_are_weighted_cosine_knn_and_r_hat_is_the_normalised_block():
    net, _ = build(modalities=["text", "audio"], knn_k=10)
    for m in net.modalities:
        coo = net.mm_ops[m].coo
        i, j = coo.indices()
        x = F.normalize(net.item_feats[m].double(), dim=1)
        # directed: exactly k out-neighbours per real item (the item itself among them), none for PAD
        out_deg = torch.bincount(i, minlength=net.n_items)
        assert out_deg[0] == 0 and torch.all(out_deg[1:] == 10) and not (j == 0).any()
        assert torch.all(coo.to_dense().diagonal()[1:] > 0)
        # the neighbours are the top-10 cosines (checked on a few rows)
        for r in (1, 100, net.n_items - 1):
            sim = x[r] @ x.T
            sim[0] = -2
            assert set(j[i == r].tolist()) == set(sim.topk(10).indices.tolist())
        # weights: cos(i, j) / sqrt(d_i d_j), d = row sums of the cosines
        cos = (x[i] * x[j]).sum(1)
        deg = torch.zeros(net.n_items, dtype=torch.float64).index_add_(0, i, cos)
        assert torch.allclose(coo.values().double(), cos / (deg[i] * deg[j]).sqrt(), atol=1e-5)
    r = net.r_op.coo
    u, it = r.indices()
    du = torch.bincount(net.train_users, minlength=net.n_users).double()
    di = torch.bincount(net.train_items, minlength=net.n_items).double()
    assert torch.allclose(r.values().double(), (du[u] * di[it]).rsqrt(), atol=1e-7)
    block = net.norm_adj.to_dense()[: net.n_users, net.n_users :]
    assert torch.allclose(r.to_dense(), block, atol=1e-7)  # = the user-item block of A_hat (reference: self.R)


def test_loss_matches_the_reference_arithmetic():
    """BPR + reg_weight * sum(||.||^2) / (2 batch_size) + cl_weight * (InfoNCE_items + InfoNCE_users),
    InfoNCE as the reference's (mean over the batch, denominator over the batch's rows of the behaviour view)."""
    net, train_data = build(reg_weight=0.01, cl_weight=0.5, tau=0.2)
    batch = next(iter(train_data))
    net.train()
    with torch.no_grad():
        loss = net.calculate_loss(batch)
        users, items, parts = net.forward()
    uid, pos, neg = batch[net.USER_ID], batch[net.ITEM_ID], batch[net.NEG_ITEM_ID]
    u, p, n = users[uid], items[pos], items[neg]
    bpr = -F.logsigmoid((u * p).sum(1) - (u * n).sum(1)).mean()
    reg = 0.5 * (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / train_data.config["train_batch_size"]

    def ref_infonce(v1, v2, t):
        v1, v2 = F.normalize(v1, dim=1), F.normalize(v2, dim=1)
        return -torch.log(torch.exp((v1 * v2).sum(-1) / t) / torch.exp(v1 @ v2.T / t).sum(1)).mean()

    su, si = torch.split(parts["side"], [net.n_users, net.n_items])
    bu, bi = torch.split(parts["behaviour"], [net.n_users, net.n_items])
    cl = ref_infonce(si[pos], bi[pos], 0.2) + ref_infonce(su[uid], bu[uid], 0.2)
    assert torch.allclose(loss, bpr + 0.01 * reg + 0.5 * cl, rtol=1e-5)


def test_a_bad_softmax_switch_value_is_refused():
    """(Every key ruled and every default passing: test_config_keys, for all models.)"""
    from recbole_recgoat.config import Config
    from recbole_recgoat.errors import InputError

    with pytest.raises(InputError, match="mgcn_softmax_over"):
        Config("MGCN", "lastfm-2k", config_dict={"mgcn_softmax_over": "users"})


# ------------------------------------------------------------------------ (b) no leakage
def _built_in_original_ids(cfg):
    config, _, tr, _, _, _ = prepare("MGCN", "lfm", config_dict=cfg, log=False)
    net, ds = build_model(config, tr), tr._dataset
    utok, itok = ds.field2id_token[ds.uid_field], ds.field2id_token[ds.iid_field]

    def edges(coo, left, right):
        (a, b), v = coo.indices().numpy(), coo.values().numpy()
        return {(left[x], right[y]): float(w) for x, y, w in zip(a, b, v)}

    out = {"R_hat": edges(net.r_op.coo, utok, itok), "A_hat": edges(net.norm_adj, np.r_[utok, itok], np.r_[utok, itok])}
    for m in net.modalities:
        out[f"S_{m}"] = edges(net.mm_ops[m].coo, itok, itok)
        out[f"features_{m}"] = {itok[k]: net.item_feats[m][k].numpy().tobytes() for k in range(1, len(itok))}
    return out


def test_nothing_is_built_from_validation_or_test_rows(tmp_path):
    """Every graph MGCN builds (R_hat, A_hat, the item-item graphs) and its feature tables are identical when
    the validation and test rows change, and R_hat holds exactly the training pairs."""
    a = _built_in_original_ids(quiet_lastfm_copy(tmp_path / "a", permute_eval=False, item_feature_norm={"audio": "l2"}))
    b = _built_in_original_ids(quiet_lastfm_copy(tmp_path / "b", permute_eval=True, item_feature_norm={"audio": "l2"}))
    assert (tmp_path / "a/data/lfm/lfm.test.inter").read_text() != (tmp_path / "b/data/lfm/lfm.test.inter").read_text()
    assert_same_built(a, b)
    train = training_pairs(tmp_path / "a/data/lfm/lfm.train.inter")
    assert set(a["R_hat"]) == train


# ------------------------------------------------------------------------ (c) gradients
def test_one_step_is_finite_and_reaches_the_trained_parameters_only():
    net, train_data = build(modalities=["text", "audio"])
    loss = train_step(net, next(iter(train_data)))
    assert torch.isfinite(loss)
    groups = ["user_embedding", "item_embedding", "query_common"]
    for m in net.modalities:
        groups += [f"feature_tables.{m}", f"feature_proj.{m}", f"purifier_gate.{m}", f"prefer_gate.{m}"]
    assert_gradients_only_on(net, groups)
    # frozen: the raw features and every graph are buffers without gradient
    assert not list(net.mm_ops.parameters()) and not list(net.r_op.parameters()) and not list(net.adj_op.parameters())
    for name, buf in net.named_buffers():
        assert not buf.requires_grad and buf.grad is None, name
    frozen, _ = build(modalities=["text", "audio"], finetune_features=False)
    assert not any(n.startswith("feature_tables") for n, _ in frozen.named_parameters())
    assert torch.isfinite(train_step(frozen, next(iter(train_data))))


# ------------------------------------------------------------------------ (d) end to end, (e) checkpoint
@pytest.mark.parametrize("dataset", ["lastfm-2k", "ml-100k"])
def test_one_epoch_end_to_end(dataset, fast):
    result = run("MGCN", dataset, config_dict=dict(fast, epochs=1))
    assert result["epochs_run"] == 1
    assert 0.0 < result["test_result"]["recall@20"] <= 1.0
    if dataset == "lastfm-2k":  # (e) the checkpoint reloads to the same test metrics
        assert_checkpoint_evaluates_the_same(result)


# ------------------------------------------------------------------------ (f) any number of modalities
@pytest.mark.parametrize("modalities", [["text"], ["text", "audio"], ["text", "audio", "whisper"]])
def test_any_number_of_modalities(modalities):
    net, train_data = build(modalities=modalities)
    assert net.modalities == modalities and set(net.mm_ops) == set(modalities)
    assert torch.isfinite(train_step(net, next(iter(train_data))))
    net.eval()
    users = torch.arange(1, 6)
    scores = net.full_sort_predict({net.USER_ID: users})
    assert scores.shape == (5, net.n_items) and torch.isfinite(scores).all()
    _, _, parts = net.forward()
    assert parts["alpha"].shape == (len(modalities), net.n_users + net.n_items)
