"""LATTICE: the learned-graph mix against a hand-computed case and a dense re-implementation of the
reference (values and gradients), the blockwise differentiable kNN, no leakage, gradients, the
epoch graph schedule, end-to-end runs, checkpoint reload, any number of modalities."""

import math

import pytest
import torch
import torch.nn as nn

from model_support import assert_checkpoint_evaluates_the_same, copy_lastfm, model_and_data, train_step, training_pairs
from recbole_recgoat.model.lattice import LATTICE
from recbole_recgoat.model.layers.knn import knn_similarities
from recbole_recgoat.quick_start import build_model, prepare, run

pytestmark = pytest.mark.usefixtures("one_thread")


def build(dataset="lastfm-2k", **overrides):
    """``(LATTICE, train_data)`` on ``dataset``, graphs cached in the test's folder."""
    return model_and_data("LATTICE", dataset, **overrides)


def dense(edge_index, values, n):
    """A tiny edge list as a dense matrix (tests only), duplicates summed."""
    return torch.sparse_coo_tensor(edge_index, values, (n, n), check_invariants=True).to_dense()


class Tiny(nn.Module):
    """LATTICE's own graph methods on a small catalogue (item 0 = PAD, in no graph)."""

    learned_graph = LATTICE.learned_graph
    item_graph = LATTICE.item_graph
    modality_weights = LATTICE.modality_weights
    feature_table = LATTICE.feature_table

    def __init__(self, feats, a, raw, k=2, lam=0.9, proj=None):
        super().__init__()
        self.n_items, self.knn_k, self.lambda_coeff, self.finetune_features = next(iter(feats.values())).shape[0], k, lam, True
        self.modalities = list(feats)
        self.feature_tables = nn.ParameterDict({m: nn.Parameter(f.clone()) for m, f in feats.items()})
        self.feature_proj = nn.ModuleDict({m: (proj or {}).get(m, nn.Identity()) for m in feats})
        self.modal_weight = nn.Parameter(torch.as_tensor(a, dtype=torch.float))
        edges, values, owner = zip(*[(e, v, torch.full_like(v, i, dtype=torch.long)) for i, (e, v) in enumerate(raw)])
        self.raw_edges, self.raw_values, self.raw_modality = torch.cat(edges, 1), torch.cat(values), torch.cat(owner)

    def item_valid_mask(self):
        mask = torch.ones(self.n_items, dtype=torch.bool)
        mask[0] = False
        return mask


def test_item_graph_mix_hand_computed():
    """A = (1 - lambda) D^-1/2 (sum_m alpha_m A_m) D^-1/2 + lambda sum_m alpha_m S~_m on 3 items + PAD.

    Catches: lambda on the wrong side; the learned graphs normalised per modality (or not at all)
    instead of mixed-then-normalised; the raw mix normalised again; binary instead of cosine kNN
    weights; a symmetrised kNN; equal weights instead of softmax(a); PAD in the graph."""
    fa = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 1.0], [0.0, 1.0]])
    fb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 1.0]])
    raw_a = (torch.tensor([[1, 2, 3], [1, 2, 3]]), torch.ones(3))  # S~_a = I on the real items
    raw_b = (torch.tensor([[1, 2, 3], [2, 1, 3]]), torch.tensor([0.5, 0.5, 1.0]))
    tiny = Tiny({"a": fa, "b": fb}, [0.0, math.log(3.0)], [raw_a, raw_b])  # alpha = (1/4, 3/4)
    got = dense(*tiny.item_graph(), 4)

    s, t = 2 / math.sqrt(5), 1 / math.sqrt(5)  # cos((1,0),(2,1)), cos((0,1),(2,1)); cos((1,0),(0,1)) = 0
    # k = 2 (the item itself and its nearest): a: 1->{1, 2: s}, 2->{2, 1: s}, 3->{3, 2: t}
    #                                          b: 1->{1, 3: s}, 2->{2, 3: t}, 3->{3, 1: s}
    mix = torch.tensor([
        [0, 0, 0, 0],
        [0, 1, s / 4, 3 * s / 4],
        [0, s / 4, 1, 3 * t / 4],
        [0, 3 * s / 4, t / 4, 1],
    ])
    r = mix.sum(1)
    inv = torch.where(r > 0, r.clamp(min=1e-12).rsqrt(), torch.zeros_like(r))
    learned = inv[:, None] * mix * inv[None, :]
    raw = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]) / 4 + 0.75 * torch.tensor(
        [[0, 0, 0, 0], [0, 0, 0.5, 0], [0, 0.5, 0, 0], [0, 0, 0, 1.0]]
    )
    expected = 0.1 * learned + 0.9 * raw
    assert torch.allclose(got, expected, atol=1e-6), (got, expected)
    assert abs(got[2, 3] - got[3, 2]) > 0.01  # directed graph, normalised by both ends' row sums


