"""user-profiles against a real HTTP server on 127.0.0.1 speaking OpenAI chat-completions."""

import json
import re

import numpy as np
from features_support import FakeChatServer, small_lastfm, train_items

from recbole_recgoat.features.cli import main
from recbole_recgoat.features.prompt import prompt_item_ids

N_USERS = 12


def _args(data, out, server, *extra, cache=None):
    args = ["user-profiles", "--dataset", "lastfm-2k", "--data-path", str(data), "--out", str(out),
            "--backend", "openai", "--base-url", server.url, "--llm-model", "test-llm", "--no-progress",
            "--device", "cpu", "--timeout", "2", "--backoff", "0.01", "--backoff-max", "0.05", "--max-retries", "2"]
    if cache:
        args += ["--cache", str(cache)]
    return args + list(extra)


def _by_user(server):
    return {r["user"]: r["prompt"] for r in server.requests}


def test_prompts_hold_exactly_the_training_items(isolated_run, monkeypatch):
    monkeypatch.setenv("TEST_LLM_KEY", "sk-test")
    data_a = small_lastfm(isolated_run / "a", N_USERS)
    data_b = small_lastfm(isolated_run / "b", N_USERS, mutate_eval=True)
    train = train_items(data_a)
    with FakeChatServer() as server:
        assert main(_args(isolated_run / "a", isolated_run / "a.npy", server, "--concurrency", "3",
                          "--api-key-env", "TEST_LLM_KEY")) == 0
        first = _by_user(server)
        assert len(server.requests) == N_USERS  # one request per user
        assert {r["auth"] for r in server.requests} == {"Bearer sk-test"}
        assert {r["model"] for r in server.requests} == {"test-llm"}
        server.requests.clear()
        # validation and test rows changed (other items, extra rows); training rows untouched
        assert main(_args(isolated_run / "b", isolated_run / "b.npy", server, "--concurrency", "3")) == 0
        second = _by_user(server)
    assert set(first) == {str(u) for u in range(N_USERS)}
    for user, prompt in first.items():
        assert prompt_item_ids(prompt) == train[user]  # exactly the training items, in file order
    assert second == first  # evaluation rows never reach a prompt
    assert np.array_equal(np.load(isolated_run / "a.npy"), np.load(isolated_run / "b.npy"))
    # the mutated valid/test items really differ from the original ones
    assert (data_a / "lastfm-2k.test.inter").read_text() != (data_b / "lastfm-2k.test.inter").read_text()


def test_failures_are_retried_then_reported_and_never_embedded(isolated_run, capsys):
    small_lastfm(isolated_run / "d", N_USERS)
    script = {
        "0": ["500", "503"],                  # two 5xx, then answered: succeeds on attempt 3
        "1": ["500"] * 3,                     # 5xx on every attempt (1 + 2 retries)
        "2": ["hang"] * 3,                    # past the client's timeout every time
        "3": ["malformed"] * 3,               # 200 with a body that is not json
        "4": ["noanswer"] * 3,                # 200 without <answer>
        "5": ["429", "placeholder", "ok"],    # rate-limited, then a useless answer, then fine
    }
    out, cache = isolated_run / "u.npy", isolated_run / "cache.jsonl"
    with FakeChatServer(script=script) as server:
        rc = main(_args(isolated_run / "d", out, server, "--concurrency", "4", "--timeout", "0.5", cache=cache))
        err = capsys.readouterr().err
        asked = [r["user"] for r in server.requests]
        assert rc == 3 and not out.exists()  # nothing is written while users lack an answer
        assert asked.count("0") == 3 and asked.count("5") == 3
        for user in ("1", "2", "3", "4"):
            assert asked.count(user) == 3, user  # first attempt + 2 retries
        report = [ln for ln in err.splitlines() if "have no usable answer" in ln][0]
        assert report.startswith("user-profiles: 4 of 12 users have no usable answer")
        assert "users: 1, 2, 3, 4" in report
        for reason in ("HTTP 500", "timeout after 0.5s", "malformed response", "no <answer>"):
            assert reason in report
        records = [json.loads(ln) for ln in cache.read_text().splitlines()]
        status = {r["user"]: (r["status"], r["attempts"]) for r in records}
        assert status["0"] == ("ok", 3) and status["5"] == ("ok", 3) and status["1"] == ("failed", 3)

        # a rerun asks nobody again (answers and failures are cached) and reports the same failures
        n = len(server.requests)
        assert main(_args(isolated_run / "d", out, server, cache=cache)) == 3
        assert len(server.requests) == n
        assert "4 of 12 users have no usable answer" in capsys.readouterr().err

        # --retry-failures asks the failed users (only them) again; user 4 still fails
        server.script = {"4": ["noanswer"] * 3}
        assert main(_args(isolated_run / "d", out, server, "--retry-failures", cache=cache)) == 3
        assert sorted(r["user"] for r in server.requests[n:]) == ["1", "2", "3", "4", "4", "4"]
        capsys.readouterr()

        # --allow-failures writes the matrix; the failed user gets the offline summary, flagged in the meta
        assert main(_args(isolated_run / "d", out, server, "--allow-failures", cache=cache)) == 0
        meta = json.loads((isolated_run / "u.npy.meta.json").read_text())
        assert [f["user"] for f in meta["failures"]] == ["4"] and "no <answer>" in meta["failures"][0]["reason"]
        assert meta["failure_rows"].startswith("offline metadata summary")
        assert np.load(out).shape == (N_USERS, 384)


def test_fatal_answers_stop_the_run(isolated_run, capsys):
    small_lastfm(isolated_run / "d", N_USERS)
    with FakeChatServer(default="401") as server:
        rc = main(_args(isolated_run / "d", isolated_run / "u.npy", server, "--concurrency", "1"))
        err = capsys.readouterr().err
    assert rc == 2 and "HTTP 401" in err and "--api-key-env" in err
    assert len(server.requests) == 1  # no retries, no further users
    assert not (isolated_run / "u.npy").exists()


def test_concurrency_and_rate_limit(isolated_run):
    small_lastfm(isolated_run / "d", N_USERS)
    with FakeChatServer(delay=0.3) as server:
        assert main(_args(isolated_run / "d", isolated_run / "u.npy", server, "--concurrency", "4")) == 0
        assert 2 <= server.max_in_flight <= 4
    with FakeChatServer() as server:
        assert main(_args(isolated_run / "d", isolated_run / "v.npy", server, "--concurrency", "4",
                          "--rate-limit", "20")) == 0
        times = sorted(r["time"] for r in server.requests)
    assert times[-1] - times[0] >= (N_USERS - 1) / 20 - 0.05


def test_offline_backend_needs_no_server(isolated_run, capsys):
    small_lastfm(isolated_run / "d", N_USERS)
    args = ["user-profiles", "--dataset", "lastfm-2k", "--data-path", str(isolated_run / "d"), "--backend", "offline",
            "--out", str(isolated_run / "u.npy"), "--no-progress", "--device", "cpu"]
    assert main(args) == 0
    emb = np.load(isolated_run / "u.npy")
    assert emb.shape == (N_USERS, 384) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert main(args) == 0  # same again: nothing asked, output unchanged
    err = capsys.readouterr().err
    assert re.search(r"12 answers cached .* asking 0 via MetadataSummaryBackend", err)
    assert "u.npy unchanged" in err
    assert main(args + ["--show-prompt", "3"]) == 0
    assert "• User ID: 3" in capsys.readouterr().out
