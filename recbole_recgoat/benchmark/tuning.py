"""Hyper-parameter search per model and dataset through RecBole's ``HyperTuning``.

The grid of a model is the ``search_space:`` mapping (``param: [values...]``) of
``properties/model/<Model>.yaml`` (a yaml of the benchmark may replace it per model).  Every model
gets the same budget (``--max-evals``) and the same algorithm:

* ``exhaustive``: distinct grid points in a seeded random order, ``min(max_evals, grid size)`` of
  them: the whole grid when the budget covers it.  (RecBole 1.2.1's own ``exhaustive_search``
  cannot run on hyperopt >= 0.2.7: it hands a ``RandomState`` to hyperopt, which calls
  ``rng.integers``; :func:`grid_algo` is a hyperopt algorithm that does the same job.)
* ``random``: ``max_evals`` draws from the grid (hyperopt ``rand``; a repeated point reuses its
  result and still counts against the budget);
* ``bayes``: ``max_evals`` trials of TPE (hyperopt ``tpe``, ``n_startup_jobs`` = a third of the
  budget, at least 3 and at most 20, so TPE has trials left to act on small budgets).

RecBole's ``HyperTuning`` stops after 10 trials without progress; here that is switched off (it
would give models unequal budgets).  The search is seeded (``HYPEROPT_FMIN_SEED`` = the tuning
seed), and each trial trains with that seed.

Selection reads the VALIDATION split only.  A trial is ``quick_start.run`` itself with
``test=False``: ``trainer.fit`` on the training and validation loaders (early stopping on the
validation metric); the test loader that ``prepare`` builds is never read and nothing is
evaluated on it.  The chosen parameters, the budget and every trial (validation results only)
go to ``<store>/tuned/<model>-<dataset>.yaml``; ``run --use-tuned`` reads them.  Trials are also
appended to ``<store>/tuning/<model>-<dataset>-<tune_key>.jsonl`` as they finish, so a killed
tuning resumes without re-training the trials it had finished. With several workers an
``exhaustive`` search runs as its trials, one task each (:mod:`~recbole_recgoat.benchmark.trials`).

A trial's result depends on the model, the dataset, its parameters, the seed, the overrides and the
config files, not on the budget or the algorithm that proposed it (its ``run_key``).  So a search
that only raises the budget (or changes the algorithm) of an earlier one reuses that search's
finished trials: with ``exhaustive``, 10 trials are the 6 of a budget of 6 plus the next 4 grid
points.  The reused trial is copied into the new search's file with ``reused_from`` (its first
tune key and store); its ``train_time_s`` is the original one.  ``reuse_from`` (the benchmark
yaml's ``tune: reuse_from: [store, ...]``) names other stores whose trials count the same way (a
grid run in its own store first).  A change of model code that changes numbers needs a fresh store.
"""

import contextlib
import os
import sys
from collections import Counter
from functools import partial

import yaml

from recbole_recgoat.benchmark.grid import grid_algo, space_size
from recbole_recgoat.benchmark.spec import file_digest, short_hash
from recbole_recgoat.benchmark.store import append_line, read_lines
from recbole_recgoat.config import load_yaml
from recbole_recgoat.errors import InputError
from recbole_recgoat.utils.io import atomic_write

ALGOS = ("exhaustive", "random", "bayes")


