"""``python -m recbole_recgoat.benchmark``: run, tune, leaderboard, status (and a yaml form).

    python -m recbole_recgoat.benchmark run --models BPR LightGCN --datasets lastfm-2k --seeds 5 --store bench
    python -m recbole_recgoat.benchmark tune --models BPR LightGCN --algo bayes --max-evals 20 --store bench
    python -m recbole_recgoat.benchmark run ... --use-tuned
    python -m recbole_recgoat.benchmark leaderboard --store bench --out docs/leaderboard_demo
    python -m recbole_recgoat.benchmark --config bench.yaml        # tune (if configured), run, leaderboard

Every option of a subcommand can also come from ``--config bench.yaml`` (see docs/benchmark.md);
options given on the command line win over the yaml.
"""

import shlex
import sys

from recbole_recgoat.benchmark.options import (expected_rows, expected_seeds, listify, load_bench_yaml, overrides_of, pick,
                                               tune_tasks, variants_of)
from recbole_recgoat.benchmark.parser import build_parser
from recbole_recgoat.benchmark.runner import say
from recbole_recgoat.errors import InputError

STEPS = ("tune", "run", "leaderboard")


# -- the store --------------------------------------------------------------------------------------
_STORE_IN_USE = []  # the store this command writes (for the line a Ctrl-C leaves)


def _store(args, doc, write=False):
    """The results store; ``write``: checked up front (a folder this process can create or write)."""
    from recbole_recgoat.benchmark.store import Store
    from recbole_recgoat.utils.io import writable_folder_problem

    path = pick(args.store, doc, "store", "benchmark_store")
    if write:
        problem = writable_folder_problem(path)
        if problem:
            raise InputError(f"--store {path}: {problem}; expected a folder this process can write")
        _STORE_IN_USE.append(Store(path))
    return Store(path)


def _parallel(args, doc, n_tasks):
    from recbole_recgoat.benchmark.runner import plan_parallelism

    return plan_parallelism(n_tasks, pick(args.jobs, doc, "jobs"), pick(args.threads, doc, "threads"))


# -- commands ---------------------------------------------------------------------------------------
def cmd_run(args, doc):
    from recbole_recgoat.benchmark.spec import preflight
    from recbole_recgoat.benchmark.tuned import tuned_for

    store = _store(args, doc, write=not args.dry_run)
    grid = _grid(args, doc)
    tuned = tuned_for(store, grid.entries, grid.datasets) if grid.use_tuned else None
    cells = grid.cells(tuned)
    if not args.dry_run:
        preflight(cells)  # every row x dataset and seed checked before the first cell
        with store.writer("benchmark run"):
            return _run_cells(args, doc, store, cells, grid.seeds, grid.entries, grid.datasets)
    return _run_cells(args, doc, store, cells, grid.seeds, grid.entries, grid.datasets)


