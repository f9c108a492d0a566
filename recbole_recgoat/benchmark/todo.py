"""What a benchmark configuration still needs from its store, per dataset: the searches not done at
the configured budget (with the trials they already have) and the seed cells not finished, split
into those ``run`` trains next and those that wait for their search, and the time that will take
at the store's own pace. ``status --config`` prints it, so that a grid resumed over several
sessions says how much is left before it starts.
"""

from collections import OrderedDict, defaultdict

from recbole_recgoat.utils.io import canonical_json


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
    "to_run": n, "same_run": n, "wait_for_search": n, "left": {row: {"trials": n, "cells": n, "model": M,
    "params": a cell's config_dict}}}}``: what the grid of ``tasks`` (its searches,
    :class:`~recbole_recgoat.benchmark.tuning.TuneTask`) and ``entries`` x ``datasets`` x ``seeds``
    (its cells, built as ``run`` builds them) still needs from ``store``."""
    from recbole_recgoat.benchmark import runner
    from recbole_recgoat.benchmark.spec import build_cells
    from recbole_recgoat.benchmark.tuned import tuned_for

    out = OrderedDict((d, {"searches": [], "cells": 0, "finished": 0, "to_run": 0, "same_run": 0,
                           "wait_for_search": 0, "left": {}})
                      for d in datasets)
    for task in tasks:
        state = search_state(task, store)
        out[task.dataset]["searches"].append((task.model,) + state)
        if state[0] != "done":
            _left(out[task.dataset], task.model, task.model)["trials"] += state[2] - state[1]
    tuned = tuned_for(store, entries, datasets, required=False) if use_tuned else None
    finished = store.finished_keys()
    todo = []
    for dataset in datasets:
        for entry in entries:
            if use_tuned and (entry.model, dataset) not in tuned:  # its cells' settings are not known yet
                n = len(build_cells([entry], [dataset], seeds, known_datasets=datasets))
                out[dataset]["cells"] += n
                out[dataset]["wait_for_search"] += n
                _left(out[dataset], entry.name, entry.model)["cells"] += n
                continue
            cells = build_cells([entry], [dataset], seeds, config_files, overrides, tuned, known_datasets=datasets)
            out[dataset]["cells"] += len(cells)
            out[dataset]["finished"] += sum(c.key in finished for c in cells)
            todo += [c for c in cells if c.key not in finished]
    copies = runner.same_runs(todo, store)
    for c in todo:
        out[c.dataset]["same_run" if c.key in copies else "to_run"] += 1
        if c.key not in copies:
            left = _left(out[c.dataset], c.entry, c.model)
            left["cells"] += 1
            left["params"] = c.config_dict  # a row's cells on a dataset share it
    return out


def _left(per_dataset, row, model):
    """The runs left of one leaderboard row (a model's searches count under the model's name)."""
    return per_dataset["left"].setdefault(row, {"trials": 0, "cells": 0, "model": model})


def point_key(params):
    """One text per setting (a trial's ``params``, a cell's ``config_dict``), for :func:`run_times`."""
    return canonical_json(params or {})


def run_times(store):
    """``({(name, dataset): {"trial": [s, ...], "cell": [s, ...], "point": {setting: [s, ...]}}}, wall
    factor)``: the training time (``train_time_s``, at the jobs and threads they ran with) of the
    store's finished trials (``name``: their model) and cells (``name``: their leaderboard row, so a
    variant such as a longer patience keeps its own pace), also per setting (:func:`point_key` of a
    trial's parameters or a cell's ``config_dict``: a tuned row's cells train as its chosen trial
    did), and the records' wall time over their training time (setup, test; 1.0 without records)."""
    from recbole_recgoat.benchmark.store import read_lines

    times, wall, train = defaultdict(lambda: {"trial": [], "cell": [], "point": defaultdict(list)}), 0.0, 0.0
    folder = store.root / "tuning"
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        for t in read_lines(path)[0]:
            if t.get("model") and t.get("dataset") and t.get("train_time_s") is not None:
                v = times[(t["model"], t["dataset"])]
                v["trial"].append(float(t["train_time_s"]))
                v["point"][point_key(t.get("params"))].append(float(t["train_time_s"]))
    for r in store.records():
        if r.get("model") and r.get("dataset") and r.get("train_time_s") is not None:
            v = times[(r.get("variant") or r["model"], r["dataset"])]
            v["cell"].append(float(r["train_time_s"]))
            v["point"][point_key((r.get("cell") or {}).get("config_dict"))].append(float(r["train_time_s"]))
            if r.get("wall_time_s") is not None:
                wall, train = wall + float(r["wall_time_s"]), train + float(r["train_time_s"])
    return times, (wall / train if wall and train else 1.0)


