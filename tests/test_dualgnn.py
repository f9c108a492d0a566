"""DualGNN: its own weighted-sum fusion and the reference's in-place-add switch. What it shares
with DRAGON (the user co-occurrence graph, no leakage, gradients, runs) is in
test_preference_graph.py."""

import pytest
import torch

from model_support import model_and_data, token_ids
from preference_graph_support import _tiny

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(dataset=None, **overrides):
    """``(DualGNN, train_data)`` on ``dataset`` (None: the default, lastfm-2k), graphs not cached."""
    return model_and_data("DualGNN", dataset, **{"graph_cache_dir": None, **overrides})


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
