"""The multimodal baselines (BASELINES below): they run, they reproduce, and their
mechanisms do what the papers say. Everything on the bundled Last.fm-2K (text 384 + audio 128
features by default; whisper 512 as a third modality)."""

import json

import numpy as np
import pytest
import torch
import yaml
from scipy import stats

import model_support
from recbole_recgoat.model.layers import graph, knn, losses, sparse
from recbole_recgoat.cli import main as cli_main
from recbole_recgoat.errors import InputError
from recbole_recgoat.paths import properties_dir
from recbole_recgoat.quick_start import run

BASELINES = ["FREEDOM", "LGMRec", "VBPR", "BM3", "LATTICE", "MGCN", "DRAGON", "SMORE", "MMGCN", "DualGNN", "GRCN", "SLMRec"]
# small tensors on a shared machine: one torch thread is faster and steadier
pytestmark = pytest.mark.usefixtures("one_thread")


def build(model, **overrides):
    """``(model, train_data)`` on lastfm-2k, built as a run builds it (seeded, training split), graphs cached."""
    return model_support.model_and_data(model, **overrides)


def first_batch(train_data, device):
    return next(iter(train_data)).to(device)


def train_step(net, batch):
    """Forward and backward, after the epoch's ``pre_epoch_processing`` (FREEDOM's edge pruning, LATTICE's graph)."""
    return model_support.train_step(net, batch, pre_epoch=True)


# ----------------------------------------------------------------------------------------------
# end to end: quick_start.run and run_recbole's CLI give identical metrics for one seed
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", BASELINES)
def test_trains_evaluates_and_reproduces(model, fast, tmp_path):
    cfg = dict(fast, epochs=1, seed=2024)
    first = run(model, config_dict=cfg)
    assert first["epochs_run"] == 1
    assert 0.0 < first["test_result"]["recall@20"] <= 1.0
    out = tmp_path / "second.json"
    args = [f"--model={model}", "--epochs=1", "--seed=2024", "--state=WARNING", f"--result_json={out}"]
    args += [f"--{k}={v}" for k, v in fast.items() if k not in ("epochs", "state")]
    assert cli_main(args) == 0
    second = json.loads(out.read_text())
    assert second["best_valid_result"] == first["best_valid_result"]
    assert second["test_result"] == first["test_result"]


@pytest.mark.parametrize("model", BASELINES)
@pytest.mark.parametrize("modalities", [["text"], ["text", "audio", "whisper"], ["audio", "text"]])
def test_any_number_of_modalities(model, modalities):
    net, train_data = build(model, modalities=modalities)
    assert net.modalities == modalities
    loss = train_step(net, first_batch(train_data, net.device))
    assert torch.isfinite(loss)
    net.eval()
    users = torch.arange(1, 6, device=net.device)
    scores = net.full_sort_predict({net.USER_ID: users})
    assert scores.shape == (5, net.n_items) and torch.isfinite(scores).all()


@pytest.mark.parametrize("model", ["FREEDOM", "BM3"])
def test_feature_tables_finetuned_or_frozen(model):
    net, train_data = build(model, reg_weight=0.001)
    batch = first_batch(train_data, net.device)
    tables = {n for n, _ in net.named_parameters() if n.startswith("feature_tables.")}
    assert tables == {f"feature_tables.{m}" for m in net.modalities}  # fine-tuned (reference code)
    before = net.feature_tables["text"].detach().clone()
    train_step(net, batch)
    assert net.feature_tables["text"].grad is not None and net.feature_tables["text"].grad.abs().sum() > 0
    assert torch.equal(before, net.feature_tables["text"].detach())  # the step itself is the optimizer's
    frozen, _ = build(model, reg_weight=0.001, finetune_features=False)
    assert not any(n.startswith("feature_tables.") for n, _ in frozen.named_parameters())
    assert torch.isfinite(train_step(frozen, batch))
    assert frozen.feature_proj["text"].weight.grad is not None


