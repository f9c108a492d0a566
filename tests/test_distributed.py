"""Data-parallel training with torch.distributed on CPU (gloo), 2 processes on 127.0.0.1."""

import socket

import pytest

from recbole_recgoat.distributed import run_any
from recbole_recgoat.quick_start import run


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FAST = {"state": "WARNING", "train_batch_size": 4096, "stopping_step": 10}


def test_recgoat_two_processes_match_one_process():
    """Same seed and epochs: the 2-process run (each rank half of every batch, gradients averaged
    by DDP, evaluation sharded by user and all-gathered) lands within 0.02 Recall@20 / NDCG@20 of
    the single-process run; both are far above the untrained model (~0.03)."""
    cfg = {**FAST, "epochs": 6, "normalize_items": False}
    single = run("RecGOAT", config_dict=cfg)
    double = run_any("RecGOAT", config_dict=dict(cfg), nproc=2, ip="127.0.0.1", port=_free_port())
    for key in ("recall@20", "ndcg@20"):
        assert abs(single["test_result"][key] - double["test_result"][key]) < 0.02, (key, single["test_result"][key], double["test_result"][key])
    assert double["test_result"]["recall@20"] > 0.15
    assert double["epochs_run"] == single["epochs_run"] == 6


@pytest.mark.parametrize("model", ["LightGCN", "FREEDOM", "LGMRec", "VBPR", "BM3"])
def test_every_model_trains_with_two_processes(model):
    result = run_any(model, config_dict={**FAST, "epochs": 1}, nproc=2, ip="127.0.0.1", port=_free_port())
    assert result["epochs_run"] == 1 and 0 < result["test_result"]["recall@20"] <= 1