def _mean(xs):
    return sum(xs) / len(xs)


def seconds_per_run(times, model, dataset, kind, base=None, params=None):
    """``(seconds, borrowed)``: the mean time of ``model``'s finished runs on ``dataset`` with the
    setting ``params`` (trials and cells alike; a cell's ``config_dict``) if given and any ran, else
    of ``kind`` ("trial" or "cell") if any, else of the other kind. Without any there (``borrowed`` True): the
    mean over the other datasets with runs of the model, each scaled by the median ratio of trial
    times (``dataset`` over it) of the models that ran on both. ``model`` may be a variant row
    (:func:`run_times` keys cells by row); with no run of it at all, the same for ``base`` (its
    model). ``(None, False)`` when the store has no run of either."""
    def mean_of(m, d, first=kind):
        v = times.get((m, d)) or {}
        for k in (first, "cell" if first == "trial" else "trial"):
            if v.get(k):
                return _mean(v[k])
        return None

    same = ((times.get((model, dataset)) or {}).get("point") or {}).get(point_key(params)) if params is not None else None
    if same:
        return _mean(same), False
    own = mean_of(model, dataset)
    if own is not None:
        return own, False
    scaled = []
    for other in sorted({d for m, d in times if m == model and d != dataset}):
        ratios = sorted(a / b for m in {m for m, _ in times}
                        for a, b in [(mean_of(m, dataset, "trial"), mean_of(m, other, "trial"))] if a is not None and b)
        scaled.append(mean_of(model, other) * (ratios[len(ratios) // 2] if ratios else 1.0))
    if scaled:
        return _mean(scaled), True
    return seconds_per_run(times, base, dataset, kind, params=params) if base and base != model else (None, False)


def longest_first(tasks, store):
    """``tasks`` (searches) in the order ``tune`` hands them to its workers: the longest estimated
    first (trials left x :func:`seconds_per_run`), so that the last search to start is a short one
    and the workers finish together. A search without an estimate counts as the longest, a done
    one as the shortest; ties keep the given order (a store without runs keeps the yaml's order).
    The order changes no result: each search draws its points from its own seed."""
    times, _ = run_times(store)

    def left(task):
        state, have, budget = search_state(task, store)
        if state != "to run":
            return 0.0
        sec, _ = seconds_per_run(times, task.model, task.dataset, "trial")
        return float("inf") if sec is None else (budget - have) * sec

    return sorted(tasks, key=lambda t: -left(t))


def cells_longest_first(cells, store):
    """``cells`` in the order ``run`` hands them to its workers: the longest first by the mean time
    of the runs of their setting, else of their row's finished cells on the dataset
    (:func:`seconds_per_run`; none: first), ties in the given order. As for searches, the order
    changes no result (each cell has its own seed)."""
    times, _ = run_times(store)
    rows = {(c.entry, c.dataset): c for c in cells}  # a row's cells on a dataset share their setting
    seconds = {k: seconds_per_run(times, c.entry, c.dataset, "cell", base=c.model, params=c.config_dict)[0]
               for k, c in rows.items()}
    seconds = {k: float("inf") if v is None else v for k, v in seconds.items()}
    return sorted(cells, key=lambda c: -seconds[(c.entry, c.dataset)])


def estimate_lines(rem, store, jobs):
    """How long the runs :func:`remaining` counted will take, per dataset and in all: each run at the
    mean training time of the same setting's finished runs, else the same row's or model's
    (:func:`seconds_per_run`), times the records' wall-over-training factor (:func:`run_times`),
    split over ``jobs``. Runs of a model the store has never finished are listed without an estimate."""
    (times, factor), total, lines, unknown = run_times(store), 0.0, [], []
    for dataset, r in rem.items():
        hours, borrowed = {"trial": 0.0, "cell": 0.0}, []
        for row, n in sorted(r["left"].items()):
            missing = []
            for kind in ("trial", "cell"):
                count = n[kind + "s"]
                if not count:
                    continue
                sec, lent = seconds_per_run(times, row, dataset, kind, base=n["model"],
                                            params=n.get("params") if kind == "cell" else None)
                if sec is None:
                    missing.append(f"{count} {kind}" + ("s" if count != 1 else ""))
                    continue
                hours[kind] += count * sec * factor / 3600
                if lent and row not in borrowed:
                    borrowed.append(row)
            if missing:
                unknown.append(f"{row} on {dataset} ({', '.join(missing)})")
        if hours["trial"] or hours["cell"]:
            lines.append(f"    {dataset:<14} trials {hours['trial']:.1f} h, cells {hours['cell']:.1f} h"
                         + (f" ({', '.join(borrowed)}: scaled from other datasets)" if borrowed else ""))
        total += hours["trial"] + hours["cell"]
    out = []
    if lines:
        head = ("  time left (each run at the mean training time of its setting's finished runs on the dataset in this "
                f"store, else of its model's, else scaled from its other datasets; x{factor:.2f}, the records' wall "
                "over training time):")
        out = [head] + lines + [f"    in all         {total:.1f} h of runs, about {total / max(jobs, 1):.1f} h at jobs {jobs}"
                                + (" (and the runs without an estimate below)" if unknown else "")]
    if unknown:
        out.append(f"  no time estimate yet (no finished run of the model in this store): {', '.join(unknown)}")
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
    trials = sum(n["trials"] for r in rem.values() for n in r["left"].values())
    lines.append(f"  in all: {trials} trials and {sum(r['to_run'] for r in rem.values())} cells to run, "
                 f"{sum(r['wait_for_search'] for r in rem.values())} cells after their search")
    return lines


def grid_todo_lines(doc, store, config_path):
    """What the benchmark yaml ``doc`` still needs from ``store``, as ``status --config`` prints it:
    its searches and cells built as ``tune`` and ``run`` build them with no option given."""
    from recbole_recgoat.benchmark.options import listify, overrides_of, pick, tune_tasks, variants_of, yaml_only
    from recbole_recgoat.benchmark.runner import plan_parallelism
    from recbole_recgoat.benchmark.spec import BASE_SEED, DEFAULT_DATASET, build_entries, parse_seeds

    none_given = yaml_only()
    datasets = listify(doc.get("datasets")) or [DEFAULT_DATASET]
    rem = remaining(store, tune_tasks(none_given, doc) if doc.get("tune") else [],
                    build_entries(listify(doc.get("models")), variants_of(none_given, doc)), datasets,
                    parse_seeds(pick(None, doc, "seeds", 1), pick(None, doc, "base_seed", BASE_SEED), datasets),
                    listify(doc.get("config_files")), overrides_of(none_given, doc),
                    use_tuned=bool(pick(None, doc, "use_tuned", bool(doc.get("tune")))))
    jobs, _ = plan_parallelism(1 << 20, pick(None, doc, "jobs"), pick(None, doc, "threads"))  # as run and tune pick them
    return todo_lines(rem, config_path) + estimate_lines(rem, store, jobs)
