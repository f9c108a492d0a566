"""MMGCN: per-modality preference aggregation and the combination layer on a hand-computed graph
(training rows only), no leakage, gradients (and the reference's frozen-tensor switch), end-to-end runs
on lastfm-2k and ml-100k, checkpoint reload, any number of modalities."""

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import BUNDLED
from model_support import (assert_checkpoint_evaluates_the_same, copy_lastfm, model_and_data, token_ids, train_step,
                           write_tiny_dataset)

from recbole_recgoat.quick_start import run

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(dataset=None, **overrides):
    """``(MMGCN, train_data)`` on ``dataset`` (None: the default, lastfm-2k), graphs not cached."""
    return model_and_data("MMGCN", dataset, **{"graph_cache_dir": None, **overrides})


# ------------------------------------------------------------------------------------------ a tiny dataset
# training rows (user: items). User 1's training items are 0 and 1; item 1's training users are 0, 1, 2.
# The validation/test rows give user 1 items 2, 3 and item 1 users 3, 4, 5: counted, they change both means.
TRAIN = {0: [0, 1, 2, 3], 1: [0, 1], 2: [1, 2, 3], 3: [4], 4: [5], 5: [6, 7]}
VALID = {0: 4, 1: 2, 2: 0, 3: 5, 4: 1, 5: 0}
TEST = {0: 5, 1: 3, 2: 4, 3: 1, 4: 0, 5: 1}
# item features (row = item token), 2-d; items 2.. get [1, 1]
FEATS = {"text": {0: [3.0, 4.0], 1: [0.0, 2.0]}, "audio": {0: [1.0, 0.0], 1: [0.0, -5.0]}}
# user preferences P_m set by hand (user token: row); users 3.. get OTHER
PREFS = {"text": {0: [1.0, 0.0], 1: [0.0, 3.0], 2: [-2.0, 0.0]}, "audio": {0: [0.0, 1.0], 1: [1.0, 0.0], 2: [2.0, 0.0]}}
OTHER = {"text": [5.0, 5.0], "audio": [-5.0, 5.0]}
# aggregation with W1 = I over the L2-normalised rows, mean over the TRAINING neighbours:
#   user 1, text:  mean([3,4]/5, [0,2]/2) = mean([.6,.8], [0,1]) = [.3, .9]
#   user 1, audio: mean([1,0], [0,-5]/5) = [.5, -.5]
#   item 1, text:  mean(P_text[0,1,2] normalised) = mean([1,0], [0,1], [-1,0]) = [0, 1/3]
#   item 1, audio: mean(P_audio[0,1,2] normalised) = mean([0,1], [1,0], [1,0]) = [2/3, 1/3]
EXPECTED_MEAN = {("user", 1, "text"): [0.3, 0.9], ("user", 1, "audio"): [0.5, -0.5],
                 ("item", 1, "text"): [0.0, 1 / 3], ("item", 1, "audio"): [2 / 3, 1 / 3]}
DEGREE = {("user", 1): 2, ("item", 1): 3}  # aggr_mode add: the sums


def _tiny(tmp_path, name="tiny", valid=VALID, test=TEST):
    """The rows above (other validation/test rows if given), text and audio features from FEATS."""
    feats = {}
    for m, rows in FEATS.items():
        x = np.ones((8, 2), dtype=np.float32)
        for i, r in rows.items():
            x[i] = r
        feats[m] = x
    return write_tiny_dataset(tmp_path, name, TRAIN, valid, test, feats)


def _hand_set(net, tr):
    """Preferences from PREFS, first-layer aggregation weights W1 = I."""
    uid, iid = token_ids(tr)
    with torch.no_grad():
        for m in net.modalities:
            gcn = net.gcn[m]
            gcn.conv[0].copy_(torch.eye(2))
            for t, k in uid.items():
                gcn.preference[k] = torch.tensor(PREFS[m].get(t, OTHER[m]))
    return uid, iid


