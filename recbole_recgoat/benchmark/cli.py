"""``python -m recbole_recgoat.benchmark``: run, tune, leaderboard, status (and a yaml form).

    python -m recbole_recgoat.benchmark run --models BPR LightGCN --datasets lastfm-2k --seeds 5 --store bench
    python -m recbole_recgoat.benchmark tune --models BPR LightGCN --algo bayes --max-evals 20 --store bench
    python -m recbole_recgoat.benchmark run ... --use-tuned
    python -m recbole_recgoat.benchmark leaderboard --store bench --out docs/leaderboard_demo
    python -m recbole_recgoat.benchmark --config bench.yaml        # tune (if configured), run, leaderboard

Every option of a subcommand can also come from ``--config bench.yaml`` (see docs/benchmark.md);
options given on the command line win over the yaml.
"""

import argparse
import os
import shlex
import sys

from recbole_recgoat.benchmark.parser import build_parser
from recbole_recgoat.benchmark.runner import say
from recbole_recgoat.errors import InputError

STEPS = ("tune", "run", "leaderboard")


# -- configuration merging --------------------------------------------------------------------------
def load_bench_yaml(path):
    from recbole_recgoat.config import load_yaml

    if path is None:
        return {}
    doc = load_yaml(path)
    if not isinstance(doc, dict):
        raise InputError(f"--config {path}: expected a yaml mapping (models:, datasets:, seeds:, ...)")
    known = {"store", "models", "datasets", "seeds", "base_seed", "config_files", "overrides", "variants", "jobs",
             "threads", "backend", "ray_address", "use_tuned", "search_space", "tune", "leaderboard"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise InputError(f"--config {path}: unknown keys {', '.join(unknown)}; expected some of {', '.join(sorted(known))}")
    return doc


def _pick(cli_value, yaml_doc, key, default=None):
    if cli_value is not None:
        return cli_value
    value = yaml_doc.get(key)
    return default if value is None else value


def _listify(x):
    if x is None:
        return None
    return [x] if isinstance(x, str) else list(x)


def _variants(args, doc):
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


def _overrides(args, doc):
    from recbole_recgoat.benchmark.spec import parse_set

    out = dict(doc.get("overrides") or {})
    out.update(parse_set(getattr(args, "set_", None)))
    return out


_STORE_IN_USE = []  # the store this command writes (for the line a Ctrl-C leaves)


def _store(args, doc, write=False):
    """The results store; ``write``: checked up front (a folder this process can create or write)."""
    from recbole_recgoat.benchmark.store import Store
    from recbole_recgoat.utils.io import writable_folder_problem

    path = _pick(args.store, doc, "store", "benchmark_store")
    if write:
        problem = writable_folder_problem(path)
        if problem:
            raise InputError(f"--store {path}: {problem}; expected a folder this process can write")
        _STORE_IN_USE.append(Store(path))
    return Store(path)


def _parallel(args, doc, n_tasks):
    from recbole_recgoat.benchmark.runner import plan_parallelism

    return plan_parallelism(n_tasks, _pick(args.jobs, doc, "jobs"), _pick(args.threads, doc, "threads"))


# -- commands ---------------------------------------------------------------------------------------
def cmd_run(args, doc):
    from recbole_recgoat.benchmark.spec import (BASE_SEED, DEFAULT_DATASET, build_cells, build_entries, check_keys,
                                                parse_seeds, preflight)
    from recbole_recgoat.benchmark.tuning import tuned_for

    store = _store(args, doc, write=not args.dry_run)
    entries = _only_rows(build_entries(_listify(_pick(args.models, doc, "models")), _variants(args, doc)), args.rows)
    datasets = _listify(_pick(args.datasets, doc, "datasets", [DEFAULT_DATASET]))
    check_keys(entries, datasets[0], overrides=_overrides(args, doc))
    seeds = args.seed_list if args.seed_list else _pick(args.seeds, doc, "seeds", 1)
    seeds = parse_seeds(seeds, _pick(args.base_seed, doc, "base_seed", BASE_SEED), datasets)
    use_tuned = _pick(args.use_tuned, doc, "use_tuned", bool(doc.get("tune")))
    tuned = tuned_for(store, entries, datasets) if use_tuned else None
    cells = build_cells(entries, datasets, seeds, _listify(_pick(args.config_files, doc, "config_files")),
                        _overrides(args, doc), tuned, known_datasets=_listify(doc.get("datasets")))
    if not args.dry_run:
        preflight(cells)  # every row x dataset and seed checked before the first cell
        with store.writer("benchmark run"):
            return _run_cells(args, doc, store, cells, seeds, entries, datasets)
    return _run_cells(args, doc, store, cells, seeds, entries, datasets)


def _only_rows(entries, rows):
    """``entries`` limited to the names of ``--rows`` (all of them when it is not given)."""
    if not rows:
        return entries
    names = [e.name for e in entries]
    unknown = [r for r in rows if r not in names]
    if unknown:
        raise InputError(f"--rows {' '.join(unknown)}: not a row of this grid; expected some of {', '.join(names)}")
    return [e for e in entries if e.name in rows]


def _run_cells(args, doc, store, cells, seeds, entries, datasets):
    from recbole_recgoat.benchmark import runner

    finished = store.finished_keys()
    todo = [c for c in cells if c.key not in finished]
    copies = runner.same_runs(todo, store)  # rows whose settings equal another row's: trained once
    todo = [c for c in todo if c.key not in copies]
    jobs, threads = _parallel(args, doc, len(todo))
    per_seed = (", ".join(f"{d} {len(s)}" for d, s in seeds.items()) if isinstance(seeds, dict) else len(seeds))
    say(f"{len(cells)} cells ({len(entries)} rows x {len(datasets)} datasets, seeds: {per_seed}): "
        f"{len(cells) - len(todo) - len(copies)} finished, {len(todo)} to run"
        + (f", {len(copies)} the same run as another row" if copies else "") + f"; store {store.root}; "
        f"backend {_pick(args.backend, doc, 'backend', 'local')}, jobs {jobs} x threads {threads}")
    if args.dry_run:
        for c in cells:
            same = f" (same run as {copies[c.key][1].describe()})" if c.key in copies else ""
            print(("done  " if c.key in finished else "todo  ") + c.describe() + same)
        return 0
    ok, failed = 0, 0
    if todo:
        ok, failed = runner.execute(todo, store, jobs=jobs, threads=threads,
                                    backend=_pick(args.backend, doc, "backend", "local"),
                                    ray_address=_pick(args.ray_address, doc, "ray_address"))
    if copies:
        n = runner.record_same_runs(copies, store)
        say(f"{n} of {len(copies)} rows recorded as the same run as another row (equal settings, not trained twice)")
    if not todo:
        return 0
    say(f"{ok} cells finished, {failed} failed" + (f" (see {store.root / 'failures.jsonl'})" if failed else ""))
    return 1 if failed else 0


def tune_tasks(args, doc):
    from recbole_recgoat.benchmark.spec import DEFAULT_DATASET, build_entries
    from recbole_recgoat.benchmark.grid import search_space_for
    from recbole_recgoat.benchmark.tuning import TuneTask

    tdoc = dict(doc.get("tune") or {})
    models = _listify(_pick(args.models, tdoc, "models")) or _listify(doc.get("models")) or []
    entries = build_entries(models, _variants(args, doc) if not args.models else {})
    datasets = _listify(_pick(args.datasets, doc, "datasets", [DEFAULT_DATASET]))
    overrides = dict(doc.get("overrides") or {})
    overrides.update(tdoc.get("overrides") or {})
    overrides.update(_overrides(args, {}))
    spaces = doc.get("search_space") or {}
    tasks = []
    for model in dict.fromkeys(e.model for e in entries):
        for ds in datasets:
            space = search_space_for(spaces, model, ds)
            tasks.append(TuneTask(model, ds, space, algo=_pick(args.algo, tdoc, "algo", "exhaustive"),
                                  max_evals=_pick(args.max_evals, tdoc, "max_evals", 10),
                                  seed=_pick(args.tune_seed, tdoc, "seed", 999),
                                  config_files=_listify(_pick(args.config_files, doc, "config_files")),
                                  overrides=overrides, force=bool(args.force),
                                  reuse_from=_reuse_from(tdoc)))
    return tasks


def _reuse_from(tdoc):
    """``tune: reuse_from: [store, ...]``: stores whose trials of the same searches count (folders)."""
    stores = _listify(tdoc.get("reuse_from")) or []
    for path in stores:
        if not os.path.isdir(os.path.join(str(path), "tuning")):
            raise InputError(f"tune.reuse_from: {path}: no tuning/ folder there; expected a benchmark store")
    return stores


def cmd_tune(args, doc):
    from recbole_recgoat.benchmark import runner
    from recbole_recgoat.benchmark.tuning import check_existing, tune_job

    store = _store(args, doc, write=True)
    tasks = tune_tasks(args, doc)
    from recbole_recgoat.benchmark.spec import check_keys

    for t in tasks:
        check_keys([], t.dataset, {t.model: t.space})
    for t in tasks:
        check_existing(t, store)  # refuse before anything runs
    from recbole_recgoat.config import Config

    for t in tasks:  # the dataset, the overrides' keys and values: before the first trial
        Config(t.model, t.dataset, t.config_files or None, dict(t.overrides))
    jobs, threads = _parallel(args, doc, len(tasks))
    say(f"tuning {len(tasks)} model x dataset pairs; store {store.root}; jobs {jobs} x threads {threads}")
    for t in tasks:
        if not t.space:
            say(f"note: {t.model} has no search_space (properties/model/{t.model}.yaml): its defaults are recorded")
    results = {}

    def on_result(task, out):
        results[task.key] = out
        if out.get("error"):
            say(f"FAILED {task.describe()}:\n{out['error'].rstrip()}")
            return False
        return True

    with store.writer("benchmark tune"):
        ok, failed = runner.execute(tasks, store, jobs=jobs, threads=threads, backend=_pick(args.backend, doc, "backend", "local"),
                                    ray_address=_pick(args.ray_address, doc, "ray_address"), fn=tune_job, on_result=on_result,
                                    unit="searches")
    for t in tasks:
        tuned = (results.get(t.key) or {}).get("tuned")
        if tuned:
            sel = tuned.get("selection") or {}
            score = sel.get("best_valid_score")
            say(f"{t.model} on {t.dataset}: {tuned.get('params')} (valid {sel.get('valid_metric')} "
                f"{'n/a' if score is None else f'{score:.4f}'}, {tuned['budget']['evaluated']} trials)")
    return 1 if failed else 0


def cmd_leaderboard(args, doc, argv=None):
    from recbole_recgoat.benchmark import leaderboard

    store = _store(args, doc)
    ldoc = dict(doc.get("leaderboard") or {})
    out = _pick(args.out, ldoc, "out", str(store.root / "leaderboard"))
    name = _pick(args.name, ldoc, "name", "leaderboard")
    command = "python -m recbole_recgoat.benchmark " + " ".join(shlex.quote(a) for a in (argv or []))
    paths = leaderboard.build(
        store, out, name=name, tables=ldoc.get("tables"), headline=_pick(args.headline, ldoc, "headline"),
        columns=_listify(_pick(args.columns, ldoc, "columns")),
        per_user_metrics=_listify(_pick(args.per_user_metrics, ldoc, "per_user_metrics")),
        title=_pick(args.title, ldoc, "title"), focus=_pick(args.focus, ldoc, "focus"),
        datasets=_listify(_pick(args.datasets, ldoc, "datasets")), command=command,
        figures=not args.no_figures and ldoc.get("figures", True), note=_note(args, ldoc),
        feature_labels=ldoc.get("feature_labels"), expected=_expected(doc), expected_seeds=_expected_seeds(doc))
    say(f"wrote {paths['md']}, {len(paths['pages'])} dataset pages (.md, .tex), {paths['csv'].name}, "
        f"{paths['json'].name} and {len(paths['figures'])} figures")
    return 0


def _expected(doc):
    """``{dataset: [row names]}`` the benchmark yaml runs (its models and variants on its datasets):
    the rows a table shows as pending until their cells are in the store. None without a yaml's
    ``models``."""
    models = _listify(doc.get("models"))
    if not models:
        return None
    from recbole_recgoat.benchmark.spec import DEFAULT_DATASET, build_entries

    entries = build_entries(models, doc.get("variants") or {})
    datasets = _listify(doc.get("datasets")) or [DEFAULT_DATASET]
    return {d: [e.name for e in entries if e.datasets is None or d in e.datasets] for d in datasets}


def _expected_seeds(doc):
    """``{dataset: number of seeds}`` the benchmark yaml runs (rows with fewer are partial: shown,
    not ranked); None without a yaml's ``models``."""
    if not _listify(doc.get("models")):
        return None
    from recbole_recgoat.benchmark.spec import DEFAULT_DATASET, parse_seeds

    datasets = _listify(doc.get("datasets")) or [DEFAULT_DATASET]
    seeds = parse_seeds(doc.get("seeds"), datasets=datasets)
    return {d: len(seeds[d] if isinstance(seeds, dict) else seeds) for d in datasets}


def _note(args, ldoc):
    """Free text for the top of the Markdown: ``--note-file`` or the yaml's ``leaderboard.note``."""
    path = getattr(args, "note_file", None) or ldoc.get("note_file")
    if path:
        try:
            with open(path, "r", encoding="utf-8") as f:
                return f.read()
        except OSError as exc:
            raise InputError(f"--note-file {path}: cannot be read ({exc.strerror}); expected a Markdown file") from None
    return ldoc.get("note")


def cmd_status(args, doc):
    store = _store(args, doc)
    records, stats = store.records(with_stats=True)
    starts = [e for e in store.run_events() if e[0] in ("start", "submit")]
    print(f"store {store.root}: {len(records)} records, {stats['torn']} torn lines, {stats['duplicates']} duplicates, "
          f"{len(starts)} cell attempts")
    by = {}
    for r in records:
        by.setdefault((r["dataset"], r["variant"]), {}).setdefault(r.get("setting"), []).append(r["seed"])
    for (ds, v), settings in sorted(by.items()):
        print(f"  {ds:<14} {v:<24} " + "; ".join(f"seeds {sorted(s)}" for s in settings.values())
              + (f" ({len(settings)} settings: a search chose again)" if len(settings) > 1 else ""))
    tuned = sorted(p.name for p in (store.root / "tuned").glob("*.yaml")) if (store.root / "tuned").is_dir() else []
    if tuned:
        print("  tuned: " + ", ".join(tuned))
    if _listify(doc.get("models")):
        print("\n".join(_grid_todo(doc, store, args.config)))
    return 0


def _grid_todo(doc, store, config_path):
    """What the yaml ``doc`` still needs from ``store`` (:mod:`recbole_recgoat.benchmark.todo`), its
    searches and cells built as ``tune`` and ``run`` build them with no option given."""
    from recbole_recgoat.benchmark.spec import BASE_SEED, DEFAULT_DATASET, build_entries, parse_seeds
    from recbole_recgoat.benchmark.todo import remaining, todo_lines

    keys = ("models", "datasets", "config_files", "set_", "variants", "algo", "max_evals", "tune_seed", "force")
    none_given = argparse.Namespace(**{k: None for k in keys})
    datasets = _listify(doc.get("datasets")) or [DEFAULT_DATASET]
    rem = remaining(store, tune_tasks(none_given, doc) if doc.get("tune") else [],
                    build_entries(_listify(doc.get("models")), _variants(none_given, doc)), datasets,
                    parse_seeds(_pick(None, doc, "seeds", 1), _pick(None, doc, "base_seed", BASE_SEED), datasets),
                    _listify(doc.get("config_files")), _overrides(none_given, doc),
                    use_tuned=bool(_pick(None, doc, "use_tuned", bool(doc.get("tune")))))
    return todo_lines(rem, config_path)


def _args_for(step, doc_path, store, parser):
    argv = [step, "--config", doc_path] + (["--store", store] if store else [])
    return parser.parse_args(argv), argv


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        doc = load_bench_yaml(args.config)
        if args.command is None:
            if not args.config:
                parser.print_help()
                return 2
            steps = [s.strip() for s in (args.steps or ",".join(STEPS)).split(",") if s.strip()]
            bad = [s for s in steps if s not in STEPS]
            if bad:
                raise InputError(f"--steps {args.steps}: unknown {', '.join(bad)}; expected some of {', '.join(STEPS)}")
            rc = 0
            for step in steps:
                if step == "tune" and not doc.get("tune"):
                    continue
                sub_args, sub_argv = _args_for(step, args.config, args.store, parser)
                if step == "tune":
                    rc = cmd_tune(sub_args, doc) or rc
                elif step == "run":
                    rc = cmd_run(sub_args, doc) or rc
                else:
                    rc = cmd_leaderboard(sub_args, doc, argv) or rc
                if rc and step != "leaderboard":
                    say(f"step {step} had failures; stopping")
                    return rc
            return rc
        if args.command == "run":
            return cmd_run(args, doc)
        if args.command == "tune":
            return cmd_tune(args, doc)
        if args.command == "leaderboard":
            return cmd_leaderboard(args, doc, argv)
        return cmd_status(args, doc)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if _STORE_IN_USE:
            store = _STORE_IN_USE[-1]
            kept = len(store.records()) if store.records_path.exists() else 0
            print(f"interrupted: the store {store.root} keeps its {kept} finished cell(s); the cell(s) in progress are "
                  "lost; rerun the same command to resume", file=sys.stderr)
        else:
            print("interrupted: every file already written is complete (written atomically); rerun the same command",
                  file=sys.stderr)
        return 130
