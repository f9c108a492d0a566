"""An ``exhaustive`` search as independent trials, for a process pool (:mod:`~recbole_recgoat.benchmark.pipeline`).

The points an ``exhaustive`` search evaluates are fixed before it starts: the first ``budget`` of
its seeded grid order (:func:`~recbole_recgoat.benchmark.grid.grid_order`). Its trials do not
depend on each other, so each open point (no finished trial of the search, none to reuse) is one
:class:`TrialTask` that any worker trains (:func:`trial_job`, which appends the trial to the
search's file like the search itself does). When the last one is in, the search is replayed in the
parent (:func:`~recbole_recgoat.benchmark.tuning.run_search`: every proposal finds its trial, nothing
trains) and writes the same tuned document, trials in the same order, as one worker would have.
``random`` and ``bayes`` searches stay whole (a ``bayes`` proposal depends on the earlier trials).
"""

from recbole_recgoat.benchmark.grid import grid_order
from recbole_recgoat.benchmark.store import read_lines


class TrialTask:
    """One point of a search (``values``: ``{param: value}``); picklable as :meth:`as_dict`."""

    def __init__(self, search, values):
        self.search, self.values = search, dict(values)
        self.model, self.dataset = search.model, search.dataset
        self.key = search.trial_key(self.values)

    def describe(self):
        return f"trial {self.values} of {self.search.describe()}"

    def as_dict(self):
        return {"search": self.search.as_dict(), "values": self.values}


def search_points(task):
    """``[{param: value}]``: the points an ``exhaustive`` search evaluates, in its order."""
    names = list(task.space)
    return [{n: task.space[n][int(point[n])] for n in names} for point in grid_order(task.space, task.seed)[:task.budget]]


def open_trials(task, store):
    """The :class:`TrialTask` of each point of ``task`` (``exhaustive``) that still needs training:
    no finished trial of its own, none of another search to reuse by run key."""
    from recbole_recgoat.benchmark.tuning import reusable_trials

    own = {t["trial_key"] for t in read_lines(store.trials_path(task.model, task.dataset, task.key))[0]}
    reusable = reusable_trials(task, store)
    todo = [TrialTask(task, v) for v in search_points(task)]
    return [t for t in todo if t.key not in own and task.run_key(t.values) not in reusable]


def trial_job(job, store_root, threads=None):
    """Train one :class:`TrialTask` (as its dict) in a worker; returns ``{"trial", "error"}``."""
    import traceback

    from recbole_recgoat import compat  # noqa: F401  (shims before recbole, in a fresh process)
    from recbole_recgoat.benchmark.store import Store
    from recbole_recgoat.benchmark.tuning import TuneTask, train_trial

    if threads:
        import torch

        torch.set_num_threads(int(threads))
    try:
        task = TuneTask.from_dict(job["search"])
        return {"trial": train_trial(task, Store(store_root), [], dict(job["values"])), "error": None}
    except Exception:  # noqa: BLE001
        return {"trial": None, "error": traceback.format_exc()}
