"""SLMRec: the augmentations (feature dropout, feature masking, FAC's fine-to-coarse chain) against
hand-computed cases, the loss against the reference's arithmetic, no leakage, gradients, end to end,
checkpoint reload, any number of modalities."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model_support import (assert_checkpoint_evaluates_the_same, assert_gradients_only_on, assert_same_built, model_and_data,
                           quiet_lastfm_copy, train_step, training_pairs)

from recbole_recgoat.model.slmrec import dot_nce, draw_two_branches, drop, fac_dims, mask_branch, propagated_layers
from recbole_recgoat.quick_start import build_model, prepare, run

pytestmark = pytest.mark.usefixtures("one_thread")


def build(dataset="lastfm-2k", **overrides):
    """``(SLMRec, train_data)`` on ``dataset``, batches of 512 unless overridden, graphs cached."""
    return model_and_data("SLMRec", dataset, **{"train_batch_size": 512, **overrides})


# torch.manual_seed(0); torch.rand(8) (CPU, Mersenne twister): the draws the dropout masks compare to p
SEED0 = [0.4963, 0.7682, 0.0885, 0.1320, 0.3074, 0.6341, 0.4901, 0.8964]


# ------------------------------------------------------------------------ (a) the augmentations
def test_feature_dropout_drops_the_seeded_entries():
    """Seed 0, p = 0.3: rand = 0.496 0.768 0.089 0.132 0.307 0.634 -> entries 2 and 3 (< 0.3) dropped,
    the kept ones scaled by 1 / 0.7. Caught: keeping the entries below p instead of above, a missing
    1 / (1 - p) rescaling, dropping with another draw order."""
    torch.manual_seed(0)
    assert torch.allclose(torch.rand(8), torch.tensor(SEED0), atol=1e-4)
    x = torch.arange(1.0, 7.0)
    torch.manual_seed(0)
    out = drop(x, 0.3)
    assert torch.allclose(out, torch.tensor([1.0, 2.0, 0.0, 0.0, 5.0, 6.0]) / 0.7)
    assert drop(x, 0.0) is x


def test_dropout_views_drop_each_propagated_layer_and_feed_it_forward():
    """Two nodes joined by one edge (A = [[0, 1], [1, 0]]), ego = [[1, 2], [3, 4]], L = 2, p = 0.3, seed 0.
    Layer 1: A ego = [[3, 4], [1, 2]], rand 0.496 0.768 0.089 0.132 -> [[3, 4], [0, 0]] / 0.7.
    Layer 2: A (dropped layer 1) = [[0, 0], [3, 4]] / 0.7, rand 0.307 0.634 0.490 0.896 all kept and
    rescaled again -> [[0, 0], [3, 4]] / 0.49.
    Sum of the propagated layers = [[3, 4] / 0.7, [3, 4] / 0.49] (layer 0 is not dropped and not in the sum).
    Caught: layer 2 propagated from the undropped layer 1 (would give [[1, 2], [3, 4]] at layer 2),
    layer 0 dropped or counted, one mask shared by the layers."""
    adj = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    ego = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    torch.manual_seed(0)
    layers = propagated_layers(adj, ego, 2, 0.3)
    assert torch.allclose(layers, torch.tensor([[3.0 / 0.7, 4.0 / 0.7], [3.0 / 0.49, 4.0 / 0.49]]), atol=1e-5)
    assert torch.allclose(propagated_layers(adj, ego, 2, 0.0), torch.tensor([[4.0, 6.0], [4.0, 6.0]]))  # A ego + ego


def test_feature_masking_zeroes_one_branch_of_the_items_only():
    """One user and two items, K = 2 branches of width d = 2 side by side. Masking branch 1 zeroes
    columns 2-3 of the item rows; the user row keeps every column. Caught: masking the users too,
    the wrong column block."""
    ego = torch.arange(1.0, 13.0).reshape(3, 4)
    out = mask_branch(ego, 1, 2, n_users=1)
    expected = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 0.0, 0.0], [9.0, 10.0, 0.0, 0.0]])
    assert torch.equal(out, expected)
    assert torch.equal(mask_branch(ego, 0, 2, n_users=1)[1:, :2], torch.zeros(2, 2))


def test_masked_branches_are_two_distinct_uniform_draws():
    """The two masked branches differ, every ordered pair of 3 branches comes up (uniform: about 1/6
    each), and with 2 branches the pair is always {0, 1}. Caught: drawing the same branch twice, a
    second draw that is not uniform over the others."""
    g = torch.Generator().manual_seed(0)
    pairs = [draw_two_branches(3, g) for _ in range(1200)]
    assert all(a != b for a, b in pairs)
    counts = {p: pairs.count(p) for p in set(pairs)}
    assert len(counts) == 6 and all(150 <= c <= 250 for c in counts.values())
    assert {frozenset(draw_two_branches(2, g)) for _ in range(20)} == {frozenset((0, 1))}


def test_fac_chain_widths_and_raw_dot_infonce():
    """The coarse-grained split: stage k aligns the chain (ID, then ID + m_1, ...) with modality k; the
    spaces are d wide, the last of two or more d / 2 (reference: iv d, iva d, ivat d / 2; kwai iv d).
    dot_nce by hand: a = [[2, 0], [0, 1]], b = [[1, 0], [0, 3]], tau = 1 -> logits [[2, 0], [0, 3]],
    loss = mean(log(1 + e^-2), log(1 + e^-3)). Caught: cosine logits (would give [[1, 0], [0, 1]])."""
    assert fac_dims(64, 1) == [64] and fac_dims(64, 2) == [64, 32] and fac_dims(64, 3) == [64, 64, 32]
    a, b = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    expected = (math.log1p(math.exp(-2)) + math.log1p(math.exp(-3))) / 2
    # to 1e-6 absolute: computed blockwise as sum_b logsumexp_b - sum_b positive logit_b, a float32
    # difference of terms ~6 (cosine logits would give 0.31 and 0.13)
    assert dot_nce(a, b, 1.0).item() == pytest.approx(expected, abs=1e-6)
    assert dot_nce(a, b, 0.5).item() == pytest.approx((math.log1p(math.exp(-4)) + math.log1p(math.exp(-6))) / 2, abs=1e-6)


def test_fac_loss_aligns_each_modality_with_the_chain():
    """On the model: stage 1 aligns G_1(z_ID) with P_1(z_text), stage 2 aligns G_2(G_1(z_ID)) with
    P_2(z_audio) (the configured order text -> audio), z = the batch's positive items' branch outputs."""
    net, train_data = build(modalities=["text", "audio"])
    batch = next(iter(train_data))
    pos, d, tau = batch[net.ITEM_ID], net.embedding_size, net.tau
    with torch.no_grad():
        _, _, parts = net.forward()
        zi = parts["branches"][net.n_users:][pos]
        s1 = net.fac_chain[0](zi[:, :d])
        s2 = net.fac_chain[1](s1)
        expected = dot_nce(s1, net.fac_modal[0](zi[:, d : 2 * d]), tau) + dot_nce(s2, net.fac_modal[1](zi[:, 2 * d :]), tau)
        assert s2.shape[1] == d // 2
        assert torch.allclose(net.fac_loss(parts["branches"], pos), expected)


def test_forward_and_loss_match_the_reference_arithmetic():
    """Branches: LightGCN of [E_u; E_i] and [E_u; W_m normalize(f_m) + b_m] one by one; fusion concat
    then a linear layer; loss = CE over the in-batch cosine logits / temp + cl_weight * FAC."""
    net, train_data = build(modalities=["text", "audio"], cl_weight=0.5)
    batch = next(iter(train_data))
    net.train()
    with torch.no_grad():
        loss = net.calculate_loss(batch)
        users, items, parts = net.forward()
        adj = net.norm_adj
        zs = []
        for item_side in [net.item_embedding.weight] + [net.dense[m](F.normalize(net.item_feats[m], dim=1)) for m in net.modalities]:
            x = torch.cat([net.user_embedding.weight, item_side])
            acc, out = x, x
            for _ in range(3):
                out = torch.sparse.mm(adj, out)
                acc = acc + out
            zs.append(acc / 4)
        z = torch.cat(zs, dim=1)
        assert torch.allclose(parts["branches"], z, atol=1e-6)
        assert torch.allclose(users, net.user_fuse(z[: net.n_users]), atol=1e-6)
        uid, pos = batch[net.USER_ID], batch[net.ITEM_ID]
        u, p = F.normalize(users[uid], dim=1), F.normalize(items[pos], dim=1)
        main = F.cross_entropy(u @ p.T / 0.2, torch.arange(len(uid)))
        assert torch.allclose(loss, main + 0.5 * net.fac_loss(z, pos), rtol=1e-5)


@pytest.mark.parametrize("task", ["FD", "FD+FM"])
def test_view_tasks_reference_infonce(task):
    """FD / FD+FM: the loss is the main task + cl_weight * (CE of in-batch user cosines / tau + the
    items'), the views replayed under the same seed."""
    net, train_data = build(slmrec_ssl_task=task, cl_weight=1.0, train_batch_size=256)
    batch = next(iter(train_data))
    uid, pos = batch[net.USER_ID], batch[net.ITEM_ID]
    net.train()
    with torch.no_grad():
        torch.manual_seed(3)
        loss = net.calculate_loss(batch)
        users, items, _ = net.forward()
        torch.manual_seed(3)
        ssl = net.view_loss(uid, pos, dropout=True, masking="FM" in task)
    u, p = F.normalize(users[uid], dim=1), F.normalize(items[pos], dim=1)
    main = F.cross_entropy(u @ p.T / 0.2, torch.arange(len(uid)))
    assert torch.allclose(loss, main + ssl, rtol=1e-5) and ssl > 0


def test_crossed_views_switch_reproduces_the_reference_lists():
    """slmrec_mix_views (the reference's embs_sub_2.append(ego_emb_sub_1)): under FM view 1 is the masked
    layer 0 of draw 1 with the propagated layers of draw 2, and vice versa; off, each view keeps its own."""
    net, train_data = build(modalities=["text"], slmrec_ssl_task="FM", slmrec_mix_views=True, train_batch_size=256)
    batch = next(iter(train_data))
    uid, pos, d, L = batch[net.USER_ID], batch[net.ITEM_ID], net.embedding_size, net.n_ui_layers
    with torch.no_grad():
        torch.manual_seed(5)
        mixed = net.view_loss(uid, pos, dropout=False, masking=True)
        torch.manual_seed(5)
        b1, b2 = draw_two_branches(net.n_branches)
        ego = net.branch_ego()
        e1, e2 = mask_branch(ego, b1, d, net.n_users), mask_branch(ego, b2, d, net.n_users)
        l1, l2 = propagated_layers(net.adj_op, e1, L), propagated_layers(net.adj_op, e2, L)

        def loss(v1, v2):
            (u1, i1), (u2, i2) = net.fuse(v1 / (L + 1)), net.fuse(v2 / (L + 1))
            ce = lambda a, b: F.cross_entropy(F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / net.tau, torch.arange(len(a)))
            return ce(u1[uid], u2[uid]) + ce(i1[pos], i2[pos])

        assert torch.allclose(mixed, loss(e1 + l2, e2 + l1), rtol=1e-5)
        net.mix_views = False
        torch.manual_seed(5)
        assert torch.allclose(net.view_loss(uid, pos, dropout=False, masking=True), loss(e1 + l1, e2 + l2), rtol=1e-5)


def test_a_bad_ssl_task_is_refused():
    """(Every key ruled and every default passing: test_config_keys, for all models.)"""
    from recbole_recgoat.config import Config
    from recbole_recgoat.errors import InputError

    with pytest.raises(InputError, match="slmrec_ssl_task"):
        Config("SLMRec", "lastfm-2k", config_dict={"slmrec_ssl_task": "DROP"})


# ------------------------------------------------------------------------ (b) no leakage
def _built_in_original_ids(root, permute_eval):
    config, _, tr, _, _, _ = prepare("SLMRec", "lfm", config_dict=quiet_lastfm_copy(root, permute_eval), log=False)
    net, ds = build_model(config, tr), tr._dataset
    utok, itok = ds.field2id_token[ds.uid_field], ds.field2id_token[ds.iid_field]
    nodes = np.r_[utok, itok]
    (a, b), v = net.norm_adj.indices().numpy(), net.norm_adj.values().numpy()
    out = {"A_hat": {(nodes[x], nodes[y]): float(w) for x, y, w in zip(a, b, v)}}
    for m in net.modalities:
        out[f"features_{m}"] = {itok[k]: net.feats[m][k].numpy().tobytes() for k in range(1, len(itok))}
    return out, {(utok[u], itok[i]) for u, i in zip(net.train_users.tolist(), net.train_items.tolist())}


def test_nothing_is_built_from_validation_or_test_rows(tmp_path):
    """SLMRec builds the adjacency A_hat and the normalised feature tables: identical when the
    validation and test rows change, and A_hat's edges are exactly the training pairs (both ways)."""
    (a, train_a), (b, _) = (_built_in_original_ids(tmp_path / k, k == "b") for k in "ab")
    assert (tmp_path / "a/data/lfm/lfm.test.inter").read_text() != (tmp_path / "b/data/lfm/lfm.test.inter").read_text()
    assert_same_built(a, b)
    train = training_pairs(tmp_path / "a/data/lfm/lfm.train.inter")
    assert train_a == train
    assert set(a["A_hat"]) == train | {(i, u) for u, i in train}


# ------------------------------------------------------------------------ (c) gradients
@pytest.mark.parametrize("task", ["FAC", "FM"])
def test_one_step_is_finite_and_reaches_the_trained_parameters_only(task):
    net, train_data = build(modalities=["text", "audio"], slmrec_ssl_task=task)
    loss = train_step(net, next(iter(train_data)))
    assert torch.isfinite(loss)
    groups = ["user_embedding", "item_embedding", "dense.text", "dense.audio", "user_fuse", "item_fuse"]
    groups += ["fac_chain", "fac_modal"] if task == "FAC" else []
    names = [n for n, _ in net.named_parameters()]
    for g in groups:
        assert any(n.startswith(g) for n in names), g
    assert_gradients_only_on(net, groups)
    # frozen: the features and the graph are buffers without gradient
    assert not list(net.adj_op.parameters())
    for name, buf in net.named_buffers():
        assert not buf.requires_grad and buf.grad is None, name


# ------------------------------------------------------------------------ (d) end to end, (e) checkpoint
@pytest.mark.parametrize("dataset", ["lastfm-2k", "ml-100k"])
def test_one_epoch_end_to_end(dataset, fast):
    result = run("SLMRec", dataset, config_dict=dict(fast, epochs=1))
    assert result["epochs_run"] == 1
    assert 0.0 < result["test_result"]["recall@20"] <= 1.0
    if dataset == "lastfm-2k":  # (e) the checkpoint reloads to the same test metrics
        assert_checkpoint_evaluates_the_same(result)


# ------------------------------------------------------------------------ (f) any number of modalities
@pytest.mark.parametrize("modalities", [["text"], ["text", "audio"], ["text", "audio", "whisper"]])
def test_any_number_of_modalities(modalities):
    net, train_data = build(modalities=modalities)
    k = len(modalities) + 1
    assert net.modalities == modalities and net.n_branches == k and len(net.fac_chain) == len(modalities)
    assert torch.isfinite(train_step(net, next(iter(train_data))))
    net.eval()
    users = torch.arange(1, 6)
    scores = net.full_sort_predict({net.USER_ID: users})
    assert scores.shape == (5, net.n_items) and torch.isfinite(scores).all()
    _, _, parts = net.forward()
    assert parts["branches"].shape == (net.n_users + net.n_items, k * net.embedding_size)
