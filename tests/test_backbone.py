"""The shared LightGCN backbone (``GraphRecommender``): every graph model extends it, names its ID
embeddings alike, keeps one forward contract, and its propagation is LightGCN's."""

import pytest
import torch

from model_support import QUIET
from recbole_recgoat.model.abstract import GraphRecommender, MultiModalRecommender
from recbole_recgoat.model.layers import batched
from recbole_recgoat.quick_start import build_model, prepare
from recbole_recgoat.utils.registry import get_model, plugin_models

GRAPH_MODELS = ["FREEDOM", "BM3", "LGMRec", "RecGOAT", "LATTICE", "MGCN", "SMORE", "MMGCN", "GRCN", "SLMRec"]
# DRAGON and DualGNN are MultiModalRecommenders with the same forward contract: it has no item ID embedding
# (one user-preference table per modality), so the backbone's ID tables would be untrained parameters.
pytestmark = pytest.mark.usefixtures("one_thread")


def test_graph_models_extend_the_backbone():
    for name in GRAPH_MODELS:
        assert issubclass(get_model(name), GraphRecommender), name
    for name in plugin_models():  # every plugin model: the multimodal base; input_type declared once there
        cls = get_model(name)
        assert issubclass(cls, MultiModalRecommender)
        if name != "BM3":  # BM3 reads positive pairs only
            assert "input_type" not in vars(cls), f"{name} repeats input_type"


@pytest.mark.parametrize("name", GRAPH_MODELS)
def test_one_name_per_concept_and_one_forward_contract(name):
    config, _, train_data, _, _, _ = prepare(name, config_dict=dict(QUIET, modalities=["text", "audio"]), log=False)
    net = build_model(config, train_data)
    d = config["embedding_size"]
    assert net.user_embedding.weight.shape == (net.n_users, d)
    assert net.item_embedding.weight.shape == (net.n_items, d)
    assert not any(n.startswith(("item_id_embedding", "u_embedding", "i_embedding")) for n, _ in net.named_parameters())
    net.eval()
    users, items, parts = net.forward()
    assert users.shape[0] == net.n_users and items.shape[0] == net.n_items and isinstance(parts, dict)
    scored_u, scored_i = net.inference_embeddings()
    assert torch.equal(scored_u, users) or name == "BM3"  # BM3 scores its predictor's outputs


def test_propagate_ui_is_lightgcn_layer_mean():
    config, _, train_data, _, _, _ = prepare("BM3", config_dict=dict(QUIET, n_ui_layers=2), log=False)
    net = build_model(config, train_data)
    a = net.norm_adj.to_dense()  # small enough here (3,285 nodes) to check against the dense formula
    e0 = net.ego_embeddings()
    expect = (e0 + a @ e0 + a @ (a @ e0)) / 3
    torch.testing.assert_close(net.propagate_ui(), expect, rtol=1e-5, atol=1e-6)
    last = net.propagate_ui(mean=False)
    torch.testing.assert_close(last, a @ (a @ e0), rtol=1e-5, atol=1e-6)
    users, items = net.split_nodes(expect)
    assert users.shape[0] == net.n_users and items.shape[0] == net.n_items


def test_batched_helpers_equal_the_plain_formulas():
    gen = torch.Generator().manual_seed(0)
    u, table = torch.randn(5, 4, generator=gen), torch.randn(9, 4, generator=gen)
    pos, neg = torch.tensor([1, 2, 2, 8, 0]), torch.tensor([3, 2, 7, 1, 1])
    sp, sn = batched.pair_scores(u, table, pos, neg)
    torch.testing.assert_close(sp, (u * table[pos]).sum(1))
    torch.testing.assert_close(sn, (u * table[neg]).sum(1))
    enc = [lambda i: table[i] * 2.0, lambda i: table[i] - 1.0]
    for (p, n), f in zip(batched.encoded_pair_scores(u, enc, pos, neg), enc):
        torch.testing.assert_close(p, (u * f(pos)).sum(1))
        torch.testing.assert_close(n, (u * f(neg)).sum(1))
    q = batched.encode_pairs(lambda i: table[i], pos, neg)
    torch.testing.assert_close(batched.pair_dot(q, u), torch.stack([sp, sn], 1))
    expect = (u.norm() + table[pos].norm() + table[neg].norm()) / 5
    torch.testing.assert_close(batched.pair_emb_loss(u, q), expect)
    lin = torch.nn.Linear(4, 3)
    outs = batched.apply_once(lin, [u, table])
    torch.testing.assert_close(outs[1], lin(table))
    dist = batched.cosine_distances([(u, table[pos]), (table[neg], u)])
    torch.testing.assert_close(dist[1], 1 - torch.nn.functional.cosine_similarity(table[neg], u).mean())
    w1, w2 = torch.randn(4, 2, generator=gen), torch.randn(4, 3, generator=gen)
    torch.testing.assert_close(batched.side_by_side_products([table, table], [w1, w2]), torch.cat([table @ w1, table @ w2], 1))


def test_edge_cosines_in_blocks_equal_the_whole_gather():
    from recbole_recgoat.model.layers.knn import edge_cosines

    gen = torch.Generator().manual_seed(1)
    x = torch.randn(30, 7, generator=gen)
    edges = torch.randint(0, 30, (2, 101), generator=gen)
    xn = torch.nn.functional.normalize(x, dim=1)
    whole = (xn[edges[0]] * xn[edges[1]]).sum(1)
    for block in (1, 200, 10**9):  # one edge per block, a few edges, everything at once
        assert torch.equal(edge_cosines(x, edges, max_block_bytes=block), whole)
