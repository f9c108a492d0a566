"""The command line of ``python -m recbole_recgoat.benchmark``: its subcommands and their options
(:mod:`recbole_recgoat.benchmark.options` merges them with a benchmark yaml, :mod:`recbole_recgoat.benchmark.cli`
runs them)."""

import argparse


def _common(p, sub=False):
    """``--config`` and ``--store``, before or after the subcommand: a subcommand's copy has no
    default of its own (``SUPPRESS``), so it does not overwrite what was given before it."""
    default = argparse.SUPPRESS if sub else None
    p.add_argument("--config", default=default, help="benchmark yaml (models, datasets, seeds, variants, tune, leaderboard)")
    p.add_argument("--store", default=default, help="results store folder (default: benchmark_store)")


def _grid(p):
    p.add_argument("--models", nargs="+", default=None, help="model names (plugin or RecBole)")
    p.add_argument("--datasets", nargs="+", default=None, help="dataset names (default lastfm-2k)")
    p.add_argument("--config_files", nargs="+", default=None, help="yaml files for every cell (run_recbole's --config_files)")
    p.add_argument("--set", dest="set_", action="append", default=None, metavar="KEY=VALUE",
                   help="override for every cell (run_recbole's --KEY=VALUE); repeatable")
    p.add_argument("--jobs", type=int, default=None, help="parallel processes (default: cores // threads)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per process (default: cores // jobs)")
    p.add_argument("--backend", choices=["local", "ray"], default=None, help="local processes (default) or Ray tasks")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default: start a local Ray)")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m recbole_recgoat.benchmark",
                                     description="Benchmarks: models x datasets x seeds under one protocol.")
    _common(parser)
    parser.add_argument("--steps", default=None, help="with --config and no subcommand: comma list of tune,run,leaderboard")
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="train and test every cell; finished cells are skipped")
    _common(run, sub=True)
    _grid(run)
    run.add_argument("--seeds", type=int, default=None, help="number of seeds: base seed + 0..N-1 (default 1)")
    run.add_argument("--seed-list", type=int, nargs="+", default=None, help="explicit seeds (instead of --seeds)")
    run.add_argument("--base-seed", type=int, default=None, help="first seed of --seeds (default 999, the protocol's)")
    run.add_argument("--variants", default=None, help="yaml of named variants {name: {model: M, key: value}}")
    run.add_argument("--rows", nargs="+", default=None,
                     help="only these rows (models or variants of the grid), e.g. to run a grid's part first")
    run.add_argument("--use-tuned", action="store_true", default=None, help="use <store>/tuned/<model>-<dataset>.yaml")
    run.add_argument("--dry-run", action="store_true", help="list the cells and what is finished; run nothing")

    tune = sub.add_parser("tune", help="hyper-parameter search per model and dataset (validation only)")
    _common(tune, sub=True)
    _grid(tune)
    tune.add_argument("--algo", choices=["exhaustive", "random", "bayes"], default=None, help="search algorithm (default exhaustive)")
    tune.add_argument("--max-evals", type=int, default=None, help="trials per model and dataset, the same for all (default 10)")
    tune.add_argument("--tune-seed", type=int, default=None, help="seed of the search and of its trials (default 999)")
    tune.add_argument("--variants", default=None, help=argparse.SUPPRESS)
    tune.add_argument("--force", action="store_true", help="re-tune even if tuned parameters with other settings exist")

    lb = sub.add_parser("leaderboard", help="tables and figures from the store alone")
    _common(lb, sub=True)
    lb.add_argument("--out", default=None, help="output folder (default <store>/leaderboard)")
    lb.add_argument("--name", default=None, help="file stem: <name>.md/.csv/.json, <name>_figures/ (default leaderboard)")
    lb.add_argument("--title", default=None)
    lb.add_argument("--headline", default=None, help="metric that ranks rows and is tested (default: the valid metric, e.g. recall@20)")
    lb.add_argument("--columns", nargs="+", default=None, help="metrics shown in Markdown (default Recall/NDCG @10,@20)")
    lb.add_argument("--per-user-metrics", nargs="+", default=None, help="metrics of the per-user test (default headline + NDCG)")
    lb.add_argument("--focus", default=None, help="row to summarise (rank, gap to the best), e.g. RecGOAT")
    lb.add_argument("--datasets", nargs="+", default=None)
    lb.add_argument("--no-figures", action="store_true")
    lb.add_argument("--note-file", default=None, help="Markdown text placed under the title (the author's note)")

    status = sub.add_parser("status", help="what the store holds; with --config, what the grid still needs")
    _common(status, sub=True)
    return parser