def test_yaml_defaults_and_search_spaces():
    for model in BASELINES:
        path = properties_dir() / "model" / f"{model}.yaml"
        conf = yaml.safe_load(path.read_text())
        space = conf["search_space"]
        assert isinstance(space, dict) and space
        assert all(isinstance(v, list) and v for v in space.values())
        overall = yaml.safe_load((properties_dir() / "overall.yaml").read_text())
        assert all(k in conf or k in overall for k in space), f"{model}: every searched key has a default"
    lgm = (properties_dir() / "model" / "LGMRec.yaml").read_text()
    assert "lgmrec_gumbel_at_inference: False" in lgm and "Reference code: True" in lgm
    assert "lgmrec_missing_modality: use_available" in lgm and "crashes" in lgm
    freedom = yaml.safe_load((properties_dir() / "model" / "FREEDOM.yaml").read_text())["search_space"]
    assert freedom == {"dropout": [0.8, 0.9], "reg_weight": [0.0, 1e-05, 1e-04, 1e-03]}


# ----------------------------------------------------------------------------------------------
# FREEDOM
# ----------------------------------------------------------------------------------------------


def test_freedom_keeps_one_minus_dropout_of_the_edges():
    net, _ = build("FREEDOM", dropout=0.8)
    n_edges = net.edge_weights.numel()
    net.pre_epoch_processing()
    kept = net.kept_edges
    assert kept.numel() == int(n_edges * 0.2)
    assert torch.unique(kept).numel() == kept.numel()  # without replacement
    assert net.masked_adj._nnz() == 2 * kept.numel()  # both directions of each kept edge
    first = kept.clone()
    net.pre_epoch_processing()
    assert not torch.equal(torch.sort(first).values, torch.sort(net.kept_edges).values)  # re-sampled


def test_freedom_prunes_high_degree_edges_more_often():
    """Keep-rates over many epochs: edges between popular nodes are kept significantly less often."""
    net, _ = build("FREEDOM", dropout=0.8)
    du = torch.bincount(net.edge_users, minlength=net.n_users).float()
    di = torch.bincount(net.edge_items, minlength=net.n_items).float()
    degree = (du[net.edge_users] * di[net.edge_items]).numpy()
    counts = torch.zeros(net.edge_weights.numel())
    torch.manual_seed(0)
    n_samples = 200
    for _ in range(n_samples):
        counts[net.prune_edges()] += 1
    rate = (counts / n_samples).numpy()
    low, high = degree <= np.quantile(degree, 0.25), degree >= np.quantile(degree, 0.75)
    test = stats.mannwhitneyu(rate[low], rate[high], alternative="greater")
    assert test.pvalue < 1e-12
    assert rate[low].mean() > 0.2 > rate[high].mean()  # uniform pruning would keep 20% of both
    assert abs(rate.mean() - 0.2) < 1e-3
    rho = stats.spearmanr(degree, rate).statistic
    assert rho < -0.5


def test_freedom_trains_on_the_pruned_graph_and_predicts_on_the_full_one():
    net, train_data = build("FREEDOM", dropout=0.8)
    seen = []
    original = net.forward

    def spy(adj_op=None):  # None: the full training graph (the backbone's default)
        seen.append(net.adj_op if adj_op is None else adj_op)
        return original(adj_op)

    net.forward = spy
    batch = first_batch(train_data, net.device)
    train_step(net, batch)
    assert seen[-1] is net.masked_op and net.masked_op is not net.adj_op
    net.eval()
    users = batch[net.USER_ID][:8]
    scores = net.full_sort_predict({net.USER_ID: users})
    assert seen[-1] is net.adj_op
    with torch.no_grad():
        u_full, i_full, _ = original(net.adj_op)
        u_pruned, i_pruned, _ = original(net.masked_op)
    assert torch.allclose(scores, u_full[users] @ i_full.T)
    assert not torch.allclose(scores, u_pruned[users] @ i_pruned.T)
    # the full graph is the training graph's symmetric normalisation
    assert net.adj_op.coo._nnz() == 2 * net.edge_weights.numel()


def test_freedom_prunes_before_every_epoch_through_the_trainer(fast):
    result = run("FREEDOM", config_dict=dict(fast, epochs=2, stopping_step=5, dropout=0.9))
    assert [e for e, _ in result["diagnostics"]] == [0, 1]
    assert all(abs(d["kept_fraction"] - 0.1) < 1e-3 for _, d in result["diagnostics"])


def _topk_threshold(x, k):
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = xn @ xn.T
    sim[0, :] = sim[:, 0] = -np.inf  # PAD
    return sim, np.sort(sim, axis=1)[:, -k]