@pytest.mark.parametrize("aggr", ["mean", "add"])
def test_per_modality_preference_aggregation_is_hand_computed(tmp_path, aggr):
    """Catches: one preference table shared by the modalities (text and audio would aggregate the same
    user vectors for item 1), features or preferences not L2-normalised, validation/test rows in the
    graph (user 1 would average 4 items, item 1 six users), sum instead of mean (or the reverse:
    ``add`` must be DEGREE times the mean), a symmetric D^-1/2 G D^-1/2 normalisation instead of D^-1 G,
    aggregating the node itself (self-loops), and (second half) the combination layer: element-wise
    instead of concatenation, the ID embedding not added, no leaky ReLU on h, the modalities summed
    instead of averaged."""
    net, tr = _model("tiny", **_tiny(tmp_path), aggr_mode=aggr, n_ui_layers=1)
    uid, iid = _hand_set(net, tr)
    net.eval()
    with torch.no_grad():
        for (side, t, m), want in EXPECTED_MEAN.items():
            node = uid[t] if side == "user" else net.n_users + iid[t]
            h = net.aggregate(m, 0, net.layer_input(m))[node]
            scale = 1.0 if aggr == "mean" else DEGREE[(side, t)]
            assert torch.allclose(h, scale * torch.tensor(want), atol=1e-6), (side, t, m, h)
        # combination layer (concatenation, has_id): x^1 = lrelu(W3 [lrelu(h); lrelu(W2 x^0 + b2) + e_id] + b3)
        users, items, parts = net.forward()
        node = uid[1]
        e_id = net.user_embedding.weight[node]
        outs = []
        for m in net.modalities:
            gcn = net.gcn[m]
            x0 = net.layer_input(m)[node]
            h = torch.tensor(EXPECTED_MEAN[("user", 1, m)]) * (1.0 if aggr == "mean" else 2.0)
            h = torch.where(h > 0, h, 0.01 * h)
            u_hat = F.leaky_relu(gcn.linear[0](x0)) + e_id
            outs.append(F.leaky_relu(gcn.combine[0](torch.cat([h, u_hat]))))
            assert torch.allclose(parts["modality_nodes"][m][node], outs[-1], atol=1e-6), m
        assert torch.allclose(users[node], (outs[0] + outs[1]) / 2, atol=1e-6)
    # the element-wise variant: x^1 = lrelu(W3 lrelu(h) + b3 + u_hat)
    flat, trf = _model("tiny", **_tiny(tmp_path / "f"), aggr_mode=aggr, n_ui_layers=1, mmgcn_concat=False)
    uid, _ = _hand_set(flat, trf)
    flat.eval()
    with torch.no_grad():
        gcn = flat.gcn["text"]
        x0 = flat.layer_input("text")[uid[1]]
        h = F.leaky_relu(flat.aggregate("text", 0, flat.layer_input("text"))[uid[1]])
        want = F.leaky_relu(gcn.combine[0](h) + F.leaky_relu(gcn.linear[0](x0)) + flat.user_embedding.weight[uid[1]])
        assert torch.allclose(flat.modality_nodes("text")[uid[1]], want, atol=1e-6)


# ------------------------------------------------------------------------------------------ leakage
def _built(net, train_data):
    """Everything MMGCN builds from interactions (its aggregation graph, with its weights, and the
    inherited normalised graph), in original ids."""
    ds = train_data._dataset
    tok = np.concatenate([ds.field2id_token[ds.uid_field], ds.field2id_token[ds.iid_field]])
    kinds = np.array(["u"] * net.n_users + ["i"] * net.n_items)
    out = {}
    for name, coo in (("agg", net.ui_op.coo), ("norm", net.norm_adj.coalesce())):
        idx, val = coo.indices().numpy(), coo.values().tolist()
        out[name] = {(kinds[a] + tok[a], kinds[b] + tok[b], round(v, 6)) for a, b, v in zip(idx[0], idx[1], val)}
    return out


def test_nothing_built_from_validation_or_test_rows(tmp_path):
    """Other validation/test rows (the tiny set's, and Last.fm's with its eval items permuted): the same
    graphs, with the same weights, in original ids; the graph's user-item edges are exactly the
    training pairs (both directions), the mean weights 1 / training degree."""
    a, tra = _model("tiny", **_tiny(tmp_path / "a"))
    shuffled = {u: (i + 2) % 8 for u, i in VALID.items()}, {u: (i + 3) % 8 for u, i in TEST.items()}
    b, trb = _model("tiny", **_tiny(tmp_path / "b", valid=shuffled[0], test=shuffled[1]))
    assert _built(a, tra) == _built(b, trb)

    lfm = BUNDLED / "lastfm-2k"
    cfgs = [{**copy_lastfm(tmp_path / name, name, permute_eval=permute), "modalities": ["text"]}
            for name, permute in (("la", False), ("lb", True))]
    (ma, ta), (mb, tb) = _model("la", **cfgs[0]), _model("lb", **cfgs[1])
    ga, gb = _built(ma, ta), _built(mb, tb)
    assert ga == gb
    train = [tuple(r.split("\t")[:2]) for r in (lfm / "lastfm-2k.train.inter").read_text().splitlines()[1:]]
    deg_u, deg_i = {}, {}
    for u, i in train:
        deg_u[u] = deg_u.get(u, 0) + 1
        deg_i[i] = deg_i.get(i, 0) + 1
    want = {("u" + u, "i" + i, round(1 / deg_u[u], 6)) for u, i in train}
    want |= {("i" + i, "u" + u, round(1 / deg_i[i], 6)) for u, i in train}
    assert ga["agg"] == want


