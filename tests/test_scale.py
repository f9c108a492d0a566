"""Scale: linear-memory graph builders, approximate kNN with measured recall, chunked evaluation."""

import shutil
import sys

import numpy as np
import pytest
import torch

from conftest import BUNDLED
from script_support import load_benchmark_script
from recbole_recgoat.model.layers import attention, knn
from recbole_recgoat.quick_start import build_model, prepare

LASTFM = BUNDLED / "lastfm-2k"


def test_lightgcn_vectorised_adjacency_is_recboles():
    from recbole.model.general_recommender.lightgcn import LightGCN

    c, ds, tr, *_ = prepare("LightGCN", config_dict={"state": "WARNING"}, log=False)
    model = build_model(c, tr)
    new, old = model.get_norm_adj_mat(), LightGCN._recbole_get_norm_adj_mat(model)
    assert torch.equal(new._indices(), old._indices()) and torch.equal(new._values(), old._values())


def test_exact_knn_is_blockwise_and_independent_of_block_size():
    x = torch.from_numpy(np.load(LASTFM / "text_feat.npy"))
    valid = torch.ones(len(x), dtype=torch.bool)
    a, sa = knn.knn_neighbours(x, 10, valid, method="exact")
    b, sb = knn.knn_neighbours(x, 10, valid, method="exact", max_block_bytes=4 * len(x) * 7)  # 7 rows a block
    assert torch.equal(a, b) and torch.allclose(sa, sb, atol=1e-6)


@pytest.mark.parametrize("include_self", [True, False])
def test_faiss_knn_recall_is_measured_and_high(include_self):
    pytest.importorskip("faiss")
    x = torch.from_numpy(np.load(LASTFM / "text_feat.npy"))
    valid = torch.ones(len(x), dtype=torch.bool)
    valid[5] = False
    stats = {}
    approx, _ = knn.knn_neighbours(x, 10, valid, include_self=include_self, method="faiss", nprobe=8, stats=stats)
    exact, _ = knn.knn_neighbours(x, 10, valid, include_self=include_self, method="exact")
    assert stats["method"] == "faiss" and 0.9 <= stats["recall_at_k"] <= 1.0
    got, ref = set(map(tuple, approx.T.tolist())), set(map(tuple, exact.T.tolist()))
    overall = len(got & ref) / len(ref)
    assert overall >= 0.9 and abs(overall - stats["recall_at_k"]) < 0.05  # the sampled recall tells the truth
    assert not any(5 in e for e in got)  # invalid node: no edges either way
    assert any(u == v for u, v in got) == include_self


def test_auto_knn_switches_to_faiss_above_the_threshold(monkeypatch):
    pytest.importorskip("faiss")
    x = torch.from_numpy(np.load(LASTFM / "audio_feat.npy")).float()
    stats = {}
    knn.knn_neighbours(x, 5, method="auto", stats=stats)
    assert stats["method"] == "exact"
    monkeypatch.setattr(knn, "KNN_EXACT_MAX_NODES", 1000)
    knn.knn_neighbours(x, 5, method="auto", stats=stats)
    assert stats["method"] == "faiss" and "recall_at_k" in stats


def test_model_logs_knn_build_and_uses_the_configured_method():
    pytest.importorskip("faiss")
    c, ds, tr, *_ = prepare("RecGOAT", config_dict={"state": "WARNING", "knn_method": "faiss", "graph_cache_dir": None}, log=False)
    model = build_model(c, tr)
    stats = model.graph_stats["recgoat-item-text-"]
    assert stats["method"] == "faiss" and stats["recall_at_k"] > 0.9 and stats["edges"] > 0


def test_eval_batches_are_capped_by_the_catalogue():
    c, ds, *_ = prepare("BPR", config_dict={"state": "WARNING", "eval_max_scores": 10 * 1426}, log=False)
    assert c["eval_batch_size"] == 10 * ds.item_num  # 10 users per full-sort batch, not 256
    c, ds, *_ = prepare("BPR", config_dict={"state": "WARNING"}, log=False)
    assert c["eval_batch_size"] == 256 * ds.item_num


