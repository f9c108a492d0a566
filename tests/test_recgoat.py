"""RecGOAT: gradients, Lemma 3.3, optimal transport, leakage, reproducibility, ablation switches."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model_support import copy_lastfm, recgoat_graphs
from recbole_recgoat.model.layers import alignment
from recbole_recgoat.quick_start import build_model, prepare, run


@pytest.fixture
def lfm(tmp_path):
    return copy_lastfm(tmp_path)


def _model(cfg, dataset="lfm", **over):
    c, ds, tr, va, te, _ = prepare("RecGOAT", dataset, config_dict={**cfg, **over}, log=False)
    return build_model(c, tr), tr


# ------------------------------------------------------------------------------------------ model
def test_every_parameter_group_receives_gradient(lfm):
    model, tr = _model(lfm)
    batch = next(iter(tr))
    loss = sum(model.calculate_loss(batch))
    loss.backward()
    names = {n for n, _ in model.named_parameters()}
    groups = ["user_embedding", "item_embedding", "user_proj", "mm_proj.text", "mm_proj.audio", "mm_gat.text",
              "mm_gat.audio", "user_gat", "delta.text", "delta.audio", "fusion_weights", "item_norm", "user_fusion_weights"]
    for g in groups:
        params = [(n, p) for n, p in model.named_parameters() if n.startswith(g)]
        assert params, f"no parameter group {g} in {sorted(names)}"
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for _, p in params), f"{g} got no gradient"
    for n, p in model.named_parameters():
        assert p.grad is not None, f"{n} got no gradient"


def test_cmcl_equals_lemma_formula():
    torch.manual_seed(0)
    zm, z = torch.randn(37, 16), torch.randn(37, 16)
    tau = 0.2
    a = zm.numpy() / np.linalg.norm(zm.numpy(), axis=1, keepdims=True)
    b = z.numpy() / np.linalg.norm(z.numpy(), axis=1, keepdims=True)
    expected = 0.0
    for i in range(37):  # L_i = -log( exp(z^m_i.z_i/tau) / sum_j exp(z^m_i.z_j/tau) ), in float64
        s = a[i] @ b.T / tau
        expected += -(s[i] - (s.max() + math.log(np.exp(s - s.max()).sum())))
    expected /= 37
    assert abs(float(alignment.cmcl(zm, z, tau)) - expected) < 1e-5


def test_lemma33_bound_holds_on_every_logged_batch(lfm):
    result = run("RecGOAT", "lfm", config_dict={**lfm, "epochs": 1, "stopping_step": 1, "train_batch_size": 2048})
    diag = [d for _, d in result["diagnostics"]]
    assert len(diag) == 1
    for d in diag:
        for pair in ("text", "audio", "user"):
            assert d[f"lemma33_{pair}_violations"] == 0
            assert d[f"lemma33_{pair}_lhs"] <= d[f"lemma33_{pair}_rhs"]
        assert d["w1_exact_text"] > 0 and d["loss_cmcl"] > 0 and d["loss_oat"] > 0


def test_lemma33_sides_per_batch(lfm):
    model, tr = _model(lfm, train_batch_size=512)
    model.train()
    for k, batch in enumerate(tr):
        model.calculate_loss(batch)
        if k == 5:
            break
    assert len(model.lemma_log) == 6 * 3  # text, audio, user per batch
    for name, b, lhs, rhs in model.lemma_log:
        assert 0 <= lhs <= rhs, (name, b, lhs, rhs)


@pytest.mark.parametrize("scale", [0.01, 1.0, 10.0])
def test_entropic_plan_marginals_and_no_underflow(scale):
    """Our log-domain plan keeps exact marginals and stays positive at any embedding scale; the
    authors' plain-domain plan (cost x100, eps 0.01) underflows to zero on the same inputs."""
    g = torch.Generator().manual_seed(1)
    z_m = torch.randn(500, 64, generator=g) * scale
    z_id = torch.randn(500, 64, generator=g) * scale
    tmap = alignment.dimension_transport_map(z_m, z_id, eps=0.05)
    plan = tmap / 64
    assert torch.allclose(plan.sum(1), torch.full((64,), 1 / 64), atol=1e-5)
    assert torch.allclose(plan.sum(0), torch.full((64,), 1 / 64), atol=1e-5)
    assert plan.min() > 0
    # the authors' scaling: cost between raw dimension vectors x 100, eps 0.01, K = exp(-C / eps)
    cost = torch.cdist(z_m.T, z_id.T) * 100
    kernel = torch.exp(-cost / 0.01)
    assert kernel.max() == 0  # underflow: the plain-domain plan is all zeros (or NaN after scaling)