def _dense_reference(tiny):
    """The reference's arithmetic, dense: build_sim, topk, scatter, mix, normalise (tests only)."""
    alpha = torch.softmax(tiny.modal_weight, 0)
    valid = tiny.item_valid_mask()
    learned = 0
    for i, m in enumerate(tiny.modalities):
        x = tiny.feature_proj[m](tiny.feature_tables[m])
        xn = x / x.norm(dim=1, keepdim=True)
        sim = xn @ xn.T
        sim = sim.masked_fill(~valid[None, :], -float("inf"))
        val, ind = sim.topk(tiny.knn_k, dim=1)
        knn = torch.where(valid[:, None], torch.zeros_like(sim).scatter(1, ind, val), torch.zeros_like(sim))
        learned = learned + alpha[i] * knn
    r = learned.sum(1)
    inv = torch.where(r > 0, r.clamp(min=1e-12).rsqrt(), torch.zeros_like(r))
    learned = inv[:, None] * learned * inv[None, :]
    raw = sum(alpha[i] * dense(tiny.raw_edges[:, tiny.raw_modality == i], tiny.raw_values[tiny.raw_modality == i], tiny.n_items)
              for i in range(len(tiny.modalities)))
    return (1 - tiny.lambda_coeff) * learned + tiny.lambda_coeff * raw


def test_item_graph_values_and_gradients_match_dense_reference():
    """Random projections: same graph and the same gradients to the feature tables, projections and
    modality weights as the dense reference (catches a detached similarity or degree)."""
    torch.manual_seed(0)
    n, k = 40, 5
    feats = {"a": torch.randn(n, 12), "b": torch.randn(n, 7), "c": torch.randn(n, 3)}
    proj = {m: nn.Linear(f.shape[1], 6) for m, f in feats.items()}
    raw = [(torch.randint(1, n, (2, 30)), torch.rand(30)) for _ in feats]
    tiny = Tiny(feats, torch.randn(3), raw, k=k, lam=0.6, proj=proj)
    x = torch.randn(n, 4)
    got = dense(*tiny.item_graph(), n)
    (got @ x).pow(2).sum().backward()
    grads = {name: p.grad.clone() for name, p in tiny.named_parameters()}
    tiny.zero_grad()
    want = _dense_reference(tiny)
    (want @ x).pow(2).sum().backward()
    assert torch.allclose(got, want, atol=1e-6)
    for name, p in tiny.named_parameters():
        assert p.grad.abs().sum() > 0, name
        assert torch.allclose(grads[name], p.grad, atol=1e-5, rtol=1e-4), name


def test_knn_similarities_blockwise_with_gradients():
    torch.manual_seed(1)
    x = torch.randn(25, 6, requires_grad=True)
    valid = torch.ones(25, dtype=torch.bool)
    valid[[0, 7]] = False
    e1, s1 = knn_similarities(x, 4, valid=valid)
    e2, s2 = knn_similarities(x, 4, valid=valid, max_block_bytes=4 * 25)  # one row per block
    assert torch.equal(e1, e2) and torch.allclose(s1, s2)
    assert e1.shape == (2, 23 * 4) and not torch.isin(e1, torch.tensor([0, 7])).any()
    assert (e1[0] == e1[1]).sum() == 23  # every row is its own nearest
    xn = x / x.norm(dim=1, keepdim=True)
    sim = (xn @ xn.T).masked_fill(~valid, -float("inf"))[valid]
    val, ind = sim.topk(4, dim=1)
    assert torch.equal(ind, e1[1].view(23, 4)) and torch.allclose(val, s1.view(23, 4))
    (g1,) = torch.autograd.grad((s1 * torch.arange(92.0)).sum(), x)
    (g2,) = torch.autograd.grad((val.flatten() * torch.arange(92.0)).sum(), x)
    assert torch.allclose(g1, g2, rtol=1e-5, atol=1e-4) and g1.abs().sum() > 0
    e3, _ = knn_similarities(x, 4, valid=valid, include_self=False)
    assert not (e3[0] == e3[1]).any()