class TuneTask:
    """One (model, dataset) search; picklable, run by :func:`tune_job` in any backend."""

    def __init__(self, model, dataset, space, algo="exhaustive", max_evals=10, seed=999,
                 config_files=None, overrides=None, force=False, reuse_from=None):
        if algo not in ALGOS:
            raise InputError(f"--algo {algo}: unknown; expected one of {', '.join(ALGOS)}")
        if int(max_evals) < 1:
            raise InputError(f"--max-evals {max_evals}: expected a positive budget")
        self.model, self.dataset, self.space = model, dataset, dict(space)
        self.algo, self.max_evals, self.seed = algo, int(max_evals), int(seed)
        self.config_files = [os.path.abspath(p) for p in (config_files or [])]
        self.overrides = dict(overrides or {})
        self.force = force
        self.reuse_from = [os.path.abspath(p) for p in (reuse_from or [])]
        self._digests = [file_digest(p) for p in self.config_files]
        self.key = self.key_with(algo, self.max_evals)
        self.entry = model

    def key_with(self, algo, max_evals):
        """The tune key of this search with another algorithm or budget."""
        return short_hash({
            "model": self.model, "dataset": self.dataset, "space": self.space, "algo": algo,
            "max_evals": int(max_evals), "seed": self.seed, "overrides": self.overrides,
            "config_files": self._digests,
        })

    def run_key(self, params):
        """What a trial's result depends on: model, dataset, parameters, seed, overrides, config files."""
        return short_hash({
            "model": self.model, "dataset": self.dataset, "params": dict(params), "seed": self.seed,
            "overrides": self.overrides, "config_files": self._digests,
        })

    def trial_key(self, params):
        """A trial of this search: its tune key and parameters (the key its trials file holds)."""
        return short_hash({"tune_key": self.key, "params": dict(params)})

    def other_budget_keys(self, largest=200):
        """Tune keys of the same search (grid, seed, overrides, config files) with another algorithm
        or a budget of 1 .. ``largest`` trials: their trials are this search's trials."""
        keys = {self.key_with(a, m) for a in ALGOS for m in range(1, max(largest, self.max_evals) + 1)}
        keys.discard(self.key)
        return keys

    @property
    def budget(self):
        """The trials this search runs: ``exhaustive`` ``min(max_evals, grid size)`` (the whole grid
        when the budget covers it), ``random`` and ``bayes`` ``max_evals``; 0 without a grid."""
        if not self.space:
            return 0
        return min(self.max_evals, space_size(self.space)) if self.algo == "exhaustive" else self.max_evals

    def describe(self):
        return f"tune {self.model} on {self.dataset} ({self.algo}, budget {self.max_evals}) [{self.key}]"

    def as_dict(self):
        return {k: getattr(self, k) for k in ("model", "dataset", "space", "algo", "max_evals", "seed",
                                               "config_files", "overrides", "force", "reuse_from")}

    @classmethod
    def from_dict(cls, d):
        return cls(**d)


def search_stores(task, store):
    """The stores whose trials a search may reuse: ``store`` first, then ``task.reuse_from``."""
    own = os.path.abspath(str(store.root))
    return [str(store.root)] + [r for r in task.reuse_from if os.path.abspath(r) != own]


def reusable_trials(task, store):
    """``{run_key: (trial, store_root)}``: finished trials of the same search under another budget
    or algorithm, in ``store`` and the stores of ``task.reuse_from`` (first found wins)."""
    from recbole_recgoat.benchmark.store import Store

    same_search = task.other_budget_keys()
    found = {}
    for root in search_stores(task, store):
        for path, tune_key in Store(root).trial_files(task.model, task.dataset):
            if tune_key == task.key:
                continue
            for t in read_lines(path)[0]:
                run_key = t.get("run_key")
                if run_key is None and tune_key in same_search:
                    run_key = task.run_key(t["params"])  # written before run keys: same search, so same identity
                if run_key is not None:
                    found.setdefault(run_key, (t, root))
    return found


def reuse_summary(task, store, reusable, own):
    """What a search starts from, said once: its own finished trials and, per store searched (its
    own and those of ``task.reuse_from``), the finished trials of other searches of this model and
    dataset that it reuses where a proposal has the same run key; a store that lacks the expected
    trials shows 0 before anything trains again."""
    per_store = Counter(root for _, root in reusable.values())
    found = ", ".join(f"{per_store[r]} in {os.path.basename(os.path.normpath(r))}" for r in search_stores(task, store))
    return f"{own} finished trials of its own; other searches' trials, reused by run key: {found}"