@pytest.mark.parametrize("n", [32, 128])
def test_sinkhorn_w1_close_to_exact(n):
    """Entropic W1 (eps 0.05, unit-sphere costs in [0, 2]) is within 0.05 of the network-simplex W1."""
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, 16, generator=g)
    y = torch.randn(n, 16, generator=g) + 0.5
    approx = float(alignment.sinkhorn_w1(x, y, eps=0.05, n_iter=500))
    exact = alignment.exact_w1(x, y)
    assert exact > 0.1
    assert abs(approx - exact) < 0.05
    assert approx >= exact - 1e-4  # <P_eps, C> is never below the optimal cost


def test_sinkhorn_w1_is_differentiable():
    x = torch.randn(20, 8, requires_grad=True)
    y = torch.randn(20, 8)
    alignment.sinkhorn_w1(x, y).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------ leakage
def test_nothing_built_from_validation_or_test_rows(tmp_path):
    a_cfg = copy_lastfm(tmp_path / "a", "lfm")
    b_cfg = copy_lastfm(tmp_path / "b", "lfm", permute_eval=True)
    a_model, a_tr = _model(a_cfg)
    b_model, b_tr = _model(b_cfg)
    assert (tmp_path / "a/data/lfm/lfm.test.inter").read_text() != (tmp_path / "b/data/lfm/lfm.test.inter").read_text()
    ga = recgoat_graphs(a_model, a_tr._dataset)
    gb = recgoat_graphs(b_model, b_tr._dataset)
    assert ga.keys() == gb.keys()
    for key in ga:
        assert ga[key] == gb[key], key
    # and the user-item graph holds exactly the training pairs
    train = {tuple(r.split("\t")[:2]) for r in (tmp_path / "a/data/lfm/lfm.train.inter").read_text().splitlines()[1:]}
    assert ga["ui"] == train


# ------------------------------------------------------------------------------------------ runs
def test_same_seed_identical_metrics(lfm):
    cfg = {**lfm, "epochs": 2, "stopping_step": 2, "train_batch_size": 8192}
    a = run("RecGOAT", "lfm", config_dict=cfg)
    b = run("RecGOAT", "lfm", config_dict=cfg)
    assert a["test_result"] == b["test_result"] and a["best_valid_result"] == b["best_valid_result"]


def test_full_sort_predict_cached_and_deterministic(lfm):
    model, tr = _model(lfm)
    model.eval()
    from recbole.data.interaction import Interaction

    inter = Interaction({"user_id": torch.arange(1, 50)})
    s1 = model.full_sort_predict(inter)
    cache = model._cache
    s2 = model.full_sort_predict(inter)
    assert torch.equal(s1, s2) and model._cache is cache
    model.train()
    assert model._cache is None
    model.calculate_loss(next(iter(tr)))
    model.eval()
    assert torch.equal(model.full_sort_predict(inter), s1)  # no optimizer step: same parameters, same scores
    assert s1.shape == (49, model.n_items)


# ------------------------------------------------------------------------------------------ ablations
def _parts(model):
    torch.manual_seed(0)
    model.eval()
    with torch.no_grad():
        return model.forward()


