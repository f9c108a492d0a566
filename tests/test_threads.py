"""The CPU thread policy (recbole_recgoat/threads.py) and worker lifetimes (lifetime.py)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from recbole_recgoat import threads
from recbole_recgoat.errors import InputError

pytestmark = pytest.mark.process  # process behaviour, not numpy/scipy versions: CI's second lane leaves it out

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLEAN = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS",
                                                          threads.SWITCH, threads.MARKER)}
PROBE = ("import json, os, recbole_recgoat, torch; from recbole_recgoat import threads; "
         "threads.apply_thread_count(os.environ.get('PROBE_CPU_THREADS', 'auto')); "
         "print(json.dumps({'env': {k: os.environ.get(k) for k in ('OMP_WAIT_POLICY', 'OMP_NUM_THREADS')}, "
         "'threads': torch.get_num_threads(), 'describe': threads.describe()}))")


def _probe(**env):
    proc = subprocess.run([sys.executable, "-c", PROBE], env={**CLEAN, **env}, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_policy_sets_passive_wait_and_available_cpus():
    out = _probe()
    assert out["env"] == {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(threads.available_cpus())}
    assert out["threads"] == threads.available_cpus()
    assert "PASSIVE (recbole_recgoat's thread policy)" in out["describe"]


def test_policy_never_overrides_the_environment():
    out = _probe(OMP_WAIT_POLICY="ACTIVE", OMP_NUM_THREADS="1")
    assert out["env"] == {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "1"}
    assert out["threads"] == 1
    assert "OMP_NUM_THREADS in the environment" in out["describe"] and "OMP_WAIT_POLICY=ACTIVE (the environment's)" in out["describe"]
    spin = _probe(GOMP_SPINCOUNT="1000")
    assert spin["env"]["OMP_WAIT_POLICY"] is None  # a spin count the user chose is a wait policy too


def test_policy_off_leaves_torch_defaults():
    out = _probe(RECGOAT_THREAD_POLICY="off")
    assert out["env"] == {"OMP_WAIT_POLICY": None, "OMP_NUM_THREADS": None}
    assert "spinning (RECGOAT_THREAD_POLICY=off)" in out["describe"]


def test_config_thread_count_wins_and_is_checked():
    assert _probe(PROBE_CPU_THREADS="1")["threads"] == 1
    assert _probe(OMP_NUM_THREADS="2", PROBE_CPU_THREADS="1")["threads"] == 1
    for bad in (0, -2, "two", True, 1.5):
        with pytest.raises(InputError, match="cpu_threads"):
            threads.thread_count_setting(bad)
    assert threads.thread_count_setting("auto") == "auto" and threads.thread_count_setting("3") == 3


def test_children_know_the_policys_variables_from_the_users():
    env = {**CLEAN}
    threads.apply_environment_policy(env)
    assert env[threads.MARKER] == "OMP_NUM_THREADS,OMP_WAIT_POLICY"
    assert threads.user_environment(env) == {}  # a child sees the parent's policy, not user settings
    child = _probe(**{k: env[k] for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", threads.MARKER)})
    assert "(the environment's)" not in child["describe"]


def test_available_cpus_fits_the_affinity_mask():
    assert 1 <= threads.available_cpus() <= len(os.sched_getaffinity(0))


def test_run_logs_the_policy_and_records_it(fast):
    from recbole_recgoat import run

    result = run("BPR", config_dict={**fast, "epochs": 1, "cpu_threads": 1, "state": "INFO"}, saved=False)
    assert result["cpu_threads"] == 1 and result["config"]["cpu_threads"] == 1
    assert result["thread_policy"].startswith("CPU threads: 1 (config cpu_threads")
    with open(result["log_file"], encoding="utf-8") as f:
        assert "CPU threads: 1 (config cpu_threads" in f.read()
    with pytest.raises(InputError, match="cpu_threads: got 0"):
        run("BPR", config_dict={**fast, "cpu_threads": 0})


@pytest.mark.parametrize("model", ["LightGCN", "RecGOAT"])
def test_numbers_do_not_depend_on_the_wait_policy(model, tmp_path):
    """Same seed and thread count: the metrics with and without the policy are identical (the wait
    policy changes when idle threads sleep, never the arithmetic). The thread count does change
    float summation order: RecGOAT after 3 epochs differs at the 2nd decimal between 1 and 2
    threads, so the count is held fixed here (cpu_threads=2 in both runs). Without the policy the
    threads spin: beside a busy process that run is slow, which is why it is one short epoch."""
    results = []
    for switch in ("off", "on"):
        out = tmp_path / f"{switch}.json"
        cmd = [sys.executable, os.path.join(REPO, "run_recbole.py"), f"--model={model}", "--epochs=1", "--state=WARNING",
               "--cpu_threads=2", "--train_batch_size=16384", f"--result_json={out}"]
        proc = subprocess.run(cmd, env={**CLEAN, threads.SWITCH: switch}, cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        results.append(json.loads(out.read_text()))
    off, on = results
    assert "spinning" in off["thread_policy"] and "PASSIVE" in on["thread_policy"]
    assert off["test_result"] == on["test_result"] and off["best_valid_result"] == on["best_valid_result"]


def _children(pid):
    """Every descendant pid of ``pid`` (from /proc)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def _alive(pids):
    alive = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.add(pid)
        except OSError:
            continue
    return alive


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_killed_parent_leaves_no_distributed_worker(tmp_path):
    """``run_recbole.py --nproc 2`` killed with SIGKILL once its two ranks run: both ranks die too."""
    env = {k: v for k, v in os.environ.items() if k != "RECGOAT_DIE_WITH_PARENT"}  # the ranks' own guard only
    cmd = [sys.executable, os.path.join(REPO, "run_recbole.py"), "--model=BPR", "--nproc=2", "--epochs=50",
           "--state=WARNING", "--stopping_step=50"]
    parent = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = set()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(workers) < 2:
            workers = {p for p in _children(parent.pid) if "spawn_main" in open(f"/proc/{p}/cmdline").read()} if parent.poll() is None else set()
            time.sleep(0.2)
        assert len(workers) >= 2, "the two ranks never started"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 15
        while _alive(workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(workers), f"orphaned ranks still running: {_alive(workers)}"
    finally:
        if parent.poll() is None:
            parent.kill()
        for pid in _alive(workers | _children(parent.pid)):  # orphans (if the test failed) are reparented
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_killed_test_runner_leaves_no_subprocess(tmp_path):
    """A process started the way tests start them (RECGOAT_DIE_WITH_PARENT=1 inherited) dies when
    the process that started it is killed: a killed pytest leaves nothing running."""
    runner = ("import subprocess, sys, time; "
              "p = subprocess.Popen([sys.executable, '-c', 'import recbole_recgoat, time; time.sleep(120)']); "
              "print(p.pid, flush=True); time.sleep(120)")
    parent = subprocess.Popen([sys.executable, "-c", runner], env={**os.environ, "RECGOAT_DIE_WITH_PARENT": "1"},
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    time.sleep(8)  # the child has imported recbole_recgoat (and so asked for the death signal)
    assert _alive({child})
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive({child}) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive({child})


def test_solver_loops_run_on_one_thread_with_the_same_bits():
    """POT's Sinkhorn runs inside ``threads.single_thread`` (no OpenMP wake-up per iteration): the
    plans and the W1 gradient are bitwise those of the multi-threaded solver, and the thread count
    is restored after the block (also when it raises)."""
    import ot
    import torch

    from recbole_recgoat.model.layers.alignment import entropic_plan, sinkhorn_w1, unit_euclidean_cost

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(256, 64, generator=gen, requires_grad=True)
        y = torch.randn(256, 64, generator=gen)
        cost = unit_euclidean_cost(x, y).detach()
        n = cost.shape[0]
        marg = torch.full((n,), 1.0 / n)
        reference = ot.sinkhorn(marg, marg, cost, 0.05, method="sinkhorn_log", numItermax=100, stopThr=1e-6, warn=False)
        assert torch.equal(entropic_plan(cost, 0.05, 100), reference)
        dims = unit_euclidean_cost(x.detach().T, y.T)  # the d x d plan of the transport map
        marg_d = torch.full((64,), 1.0 / 64)
        assert torch.equal(entropic_plan(dims, 0.05, 100),
                           ot.sinkhorn(marg_d, marg_d, dims, 0.05, method="sinkhorn_log", numItermax=100, stopThr=1e-6, warn=False))
        w = sinkhorn_w1(x, y, 0.05, 100)
        w.backward()
        assert torch.isfinite(x.grad).all() and torch.get_num_threads() == 2
        with pytest.raises(RuntimeError):
            with threads.single_thread():
                assert torch.get_num_threads() == 1
                raise RuntimeError("boom")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_count_the_program_set_holds_for_every_run_of_the_process():
    """A benchmark worker sets torch's threads itself and runs several cells: the second run keeps
    that count too (it took the parent's share, 2 of the 2 CPUs, for every other cell)."""
    probe = ("import json, recbole_recgoat, torch; from recbole_recgoat import threads; torch.set_num_threads(1); "
             "first = threads.apply_thread_count('auto'); torch.set_num_threads(1); "
             "second = threads.apply_thread_count('auto'); print(json.dumps([first, second, threads.describe()]))")
    env = {**CLEAN, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "2", threads.MARKER: "OMP_NUM_THREADS,OMP_WAIT_POLICY"}
    proc = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    first, second, describe = json.loads(proc.stdout.strip().splitlines()[-1])
    assert first == second == 1 and "set by the program" in describe
