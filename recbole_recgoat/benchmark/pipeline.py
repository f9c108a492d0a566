"""``tune`` and ``run`` as one schedule: a model's cells start as soon as its search is written.

Run one after the other, ``tune`` ends with its longest search alone while the other workers wait,
and ``run`` cannot start a cell until every search is done. The yaml form (``python -m
recbole_recgoat.benchmark --config grid.yaml``, steps ``tune`` and ``run``, jobs > 1, the local
backend) instead hands both to one process pool (:func:`tune_and_run`):

* the searches first, the longest first (:func:`~recbole_recgoat.benchmark.todo.longest_first`),
  an ``exhaustive`` one as its open trials (:mod:`~recbole_recgoat.benchmark.trials`: its points
  are fixed in advance), so the workers share a long search; then the cells of rows whose tuned
  parameters need no search here;
* each finished search (its last trial in, replayed in this process to write its tuned file) adds
  the cells of its model on its dataset (the model's own row and its variants), the longest first,
  behind the work already queued: a worker that would have waited for the last search trains them
  instead. A failed trial or search holds back its own cells only.

The results are those of ``tune`` then ``run``: each search draws its points from its own seed and
each cell trains from its own seed, whatever the order; only the parent process writes records.
"""

from concurrent.futures import FIRST_COMPLETED, wait

from recbole_recgoat.benchmark import runner
from recbole_recgoat.errors import InputError


def schedule(submit, work, on_done):
    """Run ``work`` and the work its results release, through ``submit``.

    Args:
        submit: ``submit(kind, task) -> Future``; the futures run in the order submitted (a pool's
            queue), so released work queues behind earlier work.
        work: ``[(kind, task)]`` submitted first, in this order.
        on_done: ``on_done(kind, task, out) -> (ok, [(kind, task)])``; the new work is submitted at once.

    Returns:
        dict: ``{kind: (ok, failed)}``.
    """
    pending = {submit(kind, task): (kind, task) for kind, task in work}
    counts = {}
    while pending:
        done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
        for fut in done:
            kind, task = pending.pop(fut)
            ok, more = on_done(kind, task, runner.outcome(fut))
            pending.update({submit(k, t): (k, t) for k, t in more})
            counts.setdefault(kind, [0, 0])[0 if ok else 1] += 1
    return {k: tuple(v) for k, v in counts.items()}


