"""Backends that run cells and append each finished one to the store.

``local`` (default): the cells left to run go to a ``ProcessPoolExecutor`` with the ``spawn``
context (``jobs`` processes, ``threads`` torch threads each, ``jobs x threads <= cores``); with
``jobs == 1`` they run one after another in this process.  Only this (parent) process writes
records, each as soon as its cell returns, so a killed benchmark loses at most the cells in
flight; the workers die with the parent (``PR_SET_PDEATHSIG`` on Linux).

Each finished cell says how far the grid is: cells done / total and an ETA (the wall time per
finished cell so far, which includes the parallelism, times the cells left; :class:`GridProgress`).

``ray`` (opt-in): the same cells as Ray tasks (``num_cpus = threads``) on the cluster that
``ray.init(address)`` joins (a local one when no address is given); results come back to this
process, which writes them to the same store.  Ray is imported only here, only for this backend.
"""

import contextlib
import os
import sys
import time

from recbole_recgoat.errors import InputError
from recbole_recgoat.utils.console import meter


def usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def plan_parallelism(n_tasks, jobs=None, threads=None, cores=None):
    """``(jobs, threads)`` with ``jobs x threads <= cores`` (jobs default: cores // threads)."""
    cores = cores or usable_cores()
    threads = max(1, int(threads)) if threads else None
    if jobs is None or int(jobs) <= 0:
        threads = threads or 1
        jobs = max(1, cores // threads)
    jobs = max(1, min(int(jobs), max(n_tasks, 1)))
    if threads is None:
        threads = max(1, cores // jobs)
    if jobs * threads > cores:
        print(f"note: jobs x threads = {jobs} x {threads} exceeds the {cores} usable cores", file=sys.stderr)
    return jobs, threads


def say(msg):
    """One line of the benchmark's own output, stamped with the time."""
    print(f"[benchmark {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def same_runs(todo, store):
    """``{cell key: (cell, the cell it copies)}`` for the cells of ``todo`` whose settings as
    written (dataset, seed, tuned parameters + overrides, benchmark overrides, config files; the
    :attr:`~recbole_recgoat.benchmark.spec.Cell.run_key`) equal a stored record's or an earlier
    cell's of ``todo``: a variant whose switch the tuning already chose, say ``lambda_ot: 0`` when
    the tuned ``lambda_ot`` is 0.  Such a cell is not trained again (:func:`record_same_runs`)."""
    from recbole_recgoat.benchmark.spec import Cell

    first = {}
    for rec in store.records():
        cell = Cell.from_dict(rec["cell"]) if rec.get("cell") else None
        if cell is not None:
            first.setdefault(cell.run_key, cell)
    copies = {}
    for cell in todo:
        earlier = first.setdefault(cell.run_key, cell)
        if earlier is not cell:
            copies[cell.key] = (cell, earlier)
    return copies


def record_same_runs(copies, store):
    """Store, for each ``{key: (cell, source cell)}`` whose source has a record, that record under
    the cell's key and row name, marked ``same_run_as`` (per-user values copied too).  Returns
    how many were written; one whose source failed waits for the next run."""
    by_key = {r["key"]: r for r in store.records()}
    written = 0
    for key, (cell, source) in copies.items():
        rec = by_key.get(source.key)
        if rec is None or key in by_key:
            continue
        copy = {k: v for k, v in rec.items() if k not in ("checksum", "per_user_file", "schema")}
        copy.update({"key": cell.key, "setting": cell.setting, "variant": cell.entry, "cell": cell.as_dict(),
                     "tuning": cell.tuning, "same_run_as": {"key": source.key, "variant": source.entry}})
        per_user = store.load_per_user(rec)
        if store.append_record(copy, per_user):
            store.log_event("same_run", cell.key, entry=cell.entry, seed=cell.seed, source=source.key)
            written += 1
    return written


class GridProgress:
    """Tasks done of ``total`` and the ETA of the rest, from the wall time since ``start``: tqdm's
    meter (:func:`~recbole_recgoat.utils.console.meter`), one line per finished task (a log, not a
    redrawn bar: the tasks' own lines interleave). ``unit`` names the tasks: ``cells`` of a run,
    ``searches`` (one model x dataset each) of a tuning."""

    def __init__(self, total, start=None, clock=time.time, unit="cells"):
        self.total, self.done, self.failed = int(total), 0, 0
        self.unit = unit
        self.clock = clock
        self.start = clock() if start is None else start

    def tick(self, ok=True):
        self.done += 1
        self.failed += 0 if ok else 1

    def text(self):
        failed = f", {self.failed} failed" if self.failed else ""
        text = meter("", self.done, self.total, self.clock() - self.start,
                     bar_format="{n_fmt}/{total_fmt} " + self.unit + failed + ", {elapsed}, ETA {remaining}")
        return f"[{text}]"


def store_result(store, cell, out, progress=None):
    suffix = ""
    if progress is not None:
        progress.tick(ok=not out.get("error"))
        suffix = " " + progress.text()
    if out.get("error"):
        store.record_failure(cell.key, {"cell": cell.as_dict(), "error": out["error"]})
        say(f"FAILED {cell.describe()}{suffix}:\n{out['error'].rstrip().splitlines()[-1]}")
        return False
    written = store.append_record(out["record"], out.get("per_user"))
    rec = out["record"]
    metric = (rec.get("valid_metric") or "").lower()
    test = rec.get("test_result", {}).get(metric)
    say(f"done {cell.describe()}: valid {metric} {rec.get('best_valid_score'):.4f}, test {test}, "
        f"{rec.get('wall_time_s', 0):.1f}s" + ("" if written else " (already stored by another writer)") + suffix)
    return True


def _with_progress(on_result, total, unit="cells"):
    """``on_result`` followed by a progress line (tasks done / total, ETA)."""
    progress = GridProgress(total, unit=unit)

    def handle(cell, out):
        ok = on_result(cell, out)
        progress.tick(ok=bool(ok))
        say(progress.text())
        return ok

    return handle


def execute(tasks, store, jobs=1, threads=1, backend="local", ray_address=None, fn=None, on_result=None, unit="cells"):
    """Run ``tasks`` (cells) with ``fn`` (default :func:`worker.run_cell`); returns ``(ok, failed)``.

    ``on_result(cell, out)`` handles each result (default: append it to the store); ``unit`` names
    the tasks in the progress lines.
    """
    from recbole_recgoat.benchmark import worker

    fn = fn or worker.run_cell
    tasks = list(tasks)
    if on_result is None:
        progress = GridProgress(len(tasks), unit=unit)
        on_result = lambda cell, out: store_result(store, cell, out, progress)  # noqa: E731
    else:
        on_result = _with_progress(on_result, len(tasks), unit)
    if backend == "ray":
        return _execute_ray(tasks, store, jobs, threads, ray_address, fn, on_result)
    if backend != "local":
        raise InputError(f"--backend {backend}: unknown; expected local or ray")
    ok = failed = 0
    if jobs <= 1:
        import torch

        before = torch.get_num_threads()
        try:
            for cell in tasks:
                if on_result(cell, fn(cell, str(store.root), threads)):
                    ok += 1
                else:
                    failed += 1
        finally:
            torch.set_num_threads(before)
        return ok, failed
    from concurrent.futures import as_completed

    with local_pool(jobs, threads) as pool:
        futures = {pool.submit(fn, cell.as_dict(), str(store.root), threads): cell for cell in tasks}
        for fut in as_completed(futures):
            if on_result(futures[fut], outcome(fut)):
                ok += 1
            else:
                failed += 1
    return ok, failed


@contextlib.contextmanager
def local_pool(jobs, threads):
    """A ``spawn`` process pool of ``jobs`` workers (``threads`` torch threads each, one GPU each when
    the machine has several), for :func:`execute` and :mod:`~recbole_recgoat.benchmark.pipeline`. A
    Ctrl-C stops the workers at once (waiting for their cells would take minutes) and is re-raised."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from recbole_recgoat.benchmark import worker

    ctx = mp.get_context("spawn")
    gpu_queue = None
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.device_count() > 1:
            gpu_queue = ctx.Manager().Queue()
            for i in range(jobs):
                gpu_queue.put(i % torch.cuda.device_count())
    except Exception:  # noqa: BLE001  pragma: no cover
        gpu_queue = None
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=worker.init_worker,
                             initargs=(threads, os.getpid(), gpu_queue)) as pool:
        try:
            yield pool
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                proc.terminate()
            raise


def outcome(future):
    """A finished task's result, or ``{"error": ...}`` when its worker raised or died."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        return future.result()
    except BrokenProcessPool as exc:
        return {"error": f"worker process died ({exc.__class__.__name__}: {exc})"}
    except Exception as exc:  # noqa: BLE001
        return {"error": f"{exc.__class__.__name__}: {exc}"}


def import_ray():
    """``ray``, or an :class:`InputError` saying in one line why it cannot be used."""
    try:
        import ray  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - ImportError, or numpy/setuptools breakage inside ray
        raise InputError(
            f"--backend ray: ray cannot be imported ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "expected pip install 'recbole-recgoat[ray]' (ray>=2.6 with numpy<2, setuptools<82), or use --backend local"
        ) from None
    return ray


def _execute_ray(tasks, store, jobs, threads, address, fn, on_result):
    ray = import_ray()
    from recbole_recgoat.paths import PACKAGE_DIR

    started_here = False
    if not ray.is_initialized():
        pkg_parent = str(PACKAGE_DIR.parent)
        env = {"PYTHONPATH": os.pathsep.join(p for p in [pkg_parent, os.environ.get("PYTHONPATH", "")] if p)}
        kwargs = {"include_dashboard": False, "runtime_env": {"env_vars": env}, "log_to_driver": True}
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=max(1, jobs * threads), **kwargs)
        started_here = True
    try:
        remote = ray.remote(num_cpus=threads, max_retries=0)(fn)
        refs = {}
        for cell in tasks:
            store.log_event("submit", cell.key, entry=cell.entry, seed=cell.seed, backend="ray")
            refs[remote.remote(cell.as_dict(), str(store.root), threads)] = cell
        ok = failed = 0
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    out = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a task that died
                    out = {"error": f"{exc.__class__.__name__}: {exc}"}
                if on_result(refs[ref], out):
                    ok += 1
                else:
                    failed += 1
        return ok, failed
    finally:
        if started_here:
            ray.shutdown()
