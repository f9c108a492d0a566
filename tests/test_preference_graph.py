"""DRAGON and DualGNN (``PreferenceGraphRecommender``): the user co-occurrence graph (training rows
only, hand-computed) and its builder, the reference's padding switch, no leakage, gradients, the
embedding-size rule, any number of modalities, end-to-end runs on lastfm-2k and ml-100k, checkpoint
reload. Each test runs on both models; what differs between them is in ``SPEC``. DualGNN's own
weighted-sum fusion is in test_dualgnn.py."""

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
from recbole_recgoat.model.layers.graph import user_cooccurrence_topk
from recbole_recgoat.quick_start import run

pytestmark = pytest.mark.usefixtures("one_thread")

# what differs: DRAGON also builds an item-item graph (mm_op) and concatenates its modalities; DualGNN's
# item side is the modality nodes themselves and its modalities are summed
SPEC = {
    "DRAGON": {"item_graph": True, "width": lambda net: net.embedding_size * len(net.modalities)},
    "DualGNN": {"item_graph": False, "width": lambda net: net.embedding_size},
}
MODELS = pytest.mark.parametrize("model", list(SPEC))


def _model(model, dataset=None, **overrides):
    """``(model, train_data)`` on ``dataset`` (None: the default, lastfm-2k), graphs not cached."""
    return model_and_data(model, dataset, **{"graph_cache_dir": None, **overrides})


@MODELS
def test_user_graph_is_the_hand_computed_training_cooccurrence(model, tmp_path):
    """Catches: counting validation/test rows (users 3-4, 0-3 and 0-4 would get edges), dropping the
    top-k (k=1 keeps one co-user), a wrong ranking (k=1 keeps the LARGEST count: 0->2, not 0->1),
    another weighting than the row softmax of the counts (e.g. mean 1/2 or counts / row sum 0.6/0.4),
    keeping self-loops (C(u,u) = |items of u| would rank first), and a forward pass that skips or
    re-weights the user-graph aggregation u = h_u + sum_v w_uv h_v."""
    cfg = _tiny(tmp_path)
    net, tr = _model(model, "tiny", **cfg, user_topk=2)
    _approx(_user_graph(net, tr), EXPECTED_K2)  # users 3 and 4 (and PAD): no edge at all
    net1, tr1 = _model(model, "tiny", **cfg, user_topk=1)
    _approx(_user_graph(net1, tr1), EXPECTED_K1)
    mean, trm = _model(model, "tiny", **cfg, user_topk=2, user_aggr="mean")
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
    if not SPEC[model]["item_graph"]:  # DualGNN: the items are the modality nodes themselves
        assert torch.equal(items, h[net.n_users:])


def test_cooccurrence_builder_sparse_blocks_duplicates_and_ties():
    """The shared builder: blockwise R R^T (one user per block) equals one block; a repeated (user, item) row counts once;
    equal counts keep the smaller user id first; a user without co-users has no edge."""
    users = torch.tensor([1, 1, 1, 2, 2, 3, 3, 1, 4])
    items = torch.tensor([0, 1, 2, 0, 1, 1, 2, 0, 5])  # (1, 0) twice
    e1, w1 = user_cooccurrence_topk(users, items, 5, 6, 2, weighting="count", max_block_pairs=1)
    e2, w2 = user_cooccurrence_topk(users, items, 5, 6, 2, weighting="count")
    assert torch.equal(e1, e2) and torch.equal(w1, w2)
    # C(1,2) = 2 (items 0, 1; the duplicate (1, 0) does not make 3), C(1,3) = 2, C(2,3) = 1
    assert e1.t().tolist() == [[1, 2], [1, 3], [2, 1], [2, 3], [3, 1], [3, 2]]
    assert w1.tolist() == [2.0, 2.0, 2.0, 1.0, 2.0, 1.0]
    e, w = user_cooccurrence_topk(users, items, 5, 6, 1, weighting="count")
    assert e.t().tolist() == [[1, 2], [2, 1], [3, 1]]  # tie 2 vs 3 for user 1: the smaller id


@MODELS
def test_padding_switch_reweights_duplicated_co_users(model, tmp_path):
    """``dragon_pad_user_neighbours`` / ``dualgnn_pad_user_neighbours`` (the references): a row with
    n < k co-users is padded to k by random re-draws; a co-user drawn r extra times weighs
    (1 + r) exp(C) / sum, and each row still sums to 1."""
    net, tr = _model(model, "tiny", **_tiny(tmp_path), user_topk=3, **{f"{model.lower()}_pad_user_neighbours": True})
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
    assert torch.allclose(w.to_dense().sum(1)[[uid[u] for u in (0, 1, 2)]], torch.ones(3))


