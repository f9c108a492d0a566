"""What a benchmark configuration still needs from its store, per dataset: the searches not done at
the configured budget (with the trials they already have) and the seed cells not finished, split
into those ``run`` trains next and those that wait for their search. ``status --config`` prints it,
so that a grid resumed over several sessions says how much is left before it starts.
"""

from collections import OrderedDict


def search_state(task, store):
    """``(state, trials in hand, budget)`` of one search: ``state`` is "done" (tuned at this
    budget), "other settings" (tuned under other settings: ``tune`` refuses without ``--force``) or
    "to run". Trials in hand: of the points an exhaustive search will propose, those with a finished
    trial of its own or one it reuses by run key (:func:`~recbole_recgoat.benchmark.tuning.reusable_trials`);
    for another algorithm, its own finished trials."""
    from recbole_recgoat.benchmark.grid import grid_order
    from recbole_recgoat.benchmark.store import read_lines
    from recbole_recgoat.benchmark.tuning import check_existing, reusable_trials
    from recbole_recgoat.errors import InputError

    budget = task.budget
    try:
        if check_existing(task, store) is not None:
            return "done", budget, budget
    except InputError:
        return "other settings", 0, budget
    own, _ = read_lines(store.trials_path(task.model, task.dataset, task.key))
    if task.algo != "exhaustive":
        return "to run", len(own), budget
    have = {t.get("run_key") or task.run_key(t["params"]) for t in own} | set(reusable_trials(task, store))
    points = [{n: task.space[n][i] for n, i in p.items()} for p in grid_order(task.space, task.seed)[:budget]]
    return "to run", sum(task.run_key(v) in have for v in points), budget


def remaining(store, tasks, entries, datasets, seeds, config_files=None, overrides=None, use_tuned=True):
    """``{dataset: {"searches": [(model, state, trials in hand, budget)], "cells": n, "finished": n,
    "to_run": n, "same_run": n, "wait_for_search": n}}``: what the grid of ``tasks`` (its searches,
    :class:`~recbole_recgoat.benchmark.tuning.TuneTask`) and ``entries`` x ``datasets`` x ``seeds``
    (its cells, built as ``run`` builds them) still needs from ``store``."""
    from recbole_recgoat.benchmark import runner
    from recbole_recgoat.benchmark.spec import build_cells
    from recbole_recgoat.benchmark.tuned import tuned_for

    out = OrderedDict((d, {"searches": [], "cells": 0, "finished": 0, "to_run": 0, "same_run": 0,
                           "wait_for_search": 0}) for d in datasets)
    for task in tasks:
        out[task.dataset]["searches"].append((task.model,) + search_state(task, store))
    tuned = tuned_for(store, entries, datasets, required=False) if use_tuned else None
    finished = store.finished_keys()
    todo = []
    for dataset in datasets:
        for entry in entries:
            if use_tuned and (entry.model, dataset) not in tuned:  # its cells' settings are not known yet
                n = len(build_cells([entry], [dataset], seeds, known_datasets=datasets))
                out[dataset]["cells"] += n
                out[dataset]["wait_for_search"] += n
                continue
            cells = build_cells([entry], [dataset], seeds, config_files, overrides, tuned, known_datasets=datasets)
            out[dataset]["cells"] += len(cells)
            out[dataset]["finished"] += sum(c.key in finished for c in cells)
            todo += [c for c in cells if c.key not in finished]
    copies = runner.same_runs(todo, store)
    for c in todo:
        out[c.dataset]["same_run" if c.key in copies else "to_run"] += 1
    return out


def todo_lines(rem, config_path):
    """The lines ``status --config`` prints after the store's contents, from :func:`remaining`."""
    lines = [f"what {config_path} still needs:"]
    for dataset, r in rem.items():
        s = r["searches"]
        done = sum(state == "done" for _, state, _, _ in s)
        text = f"  {dataset:<14} "
        if s:
            rest = [f"{m} {own}/{budget} trials" + (" (tuned with other settings: --force)" if state == "other settings" else "")
                    for m, state, own, budget in s if state != "done"]
            text += f"searches {done}/{len(s)} done" + (f" (to run: {', '.join(rest)})" if rest else "") + "; "
        text += f"cells {r['finished']}/{r['cells']} finished, {r['to_run']} to run"
        if r["same_run"]:
            text += f", {r['same_run']} the same run as another row"
        if r["wait_for_search"]:
            text += f", {r['wait_for_search']} wait for their search"
        lines.append(text)
    trials = sum(budget - have for r in rem.values() for _, state, have, budget in r["searches"] if state != "done")
    lines.append(f"  in all: {trials} trials and {sum(r['to_run'] for r in rem.values())} cells to run, "
                 f"{sum(r['wait_for_search'] for r in rem.values())} cells after their search")
    return lines


def grid_todo_lines(doc, store, config_path):
    """What the benchmark yaml ``doc`` still needs from ``store``, as ``status --config`` prints it:
    its searches and cells built as ``tune`` and ``run`` build them with no option given."""
    from recbole_recgoat.benchmark.options import listify, overrides_of, pick, tune_tasks, variants_of, yaml_only
    from recbole_recgoat.benchmark.spec import BASE_SEED, DEFAULT_DATASET, build_entries, parse_seeds

    none_given = yaml_only()
    datasets = listify(doc.get("datasets")) or [DEFAULT_DATASET]
    rem = remaining(store, tune_tasks(none_given, doc) if doc.get("tune") else [],
                    build_entries(listify(doc.get("models")), variants_of(none_given, doc)), datasets,
                    parse_seeds(pick(None, doc, "seeds", 1), pick(None, doc, "base_seed", BASE_SEED), datasets),
                    listify(doc.get("config_files")), overrides_of(none_given, doc),
                    use_tuned=bool(pick(None, doc, "use_tuned", bool(doc.get("tune")))))
    return todo_lines(rem, config_path)