# ------------------------------------------------------------------------------------------ training
def test_one_step_gradients_reach_trained_parameters_only():
    net, tr = _model(mmgcn_latent_dim={"audio": 16})
    feats = {m: f.clone() for m, f in net.item_feats.items()}
    graph = net.ui_op.coo.values().clone()
    loss = train_step(net, next(iter(tr)).to(net.device))
    assert torch.isfinite(loss)
    layers = {f"gcn.{m}.{k}.{l}{p}" for m in net.modalities for l in range(3)
              for k, ps in (("conv", [""]), ("linear", [".weight", ".bias"]), ("combine", [".weight", ".bias"])) for p in ps}
    trained = {"user_embedding.weight", "item_embedding.weight"} | {f"gcn.{m}.preference" for m in net.modalities}
    project = {"gcn.audio.project.weight", "gcn.audio.project.bias"}  # only the named modality is projected
    assert {n for n, _ in net.named_parameters()} == layers | trained | project
    assert net.gcn["audio"].preference.shape == (net.n_users, 16) and net.gcn["text"].preference.shape == (net.n_users, 384)
    for n, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, n
    # frozen: the raw features and the graph are buffers, untouched by the step
    assert all(not b.requires_grad for b in net.buffers())
    assert all(torch.equal(feats[m], net.item_feats[m]) for m in feats)
    assert torch.equal(graph, net.ui_op.coo.values())
    # the loss is the reference's: BPR + reg_weight * (mean over the 2B pair rows of E[u]^2 + E[i]^2 + sum_m mean(P_m^2))
    batch = next(iter(tr))
    net.eval()
    with torch.no_grad():
        users, items, _ = net.forward()
        u, p, n = batch[net.USER_ID], batch[net.ITEM_ID], batch[net.NEG_ITEM_ID]
        diff = (users[u] * items[p]).sum(1) - (users[u] * items[n]).sum(1)
        e = torch.cat([net.user_embedding.weight, net.item_embedding.weight])
        rows_u, rows_i = u.repeat_interleave(2), torch.stack([p, n], 1).reshape(-1) + net.n_users
        reg = (e[rows_u] ** 2 + e[rows_i] ** 2).mean() + sum((net.gcn[m].preference ** 2).mean() for m in net.modalities)
        want = -torch.log(torch.sigmoid(diff)).mean() + net.reg_weight * reg
        assert torch.allclose(net.calculate_loss(batch), want, atol=1e-5)


def test_reference_switch_keeps_ids_and_preferences_fixed():
    """``mmgcn_train_id_and_preference: False``: E and P_m get no gradient (the reference's plain tensors);
    the layers still train."""
    net, tr = _model(mmgcn_train_id_and_preference=False, modalities=["text"])
    train_step(net, next(iter(tr)).to(net.device))
    fixed = {"user_embedding.weight", "item_embedding.weight", "gcn.text.preference"}
    for n, p in net.named_parameters():
        if n in fixed:
            assert not p.requires_grad and p.grad is None, n
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, n


@pytest.mark.parametrize("modalities", [["text"], ["text", "audio"], ["text", "audio", "whisper"]])
def test_any_number_of_modalities(modalities):
    net, tr = _model(modalities=modalities, n_ui_layers=1)
    assert net.modalities == modalities and list(net.gcn) == modalities
    loss = train_step(net, next(iter(tr)).to(net.device))
    assert torch.isfinite(loss)
    net.eval()
    scores = net.full_sort_predict({net.USER_ID: torch.arange(1, 6, device=net.device)})
    assert net.inference_embeddings()[0].shape == (net.n_users, net.embedding_size)
    assert scores.shape == (5, net.n_items) and torch.isfinite(scores).all()


# ------------------------------------------------------------------------------------------ runs
@pytest.mark.parametrize("dataset", ["lastfm-2k", "ml-100k"])
def test_one_epoch_end_to_end(dataset, fast):
    result = run("MMGCN", dataset, config_dict=dict(fast, epochs=1))
    assert result["epochs_run"] == 1
    assert 0.0 < result["test_result"]["recall@20"] <= 1.0


def test_checkpoint_reloads_for_evaluation(fast):
    result = run("MMGCN", config_dict=dict(fast, epochs=1))
    assert os.path.isfile(result["checkpoint"])
    assert_checkpoint_evaluates_the_same(result)