def test_item_item_graph_is_symmetric_normalised_and_knn_by_cosine():
    net, _ = build("FREEDOM", knn_k=10)
    k, n = 10, net.n_items
    for m in net.modalities:
        adj = net.modality_graph(m).to_dense().numpy()
        assert np.allclose(adj, adj.T)  # symmetric
        binary = adj > 0
        deg = binary.sum(1)
        assert deg[0] == 0 and not binary[:, 0].any()  # PAD: no edges
        rows, cols = np.nonzero(binary)
        assert np.allclose(adj[rows, cols], 1.0 / np.sqrt(deg[rows] * deg[cols]), rtol=1e-5)  # D^-1/2 A D^-1/2
        sim, kth = _topk_threshold(net.item_feats[m].cpu().numpy().astype(np.float64), k)
        eps = 1e-5
        # every edge is among the k nearest of one of its ends
        assert np.all((sim[rows, cols] >= kth[rows] - eps) | (sim[rows, cols] >= kth[cols] - eps))
        # every item's k nearest (the item itself included) are its neighbours
        must = sim[1:] > kth[1:, None] + eps
        assert np.all(binary[1:][must])
        assert np.all(binary[np.arange(1, n), np.arange(1, n)])  # itself
        assert np.all(deg[1:] >= k)
    # modalities mixed 0.9 text + 0.1 audio (FREEDOM's mm_image_weight rule)
    mixed = 0.9 * net.modality_graph("text").to_dense() + 0.1 * net.modality_graph("audio").to_dense()
    assert torch.allclose(net.mm_adj.to_dense(), mixed, atol=1e-6)


def test_item_graph_is_cached_and_rebuilt_when_features_or_k_change(monkeypatch, tmp_path):
    calls = []
    real = knn.knn_graph

    def counting(x, k, **kw):
        calls.append((tuple(x.shape), k))
        return real(x, k, **kw)

    monkeypatch.setattr(knn, "knn_graph", counting)
    cache = tmp_path / "graphs"
    net1, train_data = build("FREEDOM", graph_cache_dir=str(cache))
    assert len(calls) == 2  # text and audio built
    files = sorted(p.name for p in (cache / "lastfm-2k").iterdir())
    assert len(files) == 2
    net2, _ = build("FREEDOM", graph_cache_dir=str(cache))
    assert len(calls) == 2  # cache hit: nothing rebuilt
    assert torch.equal(net1.mm_adj.to_dense(), net2.mm_adj.to_dense())
    net3, _ = build("FREEDOM", graph_cache_dir=str(cache), knn_k=5)
    assert len(calls) == 4  # another k: rebuilt
    # other feature values: rebuilt for the changed modality only
    feats = train_data._dataset.item_features
    saved = feats["audio"].clone()
    try:
        feats["audio"][1:] += torch.randn_like(feats["audio"][1:])
        from recbole_recgoat.model.freedom import FREEDOM

        FREEDOM(train_data.config, train_data._dataset)
        assert len(calls) == 5 and calls[-1][0] == tuple(saved.shape)
    finally:
        feats["audio"].copy_(saved)
    assert len(list((cache / "lastfm-2k").iterdir())) == 5


def test_freedom_modality_weights():
    from recbole_recgoat.model.layers.graph import modality_mix_weights

    assert modality_mix_weights(["image", "text"]) == pytest.approx({"image": 0.1, "text": 0.9})
    assert modality_mix_weights(["text", "audio", "whisper"]) == pytest.approx({"text": 0.9, "audio": 0.05, "whisper": 0.05})
    assert modality_mix_weights(["audio", "whisper"]) == pytest.approx({"audio": 0.5, "whisper": 0.5})
    assert modality_mix_weights(["text"]) == {"text": 1.0}
    assert modality_mix_weights(["text", "audio"], explicit={"text": 3, "audio": 1}) == pytest.approx({"text": 0.75, "audio": 0.25})
    with pytest.raises(InputError, match="modality_weights"):
        modality_mix_weights(["text", "audio"], explicit={"text": 1})


# ----------------------------------------------------------------------------------------------
# LGMRec
# ----------------------------------------------------------------------------------------------


