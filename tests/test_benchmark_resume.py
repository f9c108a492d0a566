"""A killed benchmark resumes without re-running finished cells, losing or duplicating a record."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recbole_recgoat.benchmark.cli import main
from recbole_recgoat.benchmark.store import Store

REPO = Path(__file__).resolve().parents[1]
ARGS = ["run", "--models", "Pop", "BPR", "--seeds", "2", "--store", "store", "--set", "epochs=3",
        "--set", "stopping_step=3", "--set", "train_batch_size=4096", "--set", "state=WARNING"]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.process  # kills and restarts a process; CI's second lane leaves it out
def test_kill_and_resume(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               PYTHONWARNINGS="ignore")
    log = open(tmp_path / "first.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "recbole_recgoat.benchmark", *ARGS, "--jobs", "2", "--threads", "1"],
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    store = Store(tmp_path / "store")
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if store.records_path.exists() and store.records():
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the benchmark ended before it could be killed:\n" + (tmp_path / "first.log").read_text()
        proc.send_signal(signal.SIGKILL)  # the parent only: its workers must die with it
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    finished_before = [r["key"] for r in store.records()]
    bytes_before = store.records_path.read_bytes()
    assert 1 <= len(finished_before) < 4, f"expected a kill mid-benchmark; {len(finished_before)} of 4 cells finished"
    starts = [(k, f) for e, k, f in store.run_events() if e == "start"]
    worker_pids = {int(f["pid"]) for _, f in starts}
    deadline = time.time() + 30
    while time.time() < deadline and any(_alive(p) for p in worker_pids):
        time.sleep(0.1)
    assert not any(_alive(p) for p in worker_pids), "worker processes outlived the killed benchmark"
    in_flight = {k for k, _ in starts} - set(finished_before)

    assert main([*ARGS, "--jobs", "1"]) == 0  # the rerun

    recs, stats = store.records(with_stats=True)
    keys = [r["key"] for r in recs]
    assert len(keys) == 4 and len(set(keys)) == 4 and stats["duplicates"] == 0
    assert {(r["variant"], r["seed"]) for r in recs} == {(m, s) for m in ("Pop", "BPR") for s in (999, 1000)}
    assert store.records_path.read_bytes().startswith(bytes_before)  # finished records untouched
    starts_after = [k for e, k, _ in store.run_events() if e == "start"]
    for key in finished_before:
        assert starts_after.count(key) == 1, f"finished cell {key} ran again"
    for key in set(keys) - set(finished_before):
        assert starts_after.count(key) == (2 if key in in_flight else 1)
    for r in recs:
        assert r["per_user_file"] and (store.root / r["per_user_file"]).exists()

    # A third run has nothing to do and changes nothing.
    before = store.records_path.read_bytes()
    assert main([*ARGS, "--jobs", "1"]) == 0
    assert store.records_path.read_bytes() == before
    assert [k for e, k, _ in store.run_events() if e == "start"] == starts_after