# ------------------------------------------------------------------------------------------ leakage
@MODELS
def test_nothing_built_from_validation_or_test_rows(model, tmp_path):
    """Other validation/test rows (the tiny set's, and Last.fm's with its eval items permuted):
    identical graphs (user-item, user-user, DRAGON's item-item), in original ids; the user-item graph
    is exactly the training pairs and the user graph the builder's on the training file."""
    a, tra = _model(model, "tiny", **_tiny(tmp_path / "a"))
    shuffled = {u: (i + 2) % 8 for u, i in VALID.items()}, {u: (i + 3) % 8 for u, i in TEST.items()}
    b, trb = _model(model, "tiny", **_tiny(tmp_path / "b", valid=shuffled[0], test=shuffled[1]))
    assert _built(a, tra) == _built(b, trb)

    lfm = BUNDLED / "lastfm-2k"
    cfgs = [{**copy_lastfm(tmp_path / name, name, permute_eval=permute), "item_feature_norm": {"audio": "l2"}}
            for name, permute in (("la", False), ("lb", True))]
    (ma, ta), (mb, tb) = _model(model, "la", **cfgs[0]), _model(model, "lb", **cfgs[1])
    ga, gb = _built(ma, ta), _built(mb, tb)
    assert ga == gb and ("mm" in ga) == SPEC[model]["item_graph"]
    train = training_pairs(lfm / "lastfm-2k.train.inter")
    assert ga["ui"] == train
    assert ga["uu"] == _builder_user_graph(train, 1858, 1425, ma.user_topk)


def _built(net, train_data):
    """Everything the model builds from data, in original ids: the user-item and user-user graphs
    with their weights, and the item-item graph where the model has one."""
    ds = train_data._dataset
    utok, itok = ds.field2id_token[ds.uid_field], ds.field2id_token[ds.iid_field]
    out = {
        "ui": user_item_pairs(net, ds),
        "uu": {(utok[u], utok[v], round(x, 6)) for (u, v), x in zip(net.user_edges.t().tolist(), net.user_edge_weights.tolist())},
    }
    if hasattr(net, "mm_op"):
        mm = net.mm_op.coo
        out["mm"] = {(itok[i], itok[j], round(x, 6)) for (i, j), x in zip(mm.indices().t().tolist(), mm.values().tolist())}
    return out


# ------------------------------------------------------------------------------------------ training
def _graphs(net):
    """The model's frozen graphs, as tensors to compare before and after a step."""
    out = [net.user_edges, net.user_edge_weights, net.norm_adj.values()]
    return out + ([net.mm_op.coo.values()] if hasattr(net, "mm_op") else [])


@MODELS
def test_one_step_gradients_reach_trained_parameters_only(model):
    net, tr = _model(model)
    graphs = [g.clone() for g in _graphs(net)]
    assert len(graphs) == 3 + SPEC[model]["item_graph"]
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
    assert all(torch.equal(a, b) for a, b in zip(graphs, _graphs(net)))
    # the loss is the reference's: -mean log2 sigmoid(s+ - s-) + reg_weight * (sum_m mean(P_m[u]^2) + mean(alpha^2))
    batch = next(iter(tr))
    net.eval()
    with torch.no_grad():
        want = _reference_loss(net, batch)
        assert torch.allclose(net.calculate_loss(batch), want, atol=1e-5)


@MODELS
def test_embedding_sizes_must_match(model):
    with pytest.raises(InputError, match="feat_embed_dim: 32; expected embedding_size"):
        _model(model, feat_embed_dim=32)


@MODELS
@pytest.mark.parametrize("modalities", [["text"], ["text", "audio"], ["text", "audio", "whisper"]])
def test_any_number_of_modalities(model, modalities):
    net, tr = _model(model, modalities=modalities, item_feature_norm={"audio": "l2", "whisper": "l2"})
    assert net.modalities == modalities
    assert (net.user_modality_weight is None) == (len(modalities) == 1)
    loss = train_step(net, next(iter(tr)).to(net.device), pre_epoch=True)
    assert torch.isfinite(loss)
    net.eval()
    scores = net.full_sort_predict({net.USER_ID: torch.arange(1, 6, device=net.device)})
    assert net.inference_embeddings()[0].shape == (net.n_users, SPEC[model]["width"](net))
    assert scores.shape == (5, net.n_items) and torch.isfinite(scores).all()


# ------------------------------------------------------------------------------------------ runs
@MODELS
@pytest.mark.parametrize("dataset", ["lastfm-2k", "ml-100k"])
def test_one_epoch_end_to_end(model, dataset, fast):
    result = run(model, dataset, config_dict=dict(fast, epochs=1))
    assert result["epochs_run"] == 1
    assert 0.0 < result["test_result"]["recall@20"] <= 1.0


@MODELS
def test_checkpoint_reloads_for_evaluation(model, fast):
    result = run(model, config_dict=fast)
    assert os.path.isfile(result["checkpoint"])
    assert_checkpoint_evaluates_the_same(result)
