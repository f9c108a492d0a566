"""One cell, run in whatever process the backend chose: :func:`recbole_recgoat.quick_start.run`.

The cell runs through the function ``run_recbole.py`` calls, with the same config layering, asking
it for the per-user test metrics too: the plugin's trainer records which user each evaluated row
is, and computes each user's values with RecBole's own metric classes (the very arrays RecBole
averages; their mean is checked against the reported test metric, see
:meth:`recbole_recgoat.trainer.PluginTrainerMixin.per_user_metrics`).
"""

import os
import signal
import socket
import time
import traceback

from recbole_recgoat.lifetime import die_with_parent


def run_cell(cell, store_root=None, threads=None):
    """Run one cell (a :class:`~recbole_recgoat.benchmark.spec.Cell` or its dict).

    Returns ``{'key', 'record', 'per_user', 'error'}``: the record is json-able; ``error`` is a
    traceback string when the cell raised (then ``record`` is None).
    """
    import torch

    from recbole_recgoat import compat  # noqa: F401  (shims before recbole, in a fresh process)
    from recbole_recgoat import quick_start
    from recbole_recgoat.benchmark.spec import Cell
    from recbole_recgoat.benchmark.store import Store

    if isinstance(cell, dict):
        cell = Cell.from_dict(cell)
    store = Store(store_root) if store_root else None
    if threads:
        torch.set_num_threads(int(threads))
    if store is not None:
        try:
            store.log_event("start", cell.key, entry=cell.entry, seed=cell.seed)
        except OSError:  # a remote worker without the store's folder
            pass
    checkpoint_dir = store.checkpoint_dir(cell.key) if store is not None else os.path.join("saved", cell.key)
    if store is not None:
        try:
            stale = store.clean_checkpoints(cell.key)  # a killed attempt's checkpoint is never mistaken for this one's
            if stale:
                store.log_event("cleaned", cell.key, files=",".join(stale))
        except OSError:  # a remote worker without the store's folder
            pass
    started = time.time()
    try:
        result = quick_start.run(**cell.run_kwargs(checkpoint_dir), per_user=True)
        per_user = result.pop("per_user")
    except Exception:  # noqa: BLE001 - a failed cell is reported, the benchmark goes on
        return {"key": cell.key, "record": None, "per_user": None, "error": traceback.format_exc()}
    finished = time.time()
    record = dict(result)
    record.update({
        "key": cell.key,
        "setting": cell.setting,
        "variant": cell.entry,
        "cell": cell.as_dict(),
        "tuning": cell.tuning,
        "valid_curve": [[int(e), float(s)] for e, s in result.get("valid_curve") or []],
        "per_user_metrics": sorted(k for k in (per_user or {}) if k != "user"),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(finished)),
        "wall_time_s": finished - started,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "threads": torch.get_num_threads(),
    })
    return {"key": cell.key, "record": record, "per_user": per_user, "error": None}


def init_worker(threads, parent_pid, gpu_queue=None):
    """Process-pool initializer: die with the parent, pin threads (and a GPU when given). A Ctrl-C
    reaches the whole process group: the parent alone answers it (it stops the workers), so a
    worker ignores SIGINT instead of printing a traceback per cell."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent_pid)
    if gpu_queue is not None:
        try:
            os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_queue.get(timeout=5))
        except Exception:  # noqa: BLE001  pragma: no cover
            pass
    import torch

    torch.set_num_threads(max(1, int(threads)))