def test_ablation_cmcl_and_oat_switches(lfm):
    model, tr = _model(lfm, lambda_cl=0.0)
    batch = next(iter(tr))
    bpr, reg, cl, ot_ = model.calculate_loss(batch)
    assert float(cl.detach()) == 0 and model.lemma_log == [] and float(ot_.detach()) > 0
    model, _ = _model(lfm, lambda_ot=0.0)
    bpr, reg, cl, ot_ = model.calculate_loss(batch)
    assert float(ot_.detach()) == 0 and float(cl.detach()) > 0


def test_ablation_transport_map(lfm):
    on, _ = _model(lfm)
    off, _ = _model(lfm, use_transport_map=False)
    assert hasattr(on, "delta") and not hasattr(off, "delta")
    _, _, p_on = _parts(on)
    _, _, p_off = _parts(off)
    assert p_off["t_m"]["text"] is p_off["z_m"]["text"]
    assert not torch.allclose(p_on["t_m"]["text"], p_on["z_m"]["text"])
    # with the residual at zero, T_m = Z^m (d P*): a row-stochastic mixing of Z^m's dimensions
    plan = alignment.dimension_transport_map(p_on["z_m"]["text"], p_on["z_cf_i"], on.plan_eps, on.ot_iters)
    assert torch.allclose(p_on["t_m"]["text"], p_on["z_m"]["text"] @ plan, atol=1e-5)


def test_ablation_user_features_and_user_graph(lfm):
    full, _ = _model(lfm)
    no_graph, _ = _model(lfm, use_user_graph=False)
    no_feat, _ = _model(lfm, use_user_features=False)
    assert full.use_user_graph and hasattr(full, "user_gat")
    assert hasattr(no_graph, "user_proj") and not hasattr(no_graph, "user_gat")
    assert not hasattr(no_feat, "user_proj") and not hasattr(no_feat, "user_gat")
    z_u, _, parts = _parts(no_feat)
    assert parts["z_llm_u"] is None and torch.equal(z_u, parts["z_cf_u"])
    z_u, _, parts = _parts(no_graph)
    assert parts["z_llm_u"] is None and torch.equal(z_u, parts["z_cf_u"])
    z_u, _, parts = _parts(full)
    assert parts["z_llm_u"] is not None and not torch.equal(z_u, parts["z_cf_u"])


@pytest.mark.parametrize("fusion", ["sum", "concat"])
def test_ablation_fusion(lfm, fusion):
    model, _ = _model(lfm, fusion=fusion)
    assert not hasattr(model, "fusion_weights")
    assert hasattr(model, "item_concat") == (fusion == "concat")
    _, z_i, parts = _parts(model)
    if fusion == "sum":
        expected = parts["z_cf_i"] + sum(parts["t_m"].values())
        assert torch.allclose(z_i, expected, atol=1e-6)
        model, _ = _model(lfm, fusion=fusion, normalize_items=True)
        _, z_i, parts = _parts(model)
        assert torch.allclose(z_i, F.normalize(parts["z_cf_i"] + sum(parts["t_m"].values()), dim=1), atol=1e-6)


def test_modality_subsets(lfm):
    for mods in (["text"], ["audio"], ["text", "audio", "whisper"]):
        model, tr = _model(lfm, modalities=mods)
        assert list(model.mm_proj.keys()) == mods and list(model.mm_edges) == mods
        losses = model.calculate_loss(next(iter(tr)))
        assert all(torch.isfinite(x) for x in losses)


def test_id_only_row_has_no_lm_input(lfm):
    """``modalities: []`` + no user features: the claim table's "ID only" RecGOAT trains and scores."""
    model, tr = _model(lfm, modalities=[], use_user_features=False)
    assert model.modalities == [] and len(model.mm_proj) == 0 and not model.use_user_features
    assert model.feature_set() == {"items": [], "users": False}
    bpr, reg, cl, ot_ = model.calculate_loss(next(iter(tr)))
    assert float(cl) == 0.0 and float(ot_) == 0.0 and bpr.requires_grad
    (bpr + reg).backward()
    assert model.item_embedding.weight.grad.abs().sum() > 0
    model.eval()
    z_u, z_i = model.inference_embeddings()
    assert torch.isfinite(z_i).all() and z_i.shape == (model.n_items, model.embedding_size)
    assert "fusion_w_id" in model.epoch_diagnostics()
    full, _ = _model(lfm)
    assert full.feature_set() == {"items": ["text", "audio"], "users": True}


