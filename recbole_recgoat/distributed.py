"""Single- and multi-process runs (torch.distributed, as RecBole intends it).

``run_any`` runs in-process when ``nproc == 1`` and ``world_size <= 0``; otherwise it spawns
``nproc`` processes on this machine with ranks ``group_offset .. group_offset + nproc - 1`` of
``world_size``, each running :func:`recbole_recgoat.quick_start.run` with ``local_rank`` set
(gloo on CPU, NCCL on CUDA; see :class:`recbole_recgoat.config.Config`).  Rank 0's result is
returned.  The ranks share this machine's CPUs (each gets ``available CPUs // nproc`` threads
unless the user set ``OMP_NUM_THREADS`` or ``cpu_threads``) and die with the parent process.
"""

import os
from contextlib import contextmanager

from recbole_recgoat import threads
from recbole_recgoat.lifetime import die_with_parent
from recbole_recgoat.quick_start import run


def _worker(local_rank, kwargs, queue, parent_pid):
    die_with_parent(parent_pid)
    import torch.distributed as dist

    config_dict = dict(kwargs.pop("config_dict") or {})
    config_dict["local_rank"] = local_rank
    try:
        result = run(config_dict=config_dict, **kwargs)
        if local_rank == 0 and queue is not None:
            queue.put(result)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_any(model=None, dataset=None, config_file_list=None, config_dict=None, cmd_args=None,
            nproc=1, world_size=-1, ip="127.0.0.1", port="5678", group_offset=0, saved=True):
    """Run one training (see :func:`~recbole_recgoat.quick_start.run`), on one or more processes."""
    if nproc <= 1 and world_size <= 0:
        return run(model, dataset, config_file_list, config_dict, cmd_args, saved=saved)
    import torch.multiprocessing as mp

    world_size = nproc if world_size <= 0 else world_size
    config_dict = dict(config_dict or {})
    config_dict.update({"world_size": world_size, "ip": ip, "port": str(port), "nproc": nproc, "offset": group_offset})
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    kwargs = {"model": model, "dataset": dataset, "config_file_list": config_file_list,
              "config_dict": config_dict, "cmd_args": cmd_args, "saved": saved}
    with _child_threads(threads.share_of_cpus(nproc)):
        mp.start_processes(_worker, args=(kwargs, queue, os.getpid()), nprocs=nproc, join=True, start_method="spawn")
    return queue.get() if group_offset == 0 else None


@contextmanager
def _child_threads(share):
    """``OMP_NUM_THREADS=share`` in the environment the children inherit (restored afterwards);
    the policy marks it as its own, so ``cpu_threads: auto`` in a child keeps it."""
    if share is None:
        yield
        return
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", threads.MARKER)}
    os.environ["OMP_NUM_THREADS"] = str(share)
    marked = set(filter(None, os.environ.get(threads.MARKER, "").split(","))) | {"OMP_NUM_THREADS"}
    os.environ[threads.MARKER] = ",".join(sorted(marked))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
