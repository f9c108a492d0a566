"""Table 1 prompt, <answer> extraction, the offline backend, the cache and the rate limiter."""

import json
import threading
import time

import pytest

from recbole_recgoat.errors import InputError
from recbole_recgoat.features.backends import MetadataSummaryBackend, ProfileRequest, RateLimiter
from recbole_recgoat.features.cache import JsonlCache, SqliteCache, cache_key, open_cache
from recbole_recgoat.features.prompt import build_prompt, extract_answer, prompt_item_ids
from recbole_recgoat.features.recipes import ItemTable, TextRecipe

TABLE_1_LINES = [
    "You are a professional data analyst. Your task is to analyze a user's interaction history to infer their preferences.",
    "• User ID: 7",
    "Please conduct a structured reasoning by two steps:",
    "1. **Identify Common Attributes Across Items**",
    "2. **Summarize Preferences Across Multiple Dimensions**",
    "- Extract shared characteristics from perspectives such as category, function, style, material, usage scenario, "
    "and price range. Organize the findings in a list format.",
    "- Systematically summarize the user's preferences based on the following dimensions, with a brief explanation of "
    "supporting evidence:",
    "• Style & Aesthetics: e.g., design style, color preference, visual element tendencies",
    "• Function & Usability: e.g., functional needs, usage scenarios, interaction experience",
    "• Context & Emotion: e.g., emotional value associated with items, social attributes, life scenarios",
    "• Other Dimensions: e.g., brand loyalty, price sensitivity, attention to sustainability",
    "<think> reasoning process here </think> <answer> answer here </answer>",
    "Please provide your analysis below:",
]


def test_prompt_is_table_1_with_the_items():
    prompt = build_prompt("7", [("B000GK7AMU", "Munchkin Five Sea Squirts. Brand: Munchkin."), ("12", "")])
    lines = prompt.splitlines()
    for line in TABLE_1_LINES:
        assert line in lines, line
    assert '  "B000GK7AMU": Munchkin Five Sea Squirts. Brand: Munchkin.' in lines
    assert '  "12": (no description)' in lines
    assert prompt_item_ids(prompt) == ["B000GK7AMU", "12"]
    assert prompt.endswith("Please provide your analysis below:")


@pytest.mark.parametrize("content, answer, reason", [
    ("<think>a</think> <answer> likes rock </answer>", "likes rock", None),
    ("<think><answer> answer here </answer></think><ANSWER>jazz</ANSWER>", "jazz", None),
    ("<think>x</think> no tags", None, "no <answer>"),
    ("<answer>  </answer>", None, "empty <answer>"),
    ("<answer> answer here </answer>", None, "placeholder"),
    ("<think>x</think><answer>cut off mid", None, "unterminated"),
    ("", None, "empty response"),
])
def test_extract_answer(content, answer, reason):
    got, why = extract_answer(content)
    assert got == answer
    assert (why is None) if reason is None else (reason in why)


def _table(tmp_path):
    (tmp_path / "x.item").write_text(
        "item_id:token\tname:token_seq\ttags:token_seq\n"
        "1\tA\trock,indie\n2\tB\trock,pop\n3\tC\tjazz\n", encoding="utf-8")
    recipe = TextRecipe.from_config({"file": "x.item", "id_field": "item_id", "template": "{tags}",
                                     "summary": {"title": "name", "attributes": {"tags": ","}, "top_k": 2}}, "x")
    return recipe, ItemTable.read(str(tmp_path / "x.item"), recipe)


def test_metadata_summary_is_deterministic_and_not_an_llm(tmp_path):
    recipe, table = _table(tmp_path)
    backend = MetadataSummaryBackend(recipe)
    out = backend.ask(ProfileRequest("u", "prompt", ["1", "2", "3"], table))
    assert out.ok and "not an LLM" in out.content
    assert out.answer == backend.ask(ProfileRequest("u", "prompt", ["1", "2", "3"], table)).answer
    assert "- tags: rock (2 of 3), indie (1 of 3)" in out.answer  # top_k 2, ties by value
    assert "- Items: A, B and 1 more." in out.answer
    assert extract_answer(out.content)[0] == out.answer


def test_cache_key_covers_prompt_model_backend_and_sampling():
    ident = {"backend": "openai-chat", "model": "m", "params": {"temperature": 0.0, "max_tokens": 10}}
    base = cache_key("p", ident)
    assert base == cache_key("p", json.loads(json.dumps(ident)))
    assert base != cache_key("q", ident)
    assert base != cache_key("p", {**ident, "model": "m2"})
    assert base != cache_key("p", {**ident, "backend": "metadata-summary"})
    assert base != cache_key("p", {**ident, "params": {"temperature": 0.7, "max_tokens": 10}})


def test_jsonl_cache_survives_a_truncated_last_line(tmp_path):
    path = tmp_path / "c.jsonl"
    cache = JsonlCache(str(path))
    cache.put({"key": "a", "user": "1", "status": "ok", "answer": "x"})
    cache.put({"key": "b", "user": "2", "status": "failed", "reason": "HTTP 500"})
    cache.close()
    with open(path, "ab") as f:  # a kill in the middle of a write
        f.write(b'{"key": "c", "user": "3", "stat')
    cache = JsonlCache(str(path))
    assert set(cache.records) == {"a", "b"} and cache.dropped_tail > 0
    cache.put({"key": "c", "user": "3", "status": "ok", "answer": "y"})
    cache.put({"key": "b", "user": "2", "status": "ok", "answer": "z"})  # a later record wins
    cache.close()
    again = JsonlCache(str(path))
    assert again.get("c")["answer"] == "y" and again.get("b")["answer"] == "z"
    assert all(json.loads(line) for line in path.read_text().splitlines())
    again.close()
    path.write_text('{"key": "a"}\nnot json\n{"key": "b"}\n')
    with pytest.raises(InputError, match=r"c\.jsonl:2: not a cache record"):
        JsonlCache(str(path))


def test_sqlite_cache_and_folder_caches(tmp_path):
    db = open_cache(str(tmp_path / "c.sqlite"), "x.jsonl")
    assert isinstance(db, SqliteCache)
    db.put({"key": "a", "user": "1", "status": "ok", "answer": "x"})
    db.close()
    assert open_cache(str(tmp_path / "c.sqlite"), "x.jsonl").get("a")["answer"] == "x"
    folder = open_cache(str(tmp_path) + "/", "lastfm-2k-openai.jsonl")
    assert isinstance(folder, JsonlCache) and folder.path.endswith("lastfm-2k-openai.jsonl")
    folder.close()


def test_rate_limiter_spaces_requests_over_threads():
    limiter = RateLimiter(rate=50)
    stamps = []

    def worker():
        for _ in range(5):
            limiter.acquire()
            stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(3)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(stamps) == 15
    assert time.monotonic() - start >= 14 / 50 - 0.01  # 15 requests at 50/s: >= 0.28 s