def test_lgmrec_incidences_are_row_stochastic():
    """The incidences forward uses: the noiseless softmax in evaluation, Gumbel-softmax in training
    (keep_rate 1: no incidence dropout), both with rows summing to 1."""
    for keep_rate, training in ((0.5, False), (1.0, True)):
        net, _ = build("LGMRec", hyper_num=4, keep_rate=keep_rate)
        net.train(training)
        _, _, hyper = net.forward()
        for m in net.modalities:
            _, _, user_inc, item_inc, _ = hyper[m]
            assert item_inc.shape == (net.n_items, 4) and user_inc.shape == (net.n_users, 4)
            for inc in (item_inc, user_inc):
                assert (inc >= 0).all()
                assert torch.allclose(inc.sum(1), torch.ones(inc.shape[0]), atol=1e-5)


def test_lgmrec_evaluation_is_deterministic_and_reference_switch_is_not():
    net, _ = build("LGMRec")
    users = {net.USER_ID: torch.arange(1, 33)}
    net.eval()
    first = net.full_sort_predict(users)
    net.eval()  # clears the cache: recomputed from scratch
    torch.manual_seed(123)  # a different RNG state must not matter
    second = net.full_sort_predict(users)
    assert torch.equal(first, second)
    with torch.no_grad():
        a, b = net.forward()[:2], net.forward()[:2]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])

    ref, _ = build("LGMRec", lgmrec_gumbel_at_inference=True)
    ref.eval()
    assert not torch.equal(ref.full_sort_predict(users), ref.full_sort_predict(users))


def test_lgmrec_single_modality_and_cf_only_switch():
    net, train_data = build("LGMRec", modalities=["text"])
    batch = first_batch(train_data, net.device)
    assert torch.isfinite(train_step(net, batch))
    _, _, hyper = net.forward()
    assert list(hyper) == ["text"]  # the text hypergraph is used; no pair, so no InfoNCE
    cf, _ = build("LGMRec", modalities=["text"], lgmrec_missing_modality="cf_only")
    cf.eval()
    users, items, hyper = cf.forward()
    assert hyper == {}
    assert torch.equal(torch.cat([users, items]), cf.cge())
    with pytest.raises(InputError, match="lgmrec_missing_modality"):
        build("LGMRec", lgmrec_missing_modality="crash")


def test_lgmrec_contrastive_loss_matches_the_direct_formula():
    """Distinct ids computed once and the rank-H factorisation give the reference InfoNCE."""
    net, train_data = build("LGMRec")
    net.train()
    batch = first_batch(train_data, net.device)
    users, pos = batch[net.USER_ID], batch[net.ITEM_ID]
    torch.manual_seed(0)
    _, _, hyper = net.forward()
    fast = net.contrastive_loss(hyper, users, pos)
    (uv, iv), (ut, it) = [hyper[m][:2] for m in net.modalities]
    f = torch.nn.functional.normalize

    def direct(e1, e2, all_e):
        pos_score = torch.exp((f(e1) * f(e2)).sum(1) / 0.2)
        total = torch.exp(f(e1) @ f(all_e).T / 0.2).sum(1)
        return -torch.log(pos_score / total).sum()

    slow = direct(uv[users], ut[users], ut) + direct(iv[pos], it[pos], it)
    assert torch.allclose(fast, slow, rtol=1e-4)
    g_fast = torch.autograd.grad(fast, net.user_embedding.weight, retain_graph=True)[0]
    g_slow = torch.autograd.grad(slow, net.user_embedding.weight)[0]
    assert (g_fast - g_slow).abs().max() <= 1e-4 * g_slow.abs().max()  # float32 sums in another order


# ----------------------------------------------------------------------------------------------
# VBPR
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [False, True])
def test_vbpr_score_is_id_part_plus_content_part(bias):
    net, train_data = build("VBPR", vbpr_bias=bias)
    if bias:  # make the bias terms non-trivial
        with torch.no_grad():
            net.item_bias.normal_()
            net.visual_bias.normal_()
    net.eval()
    users = torch.arange(1, 17)
    id_part, content_part = net.score_parts(users)
    scores = net.full_sort_predict({net.USER_ID: users})
    assert torch.allclose(scores, id_part + content_part, atol=1e-5)
    d = net.embedding_size
    assert torch.allclose(id_part[:, :], net.user_embedding[users, :d] @ net.item_embedding.T + (net.item_bias if bias else 0), atol=1e-5)
    # the content part depends on the items' features only through E f + b
    content = net.content @ net.item_linear.weight.T + net.item_linear.bias
    expect = net.user_embedding[users, d:] @ content.T + (net.content @ net.visual_bias if bias else 0)
    assert torch.allclose(content_part, expect, atol=1e-4)
    # pairwise
    items = torch.arange(1, 17)
    pid, pcontent = net.score_parts(users, items)
    pred = net.predict({net.USER_ID: users, net.ITEM_ID: items})
    assert torch.allclose(pred, pid + pcontent, atol=1e-5)
    assert torch.allclose(pred, scores[torch.arange(16), items], atol=1e-5)
    assert net.content.shape[1] == sum(f.shape[1] for f in net.item_feats.values())  # modalities concatenated