def tune_and_run(store, searches, grid, jobs, threads):
    """The searches ``searches`` and the cells of ``grid`` (a :class:`~recbole_recgoat.benchmark.spec.Grid`
    with ``use_tuned``; None: searches only) in one pool of ``jobs`` processes; the caller holds the
    store's writer lock.

    Returns ``(counts, results)``: ``{"searches" | "trials" | "cells": (ok, failed)}`` (a search
    counts once however it ran) and ``{search key: {"tuned": document} or {"error": text}}``.
    """
    from recbole_recgoat.benchmark import worker
    from recbole_recgoat.benchmark.spec import preflight
    from recbole_recgoat.benchmark.todo import cells_longest_first, longest_first
    from recbole_recgoat.benchmark.trials import open_trials, trial_job
    from recbole_recgoat.benchmark.tuned import tuned_for
    from recbole_recgoat.benchmark.tuning import check_existing, run_search, tune_job

    entries = grid.entries if grid is not None else []
    if grid is not None:
        preflight(grid.cells())  # rows, datasets and seeds with their default parameters, before anything runs
    searched = {(t.model, t.dataset) for t in searches}
    finished = store.finished_keys()
    copies = {}  # cells whose settings equal another's: recorded from it at the end

    def ready(cells):
        todo = [c for c in cells if c.key not in finished]
        same = runner.same_runs(todo, store)
        copies.update(same)
        return [("cell", c) for c in cells_longest_first([c for c in todo if c.key not in same], store)]

    first = []  # rows whose tuned parameters no search here writes: their tuned files must exist now
    for dataset in (grid.datasets if grid is not None else []):
        rows = [e for e in entries if (e.model, dataset) not in searched]
        if rows:
            first += grid.cells(tuned_for(store, rows, [dataset]) if grid.use_tuned else None, rows, [dataset])
    preflight(first)
    results, trials_left, failed_searches = {}, {}, set()
    search_progress = runner.GridProgress(len(searches), unit="searches")
    trial_progress = runner.GridProgress(0, unit="trials")
    cell_progress = runner.GridProgress(0, unit="cells")

    def cells_of(task):
        rows = [e for e in entries if e.model == task.model]
        if not rows:
            return []
        try:
            cells = grid.cells(tuned_for(store, rows, [task.dataset]), rows, [task.dataset])
            preflight(cells)
        except InputError as exc:
            runner.say(f"FAILED the cells of {task.model} on {task.dataset} after its search: {exc}")
            return []
        return ready(cells)

    def searched_one(task, out):
        """A search's end: its result, the progress line, its cells (queued)."""
        results[task.key] = out
        search_progress.tick(ok=not out.get("error"))
        if out.get("error"):
            runner.say(f"FAILED {task.describe()} (its cells wait for a rerun) {search_progress.text()}:\n"
                       f"{out['error'].rstrip()}")
            return False, []
        more = cells_of(task)
        cell_progress.total += len(more)
        runner.say(f"done {task.describe()} {search_progress.text()}: {len(more)} of its cells queued")
        return True, more

    def replay(task):
        try:
            return {"tuned": run_search(task, store, echo=False), "error": None}
        except Exception as exc:  # noqa: BLE001
            return {"tuned": None, "error": f"{exc.__class__.__name__}: {exc}"}

    def on_done(kind, task, out):
        if kind == "cell":
            return runner.store_result(store, task, out, cell_progress), []
        if kind == "search":
            return searched_one(task, out)
        search = task.search  # a trial
        trial_progress.tick(ok=not out.get("error"))
        trials_left[search.key] -= 1
        if out.get("error"):
            failed_searches.add(search.key)
            runner.say(f"FAILED {task.describe()} {trial_progress.text()}:\n{out['error'].rstrip()}")
        else:
            t = out["trial"]
            runner.say(f"[tune {search.model}/{search.dataset}] trial {task.values} -> valid {t['valid_metric']} "
                       f"{t['best_valid_score']:.4f} {trial_progress.text()}")
        if trials_left[search.key]:
            return not out.get("error"), []
        if search.key in failed_searches:
            searched_one(search, {"error": "a trial failed (above); rerun to resume the search"})
            return not out.get("error"), []
        return not out.get("error"), searched_one(search, replay(search))[1]

    work, released = [], []  # the searches' work first (the longest first), then the cells already free
    for task in longest_first(searches, store):
        existing = check_existing(task, store)
        if existing is not None:  # tuned before: its cells are free
            released += searched_one(task, {"tuned": existing, "error": None})[1]
        elif task.algo != "exhaustive":
            work.append(("search", task))  # random, bayes: the search runs whole in one worker
        else:
            trials = open_trials(task, store)
            trials_left[task.key] = len(trials)
            trial_progress.total += len(trials)
            work += [("trial", t) for t in trials]
            if not trials:  # every trial in hand (or no grid): replayed here, nothing trains
                released += searched_one(task, replay(task))[1]
    free = ready(first)
    cell_progress.total += len(free)  # (released cells were counted by searched_one)
    work += released + free
    fns = {"search": tune_job, "trial": trial_job, "cell": worker.run_cell}

    def submit(kind, task):
        return pool.submit(fns[kind], task.as_dict(), str(store.root), threads)

    runner.say(f"tuning {len(searches)} model x dataset pairs ({trial_progress.total} trials to train as tasks of their "
               f"own) and running the cells each releases; store {store.root}; jobs {jobs} x threads {threads}")
    with runner.local_pool(jobs, threads) as pool:
        counts = schedule(submit, work, on_done)
    if copies:
        n = runner.record_same_runs(copies, store)
        runner.say(f"{n} of {len(copies)} rows recorded as the same run as another row (equal settings, not trained twice)")
    counts = {"searches": (sum(1 for r in results.values() if not r.get("error")),
                           sum(1 for r in results.values() if r.get("error"))),
              "trials": counts.get("trial", (0, 0)), "cells": counts.get("cell", (0, 0))}
    return counts, results