def _grid(args, doc):
    """The cells ``run`` trains (:class:`~recbole_recgoat.benchmark.spec.Grid`), checked: the rows'
    keys and values, the seeds."""
    from recbole_recgoat.benchmark.spec import BASE_SEED, DEFAULT_DATASET, Grid, build_entries, check_keys, parse_seeds

    entries = _only_rows(build_entries(listify(pick(args.models, doc, "models")), variants_of(args, doc)), args.rows)
    datasets = listify(pick(args.datasets, doc, "datasets", [DEFAULT_DATASET]))
    check_keys(entries, datasets[0], overrides=overrides_of(args, doc))
    seeds = args.seed_list if args.seed_list else pick(args.seeds, doc, "seeds", 1)
    seeds = parse_seeds(seeds, pick(args.base_seed, doc, "base_seed", BASE_SEED), datasets)
    return Grid(entries, datasets, seeds, listify(pick(args.config_files, doc, "config_files")), overrides_of(args, doc),
                known_datasets=listify(doc.get("datasets")), use_tuned=pick(args.use_tuned, doc, "use_tuned", bool(doc.get("tune"))))


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
    if jobs > 1:  # the longest cells first, by the store's own run times (the order changes no result)
        from recbole_recgoat.benchmark.todo import cells_longest_first

        todo = cells_longest_first(todo, store)
    per_seed = (", ".join(f"{d} {len(s)}" for d, s in seeds.items()) if isinstance(seeds, dict) else len(seeds))
    say(f"{len(cells)} cells ({len(entries)} rows x {len(datasets)} datasets, seeds: {per_seed}): "
        f"{len(cells) - len(todo) - len(copies)} finished, {len(todo)} to run"
        + (f", {len(copies)} the same run as another row" if copies else "") + f"; store {store.root}; "
        f"backend {pick(args.backend, doc, 'backend', 'local')}, jobs {jobs} x threads {threads}")
    if args.dry_run:
        for c in cells:
            same = f" (same run as {copies[c.key][1].describe()})" if c.key in copies else ""
            print(("done  " if c.key in finished else "todo  ") + c.describe() + same)
        return 0
    ok, failed = 0, 0
    if todo:
        ok, failed = runner.execute(todo, store, jobs=jobs, threads=threads,
                                    backend=pick(args.backend, doc, "backend", "local"),
                                    ray_address=pick(args.ray_address, doc, "ray_address"))
    if copies:
        n = runner.record_same_runs(copies, store)
        say(f"{n} of {len(copies)} rows recorded as the same run as another row (equal settings, not trained twice)")
    if not todo:
        return 0
    say(f"{ok} cells finished, {failed} failed" + (f" (see {store.root / 'failures.jsonl'})" if failed else ""))
    return 1 if failed else 0


def cmd_tune(args, doc, store=None, tasks=None):
    """``tune``: the searches of ``args`` (``store`` and ``tasks``: those already built and checked)."""
    from recbole_recgoat.benchmark import runner
    from recbole_recgoat.benchmark.tuning import tune_job

    store = store or _store(args, doc, write=True)
    tasks = _searches(args, doc, store) if tasks is None else tasks
    jobs, threads = _parallel(args, doc, sum(max(1, t.budget) for t in tasks))  # an exhaustive search's trials in parallel
    backend = pick(args.backend, doc, "backend", "local")
    if jobs > 1 and backend == "local":  # searches split into trials, the longest first (benchmark/pipeline.py)
        from recbole_recgoat.benchmark import pipeline

        with store.writer("benchmark tune"):
            counts, results = pipeline.tune_and_run(store, tasks, None, jobs, threads)
        _say_tuned(tasks, results)
        return 1 if counts["searches"][1] else 0
    if jobs > 1:  # the longest search first, by the store's own run times (the order changes no result)
        from recbole_recgoat.benchmark.todo import longest_first

        tasks = longest_first(tasks, store)
    say(f"tuning {len(tasks)} model x dataset pairs; store {store.root}; jobs {jobs} x threads {threads}")
    results = {}

    def on_result(task, out):
        results[task.key] = out
        if out.get("error"):
            say(f"FAILED {task.describe()}:\n{out['error'].rstrip()}")
            return False
        return True

    with store.writer("benchmark tune"):
        ok, failed = runner.execute(tasks, store, jobs=jobs, threads=threads, backend=backend,
                                    ray_address=pick(args.ray_address, doc, "ray_address"), fn=tune_job,
                                    on_result=on_result, unit="searches")
    _say_tuned(tasks, results)
    return 1 if failed else 0


def cmd_tune_and_run(tune_args, run_args, doc):
    """``tune`` and ``run`` of a yaml: one pool where a model's cells start when its search is written
    (:mod:`~recbole_recgoat.benchmark.pipeline`); one step after the other with jobs 1, Ray or
    cells that take no tuned parameters."""
    from recbole_recgoat.benchmark import pipeline

    grid = _grid(run_args, doc)
    store = _store(tune_args, doc, write=True)
    searches = _searches(tune_args, doc, store)
    jobs, threads = _parallel(run_args, doc, sum(max(1, t.budget) for t in searches) + len(grid.cells()))
    if jobs <= 1 or pick(run_args.backend, doc, "backend", "local") != "local" or not grid.use_tuned:
        return cmd_tune(tune_args, doc, store, searches) or cmd_run(run_args, doc)
    with store.writer("benchmark tune and run"):
        counts, results = pipeline.tune_and_run(store, searches, grid, jobs, threads)
    _say_tuned(searches, results)
    (s_ok, s_failed), (c_ok, c_failed) = counts["searches"], counts["cells"]
    say(f"{s_ok} searches and {c_ok} cells finished, {s_failed} searches and {c_failed} cells failed"
        + (f" (see {store.root / 'failures.jsonl'})" if c_failed else ""))
    return 1 if s_failed or c_failed else 0