def test_vbpr_content_vector_concatenates_the_modalities():
    net, _ = build("VBPR")  # default: each modality block L2-normalised, then concatenated
    dims = [f.shape[1] for f in net.item_feats.values()]
    blocks = torch.split(net.content, dims, dim=1)
    for block in blocks:
        assert torch.allclose(block[1:].norm(dim=1), torch.ones(net.n_items - 1), atol=1e-5)
    assert not net.content[0].any()  # PAD
    raw, _ = build("VBPR", vbpr_feature_norm="none", modalities=["audio", "text"])
    assert torch.equal(raw.content, torch.cat([raw.item_feats["audio"], raw.item_feats["text"]], dim=1))


# ----------------------------------------------------------------------------------------------
# BM3
# ----------------------------------------------------------------------------------------------


def test_bm3_uses_no_negative_items():
    net, train_data = build("BM3")
    batch = first_batch(train_data, net.device)
    assert net.NEG_ITEM_ID not in batch.interaction  # the dataloader samples none
    assert train_data.config["train_neg_sample_args"]["distribution"] == "none"
    users, items = batch[net.USER_ID], batch[net.ITEM_ID]
    net.train()

    def loss_with(fields):
        torch.manual_seed(7)  # the target-view dropout draws the same masks
        return net.calculate_loss(fields).item()

    base = loss_with({net.USER_ID: users, net.ITEM_ID: items})
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        negs = torch.randint(1, net.n_items, users.shape, generator=g)
        assert loss_with({net.USER_ID: users, net.ITEM_ID: items, net.NEG_ITEM_ID: negs}) == base
    shuffled = items[torch.randperm(items.numel(), generator=g)]
    assert loss_with({net.USER_ID: users, net.ITEM_ID: shuffled}) != base  # the test can see a change


# ----------------------------------------------------------------------------------------------
# shared layers
# ----------------------------------------------------------------------------------------------


def test_sparse_operator_matches_torch_sparse_mm():
    torch.manual_seed(0)
    users, items = torch.randint(1, 30, (200,)), torch.randint(1, 20, (200,))
    adj = graph.bipartite_norm_adj(users, items, 30, 20)
    op = sparse.SparseOperator(adj, symmetric=True)
    x = torch.randn(50, 8, requires_grad=True)
    y = x.detach().clone().requires_grad_(True)
    out = op @ x
    (out.pow(2).sum()).backward()
    ref = torch.sparse.mm(adj, y)
    ref.pow(2).sum().backward()
    assert torch.allclose(out, ref, atol=1e-6) and torch.allclose(x.grad, y.grad, atol=1e-6)
    rect = torch.sparse_coo_tensor(torch.stack([users, items]), torch.rand(200), (30, 20), check_invariants=True).coalesce()
    rop = sparse.SparseOperator(rect)
    z = torch.randn(20, 3, dtype=torch.float32, requires_grad=True)
    (rop @ z).sum().backward()
    assert torch.allclose(z.grad, rect.to_dense().T @ torch.ones(30, 3), atol=1e-5)
    assert torch.allclose(rop.T @ torch.ones(30, 2), rect.to_dense().T @ torch.ones(30, 2), atol=1e-5)


