"""Command line of the feature pipeline (``python -m recbole_recgoat.features``)."""

import argparse
import json
import shlex
import sys

from recbole_recgoat.errors import InputError

EPILOG = """examples:
  python -m recbole_recgoat.features item-text --dataset ml-100k --out dataset/ml-100k/text_feat.npy
  python -m recbole_recgoat.features user-profiles --dataset lastfm-2k --backend offline --out user_feat.npy
  python -m recbole_recgoat.features user-profiles --dataset ml-100k-llm --backend import --answers answers.jsonl \
      --id-column user_id --text-column answer --out user_feat.npy
  python -m recbole_recgoat.features user-profiles --dataset lastfm-2k --backend openai \\
      --base-url http://127.0.0.1:8000/v1 --llm-model Qwen/Qwen2.5-7B-Instruct --concurrency 8 --out user_feat.npy
exit status: 0 done, 2 bad input, a fatal server answer or a dead server (answers so far stay in the
cache), 3 users without a usable answer (nothing written; see --allow-failures), 130 interrupted
(rerun to resume), 1 internal error. See docs/features.md."""


def _common(p):
    p.add_argument("--dataset", "-d", default="lastfm-2k", help="dataset name (default: the bundled lastfm-2k)")
    p.add_argument("--data-path", default=None, help="folder holding <dataset>/ (default: the config's data_path; bundled data when absent)")
    p.add_argument("--config-files", default=None, help="space-separated extra yaml files (e.g. an item_text recipe)")
    p.add_argument("--out", required=True, help="output .npy (row = original id; <out>.ids sidecar when ids are not 0..n-1)")
    p.add_argument("--force", action="store_true", help="replace an existing --out whose content differs")
    p.add_argument("--model-path", default=None, help="local sentence-transformers folder (default: packaged all-MiniLM-L6-v2)")
    p.add_argument("--model-cache", default=None, help="where the packaged model is extracted (default: $RECBOLE_RECGOAT_CACHE or ~/.cache/recbole_recgoat)")
    p.add_argument("--batch-size", type=int, default=64, help="texts per encoder batch (default 64)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--no-normalize", action="store_true", help="keep the encoder's raw output (default: L2-normalised)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m recbole_recgoat.features",
        description="Build LM features the multimodal datasets load directly: item text embeddings and "
        "LLM-inferred user preference embeddings (RecGOAT, Table 1 prompt).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="step", required=True, metavar="{item-text,user-profiles}")
    p_item = sub.add_parser("item-text", help="embed each item's text (recipe: item_text in the dataset yaml, or --texts FILE)")
    _common(p_item)
    t = p_item.add_argument_group("texts from a file (instead of the recipe)")
    t.add_argument("--texts", default=None, metavar="FILE",
                   help="one text per item from a .csv/.tsv (header row) or .jsonl file; every item of the recipe's file needs exactly "
                   "one non-empty text, and every id of FILE must be an item (else exit 3, nothing written)")
    t.add_argument("--id-column", default="item_id", help="column of FILE holding the ORIGINAL item id (default item_id)")
    t.add_argument("--text-column", default="text", help="column of FILE holding the text (default text)")
    t.add_argument("--allow-failures", action="store_true", help="write even when items lack a usable text (they get the "
                   "recipe's text) or FILE has unknown ids (not used); both listed in <out>.meta.json")

    p_user = sub.add_parser(
        "user-profiles",
        help="ask an LLM (or the offline metadata summary) about each user's training items and embed the <answer>",
    )
    _common(p_user)
    p_user.add_argument("--backend", choices=["openai", "offline", "import"], required=True,
                        help="openai: any OpenAI-compatible chat server; offline: MetadataSummaryBackend (deterministic "
                        "summary of item metadata, NOT an LLM); import: answers produced elsewhere, read from --answers FILE")
    a = p_user.add_argument_group("import backend")
    a.add_argument("--answers", default=None, metavar="FILE",
                   help="one answer per user from a .csv/.tsv (header row) or .jsonl file; a user with no row, several rows "
                   "or an empty text has no usable answer, an id that is not a user is unknown (exit 3, nothing written)")
    a.add_argument("--id-column", default="user_id", help="column of FILE holding the ORIGINAL user id (default user_id)")
    a.add_argument("--text-column", default="text", help="column of FILE holding the answer (default text)")
    a.add_argument("--answer-tags", action="store_true", help="embed the last <answer>...</answer> block of each text "
                   "(raw LLM responses; default: the whole text)")
    g = p_user.add_argument_group("openai backend")
    g.add_argument("--base-url", default=None, help="e.g. http://127.0.0.1:8000/v1 (vLLM), :8080/v1 (llama.cpp), :11434/v1 (Ollama)")
    g.add_argument("--llm-model", default=None, help="model name as the server knows it")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key (default OPENAI_API_KEY; unset = no key)")
    g.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    g.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    g.add_argument("--max-retries", type=int, default=3, help="retries after the first attempt (default 3)")
    g.add_argument("--max-connection-errors", type=int, default=5,
                   help="transport errors in a row (all users) that stop the run, 0 = never; a refused connection "
                   "always stops it (default 5); answers so far stay in the cache")
    g.add_argument("--backoff", type=float, default=1.0, help="first retry delay in seconds, doubled each retry (default 1)")
    g.add_argument("--backoff-max", type=float, default=30.0, help="longest retry delay (default 30)")
    g.add_argument("--rate-limit", type=float, default=None, help="requests per second over all workers (default: no limit)")
    g.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default 0)")
    g.add_argument("--max-tokens", type=int, default=2048, help="max_tokens of each answer (default 2048)")
    g.add_argument("--extra-body", type=json.loads, default=None, help='more request fields as json, e.g. \'{"top_p": 0.9}\'')
    c = p_user.add_argument_group("prompts, cache and failures")
    c.add_argument("--cache", default=None, help="response cache: a .jsonl file (default <out>.cache.jsonl), a .sqlite/.db file, or a folder")
    c.add_argument("--retry-failures", action="store_true", help="ask again for users whose cached record is a failure")
    c.add_argument("--allow-failures", action="store_true", help="write the .npy even when some users have no usable answer "
                   "(they get the offline metadata summary) or --answers has unknown ids (not used); listed in <out>.meta.json")
    c.add_argument("--max-items", type=int, default=0, help="keep only a user's last N training items in the prompt (default 0 = all)")
    c.add_argument("--item-chars", type=int, default=0, help="cut each item's text in the prompt to N characters (default 0 = whole)")
    c.add_argument("--seed", type=int, default=None, help="split seed (default: the project's, as the models use)")
    c.add_argument("--show-prompt", default=None, metavar="USER", help="print the prompt of this user and exit")
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    opts = parser.parse_args(argv)
    opts.config_files = opts.config_files.split() if opts.config_files else None
    checks = [("batch_size", 1)] + ([("max_items", 0), ("item_chars", 0)] if opts.step == "user-profiles" else [])
    for name, low in checks:
        if getattr(opts, name) < low:
            print(f"error: --{name.replace('_', '-')}={getattr(opts, name)}: expected an integer >= {low}", file=sys.stderr)
            return 2
    command = "python -m recbole_recgoat.features " + " ".join(shlex.quote(a) for a in argv)
    from recbole_recgoat.features import pipeline

    try:
        if opts.step == "item-text":
            return pipeline.run_item_text(opts, command)
        return pipeline.run_user_profiles(opts, command)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside the requests (loading, encoding): nothing was written
        print("interrupted: nothing was written (answers received so far stay in the cache); rerun the same command "
              "to resume", file=sys.stderr)
        return 130
