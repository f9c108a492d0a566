"""The benchmark yaml merged with the command line: every subcommand of ``python -m
recbole_recgoat.benchmark`` and ``status --config`` read the yaml through these, so that they
agree on what a grid is (its rows, datasets, seeds, overrides and searches). A value given on the
command line wins over the yaml's.
"""

import argparse
import os

from recbole_recgoat.errors import InputError

YAML_KEYS = ("store", "models", "datasets", "seeds", "base_seed", "config_files", "overrides", "variants", "jobs",
             "threads", "backend", "ray_address", "use_tuned", "search_space", "tune", "leaderboard")


def yaml_only():
    """The options of ``run`` and ``tune`` with none given: the yaml alone decides."""
    keys = ("models", "datasets", "config_files", "set_", "variants", "algo", "max_evals", "tune_seed", "force",
            "seeds", "seed_list", "base_seed", "use_tuned", "rows")
    return argparse.Namespace(**{k: None for k in keys})


def load_bench_yaml(path):
    """The benchmark yaml at ``path`` (``{}`` for None), its top-level keys checked."""
    from recbole_recgoat.config import load_yaml

    if path is None:
        return {}
    doc = load_yaml(path)
    if not isinstance(doc, dict):
        raise InputError(f"--config {path}: expected a yaml mapping (models:, datasets:, seeds:, ...)")
    unknown = sorted(set(doc) - set(YAML_KEYS))
    if unknown:
        raise InputError(f"--config {path}: unknown keys {', '.join(unknown)}; expected some of {', '.join(sorted(YAML_KEYS))}")
    return doc


def pick(cli_value, yaml_doc, key, default=None):
    """The command line's value if given, else the yaml's, else ``default`` (a yaml null is not a value)."""
    if cli_value is not None:
        return cli_value
    value = yaml_doc.get(key)
    return default if value is None else value


def listify(x):
    """A yaml scalar or list as a list (None stays None)."""
    if x is None:
        return None
    return [x] if isinstance(x, str) else list(x)


def variants_of(args, doc):
    """The yaml's ``variants`` updated with those of ``--variants FILE``."""
    from recbole_recgoat.config import load_yaml

    variants = dict(doc.get("variants") or {})
    path = getattr(args, "variants", None)
    if path:
        content = load_yaml(path)
        content = content.get("variants", content) if isinstance(content, dict) else content
        if not isinstance(content, dict):
            raise InputError(f"--variants {path}: expected a mapping name: {{model: M, key: value}}")
        variants.update(content)
    return variants


def overrides_of(args, doc):
    """The yaml's ``overrides`` updated with ``--set KEY=VALUE``."""
    from recbole_recgoat.benchmark.spec import parse_set

    out = dict(doc.get("overrides") or {})
    out.update(parse_set(getattr(args, "set_", None)))
    return out


def tune_tasks(args, doc):
    """The searches of ``tune``: one :class:`~recbole_recgoat.benchmark.tuning.TuneTask` per model x dataset."""
    from recbole_recgoat.benchmark.spec import DEFAULT_DATASET, build_entries
    from recbole_recgoat.benchmark.grid import search_space_for
    from recbole_recgoat.benchmark.tuning import TuneTask

    tdoc = dict(doc.get("tune") or {})
    models = listify(pick(args.models, tdoc, "models")) or listify(doc.get("models")) or []
    entries = build_entries(models, variants_of(args, doc) if not args.models else {})
    datasets = listify(pick(args.datasets, doc, "datasets", [DEFAULT_DATASET]))
    overrides = dict(doc.get("overrides") or {})
    overrides.update(tdoc.get("overrides") or {})
    overrides.update(overrides_of(args, {}))
    spaces = doc.get("search_space") or {}
    tasks = []
    for model in dict.fromkeys(e.model for e in entries):
        for ds in datasets:
            space = search_space_for(spaces, model, ds)
            tasks.append(TuneTask(model, ds, space, algo=pick(args.algo, tdoc, "algo", "exhaustive"),
                                  max_evals=pick(args.max_evals, tdoc, "max_evals", 10),
                                  seed=pick(args.tune_seed, tdoc, "seed", 999),
                                  config_files=listify(pick(args.config_files, doc, "config_files")),
                                  overrides=overrides, force=bool(args.force),
                                  reuse_from=_reuse_from(tdoc)))
    return tasks


def _reuse_from(tdoc):
    """``tune: reuse_from: [store, ...]``: stores whose trials of the same searches count (folders)."""
    stores = listify(tdoc.get("reuse_from")) or []
    for path in stores:
        if not os.path.isdir(os.path.join(str(path), "tuning")):
            raise InputError(f"tune.reuse_from: {path}: no tuning/ folder there; expected a benchmark store")
    return stores


def expected_rows(doc):
    """``{dataset: [row names]}`` the benchmark yaml runs (its models and variants on its datasets):
    the rows a table shows as pending until their cells are in the store. None without a yaml's
    ``models``."""
    models = listify(doc.get("models"))
    if not models:
        return None
    from recbole_recgoat.benchmark.spec import DEFAULT_DATASET, build_entries

    entries = build_entries(models, doc.get("variants") or {})
    datasets = listify(doc.get("datasets")) or [DEFAULT_DATASET]
    return {d: [e.name for e in entries if e.datasets is None or d in e.datasets] for d in datasets}


def expected_seeds(doc):
    """``{dataset: number of seeds}`` the benchmark yaml runs (rows with fewer are partial: shown,
    not ranked); None without a yaml's ``models``."""
    if not listify(doc.get("models")):
        return None
    from recbole_recgoat.benchmark.spec import DEFAULT_DATASET, parse_seeds

    datasets = listify(doc.get("datasets")) or [DEFAULT_DATASET]
    seeds = parse_seeds(doc.get("seeds"), datasets=datasets)
    return {d: len(seeds[d] if isinstance(seeds, dict) else seeds) for d in datasets}