def test_ui_attention_option(lfm):
    model, tr = _model(lfm, ui_graph="gat")
    assert hasattr(model, "ui_gat")
    sum(model.calculate_loss(next(iter(tr)))).backward()
    assert model.ui_gat.convs[0].lin.weight.grad.abs().sum() > 0


def test_knn_graphs_are_symmetric_self_looped_and_cosine_nearest(lfm):
    model, _ = _model(lfm)
    feats = model.item_feats["text"]
    e = model.mm_edges["text"]
    pairs = set(zip(e[0].tolist(), e[1].tolist()))
    assert all((j, i) in pairs for i, j in pairs)
    assert all((i, i) in pairs for i in range(1, model.n_items))
    assert not any(0 in p for p in pairs)  # PAD has no edge
    xn = F.normalize(feats[1:], dim=1)
    top = (xn[:50] @ xn.T).topk(20, dim=1).indices + 1
    for r in range(50):
        for c in top[r].tolist():
            assert (r + 1, c) in pairs


def _full_and_batch_forward(model):
    """Eval mode, no gradient: ``(users, items, forward(), forward(users, items))`` for a fixed
    handful of users and items."""
    model.eval()
    users = torch.tensor([1, 5, 17, 300, 1200])
    items = torch.tensor([2, 3, 99, 700, 1400])
    with torch.no_grad():
        return users, items, model.forward(), model.forward(users, items)


def test_batch_rows_equal_full_forward_rows(lfm):
    """Training computes only the batch's rows; they equal the full forward's rows (attention
    along the edges into those rows is all a one-layer GAT needs)."""
    model, _ = _model(lfm, use_transport_map=False, gat_dropout=0.0)
    users, items, (z_u, z_i, parts), (zu_b, zi_b, parts_b) = _full_and_batch_forward(model)
    assert torch.allclose(zu_b, z_u[users], atol=1e-6) and torch.allclose(zi_b, z_i[items], atol=1e-6)
    for m in model.modalities:
        assert torch.allclose(parts_b["z_m"][m], parts["z_m"][m][items], atol=1e-6)
    assert torch.allclose(parts_b["z_llm_u"], parts["z_llm_u"][users], atol=1e-6)


# ------------------------------------------------------------------------------- fusion init
def test_initial_fusion_weights_rule():
    """Listed keys keep their proportions, unlisted share what is left, every group sums to 1."""
    from recbole_recgoat.model.recgoat import initial_fusion_weights

    init = {"id": 0.15, "text": 0.8, "image": 0.05, "audio": 0.05, "llm": 0.1}
    assert initial_fusion_weights(init, ["id", "text", "audio"]) == pytest.approx([0.15, 0.8, 0.05])
    w = initial_fusion_weights(init, ["id", "text", "audio", "whisper"])  # nothing left: whisper like audio
    assert w == pytest.approx([0.15 / 1.05, 0.8 / 1.05, 0.05 / 1.05, 0.05 / 1.05])
    assert initial_fusion_weights(init, ["id", "text"]) == pytest.approx([0.15 / 0.95, 0.8 / 0.95])
    w = initial_fusion_weights({"id": 0.2, "text": 0.5}, ["id", "text", "a", "b"])  # 0.3 left, shared
    assert w == pytest.approx([0.2, 0.5, 0.15, 0.15])
    assert initial_fusion_weights(init, ["cf", "llm"]) == pytest.approx([0.9, 0.1])
    assert initial_fusion_weights({}, ["id", "a", "b", "c", "d"]) == pytest.approx([0.2] * 5)
    for keys in (["id", "text"], ["id", "text", "audio"], ["id", "text", "audio", "whisper"],
                 ["id", "text", "image", "audio", "whisper", "video"]):
        w = initial_fusion_weights(init, keys)
        assert sum(w) == pytest.approx(1.0) and min(w) > 0
    with pytest.raises(Exception, match="fusion_init: text"):
        initial_fusion_weights({"text": 0}, ["id", "text"])


