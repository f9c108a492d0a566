"""``tune`` and ``run`` as one schedule: a model's cells start as soon as its search is written.

Run one after the other, ``tune`` ends with its longest search alone while the other workers wait,
and ``run`` cannot start a cell until every search is done. The yaml form (``python -m
recbole_recgoat.benchmark --config grid.yaml``, steps ``tune`` and ``run``, jobs > 1, the local
backend) instead hands both to one process pool (:func:`tune_and_run`):

* the searches first, the longest first (:func:`~recbole_recgoat.benchmark.todo.longest_first`),
  then the cells of rows whose tuned parameters need no search here;
* each finished search adds the cells of its model on its dataset (the model's own row and its
  variants), the longest first, behind the work already queued: a worker that would have waited
  for the last search trains them instead. A failed search holds back its own cells only.

The results are those of ``tune`` then ``run``: each search draws its points from its own seed and
each cell trains from its own seed, whatever the order; only the parent process writes records.
"""

from concurrent.futures import FIRST_COMPLETED, wait

from recbole_recgoat.benchmark import runner
from recbole_recgoat.errors import InputError


def schedule(submit, searches, on_search, on_cell, cells=()):
    """Run ``searches`` and ``cells``, then the cells each search releases, through ``submit``.

    Args:
        submit: ``submit(kind, task) -> Future`` (``kind``: ``"search"`` or ``"cell"``); the futures
            run in the order submitted (a pool's queue), so released cells queue behind earlier work.
        searches: tasks submitted first.
        on_search: ``on_search(task, out) -> (ok, new_cells)``; ``new_cells`` are submitted at once.
        on_cell: ``on_cell(cell, out) -> ok``.
        cells: cells that wait for no search, submitted after the searches.

    Returns:
        dict: ``{"searches": (ok, failed), "cells": (ok, failed)}``.
    """
    pending = {submit("search", t): ("searches", t) for t in searches}
    pending.update({submit("cell", c): ("cells", c) for c in cells})
    counts = {"searches": [0, 0], "cells": [0, 0]}
    while pending:
        done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
        for fut in done:
            kind, task = pending.pop(fut)
            out = runner.outcome(fut)
            if kind == "searches":
                ok, new_cells = on_search(task, out)
                pending.update({submit("cell", c): ("cells", c) for c in new_cells})
            else:
                ok = on_cell(task, out)
            counts[kind][0 if ok else 1] += 1
    return {k: tuple(v) for k, v in counts.items()}


def tune_and_run(store, searches, grid, jobs, threads):
    """The searches ``searches`` and the cells of ``grid`` (a :class:`~recbole_recgoat.benchmark.spec.Grid`
    with ``use_tuned``) in one pool of ``jobs`` processes; the caller holds the store's writer lock.

    Returns ``(counts, results)``: :func:`schedule`'s counts and ``{search key: its result}``.
    """
    from recbole_recgoat.benchmark import worker
    from recbole_recgoat.benchmark.spec import preflight
    from recbole_recgoat.benchmark.todo import cells_longest_first, longest_first
    from recbole_recgoat.benchmark.tuned import tuned_for
    from recbole_recgoat.benchmark.tuning import tune_job

    preflight(grid.cells())  # rows, datasets and seeds with their default parameters, before anything runs
    searched = {(t.model, t.dataset) for t in searches}
    finished = store.finished_keys()
    copies = {}  # cells whose settings equal another's: recorded from it at the end

    def ready(cells):
        todo = [c for c in cells if c.key not in finished]
        same = runner.same_runs(todo, store)
        copies.update(same)
        return cells_longest_first([c for c in todo if c.key not in same], store)

    first = []  # rows whose tuned parameters no search here writes: their tuned files must exist now
    for dataset in grid.datasets:
        entries = [e for e in grid.entries if (e.model, dataset) not in searched]
        if entries:
            tuned = tuned_for(store, entries, [dataset]) if grid.use_tuned else None
            first += grid.cells(tuned, entries, [dataset])
    preflight(first)
    first = ready(first)
    search_progress = runner.GridProgress(len(searches), unit="searches")
    cell_progress = runner.GridProgress(len(first), unit="cells")
    results = {}

    def on_search(task, out):
        results[task.key] = out
        search_progress.tick(ok=not out.get("error"))
        if out.get("error"):
            runner.say(f"FAILED {task.describe()} (its cells wait for a rerun) {search_progress.text()}:\n"
                       f"{out['error'].rstrip()}")
            return False, []
        entries = [e for e in grid.entries if e.model == task.model]
        try:
            cells = grid.cells(tuned_for(store, entries, [task.dataset]), entries, [task.dataset])
            preflight(cells)
        except InputError as exc:
            runner.say(f"FAILED the cells of {task.model} on {task.dataset} after its search: {exc}")
            return False, []
        cells = ready(cells)
        cell_progress.total += len(cells)
        runner.say(f"done {task.describe()} {search_progress.text()}: {len(cells)} of its cells queued")
        return True, cells

    def submit(kind, task):
        fn = tune_job if kind == "search" else worker.run_cell
        return pool.submit(fn, task.as_dict(), str(store.root), threads)

    runner.say(f"tuning {len(searches)} model x dataset pairs and running the cells each releases ({len(first)} cells "
               f"wait for no search); store {store.root}; jobs {jobs} x threads {threads}")
    with runner.local_pool(jobs, threads) as pool:
        counts = schedule(submit, longest_first(searches, store), on_search,
                          lambda cell, out: runner.store_result(store, cell, out, cell_progress), cells=first)
    if copies:
        n = runner.record_same_runs(copies, store)
        runner.say(f"{n} of {len(copies)} rows recorded as the same run as another row (equal settings, not trained twice)")
    return counts, results
