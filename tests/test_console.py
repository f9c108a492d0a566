"""What a run shows: a short header and one line per epoch on the terminal, everything in the log
file, no warnings that are not the user's business, --verbose / --quiet, the device as used."""

import io
import json
import logging
import os
import re
import subprocess
import sys
import warnings

import pytest
import torch

from conftest import REPO
from recbole_recgoat import compat
from recbole_recgoat.cli import main as cli_main
from recbole_recgoat.config import Config
from recbole_recgoat.errors import InputError
from recbole_recgoat.run_header import changed_settings, split_text
from recbole_recgoat.utils import console

EPOCH_LINE = re.compile(r"^epoch +(\d+)/(\d+)  ")


# ----------------------------------------------------------------------------- the command line
def run_cli(tmp_path, *args):
    """``run_recbole.py`` as a user runs it (a fresh process, every warning shown once)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONWARNINGS="default", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(REPO / "run_recbole.py"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, proc.stderr


@pytest.mark.parametrize("model", ["BPR", "RecGOAT"])
def test_terminal_header_and_one_line_per_epoch(tmp_path, model):
    out, err = run_cli(tmp_path, f"--model={model}", "--epochs=2")
    lines = (err + out).splitlines()
    noisy = [line for line in lines if "warning" in line.lower()]
    assert not noisy, noisy
    first = next(i for i, line in enumerate(lines) if EPOCH_LINE.match(line))
    assert first <= 25, lines[:first]
    header = lines[:first]
    assert header[0] == f"{model} on lastfm-2k"
    device = [line for line in header if line.split()[:1] == ["device"]]
    assert len(device) == 1
    assert ("CUDA" if torch.cuda.is_available() else "CPU") in device[0]
    split = next(line for line in header if line.split()[:1] == ["split"])
    assert "published" in split and "RS" not in split  # lastfm-2k's published files, not RecBole's split
    assert any(line.split()[:2] == ["settings", "epochs=2"] for line in header)

    epochs = [line for line in lines if EPOCH_LINE.match(line)]
    assert [EPOCH_LINE.match(line).groups() for line in epochs] == [("1", "2"), ("2", "2")]
    for line in epochs:
        assert re.search(r"valid recall@20 \d\.\d{4}", line) and "ETA" in line, line
    assert epochs[-1].endswith("ETA 0.0s")
    assert "diagnostics" not in err and "Hyper Parameters" not in err and "Trainable parameters" not in err
    assert "recall@20" in out and "valid" in out  # the result table, on stdout

    logs = list((tmp_path / "log" / model).glob("*.log"))
    assert len(logs) == 1
    text = logs[0].read_text(encoding="utf-8")
    assert "General Hyper Parameters" in text and "Trainable parameters" in text  # RecBole's config and model
    assert "use_gpu = " + str(torch.cuda.is_available()) in text
    for e in (0, 1):
        assert f"epoch {e} training" in text and f"epoch {e} evaluating" in text
        if model == "RecGOAT":
            assert f"epoch {e} diagnostics" in text
    assert sum(1 for line in text.splitlines() if re.search(r"INFO  epoch +\d+/2  ", line)) == 2  # its lines too


def test_quiet_prints_the_table_only_or_nothing_with_result_json(capfd, fast):
    args = ["--model=BPR", "--quiet"] + [f"--{k}={v}" for k, v in fast.items() if k != "state"]
    assert cli_main(args) == 0
    out, err = capfd.readouterr()
    assert err == "" and out.startswith("BPR on lastfm-2k") and "recall@20" in out
    assert cli_main(args + ["--result_json=r.json"]) == 0
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert json.load(open("r.json"))["config"]["console"] == "quiet"


def test_verbose_shows_recbole_log_on_the_terminal(capfd, fast):
    args = ["--model=BPR", "--verbose"] + [f"--{k}={v}" for k, v in fast.items() if k != "state"]
    assert cli_main(args) == 0
    err = capfd.readouterr().err
    assert "General Hyper Parameters" in err and "epoch 0 training" in err and re.search(r"epoch 1/2  ", err)


def test_verbose_and_quiet_exclude_each_other(capsys):
    with pytest.raises(SystemExit):
        cli_main(["--model=BPR", "--verbose", "--quiet"])


# ----------------------------------------------------------------------------- config
def test_use_gpu_says_what_the_run_uses():
    cfg = Config("BPR")
    assert cfg["use_gpu"] is (cfg["device"].type == "cuda")
    assert Config("BPR", cmd_args={"use_gpu": "False"})["device"].type == "cpu"


def test_console_and_show_progress_values():
    assert Config("BPR")["console"] == "normal" and Config("BPR")["show_progress"] == "auto"
    assert Config("BPR", cmd_args={"console": "Quiet", "show_progress": "true"})["console"] == "quiet"
    with pytest.raises(InputError, match="console"):
        Config("BPR", cmd_args={"console": "loud"})
    with pytest.raises(InputError, match="show_progress"):
        Config("BPR", cmd_args={"show_progress": "sometimes"})


def test_changed_settings_lists_what_differs_from_the_defaults():
    cfg = Config("BPR", config_dict={"epochs": 3, "learning_rate": 0.001}, cmd_args={"seed": "5"})
    assert changed_settings(cfg) == {"epochs": 3}  # learning_rate is the default; the seed has its own line
    cfg = Config("BPR", dataset="ml-100k", config_dict={"benchmark_filename": None})
    assert split_text(cfg, "ml-100k").startswith("random 80/10/10 per user (eval_args RS")


# ----------------------------------------------------------------------------- terminal routing
def records_through(mode, records):
    before = console.current_mode()
    stream = io.StringIO()
    root = logging.Logger("probe")
    handler = logging.StreamHandler(stream)
    root.addHandler(handler)
    root.addHandler(logging.FileHandler(os.devnull))
    console.route_terminal(mode, root)
    assert [type(f) for f in root.handlers[1].filters] == []  # the log file gets everything
    assert console.current_mode() == mode  # what Progress and Stage follow
    for level, msg, extra in records:
        root.log(level, msg, extra=extra)
    console.route_terminal(before, logging.Logger("no handlers"))
    return stream.getvalue().splitlines()


RECORDS = [(logging.INFO, "config dump", None), (logging.INFO, "epoch 1/2", console.TERMINAL),
           (logging.WARNING, "disk almost full", None)]


def test_terminal_modes():
    assert records_through("normal", RECORDS) == ["epoch 1/2", "WARNING  disk almost full"]
    assert records_through("quiet", RECORDS) == ["WARNING  disk almost full"]
    assert records_through("verbose", RECORDS) == ["config dump", "epoch 1/2", "disk almost full"]


# ----------------------------------------------------------------------------- ETA
def test_duration():
    assert [console.duration(s) for s in (0.04, 12.34, 65, 7380)] == ["0.0s", "12.3s", "1m05s", "2h03m"]


def test_last_epoch_if_no_new_best_follows_recbole_early_stopping():
    # RecBole stops at the (stopping_step + 1)-th evaluation without improvement
    assert console.last_epoch_if_no_new_best(1000, best_epoch=3, stopping_step=20, eval_step=1) == 24
    assert console.last_epoch_if_no_new_best(1000, best_epoch=3, stopping_step=2, eval_step=2) == 9
    assert console.last_epoch_if_no_new_best(10, best_epoch=3, stopping_step=20, eval_step=1) == 9


def test_training_eta_says_its_bound():
    assert console.training_eta(3, 1000, 2.0, best_epoch=3, stopping_step=20, eval_step=1) == \
        "ETA 42.0s if no new best, <= 33m12s"
    assert console.training_eta(0, 2, 5.0, best_epoch=0, stopping_step=20, eval_step=1) == "ETA 5.0s"
    assert console.training_eta(4, 10, 1.0) == "ETA <= 5.0s"
    assert console.training_eta(24, 1000, 2.0, best_epoch=3, stopping_step=20, eval_step=1, stopped=True) == "ETA 0.0s"


def test_early_stopped_run_ends_where_its_last_line_said(fast, capfd):
    from recbole_recgoat.quick_start import run

    cfg = dict(fast, state="INFO", epochs=30, stopping_step=1, learning_rate=0.05)
    result = run("BPR", config_dict=cfg)
    lines = [line for line in capfd.readouterr().err.splitlines() if EPOCH_LINE.match(line)]
    assert len(lines) == result["epochs_run"] < 30
    assert lines[-1].endswith("ETA 0.0s  (early stop)")
    best = result["best_epoch"]
    assert result["epochs_run"] - 1 == console.last_epoch_if_no_new_best(30, best, 1, 1)
    assert f"@{best + 1}  patience 0/1" in lines[-1]


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_stage_reports_slow_steps_only(monkeypatch):
    stream = FakeTTY()
    with console.Stage("loading x", stream=stream) as st:
        pass
    assert stream.getvalue() == "loading x ...\r\033[K" and st.seconds < console.SLOW_STEP_S
    monkeypatch.setattr(console, "SLOW_STEP_S", 0.0)
    stream = io.StringIO()
    with console.Stage("loading x", stream=stream):
        pass
    assert re.fullmatch(r"loading x: \d\.\ds\n", stream.getvalue())
    stream = FakeTTY()
    with console.Stage("loading x", show=False, stream=stream):
        pass
    assert stream.getvalue() == ""


# ----------------------------------------------------------------------------- warnings at source
def test_recbole_deprecations_are_silenced_at_their_source_only():
    import recbole.trainer.trainer as recbole_trainer

    assert recbole_trainer.amp.GradScaler.func is torch.amp.GradScaler  # the non-deprecated API
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recbole_trainer.amp.GradScaler(enabled=False)
        warnings.warn(compat.PANDAS_CHAINED_ASSIGNMENT, FutureWarning)  # from elsewhere: still shown
    assert [str(w.message) for w in caught] == [compat.PANDAS_CHAINED_ASSIGNMENT]


def test_interaction_sort_is_silent_on_numpy_2():
    """RecBole's ``Interaction.sort`` (np.argsort of a tensor) raised numpy 2's ``__array_wrap__``
    DeprecationWarning on every run (seen in CI lane 2); the order it gives is unchanged."""
    from recbole.data.interaction import Interaction

    inter = Interaction({"user_id": torch.tensor([3, 1, 2, 1]), "item_id": torch.tensor([9, 8, 7, 6])})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        inter.sort(by="user_id", ascending=True)
    assert [str(w.message) for w in caught] == []
    assert inter["user_id"].tolist() == [1, 1, 2, 3] and inter["item_id"].tolist() == [8, 6, 7, 9]  # stable


def test_without_message_leaves_other_warnings():
    def noisy():
        warnings.warn("A value is trying to be set on a copy of a DataFrame", FutureWarning)
        warnings.warn("something else", FutureWarning)

    quiet = compat.without_message(noisy, "A value is trying", FutureWarning, __name__.replace(".", r"\.") + r"\Z")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet()
    assert [str(w.message) for w in caught] == ["something else"]


# ----------------------------------------------------------------------------- benchmark grid
def test_grid_progress_counts_cells_and_estimates_the_rest():
    from recbole_recgoat.benchmark.runner import GridProgress

    now = [100.0]
    progress = GridProgress(4, clock=lambda: now[0])
    assert progress.text() == "[0/4 cells, 00:00, ETA ?]"
    now[0] = 130.0
    progress.tick()
    assert progress.text() == "[1/4 cells, 00:30, ETA 01:30]"  # tqdm's meter: the rate so far
    progress.tick(ok=False)
    now[0] = 160.0
    assert progress.text() == "[2/4 cells, 1 failed, 01:00, ETA 01:00]"
    progress.tick(), progress.tick()
    assert progress.text().endswith("ETA 00:00]")
    assert GridProgress(3, clock=lambda: 0.0, unit="searches").text() == "[0/3 searches, 00:00, ETA ?]"  # a tuning's tasks


def test_execute_says_cells_done_of_total(capsys, tmp_path):
    from types import SimpleNamespace

    from recbole_recgoat.benchmark import runner

    store = SimpleNamespace(root=tmp_path)
    ok, failed = runner.execute(["a", "b", "c"], store, fn=lambda cell, root, threads: {"cell": cell},
                                on_result=lambda cell, out: cell != "b")
    assert (ok, failed) == (2, 1)
    lines = [line for line in capsys.readouterr().out.splitlines() if "cells" in line]
    assert [re.search(r"\[(\d)/3 cells", line).group(1) for line in lines] == ["1", "2", "3"]
    assert "1 failed" in lines[-1] and lines[-1].endswith("ETA 00:00]")


def test_auto_progress_bars_for_large_evaluations_on_a_terminal(monkeypatch):
    from types import SimpleNamespace

    from recbole_recgoat.trainer import PROGRESS_MIN_SCORES, PluginTrainerMixin

    def loader(users, items):
        return SimpleNamespace(uid_list=torch.arange(users), _dataset=SimpleNamespace(item_num=items))

    large, small = loader(1000, PROGRESS_MIN_SCORES // 1000), loader(1000, 1000)
    decide = PluginTrainerMixin._auto_progress
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert decide(None, large, "auto") and not decide(None, small, "auto")
    assert decide(None, small, True) and not decide(None, large, False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert not decide(None, large, "auto")


def test_two_processes_print_from_rank_0_only(capfd):
    import socket

    from recbole_recgoat.quick_start import run_any

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = {"epochs": 2, "train_batch_size": 4096, "state": "INFO"}
    result = run_any("BPR", config_dict=cfg, nproc=2, ip="127.0.0.1", port=port)
    assert result["epochs_run"] == 2
    err = capfd.readouterr().err
    assert [m.groups() for m in map(EPOCH_LINE.match, err.splitlines()) if m] == [("1", "2"), ("2", "2")]
    assert err.count("BPR on lastfm-2k") == 1 and "; 2 processes" in err


# ----------------------------------------------------------------------------- progress of long steps
def test_faiss_search_in_blocks_finds_the_same_neighbours():
    pytest.importorskip("faiss")
    import numpy as np
    import torch.nn.functional as F

    from recbole_recgoat.model.layers import knn

    x = F.normalize(torch.from_numpy(np.load(REPO / "recbole_recgoat/bundled/lastfm-2k/text_feat.npy")).float(), dim=1)
    nodes = torch.arange(1, len(x))
    whole = knn._faiss_topk(x, nodes, 10, False, 8, search_block=len(x))
    blocks = knn._faiss_topk(x, nodes, 10, False, 8, search_block=100)
    assert torch.equal(whole[1], blocks[1]) and torch.equal(whole[0], blocks[0])


def test_progress_shows_done_total_and_eta():
    now = [0.0]
    stream = FakeTTY()
    with console.Progress("kNN graph", 200, stream=stream, show=True, clock=lambda: now[0]) as progress:
        now[0] = 1.5
        progress.update(50)   # drawn (a second since the last draw)
        now[0] = 2.0
        progress.update(60)   # not drawn: at most once a second
        now[0] = 3.0
        progress.update(100)  # drawn
        now[0] = 4.0
    drawn = [line.rstrip() for line in stream.getvalue().split("\r") if line.strip()]
    assert "kNN graph:  25%|##5       | 50/200 [00:01, ETA 00:04]" in drawn  # tqdm's bar: the rate so far
    assert "kNN graph:  50%|#####     | 100/200 [00:03, ETA 00:03]" in drawn
    assert not any("60/200" in line for line in drawn)
    assert drawn[-1] == "kNN graph: 4.0s"  # the bar erased, the step's time kept
    stream = FakeTTY()
    with console.Progress("kNN graph", 200, stream=stream, show=False) as progress:
        progress.update(100)
    assert stream.getvalue() == ""


def test_progress_off_a_terminal_reports_every_so_often():
    clock = iter([0.0, 10.0, 31.0, 40.0, 62.0, 63.0])
    stream = io.StringIO()
    with console.Progress("loading", 4, stream=stream, show=True, clock=lambda: next(clock)) as progress:
        for done in range(1, 5):
            progress.update(done)
    assert stream.getvalue().splitlines() == ["loading: 50% 2/4 [00:31, ETA 00:31]", "loading: 100% 4/4 [01:02, ETA 00:00]",
                                              "loading: 1m03s"]


def test_recbole_models_torch_sparse_constructor_is_silenced_from_recbole_only():
    # torch warns once per process (so a real call may be silent anyway): the filter is checked
    # on the message as torch raises it, from RecBole's LightGCN and from elsewhere
    message = "torch.sparse.SparseTensor(indices, values, shape, *, device=) is deprecated."
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compat.apply_warning_filters()
        for module in ("recbole.model.general_recommender.lightgcn", "my_code"):
            warnings.warn_explicit(message, UserWarning, f"{module}.py", 1, module=module, registry={})
    assert [str(w.message) for w in caught] == [message] and caught[0].filename == "my_code.py"
