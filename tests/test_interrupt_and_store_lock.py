"""Ctrl-C is one line and exit 130 for every long command, and a benchmark store has one writer
(issue 26).

Each test runs the real command as a process of its own on a 20-user slice of the bundled
Last.fm-2K (tests/features_support.small_lastfm): ``run_recbole.py`` and ``benchmark run`` are
interrupted with SIGINT (what Ctrl-C sends) while they train; two ``benchmark run`` commands are
started on one store at the same moment.
"""

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from features_support import small_lastfm

REPO = Path(__file__).resolve().parents[1]
RUN = [sys.executable, str(REPO / "run_recbole.py")]
BENCH = [sys.executable, "-m", "recbole_recgoat.benchmark"]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}

pytestmark = pytest.mark.process


def _default_sigint():
    """A process started from a background job inherits SIGINT ignored (and Python then keeps it
    ignored): give the command the default, as a terminal's Ctrl-C finds it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_when(proc, ready, timeout=240):
    """Send SIGINT to ``proc`` once ``ready()`` holds; its (returncode, stdout, stderr)."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"ended before the interrupt: {proc.returncode}\n{proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "never got ready"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def _one_interrupted_line(returncode, out, err):
    assert returncode == 130, err[-3000:]
    assert "Traceback" not in err and "Traceback" not in out, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("interrupted:")]
    assert len(lines) == 1, err[-3000:]
    assert not [ln for ln in err.splitlines() if ln.startswith("error:")]
    return lines[0]


def test_ctrl_c_during_training_is_one_line_and_exit_130(tmp_path):
    small_lastfm(tmp_path / "data", 20)
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err_file:
        proc = subprocess.Popen(RUN + ["--model=BPR", "--data_path=data", "--epochs=100000", "--stopping_step=100000",
                                       "--cpu_threads=1"], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=err_file,
                                text=True, preexec_fn=_default_sigint)
        returncode, out, _ = _interrupt_when(proc, lambda: "epoch      2/100000" in log.read_text())
    line = _one_interrupted_line(returncode, out, log.read_text())
    assert "rerun" in line and "checkpoint" in line
    assert out == ""  # no result table for a run that did not finish


def test_ctrl_c_during_a_benchmark_keeps_the_store_and_says_how_to_resume(tmp_path):
    small_lastfm(tmp_path / "data", 20)
    store = tmp_path / "st"
    runs_log, log = store / "runs.log", tmp_path / "stderr.txt"
    with open(log, "w") as err_file:
        proc = subprocess.Popen(BENCH + ["run", "--models", "BPR", "--set", "epochs=100000", "--set", "stopping_step=100000",
                                         "--set", "data_path=data", "--set", "cpu_threads=1", "--jobs", "1", "--threads", "1",
                                         "--store", str(store)],
                                cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=err_file, text=True,
                                preexec_fn=_default_sigint)
        returncode, out, _ = _interrupt_when(proc, lambda: runs_log.exists() and "start" in runs_log.read_text()
                                             and "epoch      2/100000" in log.read_text())
    err = log.read_text()
    line = _one_interrupted_line(returncode, out, err)
    assert str(store) in line and "0 finished cell(s)" in line and "rerun the same command to resume" in line
    assert not (store / "records.jsonl").exists() or not (store / "records.jsonl").read_text().strip()
    assert not (store / "failures.jsonl").exists()  # an interrupt is no failed cell
    assert (store / ".writer").read_text() == ""  # the lock is released with its holder


def test_two_benchmark_runs_on_one_store_train_every_cell_once(tmp_path):
    """Both commands start together: one trains the cells, the other waits for nothing and says who
    holds the store (exit 2), or finds them finished; every cell trained exactly once, and each
    cell's checkpoint folder holds the one checkpoint its record names."""
    small_lastfm(tmp_path / "data", 20)
    store = tmp_path / "st"
    command = BENCH + ["run", "--models", "BPR", "--seeds", "2", "--set", "epochs=2", "--set", "data_path=data",
                       "--set", "cpu_threads=1", "--jobs", "1", "--threads", "1", "--store", str(store)]
    procs = [subprocess.Popen(command, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=600), p.stdout.read(), p.stderr.read()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes in ([0, 0], [0, 2]), results
    for code, out, err in results:
        assert "Traceback" not in err, err[-3000:]
        if code == 2:
            errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
            assert len(errors) == 1 and "in use by pid" in errors[0] and "one writer" in errors[0], err
    records = [json.loads(ln) for ln in (store / "records.jsonl").read_text().splitlines() if ln.strip()]
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)) == 2
    starts = collections.Counter(ln.split()[1] for ln in (store / "runs.log").read_text().splitlines()
                                 if ln.startswith("start "))
    assert starts == collections.Counter(keys), starts  # every cell trained once
    left = sorted(p.relative_to(store / "checkpoints").as_posix() for p in (store / "checkpoints").rglob("*") if p.is_file())
    named = sorted(f"{r['key']}/{os.path.basename(r['checkpoint'])}" for r in records)
    assert left == named  # no orphan checkpoint
    assert not (store / "failures.jsonl").exists()


def test_a_second_run_on_a_store_in_use_names_the_running_process_and_trains_nothing(tmp_path):
    """The second command starts while the first trains (its lock file names it): exit 2, one line
    naming the first's pid, no line of the second in the store's run log. The first (a cell that
    would train for hours) is then stopped with Ctrl-C."""
    small_lastfm(tmp_path / "data", 20)
    store = tmp_path / "st"
    command = BENCH + ["run", "--models", "BPR", "--set", "epochs=100000", "--set", "stopping_step=100000",
                       "--set", "data_path=data", "--set", "cpu_threads=1", "--jobs", "1", "--threads", "1", "--store", str(store)]
    first = subprocess.Popen(command, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             preexec_fn=_default_sigint)
    try:
        deadline = time.monotonic() + 240
        while not ((store / "runs.log").exists() and "start " in (store / "runs.log").read_text()):
            assert first.poll() is None and time.monotonic() < deadline, "the first run never started a cell"
            time.sleep(0.1)
        second = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
        assert first.poll() is None  # still training
    finally:
        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=120) == 130
    assert second.returncode == 2, second.stderr[-3000:]
    errors = [ln for ln in second.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and f"in use by pid {first.pid} " in errors[0], second.stderr[-3000:]
    assert "Traceback" not in second.stderr
    log = (store / "runs.log").read_text().splitlines()
    assert [ln.split()[0] for ln in log] == ["start"]
    assert {p for ln in log for p in ln.split() if p.startswith("pid=")} == {f"pid={first.pid}"}  # the second wrote nothing
