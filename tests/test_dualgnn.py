"""DualGNN: the user co-occurrence graph (training rows only, hand-computed), the weighted-sum
fusion, no leakage, gradients, end-to-end runs on lastfm-2k and ml-100k, checkpoint reload, any
number of modalities."""

import math
import os

import pytest
import torch

from conftest import BUNDLED
from model_support import (assert_checkpoint_evaluates_the_same, copy_lastfm, model_and_data, token_ids, train_step, training_pairs,
                           user_item_pairs)
from preference_graph_support import (VALID, TEST, EXPECTED_K1, EXPECTED_K2, _approx, _builder_user_graph, _reference_loss,
                                      _tiny, _user_graph)

from recbole_recgoat.errors import InputError
from recbole_recgoat.quick_start import run

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(dataset=None, **overrides):
    """``(DualGNN, train_data)`` on ``dataset`` (None: the default, lastfm-2k), graphs not cached."""
    return model_and_data("DualGNN", dataset, **{"graph_cache_dir": None, **overrides})


def test_user_graph_is_the_hand_computed_training_cooccurrence(tmp_path):
    """Catches: counting validation/test rows (users 3-4, 0-3 and 0-4 would get edges), dropping the
    top-k (k=1 keeps one co-user), a wrong ranking (k=1 keeps the LARGEST count: 0->2, not 0->1),
    another weighting than the row softmax of the counts (e.g. mean 1/2 or counts / row sum 0.6/0.4),
    keeping self-loops (C(u,u) = |items of u| would rank first), and a forward pass that skips or
    re-weights the user-graph aggregation u = h_u + sum_v w_uv h_v."""
    cfg = _tiny(tmp_path)
    net, tr = _model("tiny", **cfg, user_topk=2)
    _approx(_user_graph(net, tr), EXPECTED_K2)  # users 3 and 4 (and PAD): no edge at all
    net1, tr1 = _model("tiny", **cfg, user_topk=1)
    _approx(_user_graph(net1, tr1), EXPECTED_K1)
    mean, trm = _model("tiny", **cfg, user_topk=2, user_aggr="mean")
    _approx(_user_graph(mean, trm), {u: {v: 0.5 for v in vs} for u, vs in EXPECTED_K2.items()})
    # the forward pass adds the weighted co-users: u = h_u + sum_v w_uv h_v (one modality: h_u = H_text[u])
    net.eval()
    with torch.no_grad():
        users, items, parts = net.forward()
    h = parts["modality_nodes"]["text"]
    uid, _ = token_ids(tr)
    want2 = h[uid[2]] + EXPECTED_K2[2][0] * h[uid[0]] + EXPECTED_K2[2][1] * h[uid[1]]
    assert torch.allclose(users[uid[2]], want2, atol=1e-6)
    assert torch.equal(users[uid[3]], h[uid[3]])  # no co-user: unchanged
    assert torch.equal(items, h[net.n_users:])


def test_weighted_sum_fusion_and_reference_switch(tmp_path):
    """construction weighted_sum: h_u = sum_m alpha_um H_m[u], items = sum_m H_m[i] (unweighted).
    Catches: weighting the items, concatenating instead of summing, ignoring alpha; and
    ``dualgnn_first_modality_sum`` (the reference's in-place add): alpha_u0 (H_0 + H_1) + alpha_u1 H_1."""
    cfg = _tiny(tmp_path, modalities=("text", "audio"))
    net, tr = _model("tiny", **cfg, user_topk=2)
    ref, _ = _model("tiny", **cfg, user_topk=2, dualgnn_first_modality_sum=True)
    ref.load_state_dict(net.state_dict())
    uid, _ = token_ids(tr)
    with torch.no_grad():
        net.user_modality_weight.copy_(torch.rand_like(net.user_modality_weight))
        ref.user_modality_weight.copy_(net.user_modality_weight)
        (users, items, parts), (_, ri, rp) = net.forward(), ref.forward()
    ht, ha = parts["modality_nodes"]["text"], parts["modality_nodes"]["audio"]
    nu, a = net.n_users, net.user_modality_weight[:, :, 0]
    assert users.shape == (nu, net.embedding_size) and items.shape == (net.n_items, net.embedding_size)
    assert torch.allclose(items, ht[nu:] + ha[nu:], atol=1e-6)
    assert torch.allclose(parts["fused_users"], a[:, :1] * ht[:nu] + a[:, 1:] * ha[:nu], atol=1e-6)
    assert torch.allclose(rp["fused_users"], a[:, :1] * (ht[:nu] + ha[:nu]) + a[:, 1:] * ha[:nu], atol=1e-6)
    assert torch.equal(ri, items)
    u3 = uid[3]  # no co-user: the fused vector itself
    assert torch.allclose(users[u3], a[u3, 0] * ht[u3] + a[u3, 1] * ha[u3], atol=1e-6)


def test_padding_switch_reweights_duplicated_co_users(tmp_path):
    """``dualgnn_pad_user_neighbours`` (the reference): a row with n < k co-users is padded to k by
    random re-draws; a co-user drawn r extra times weighs (1 + r) exp(C) / sum."""
    net, tr = _model("tiny", **_tiny(tmp_path), user_topk=3, dualgnn_pad_user_neighbours=True)
    torch.manual_seed(0)
    net.pre_epoch_processing()
    w = net.uu_op.coo
    assert _user_graph(net, tr)[2] == {0: 3.0, 1: 1.0}  # the stored weights are the counts here
    uid, _ = token_ids(tr)
    row = w.to_dense()[uid[2]]  # tiny: 7 x 7
    e3, e1 = math.exp(3), math.exp(1)
    options = [(2 * e3 / (2 * e3 + e1), e1 / (2 * e3 + e1)), (e3 / (e3 + 2 * e1), 2 * e1 / (e3 + 2 * e1))]
    got = (float(row[uid[0]]), float(row[uid[1]]))
    assert any(got == pytest.approx(o, abs=1e-6) for o in options)


