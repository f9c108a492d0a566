"""Killing user-profiles midway (SIGKILL) and starting it again: no prompt is answered twice,
and the final .npy equals an uninterrupted run's."""

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from features_support import FakeChatServer, complete_lines, small_lastfm, wait_for

REPO = Path(__file__).resolve().parents[1]
N_USERS = 16
ANSWER_BEFORE_KILL = 6


def _command(data, out, cache, url):
    return [sys.executable, "-m", "recbole_recgoat.features", "user-profiles", "--dataset", "lastfm-2k",
            "--data-path", str(data), "--out", str(out), "--cache", str(cache), "--backend", "openai",
            "--base-url", url, "--llm-model", "test-llm", "--concurrency", "2", "--timeout", "60",
            "--no-progress", "--device", "cpu", "--batch-size", "8"]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["HF_HUB_OFFLINE"] = "1"
    return env


@pytest.mark.process  # kills and restarts a process; CI's second lane leaves it out
def test_kill_and_resume_asks_nothing_twice_and_gives_the_same_matrix(isolated_run):
    small_lastfm(isolated_run / "d", N_USERS)
    cache, out = isolated_run / "run.jsonl", isolated_run / "run.npy"
    with FakeChatServer(hold_after=ANSWER_BEFORE_KILL) as server:
        proc = subprocess.Popen(_command(isolated_run / "d", out, cache, server.url), cwd=isolated_run, env=_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            # every answered response is in the cache and the next requests are in flight (held)
            ok = wait_for(lambda: complete_lines(cache) >= ANSWER_BEFORE_KILL
                          and any(r["held"] for r in server.requests), timeout=120)
            assert ok, proc.stdout.read().decode() if proc.poll() is not None else "timed out"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL and not out.exists()
        first = list(server.requests)
        answered_first = [r["prompt"] for r in first if r["answered"]]
        held_first = [r["prompt"] for r in first if r["held"]]
        assert len(answered_first) == ANSWER_BEFORE_KILL and 1 <= len(held_first) <= 2

        server.hold_after = None
        server.release.set()
        resumed = subprocess.run(_command(isolated_run / "d", out, cache, server.url), cwd=isolated_run, env=_env(),
                                 capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        second = server.requests[len(first):]
        assert f"{ANSWER_BEFORE_KILL} answers cached" in resumed.stderr

        # the uninterrupted reference run (its own cache)
        n_before = len(server.requests)
        ref = subprocess.run(_command(isolated_run / "d", isolated_run / "ref.npy", isolated_run / "ref.jsonl",
                                      server.url), cwd=isolated_run, env=_env(), capture_output=True, text=True, timeout=300)
        assert ref.returncode == 0, ref.stderr[-3000:]
        reference_prompts = [r["prompt"] for r in server.requests[n_before:]]

    asked_second = [r["prompt"] for r in second]
    assert not set(answered_first) & set(asked_second)  # nothing answered before the kill is asked again
    assert set(held_first) <= set(asked_second)  # requests cut off by the kill are asked (once) after it
    answered = Counter(answered_first + [r["prompt"] for r in second if r["answered"]])
    assert set(answered.values()) == {1}  # every prompt answered exactly once over both runs
    assert set(answered) == set(reference_prompts) and len(answered) == N_USERS
    assert len(asked_second) == N_USERS - ANSWER_BEFORE_KILL
    assert complete_lines(cache) == N_USERS  # one record per user
    resumed_matrix, reference = np.load(out), np.load(isolated_run / "ref.npy")
    assert resumed_matrix.shape == (N_USERS, 384)
    assert resumed_matrix.tobytes() == reference.tobytes()