def train_trial(task, store, trials, values, reusable=None):
    """Train one configuration and return its VALIDATION result (the test split is never read)."""
    from recbole_recgoat import quick_start

    trial_key = task.trial_key(values)
    for t in trials:
        if t["trial_key"] == trial_key:
            return t
    run_key = task.run_key(values)
    if reusable and run_key in reusable:
        earlier, root = reusable[run_key]
        trial = dict(earlier)
        trial.pop("checksum", None)
        trial.update({"trial_key": trial_key, "tune_key": task.key, "run_key": run_key,
                      "reused_from": dict(earlier.get("reused_from") or
                                          {"tune_key": earlier["tune_key"], "store": os.path.basename(root)})})
        append_line(store.trials_path(task.model, task.dataset, task.key), trial)
        trials.append(trial)
        return trial
    cmd_args = dict(task.overrides)
    cmd_args["seed"] = task.seed
    cmd_args["checkpoint_dir"] = str(store.root / "tuning" / "checkpoints" / task.key)
    # selection on validation only: test=False never reads the test loader
    result = quick_start.run(task.model, task.dataset, task.config_files or None, dict(values), cmd_args,
                             saved=False, verbose=False, test=False)
    trial = {
        "trial_key": trial_key,
        "tune_key": task.key,
        "run_key": run_key,
        "model": task.model,
        "dataset": task.dataset,
        "params": values,
        "valid_metric": str(result["valid_metric"]).lower(),
        "valid_score_bigger": bool(result["config"]["valid_metric_bigger"]),
        "best_valid_score": result["best_valid_score"],
        "best_valid_result": result["best_valid_result"],
        "best_epoch": result["best_epoch"],
        "epochs_run": result["epochs_run"],
        "train_time_s": float(result["train_time_s"]),
    }
    append_line(store.trials_path(task.model, task.dataset, task.key), trial)
    trials.append(trial)
    return trial


def tune_job(task, store_root, threads=None):
    """Run one search; returns ``{'key', 'tuned', 'error'}`` (``tuned`` is what was written)."""
    import traceback

    from recbole_recgoat import compat  # noqa: F401  (shims before recbole, in a fresh process)
    from recbole_recgoat.benchmark.store import Store

    if isinstance(task, dict):
        task = TuneTask.from_dict(task)
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    store = Store(store_root)
    try:
        return {"key": task.key, "tuned": run_search(task, store), "error": None}
    except Exception:  # noqa: BLE001
        return {"key": task.key, "tuned": None, "error": traceback.format_exc()}


def check_existing(task, store):
    """The tuned document of ``task`` if it exists with the same settings; None if there is none.

    Raises :class:`InputError` when one exists with other settings (unless ``task.force``); the same
    search with another budget or algorithm is not a conflict: it is re-run, reusing its trials.
    """
    path = store.tuned_path(task.model, task.dataset)
    if not path.exists() or task.force:
        return None
    existing = load_yaml(path)
    if existing.get("tune_key") == task.key:
        return existing
    if existing.get("tune_key") in task.other_budget_keys():
        return None
    raise InputError(
        f"{path}: tuned with other settings (tune_key {existing.get('tune_key')} != {task.key}); "
        "expected --force to re-tune, or a separate --store"
    )