def test_blockwise_infonce_matches_dense_formula():
    torch.manual_seed(0)
    a = torch.randn(9, 6, dtype=torch.double, requires_grad=True)
    p = torch.randn(9, 6, dtype=torch.double, requires_grad=True)
    left = torch.rand(13, 3, dtype=torch.double, requires_grad=True)
    right = torch.randn(3, 6, dtype=torch.double, requires_grad=True)
    f = torch.nn.functional.normalize
    cand = left @ right
    ref = (torch.logsumexp(f(a) @ f(cand).T / 0.2, 1) - (f(a) * f(p)).sum(1) / 0.2).sum()
    assert torch.allclose(losses.info_nce(a, p, cand, 0.2), ref)
    assert torch.allclose(losses.info_nce_lowrank(a, p, left, right, 0.2), ref)
    assert torch.autograd.gradcheck(lambda *t: losses.info_nce_lowrank(*t, 0.2), (a, p, left, right))
    c = cand.detach().requires_grad_()
    w = torch.rand(9, dtype=torch.double) + 0.5
    for bounded, x, y in ((False, a, c), (True, f(a).detach().requires_grad_(), f(c).detach().requires_grad_())):
        small = lambda x, y: losses.logsumexp_dot(x, y, 3.0, w, block_bytes=8 * 13 * 2, bounded=bounded)  # noqa: E731  (2-row blocks)
        assert torch.allclose(small(x, y), (torch.logsumexp(3.0 * x @ y.T, 1) * w).sum())
        assert torch.autograd.gradcheck(small, (x, y))  # the gradients computed in the same pass


def test_blockwise_logsumexp_value_under_no_grad():
    """Under no_grad (evaluation) the single-pass kernel computes only the value, even for inputs
    that require gradients."""
    a, c = torch.randn(50, 4, requires_grad=True), torch.randn(300, 4, requires_grad=True)
    with torch.no_grad():
        value = losses.logsumexp_dot(a, c, 2.0, block_bytes=4 * 300 * 7)
    assert value.grad_fn is None
    assert torch.allclose(value, torch.logsumexp(2.0 * a @ c.T, 1).sum(), rtol=1e-5)


def test_sample_without_replacement():
    torch.manual_seed(0)
    w = torch.rand(1000)
    idx = graph.sample_without_replacement(w, 300)
    assert idx.numel() == 300 and torch.unique(idx).numel() == 300
    assert torch.equal(graph.sample_without_replacement(w, 2000), torch.arange(1000))


@pytest.mark.parametrize("model", ["FREEDOM", "LGMRec"])
def test_feature_size_must_match_embedding_size(model):
    with pytest.raises(InputError, match=r"feat_embed_dim: 32; expected embedding_size \(64\)"):
        build(model, feat_embed_dim=32)


# ----------------------------------------------------------------------------------------------
# feature scaling declared per dataset and modality (item_feature_norm), applied once by the loader
# ----------------------------------------------------------------------------------------------


def _row_norms(x):
    return x.detach().double().norm(dim=1)


@pytest.mark.parametrize("model", ["RecGOAT"] + BASELINES)
def test_declared_feature_norm_reaches_every_model(model):
    """lastfm-2k declares audio: l2: the rows every model stores from the dataset (and the
    fine-tuned tables made from them) have unit norm; PAD stays zero; text is untouched."""
    net, train_data = build(model)
    assert train_data._dataset.item_feature_norm == {"text": "none", "audio": "l2"}
    audio = net.item_feats["audio"]
    norms = _row_norms(audio)
    assert torch.isfinite(audio).all() and float(norms[0]) == 0.0
    assert torch.allclose(norms[1:], torch.ones_like(norms[1:]), atol=1e-5)
    tables = getattr(net, "feature_tables", None)
    if tables is not None and "audio" in tables:
        assert torch.allclose(_row_norms(tables["audio"])[1:], torch.ones_like(norms[1:]), atol=1e-5)
    if model == "VBPR":  # the content vector is made from the stored (already unit) rows
        assert torch.allclose(net.content[1:, -128:].double().norm(dim=1), torch.ones_like(norms[1:]), atol=1e-5)


def test_feature_norm_undeclared_is_raw_and_bad_values_fail():
    net, train_data = build("LGMRec", item_feature_norm=None)
    assert train_data._dataset.item_feature_norm == {"text": "none", "audio": "none"}
    assert float(_row_norms(net.item_feats["audio"])[1:].min()) > 1000  # raw VGGish
    with pytest.raises(InputError, match=r"^item_feature_norm: audio: 'max'; expected one of l2, none$"):
        build("LGMRec", item_feature_norm={"audio": "max"})
    with pytest.raises(InputError, match=r"^item_feature_norm: video: not a modality"):
        build("LGMRec", item_feature_norm={"video": "l2"})