def _searches(args, doc, store):
    """The searches of ``tune`` (:func:`~recbole_recgoat.benchmark.options.tune_tasks`), each checked
    before anything runs: its keys, a tuned file with other settings, its config."""
    from recbole_recgoat.benchmark.spec import check_keys
    from recbole_recgoat.benchmark.tuning import check_existing
    from recbole_recgoat.config import Config

    tasks = tune_tasks(args, doc)
    for t in tasks:
        check_keys([], t.dataset, {t.model: t.space})
    for t in tasks:
        check_existing(t, store)  # refuse before anything runs
    for t in tasks:  # the dataset, the overrides' keys and values: before the first trial
        Config(t.model, t.dataset, t.config_files or None, dict(t.overrides))
    for t in tasks:
        if not t.space:
            say(f"note: {t.model} has no search_space (properties/model/{t.model}.yaml): its defaults are recorded")
    return tasks


def _say_tuned(tasks, results):
    """One line per search: the chosen parameters, their validation score, the trials."""
    for t in tasks:
        tuned = (results.get(t.key) or {}).get("tuned")
        if tuned:
            sel = tuned.get("selection") or {}
            score = sel.get("best_valid_score")
            say(f"{t.model} on {t.dataset}: {tuned.get('params')} (valid {sel.get('valid_metric')} "
                f"{'n/a' if score is None else f'{score:.4f}'}, {tuned['budget']['evaluated']} trials)")


def cmd_leaderboard(args, doc, argv=None):
    from recbole_recgoat.benchmark import leaderboard

    store = _store(args, doc)
    ldoc = dict(doc.get("leaderboard") or {})
    out = pick(args.out, ldoc, "out", str(store.root / "leaderboard"))
    name = pick(args.name, ldoc, "name", "leaderboard")
    command = "python -m recbole_recgoat.benchmark " + " ".join(shlex.quote(a) for a in (argv or []))
    paths = leaderboard.build(
        store, out, name=name, tables=ldoc.get("tables"), headline=pick(args.headline, ldoc, "headline"),
        columns=listify(pick(args.columns, ldoc, "columns")),
        per_user_metrics=listify(pick(args.per_user_metrics, ldoc, "per_user_metrics")),
        title=pick(args.title, ldoc, "title"), focus=pick(args.focus, ldoc, "focus"),
        datasets=listify(pick(args.datasets, ldoc, "datasets")), command=command,
        figures=not args.no_figures and ldoc.get("figures", True), note=_note(args, ldoc),
        feature_labels=ldoc.get("feature_labels"), expected=expected_rows(doc), expected_seeds=expected_seeds(doc))
    say(f"wrote {paths['md']}, {len(paths['pages'])} dataset pages (.md, .tex), {paths['csv'].name}, "
        f"{paths['json'].name} and {len(paths['figures'])} figures")
    return 0


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
    if listify(doc.get("models")):
        from recbole_recgoat.benchmark.todo import grid_todo_lines

        print("\n".join(grid_todo_lines(doc, store, args.config)))
    return 0


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
                if step == "tune" and "run" in steps:  # one schedule for both (benchmark/pipeline.py)
                    rc = cmd_tune_and_run(sub_args, _args_for("run", args.config, args.store, parser)[0], doc) or rc
                elif step == "tune":
                    rc = cmd_tune(sub_args, doc) or rc
                elif step == "run":
                    if not (doc.get("tune") and "tune" in steps):
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
