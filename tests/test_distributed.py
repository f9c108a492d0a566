"""Data-parallel training with torch.distributed on CPU (gloo), 2 processes on 127.0.0.1."""

import socket

import pytest

from recbole_recgoat.quick_start import run, run_any

pytestmark = pytest.mark.process  # process behaviour, not numpy/scipy versions: CI's second lane leaves it out


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


@pytest.mark.parametrize("model", ["LightGCN", "FREEDOM", "LGMRec", "VBPR", "BM3", "LATTICE", "MGCN", "DRAGON", "SMORE", "MMGCN", "DualGNN", "GRCN", "SLMRec"])
def test_every_model_trains_with_two_processes(model):
    result = run_any(model, config_dict={**FAST, "epochs": 1}, nproc=2, ip="127.0.0.1", port=_free_port())
    assert result["epochs_run"] == 1 and 0 < result["test_result"]["recall@20"] <= 1


def _log_in_race(barrier, model, errors):
    from recbole_recgoat.quick_start import init_logger

    class _Config(dict):
        final_config_dict = {"model": model}

    barrier.wait()
    try:
        init_logger(_Config(model=model, dataset="race", state="ERROR"))
    except Exception as exc:  # noqa: BLE001 - the test reports what the worker raised
        errors.put(repr(exc))


def test_logger_directories_survive_concurrent_ranks(tmp_path, monkeypatch):
    """Every rank of a distributed run opens RecBole's logger at the same moment; RecBole checks
    ``os.path.exists`` then calls ``os.makedirs`` for ``./log`` and ``./log/<model>``, so two ranks
    in a fresh directory can both see it missing and the second crashes with FileExistsError (it
    did, on CI).  16 processes released by one barrier, 5 fresh directories: none may fail."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    for attempt in range(5):
        workdir = tmp_path / str(attempt)
        workdir.mkdir()
        monkeypatch.chdir(workdir)
        barrier, errors = ctx.Barrier(16), ctx.SimpleQueue()
        procs = [ctx.Process(target=_log_in_race, args=(barrier, "Race", errors)) for _ in range(16)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        failures = []
        while not errors.empty():
            failures.append(errors.get())
        assert not failures, failures
        assert all(p.exitcode == 0 for p in procs)
        assert (workdir / "log" / "Race").is_dir()