def test_nothing_built_from_validation_or_test_rows(tmp_path):
    """Same training rows, permuted validation/test rows: the same user-item graph (exactly the
    training pairs plus self-loops), raw graphs and, under one seed, learned graph."""
    built = {}
    for name, permute in (("a", False), ("b", True)):
        cfg = copy_lastfm(tmp_path / name, "lfm", permute_eval=permute)
        config, _, tr, _, _, _ = prepare("LATTICE", "lfm", config_dict=dict(cfg, seed=5, user_feature_file=None), log=False)
        model = build_model(config, tr)
        ds = tr._dataset
        utok, itok = ds.field2id_token[ds.uid_field], ds.field2id_token[ds.iid_field]
        nu = model.n_users
        idx = model.ui_op.coo.indices()
        ui = idx[:, (idx[0] < nu) & (idx[1] >= nu)]
        loops = idx[:, idx[0] == idx[1]]
        with torch.no_grad():
            e, v = model.item_graph()
        built[name] = {
            "ui": set(zip(utok[ui[0].numpy()], itok[ui[1].numpy() - nu])),
            "loops": loops.shape[1] == model.n_users + model.n_items,
            "raw": sorted(zip(itok[model.raw_edges[0].numpy()], itok[model.raw_edges[1].numpy()], model.raw_values.tolist())),
            "item_graph": sorted(zip(itok[e[0].numpy()], itok[e[1].numpy()], v.tolist())),
        }
    assert (tmp_path / "a/data/lfm/lfm.test.inter").read_text() != (tmp_path / "b/data/lfm/lfm.test.inter").read_text()
    for key in built["a"]:
        assert built["a"][key] == built["b"][key], key
    train = training_pairs(tmp_path / "a/data/lfm/lfm.train.inter")
    assert built["a"]["ui"] == train and built["a"]["loops"]


def test_training_step_gradients_and_graph_schedule():
    net, tr = build()
    batch = next(iter(tr)).to(net.device)
    raw_before = net.raw_values.clone()
    loss = train_step(net, batch, pre_epoch=True)  # the epoch's first batch rebuilds the graph with gradients
    assert torch.isfinite(loss)
    for name, p in net.named_parameters():  # every parameter the paper trains
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert {n.split(".")[0] for n, _ in net.named_parameters()} == {
        "user_embedding", "item_embedding", "feature_tables", "feature_proj", "modal_weight"}
    assert not any(b.requires_grad for b in (net.raw_values, *net.item_feats.values()))  # frozen
    assert torch.equal(raw_before, net.raw_values)
    net.zero_grad(set_to_none=True)
    net.calculate_loss(batch).backward()  # later batches: the epoch's graph, detached
    with_grad = {n for n, p in net.named_parameters() if p.grad is not None}
    assert with_grad == {"user_embedding.weight", "item_embedding.weight"}
    frozen, _ = build(finetune_features=False)
    frozen.pre_epoch_processing()
    frozen.calculate_loss(batch).backward()
    assert not any(n.startswith("feature_tables") for n, _ in frozen.named_parameters())
    assert frozen.feature_proj["text"].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("modalities", [["text"], ["text", "audio"], ["text", "audio", "whisper"]])
def test_any_number_of_modalities(modalities):
    net, tr = build(modalities=modalities)
    assert net.modalities == modalities and net.modal_weight.shape == (len(modalities),)
    net.train()
    net.pre_epoch_processing()
    assert torch.isfinite(net.calculate_loss(next(iter(tr)).to(net.device)))
    net.eval()
    scores = net.full_sort_predict({net.USER_ID: torch.arange(1, 6, device=net.device)})
    assert scores.shape == (5, net.n_items) and torch.isfinite(scores).all()


def test_one_epoch_both_datasets_and_checkpoint_reload(fast):
    result = run("LATTICE", config_dict=dict(fast, epochs=1))
    assert result["epochs_run"] == 1 and 0.0 < result["test_result"]["recall@20"] <= 1.0
    assert_checkpoint_evaluates_the_same(result)
    ml = run("LATTICE", "ml-100k", config_dict=dict(fast, epochs=1))
    assert ml["epochs_run"] == 1 and 0.0 < ml["test_result"]["recall@20"] <= 1.0


def test_mf_backbone():
    net, tr = build(cf_model="mf")
    net.pre_epoch_processing()
    assert torch.isfinite(net.calculate_loss(next(iter(tr)).to(net.device)))
    net.eval()
    with torch.no_grad():
        users, items, parts = net.forward()
    assert torch.equal(users, net.user_embedding.weight)
    assert torch.allclose(items, net.item_embedding.weight + torch.nn.functional.normalize(parts["h"], dim=1))