def run_search(task, store, echo=True):
    """The search of ``task``; writes and returns the tuned-parameters document (``echo``: a line
    per trial on the console)."""
    path = store.tuned_path(task.model, task.dataset)
    existing = check_existing(task, store)
    if existing is not None:
        print(f"{task.describe()}: already tuned ({path})", flush=True)
        return existing
    store.root.mkdir(parents=True, exist_ok=True)
    trials_file = store.trials_path(task.model, task.dataset, task.key)
    trials, _ = read_lines(trials_file)
    reusable = reusable_trials(task, store)
    print(f"{task.describe()}: {reuse_summary(task, store, reusable, len(trials))}", flush=True)
    evaluated = []
    if not task.space:
        doc = _document(task, {}, None, [], note=f"no search_space for {task.model}: its defaults are used")
    else:
        from hyperopt import hp, rand, tpe
        from recbole.trainer.hyper_tuning import HyperTuning

        names = list(task.space)
        hp_space = {n: hp.choice(n, list(range(len(task.space[n])))) for n in names}

        console = sys.stdout

        def objective(config_dict, _fixed_config_file_list=None):
            values = {n: task.space[n][int(config_dict[n])] for n in names}
            trial = train_trial(task, store, trials, values, reusable)
            evaluated.append(trial)
            reused = " (reused: same trial under budget/algorithm of tune key " \
                f"{trial['reused_from']['tune_key']})" if trial.get("reused_from") else ""
            if echo:
                print(f"[tune {task.model}/{task.dataset}] trial {len(evaluated)}/{budget}: {values} -> "
                      f"valid {trial['valid_metric']} {trial['best_valid_score']:.4f}{reused}", file=console, flush=True)
            return {"model": task.model, "best_valid_score": trial["best_valid_score"],
                    "valid_score_bigger": trial["valid_score_bigger"],
                    "best_valid_result": trial["best_valid_result"], "test_result": None}

        budget = task.budget
        if task.algo == "exhaustive":
            algo = grid_algo(task.space, task.seed)
        elif task.algo == "random":
            algo = rand.suggest
        else:
            algo = partial(tpe.suggest, n_startup_jobs=min(20, max(3, budget // 3)))
        tuner = HyperTuning(objective, space=hp_space, algo=algo, max_evals=budget, early_stop=budget + 1)
        old_seed = os.environ.get("HYPEROPT_FMIN_SEED")
        os.environ["HYPEROPT_FMIN_SEED"] = str(task.seed)
        log_path = store.root / "tuning" / f"{task.model}-{task.dataset}-{task.key}.hypertuning.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        try:  # HyperTuning prints every trial's parameters (as indices) and results: to a log file
            with open(log_path, "a", encoding="utf-8") as log, contextlib.redirect_stdout(log):
                tuner.run()
        finally:
            if old_seed is None:
                os.environ.pop("HYPEROPT_FMIN_SEED", None)
            else:
                os.environ["HYPEROPT_FMIN_SEED"] = old_seed
        best = select_best(evaluated)
        doc = _document(task, best["params"], best, evaluated)
    text = _header(task) + yaml.dump(doc, Dumper=_NoAliasDumper, sort_keys=False, default_flow_style=None, width=120)
    atomic_write(path, text.encode("utf-8"))
    print(f"{task.describe()}: chose {doc['params']} ({path})", flush=True)
    return doc


class _NoAliasDumper(yaml.SafeDumper):
    """Safe yaml without ``&id001`` anchors: a list value (``modalities: [text]``) shared by the
    chosen params and the trials is written out each time, as a reader expects."""

    def ignore_aliases(self, data):
        return True


def select_best(trials):
    """The trial with the best validation score (first one on ties, in evaluation order)."""
    if not trials:
        raise InputError("tuning: no trial finished")
    best = trials[0]
    for t in trials[1:]:
        better = t["best_valid_score"] > best["best_valid_score"] if t["valid_score_bigger"] \
            else t["best_valid_score"] < best["best_valid_score"]
        if better:
            best = t
    return best


def _header(task):
    return (f"# Tuned by `python -m recbole_recgoat.benchmark tune` ({task.algo}, budget {task.max_evals}, "
            f"seed {task.seed}).\n# Selected on the VALIDATION split only; the test split was never evaluated.\n"
            "# `run --use-tuned` uses `params`.\n")


def _document(task, params, best, evaluated, note=None):
    doc = {
        "model": task.model,
        "dataset": task.dataset,
        "params": dict(params),
        "selection": {
            "split": "valid",
            "valid_metric": best["valid_metric"] if best else None,
            "best_valid_score": best["best_valid_score"] if best else None,
            "best_valid_result": best["best_valid_result"] if best else None,
        },
        "budget": {
            "algo": task.algo,
            "max_evals": task.max_evals,
            "evaluated": len(evaluated),
            "distinct": len({t["trial_key"] for t in evaluated}),
            "space_size": space_size(task.space),
            "seed": task.seed,
        },
        "tune_key": task.key,
        "search_space": task.space,
        "overrides": task.overrides,
        "config_files": task.config_files,
        "trials": [{"params": t["params"], "best_valid_score": t["best_valid_score"],
                    "best_epoch": t["best_epoch"], "epochs_run": t["epochs_run"]} for t in evaluated],
    }
    if note:
        doc["note"] = note
    return doc