def test_fusion_init_sums_to_one_for_1_2_3_and_5_modalities(lfm, tmp_path):
    """The model's own initial fusion weights (item and user side) sum to 1 for any modality set;
    5 modalities: the bundled three plus two synthetic feature files."""
    d = tmp_path / "data" / "lfm"
    rng = np.random.default_rng(0)
    for name, dim in (("image", 32), ("video", 16)):
        np.save(d / f"{name}_feat.npy", rng.normal(size=(1425, dim)).astype(np.float32))
    files = {**lfm["item_feature_files"], "image": "image_feat.npy", "video": "video_feat.npy"}
    for mods in (["text"], ["text", "audio"], ["text", "audio", "whisper"], ["text", "audio", "whisper", "image", "video"]):
        model, _ = _model(lfm, item_feature_files=files, modalities=mods)
        w = model.fusion_weights.detach()
        assert w.numel() == len(mods) + 1 and float(w.sum()) == pytest.approx(1.0, abs=1e-6), (mods, w)
        assert float(w.min()) > 0
        assert float(model.user_fusion_weights.detach().sum()) == pytest.approx(1.0, abs=1e-6)
    # listed proportions kept: text / audio as in the yaml, whisper starts like audio
    model, _ = _model(lfm, modalities=["text", "audio", "whisper"])
    w = model.fusion_weights.detach().tolist()
    assert w[1] / w[2] == pytest.approx(0.8 / 0.05, rel=1e-5) and w[3] == pytest.approx(w[2], rel=1e-5)


# -------------------------------------------------------------------------- one transport map
def test_transport_map_one_population_for_training_and_evaluation(lfm):
    """Map ON (the default): every training step computes the plan from ALL items (the batch's
    rows do not matter) and evaluation scores with that same plan; in eval mode the rows that
    forward(users, items) returns equal the rows of forward()."""
    model, tr = _model(lfm)
    assert model.use_transport_map and int(model.transport_plan_steps) == 0
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = iter(tr)
    model.train()
    # first step: the stored plan is the cold-start plan of all items at the step's parameters
    batch = next(batches)
    model.eval()
    with torch.no_grad():
        _, _, full = model.forward()
    expected = {m: alignment.dimension_transport_map(full["z_m"][m], full["z_cf_i"], model.plan_eps, model.ot_iters)
                for m in model.modalities}
    model.train()
    sum(model.calculate_loss(batch)).backward()
    for k, m in enumerate(model.modalities):
        assert torch.allclose(model.transport_plan[k], expected[m], atol=1e-5)
    opt.step()
    opt.zero_grad()
    for _ in range(2):
        sum(model.calculate_loss(next(batches))).backward()
        opt.step()
        opt.zero_grad()
    assert int(model.transport_plan_steps) == 3
    last = model.transport_plan.clone()
    users, items, (z_u, z_i, parts), (zu_b, zi_b, parts_b) = _full_and_batch_forward(model)
    for k, m in enumerate(model.modalities):  # scoring uses the last training step's plan
        assert torch.equal(parts["plan"][m], last[k]) and torch.equal(parts_b["plan"][m], last[k])
        assert torch.allclose(parts["t_m"][m], parts["z_m"][m] @ (last[k] + model.delta[m]), atol=1e-5)
    assert torch.allclose(zi_b, z_i[items], atol=1e-5) and torch.allclose(zu_b, z_u[users], atol=1e-5)
    scores = model.full_sort_predict({model.USER_ID: users})
    assert torch.allclose(scores, z_u[users] @ z_i.T, atol=1e-4)
    # the plan travels with the checkpoint: a fresh model loaded from it scores the same
    fresh, _ = _model(lfm)
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    with torch.no_grad():
        assert torch.allclose(fresh.forward()[1], z_i, atol=1e-6)