def test_feature_norm_is_named_in_the_result_record(fast):
    result = run("VBPR", config_dict=dict(fast, epochs=1, modalities=["text", "audio", "whisper"]), saved=False)
    assert result["feature_norm"] == {"text": "none", "audio": "l2", "whisper": "l2"}
    assert result["config"]["item_feature_norm"] == {"audio": "l2", "whisper": "l2"}


# ----------------------------------------------------------------------------------------------
# the batched losses (one bmm / one cosine call for all terms: fewer OpenMP regions per step,
# issue 11) are the papers' per-term sums
# ----------------------------------------------------------------------------------------------


def _per_term_loss(net, batch):
    """The loss written term by term, as the papers state it (a reference for the batched code)."""
    F = torch.nn.functional
    users, pos = batch[net.USER_ID], batch[net.ITEM_ID]
    name = type(net).__name__
    if name == "VBPR":  # BPR over s(u, i) = <[gamma_u; theta_u], [gamma_i; E f_i]> + beta_i + beta'.f_i
        neg = batch[net.NEG_ITEM_ID]
        u, qp, qn = net.user_embedding[users], net.item_vectors(pos), net.item_vectors(neg)
        sp, sn = (u * qp).sum(1), (u * qn).sum(1)
        if net.use_bias:
            sp, sn = sp + sum(net._biases(pos)), sn + sum(net._biases(neg))
        reg = (torch.norm(u) + torch.norm(qp) + torch.norm(qn)) / u.shape[0]  # RecBole's EmbLoss
        return losses.bpr_loss(sp, sn) + net.reg_weight * reg
    if name == "FREEDOM":  # BPR on the graph embeddings + reg_weight * BPR on each projected modality
        neg = batch[net.NEG_ITEM_ID]
        user_all, item_all, _ = net.forward(net.masked_op)
        u = user_all[users]
        loss = losses.bpr_loss((u * item_all[pos]).sum(1), (u * item_all[neg]).sum(1))
        for m in net.modalities:
            proj, table = net.feature_proj[m], net.feature_table(m)
            loss = loss + net.reg_weight * losses.bpr_loss((u * proj(table[pos])).sum(1), (u * proj(table[neg])).sum(1))
        return loss
    # BM3: 1 - cos between an online prediction and a dropped-out target view, per term
    def cos_loss(a, b):
        return 1.0 - F.cosine_similarity(a, b, dim=-1).mean()
    u_all, i_all, _ = net.forward()
    with torch.no_grad():  # the dropout masks in the batched code's order: users, items, modalities
        u_t = F.dropout(u_all.detach(), net.dropout)[users]
        i_t = F.dropout(i_all.detach(), net.dropout)[pos]
    uniq, inverse = torch.unique(pos, return_inverse=True)
    h = [net.modality_online(m, uniq) for m in net.modalities]
    with torch.no_grad():
        m_t = [F.dropout(h_m.detach(), net.dropout)[inverse] for h_m in h]
    loss = cos_loss(net.predictor(u_all[users]), i_t) + cos_loss(net.predictor(i_all[pos]), u_t)
    align = sum(cos_loss(net.predictor(h_m)[inverse], i_t) + cos_loss(net.predictor(h_m)[inverse], t)
                for h_m, t in zip(h, m_t))
    return loss + net.reg_weight * net.emb_loss(u_all, i_all) + net.cl_weight * align


@pytest.mark.parametrize("model,overrides", [
    ("VBPR", {"vbpr_bias": False}), ("VBPR", {"vbpr_bias": True}),
    ("FREEDOM", {"reg_weight": 0.1}), ("BM3", {"dropout": 0.3}),
])
def test_batched_loss_is_the_per_term_sum(model, overrides):
    net, train_data = build(model, modalities=["text", "audio"], **overrides)
    batch = first_batch(train_data, net.device)
    net.train()
    if hasattr(net, "pre_epoch_processing"):
        net.pre_epoch_processing()
    torch.manual_seed(7)
    batched = net.calculate_loss(batch)
    torch.manual_seed(7)
    direct = _per_term_loss(net, batch)
    assert batched.item() > 0.0
    torch.testing.assert_close(batched, direct, rtol=1e-6, atol=1e-7)
    grads = []
    for loss in (batched, direct):
        net.zero_grad()
        loss.backward()
        grads.append([p.grad.clone() for p in net.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) > 0
    scale = max(g.abs().max().item() for g in grads[1])  # float32 rounding, on the gradients' scale
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * scale)
