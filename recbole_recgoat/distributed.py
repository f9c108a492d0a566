"""Single- and multi-process runs (torch.distributed, as RecBole intends it).

``run_any`` runs in-process when ``nproc == 1`` and ``world_size <= 0``; otherwise it spawns
``nproc`` processes on this machine with ranks ``group_offset .. group_offset + nproc - 1`` of
``world_size``, each running :func:`recbole_recgoat.quick_start.run` with ``local_rank`` set
(gloo on CPU, NCCL on CUDA; see :class:`recbole_recgoat.config.Config`).  Rank 0's result is
returned.
"""

from recbole_recgoat.quick_start import run


def _worker(local_rank, kwargs, queue):
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
    mp.start_processes(_worker, args=(kwargs, queue), nprocs=nproc, join=True, start_method="spawn")
    return queue.get() if group_offset == 0 else None
