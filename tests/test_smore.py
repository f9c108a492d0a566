"""SMORE: the spectral fusion against its defining equation (a DFT written out by hand), the
reference's graphs, no leakage, gradients, end-to-end runs, checkpoint reload, any number of
modalities. Everything at one thread, on the bundled datasets."""

import math

import numpy as np
import pytest
import torch

from model_support import (assert_checkpoint_evaluates_the_same, model_and_data, quiet_lastfm_copy, train_step, training_pairs,
                           user_item_pairs)

from recbole_recgoat.errors import InputError
from recbole_recgoat.model.layers.graph import sparse_max
from recbole_recgoat.model.smore import spectral_fusion
from recbole_recgoat.quick_start import build_model, prepare, run

pytestmark = pytest.mark.usefixtures("one_thread")


def build(dataset=None, **overrides):
    """``(SMORE, train_data)`` built as a run builds it (seeded, training split), graphs cached."""
    return model_and_data("SMORE", dataset, **overrides)


# ------------------------------------------------------------------------------ spectral fusion
def dft_by_hand(x):
    """Orthonormal real DFT of the list ``x`` (length d): ``X_k = d^-1/2 sum_n x_n e^{-2 pi i k n / d}``,
    ``k = 0 .. d // 2``, with explicit cos / sin sums."""
    d = len(x)
    return [
        complex(sum(x[n] * math.cos(2 * math.pi * k * n / d) for n in range(d)),
                -sum(x[n] * math.sin(2 * math.pi * k * n / d) for n in range(d))) / math.sqrt(d)
        for k in range(d // 2 + 1)
    ]


def inverse_dft_by_hand(y, d):
    """``x_n = d^-1/2 Re sum_{k=0..d-1} Y_k e^{2 pi i k n / d}`` for the Hermitian extension
    ``Y_{d-k} = conj(Y_k)`` of the half spectrum ``y`` (the real signal of that spectrum)."""
    out = []
    for n in range(d):
        acc = y[0].real
        for k in range(1, (d - 1) // 2 + 1):  # k and d - k together: 2 Re(Y_k e^{i theta})
            acc += 2 * (y[k] * complex(math.cos(2 * math.pi * k * n / d), math.sin(2 * math.pi * k * n / d))).real
        if d % 2 == 0:  # the Nyquist frequency appears once
            acc += y[d // 2].real * math.cos(math.pi * n)
        out.append(acc / math.sqrt(d))
    return out


@pytest.mark.parametrize("d", [6, 5])
@pytest.mark.parametrize("n_mod", [1, 2, 3])
def test_spectral_fusion_equals_its_equation_by_hand(d, n_mod):
    """``X~_m = F^-1(K_m F(X_m))`` and ``X~_f = F^-1(K_f prod_m F(X_m))`` on 2 rows of d features.

    Catches: the fused spectrum as a sum (or mean) instead of a product, a modality left out of
    the product, the fusion filter omitted or conjugated, the filters swapped between modalities,
    another DFT scaling (norm="backward" / "forward" instead of "ortho": a factor sqrt(d) per
    transform, and per extra factor of the product), the inverse without n=d (odd d loses a
    feature), the transform along the row axis instead of the feature axis."""
    gen = torch.Generator().manual_seed(3)
    feats = [torch.round(torch.randn(2, d, generator=gen, dtype=torch.float64) * 4) / 4 for _ in range(n_mod)]
    filters = [torch.randn(1, d // 2 + 1, 2, generator=gen, dtype=torch.float64) for _ in range(n_mod)]
    fusion_filter = torch.randn(1, d // 2 + 1, 2, generator=gen, dtype=torch.float64)
    convs, fused = spectral_fusion(feats, filters, fusion_filter)

    def k_of(w):
        return [complex(float(w[0, k, 0]), float(w[0, k, 1])) for k in range(d // 2 + 1)]

    for r in range(2):
        spectra = [dft_by_hand(x[r].tolist()) for x in feats]
        for m in range(n_mod):
            expect = inverse_dft_by_hand([a * b for a, b in zip(k_of(filters[m]), spectra[m])], d)
            assert np.allclose(convs[m][r].numpy(), expect, atol=1e-12), (m, r)
        product = [math.prod(s[k] for s in spectra) for k in range(d // 2 + 1)]
        expect = inverse_dft_by_hand([a * b for a, b in zip(k_of(fusion_filter), product)], d)
        assert np.allclose(fused[r].numpy(), expect, atol=1e-12), r
    assert fused.shape == (2, d) and fused.dtype == torch.float64


def test_fused_spectrum_is_the_product_not_the_sum():
    """A sanity check of the hand case itself: with all-pass filters (K = 1) the fused output of
    x and a unit impulse (spectrum d^-1/2 at every frequency) is x / sqrt(d)."""
    d = 6
    x = torch.tensor([[1.0, -2.0, 0.5, 3.0, 0.0, 1.5]], dtype=torch.float64)
    impulse = torch.zeros(1, d, dtype=torch.float64)
    impulse[0, 0] = 1.0
    ones = torch.zeros(1, d // 2 + 1, 2, dtype=torch.float64)
    ones[..., 0] = 1.0
    convs, fused = spectral_fusion([x, impulse], [ones, ones], ones)
    assert torch.allclose(convs[0], x) and torch.allclose(convs[1], impulse)  # all-pass filter: identity
    assert torch.allclose(fused, x / math.sqrt(d))


# ------------------------------------------------------------------------------ graphs
def test_graphs_are_the_references():
    """``S_m``: directed top-k cosine (self included), weighted by the cosine, D^-1/2 W D^-1/2 with
    row-sum degrees; ``S_f`` the element-wise max of the S_m; ``R_hat`` the user-item block of
    A_hat. Compared with dense computations (fine at this size, in a test only)."""
    net, _ = build(modalities=["text", "audio"])
    dense = {}
    for m in net.modalities:
        x = net.item_feats[m][1:].double()  # without RecBole's PAD row
        xn = x / x.norm(dim=1, keepdim=True)
        val, ind = (xn @ xn.T).topk(net.knn_ks[m], dim=1)
        w = torch.zeros_like(xn @ xn.T).scatter_(1, ind, val)
        dis = w.sum(1).pow(-0.5)
        s = torch.zeros(net.n_items, net.n_items, dtype=torch.float64)
        s[1:, 1:] = dis[:, None] * w * dis[None, :]
        dense[m] = s
        got = net.mm_adj[m].to_dense().double()
        if m == "text":  # audio has tied cosines at the k-th place (equal-feature items): another pick, same rule
            assert torch.allclose(got, s, atol=1e-6)
        assert (got != 0).sum(1).max() == net.knn_ks[m]
    stacked = torch.stack([torch.where(s != 0, s, -torch.inf) for s in dense.values()])
    fusion = stacked.max(0).values
    fusion = torch.where(torch.isinf(fusion), 0.0, fusion)
    got = net.mm_adj["fusion"].to_dense().double()
    audio_got = net.mm_adj["audio"].to_dense().double()
    agree = (audio_got - dense["audio"]).abs().max(1).values < 1e-6  # rows where audio's pick is the reference's
    assert agree.float().mean() > 0.95
    assert torch.allclose(got[agree], fusion[agree], atol=1e-6)
    a_hat = net.norm_adj.to_dense()
    assert torch.equal(net.R_op.coo.to_dense(), a_hat[: net.n_users, net.n_users:])


def test_sparse_max_keeps_negative_values_and_the_union():
    a = torch.tensor([[0.0, 2.0], [-1.0, 0.0]]).to_sparse()
    b = torch.tensor([[3.0, 1.0], [0.0, 0.0]]).to_sparse()
    c = torch.tensor([[0.0, 0.0], [-3.0, 0.5]]).to_sparse()
    assert torch.equal(sparse_max([a, b, c]).to_dense(), torch.tensor([[3.0, 2.0], [-1.0, 0.5]]))


def test_per_modality_knn_k_and_bad_values():
    net, _ = build(modalities=["text", "audio"], modality_knn_k={"audio": 4})
    assert net.knn_ks == {"text": 10, "audio": 4}
    assert (net.mm_adj["audio"].to_dense() != 0).sum(1).max() == 4
    with pytest.raises(InputError, match="modality_knn_k"):
        build(modality_knn_k={"image": 4})
    with pytest.raises(InputError, match="feat_embed_dim"):
        build(feat_embed_dim=32)


# ------------------------------------------------------------------------------ leakage
def _built_in_original_ids(net, ds):
    """Every graph and feature the model built, keyed by original user / item tokens."""
    utok, itok = ds.field2id_token[ds.uid_field], ds.field2id_token[ds.iid_field]

    def edges(adj, rtok, ctok):
        adj = adj.coalesce()
        i, v = adj.indices().numpy(), adj.values().numpy()
        return {(rtok[a], ctok[b], round(float(w), 6)) for a, b, w in zip(i[0], i[1], v)}

    out = {"R_hat": edges(net.R_op.coo, utok, itok)}
    out.update({f"S_{m}": edges(adj, itok, itok) for m, adj in net.mm_adj.items()})
    out["ui"] = user_item_pairs(net, ds)
    for m, f in net.item_feats.items():
        out[f"feat_{m}"] = {itok[k]: f[k].numpy().tobytes() for k in range(1, len(itok))}
    return out


def test_nothing_built_from_validation_or_test_rows(tmp_path):
    """Two datasets that differ only in their validation and test rows build identical graphs and
    features; the user-item graph holds exactly the training pairs."""
    a_cfg = quiet_lastfm_copy(tmp_path / "a", False, item_feature_norm={"audio": "l2"})
    b_cfg = quiet_lastfm_copy(tmp_path / "b", True, item_feature_norm={"audio": "l2"})
    assert (tmp_path / "a/data/lfm/lfm.test.inter").read_text() != (tmp_path / "b/data/lfm/lfm.test.inter").read_text()
    built = []
    for cfg in (a_cfg, b_cfg):
        config, _, tr, _, _, _ = prepare("SMORE", "lfm", config_dict=cfg, log=False)
        built.append(_built_in_original_ids(build_model(config, tr), tr._dataset))
    assert built[0].keys() == built[1].keys()
    for key in built[0]:
        assert built[0][key] == built[1][key], key
    train = training_pairs(tmp_path / "a/data/lfm/lfm.train.inter")
    assert built[0]["ui"] == train
    assert {(u, i) for u, i, _ in built[0]["R_hat"]} == train


# ------------------------------------------------------------------------------ training
TRAINED = ["user_embedding", "item_embedding", "feature_tables", "feature_proj", "filters", "fusion_filter",
           "item_gates", "fusion_item_gate", "queries", "prefer_gates", "fusion_prefer_gate"]


def test_one_step_is_finite_and_every_trained_part_gets_gradient():
    net, tr = build(dropout=0.1)
    batch = next(iter(tr)).to(net.device)
    loss = train_step(net, batch)
    assert torch.isfinite(loss)
    for group in TRAINED:
        params = [(n, p) for n, p in net.named_parameters() if n.split(".")[0] == group]
        assert params, group
        for n, p in params:
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, n
    assert {n.split(".")[0] for n, _ in net.named_parameters()} == set(TRAINED)
    # frozen: the raw features and every graph are buffers without gradient
    assert all(not b.requires_grad and b.grad is None for b in net.buffers())
    frozen, _ = build(finetune_features=False)
    assert not any(n.startswith("feature_tables") for n, _ in frozen.named_parameters())
    assert torch.isfinite(train_step(frozen, batch))
    assert frozen.feature_proj["text"].weight.grad is not None and frozen.item_feats["text"].grad is None


def test_loss_terms_follow_the_reference_arithmetic():
    """cl_weight 0 and reg_weight 0 leave the BPR term alone; the InfoNCE term is the reference's
    mean -log(exp(pos / tau) / sum_j exp(s_j / tau)) with in-batch candidates."""
    net, tr = build(cl_weight=0.0, reg_weight=0.0)
    net.eval()  # no gate dropout: the same forward twice
    batch = next(iter(tr)).to(net.device)
    users, pos, neg = batch[net.USER_ID], batch[net.ITEM_ID], batch[net.NEG_ITEM_ID]
    with torch.no_grad():
        u, i, parts = net.forward()
        bpr = -torch.nn.functional.logsigmoid((u[users] * i[pos]).sum(1) - (u[users] * i[neg]).sum(1)).mean()
        assert torch.allclose(net.calculate_loss(batch), bpr, atol=1e-6)
        side_i = torch.nn.functional.normalize(parts["side"][net.n_users:][pos], dim=1)
        cont_i = torch.nn.functional.normalize(parts["content"][net.n_users:][pos], dim=1)
        ref = -torch.log(torch.exp((side_i * cont_i).sum(1) / 0.2) / torch.exp(side_i @ cont_i.T / 0.2).sum(1)).mean()
        assert torch.allclose(net.view_info_nce(parts["side"][net.n_users:][pos], parts["content"][net.n_users:][pos]),
                              ref, rtol=1e-5)


@pytest.mark.parametrize("modalities", [["text"], ["text", "audio"], ["text", "audio", "whisper"]])
def test_any_number_of_modalities(modalities):
    net, tr = build(modalities=modalities)
    assert net.modalities == modalities and set(net.filters) == set(modalities)
    assert set(net.mm_adj) == set(modalities) | {"fusion"}
    assert torch.isfinite(train_step(net, next(iter(tr)).to(net.device)))
    net.eval()
    scores = net.full_sort_predict({net.USER_ID: torch.arange(1, 6, device=net.device)})
    assert scores.shape == (5, net.n_items) and torch.isfinite(scores).all()


def test_same_seed_same_numbers():
    a, tr = build()
    b, _ = build()
    batch = next(iter(tr))
    assert torch.equal(a.calculate_loss(batch), b.calculate_loss(batch))


# ------------------------------------------------------------------------------ end to end
def test_one_epoch_on_lastfm_and_checkpoint_reload(fast):
    result = run("SMORE", config_dict=dict(fast, epochs=1))
    assert result["epochs_run"] == 1 and 0.0 < result["test_result"]["recall@20"] <= 1.0
    assert_checkpoint_evaluates_the_same(result)


def test_one_epoch_on_ml100k(fast):
    result = run("SMORE", "ml-100k", config_dict=dict(fast, epochs=1), saved=False)
    assert result["epochs_run"] == 1 and 0.0 < result["test_result"]["recall@20"] <= 1.0