# ------------------------------------------------------------------------------------------ leakage
def test_nothing_built_from_validation_or_test_rows(tmp_path):
    """Other validation/test rows (the tiny set's, and Last.fm's with its eval items permuted):
    identical user-user graph and user-item graph, in original ids; the user-item graph is exactly
    the training pairs and the user graph the builder's on the training file."""
    a, tra = _model("tiny", **_tiny(tmp_path / "a"))
    shuffled = {u: (i + 2) % 8 for u, i in VALID.items()}, {u: (i + 3) % 8 for u, i in TEST.items()}
    b, trb = _model("tiny", **_tiny(tmp_path / "b", valid=shuffled[0], test=shuffled[1]))
    assert _built(a, tra) == _built(b, trb)

    lfm = BUNDLED / "lastfm-2k"
    cfgs = [{**copy_lastfm(tmp_path / name, name, permute_eval=permute), "item_feature_norm": {"audio": "l2"}}
            for name, permute in (("la", False), ("lb", True))]
    (ma, ta), (mb, tb) = _model("la", **cfgs[0]), _model("lb", **cfgs[1])
    ga, gb = _built(ma, ta), _built(mb, tb)
    assert ga == gb
    train = training_pairs(lfm / "lastfm-2k.train.inter")
    assert ga["ui"] == train
    assert ga["uu"] == _builder_user_graph(train, 1858, 1425, ma.user_topk)


def _built(net, train_data):
    """Everything the model builds from data, in original ids: the user-item and user-user graphs."""
    ds = train_data._dataset
    utok = ds.field2id_token[ds.uid_field]
    return {
        "ui": user_item_pairs(net, ds),
        "uu": {(utok[u], utok[v], round(x, 6)) for (u, v), x in zip(net.user_edges.t().tolist(), net.user_edge_weights.tolist())},
    }


# ------------------------------------------------------------------------------------------ training
def test_one_step_gradients_reach_trained_parameters_only():
    net, tr = _model()
    graphs = (net.user_edges.clone(), net.user_edge_weights.clone(), net.norm_adj.clone())
    feats = {m: f.clone() for m, f in net.item_feats.items()}
    loss = train_step(net, next(iter(tr)).to(net.device), pre_epoch=True)
    assert torch.isfinite(loss)
    names = {n for n, _ in net.named_parameters()}
    assert names == ({f"preference.{m}" for m in net.modalities} | {"user_modality_weight"}
                     | {f"feature_mlp.{m}.{k}.{p}" for m in net.modalities for k in (0, 2) for p in ("weight", "bias")})
    for n, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, n
    # frozen: the raw features and the graphs are buffers, untouched by the step
    assert all(not b.requires_grad for b in net.buffers())
    assert all(torch.equal(feats[m], net.item_feats[m]) for m in feats)
    assert torch.equal(graphs[0], net.user_edges) and torch.equal(graphs[1], net.user_edge_weights)
    assert torch.equal(graphs[2].values(), net.norm_adj.values())
    # the loss is the reference's: -mean log2 sigmoid(s+ - s-) + reg_weight * (sum_m mean(P_m[u]^2) + mean(alpha^2))
    batch = next(iter(tr))
    net.eval()
    with torch.no_grad():
        want = _reference_loss(net, batch)
        assert torch.allclose(net.calculate_loss(batch), want, atol=1e-5)


def test_embedding_sizes_must_match():
    with pytest.raises(InputError, match="feat_embed_dim: 32; expected embedding_size"):
        _model(feat_embed_dim=32)


@pytest.mark.parametrize("modalities", [["text"], ["text", "audio"], ["text", "audio", "whisper"]])
def test_any_number_of_modalities(modalities):
    net, tr = _model(modalities=modalities, item_feature_norm={"audio": "l2", "whisper": "l2"})
    assert net.modalities == modalities
    assert (net.user_modality_weight is None) == (len(modalities) == 1)
    loss = train_step(net, next(iter(tr)).to(net.device), pre_epoch=True)
    assert torch.isfinite(loss)
    net.eval()
    scores = net.full_sort_predict({net.USER_ID: torch.arange(1, 6, device=net.device)})
    assert net.inference_embeddings()[0].shape == (net.n_users, net.embedding_size)
    assert scores.shape == (5, net.n_items) and torch.isfinite(scores).all()


# ------------------------------------------------------------------------------------------ runs
@pytest.mark.parametrize("dataset", ["lastfm-2k", "ml-100k"])
def test_one_epoch_end_to_end(dataset, fast):
    result = run("DualGNN", dataset, config_dict=dict(fast, epochs=1))
    assert result["epochs_run"] == 1
    assert 0.0 < result["test_result"]["recall@20"] <= 1.0


def test_checkpoint_reloads_for_evaluation(fast):
    result = run("DualGNN", config_dict=fast)
    assert os.path.isfile(result["checkpoint"])
    assert_checkpoint_evaluates_the_same(result)