def test_chunked_attention_equals_whole_graph_attention():
    """GAT in checkpointed chunks of edges gives the whole-graph output and gradients."""
    torch.manual_seed(0)
    gat = attention.GATEncoder(16, n_layers=1, heads=4, dropout=0.0)
    x = torch.randn(300, 16, requires_grad=True)
    edges = knn.knn_graph(torch.randn(300, 8), 6, symmetric=True, self_loops=True)
    targets = torch.tensor([299, 3, 150, 7, 8, 9, 100, 42])
    full = gat(x, edges)
    for tg in (None, targets):
        want = full if tg is None else full[tg]
        got = gat.rows(x, edges, tg, chunk_edges=50)
        assert torch.allclose(got, want, atol=1e-6)
        g1 = torch.autograd.grad(want.square().sum(), [x] + list(gat.parameters()), retain_graph=True)
        g2 = torch.autograd.grad(got.square().sum(), [x] + list(gat.parameters()))
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g1, g2))


def test_train_steps_per_epoch_sets_the_batch():
    c, ds, tr, *_ = prepare("BPR", config_dict={"state": "WARNING", "train_steps_per_epoch": 4}, log=False)
    assert c["train_batch_size"] == -(-44327 // 4) and len(tr) == 4
    c, ds, tr, *_ = prepare("BPR", config_dict={"state": "WARNING", "train_steps_per_epoch": 1000}, log=False)
    assert c["train_batch_size"] == 2048  # small data: unchanged


def test_scaling_benchmark_runs_and_fits_exponents(tmp_path, capsys):
    """The scaling script end to end on two tiny synthetic catalogues: every row measured (no
    error rows), the reference kernel timed, the exponents printed."""
    import json

    bench = load_benchmark_script("bench_scaling")
    out = tmp_path / "rows.json"
    assert bench.main(["--sizes", "1e3", "2e3", "--real", "none", "--steps", "2", "--threads", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["catalogue"], r["model"]) for r in rows] == [(s, m) for s in ("1e3", "2e3") for m in ("LightGCN", "RecGOAT")]
    assert all("error" not in r and r["epoch_s"] > 0 and r["ref_s"] > 0 and r["steps"] == 2 for r in rows)
    assert rows[2]["train"] > rows[0]["train"]  # users and interactions grow with the catalogue
    printed = capsys.readouterr().out
    assert "reference kernel" in printed and "b_rel" in printed


@pytest.mark.process  # a profiling tool; CI's second lane leaves it out
def test_profile_step_script_prints_operator_breakdown(capsys):
    """benchmarks/profile_step.py on the bundled dataset: the step time and a per-operator table
    whose rows are real torch operators with positive times."""
    script = load_benchmark_script("profile_step")
    assert script.main(["LGMRec", "--dataset", "lastfm-2k", "--steps", "2", "--threads", "1", "--rows", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("LGMRec on lastfm-2k: warm-up epoch") and "ms per step unprofiled" in lines[0]
    ops = lines[2:7]
    assert len(ops) == 5 and any(line.startswith("aten::mm ") for line in ops), ops
    assert all(float(line.split()[1]) > 0 for line in ops)
    assert lines[-1].startswith("all operators (self time)")


@pytest.mark.skipif(shutil.which("gcc") is None or not sys.platform.startswith("linux"), reason="needs gcc on Linux")
@pytest.mark.process  # a profiling tool; CI's second lane leaves it out
def test_profile_step_counts_the_regions_of_each_phase(capfd):
    """``profile_step.py --regions``: the phases' times and their OpenMP regions (the counter built
    and preloaded in a child run); a step of VBPR opens regions in its loss, backward and update."""
    import re

    script = load_benchmark_script("profile_step")
    assert script.main(["VBPR", "--dataset", "lastfm-2k", "--regions", "--repeats", "1"]) == 0
    line = next(l for l in capfd.readouterr().out.splitlines() if l.startswith("VBPR on lastfm-2k"))
    counts = dict(re.findall(r"(zero_grad|loss|backward|optimizer step) (\d+)(?:[;,]|$)", line.split("OpenMP regions per step: ")[1]))
    assert counts["zero_grad"] == "0" and all(int(counts[k]) > 0 for k in ("loss", "backward", "optimizer step")), line


def test_kernel_benchmark_runs_and_kernels_agree(capsys):
    """benchmarks/bench_kernels.py: both kernels timed against their plain torch counterparts at
    Baby's sizes, and the single-pass logsumexp's gradients equal autograd's there."""
    script = load_benchmark_script("bench_kernels")
    assert script.main(["--reps", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    lse = [line for line in lines if line.strip().startswith("LGMRec")]
    spmm = [line for line in lines if "columns" in line and not line.startswith("sparse")]
    assert len(lse) == 2 and len(spmm) == 2
    assert all(float(line.split()[-1]) < 1e-3 for line in lse), lse  # max |grad diff|
    assert all(float(v) > 0 for line in spmm for v in line.split()[2:]), spmm
