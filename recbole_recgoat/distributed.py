"""torch.distributed as RecBole intends it: the device and process group of a rank, and its launch.

A config with ``local_rank`` is one rank of a data-parallel run (RecBole's keys: ``world_size``,
``ip``, ``port``, ``nproc``, ``offset`` = rank of this machine's first process).

* :func:`rank_device` - what the Config sets for a rank: its device (``cuda:<local_rank>`` when
  the run uses CUDA, else the CPU; ``use_gpu`` says which), ``single_spec: False``, and quiet
  logging on ranks other than 0 (only rank 0 prints).
* :func:`join_process_group` - the rank joins the group before any dataloader is built: NCCL on
  CUDA, gloo on CPU (RecBole 1.2.1 always asks for NCCL), or ``dist_backend`` when set.
* :func:`launch` - ``nproc`` processes on this machine, ranks ``offset .. offset + nproc - 1`` of
  ``world_size``, each calling ``fn(config_dict=..., **kwargs)`` with its ``local_rank``; rank 0's
  return value comes back (see :func:`recbole_recgoat.quick_start.run_any`). The ranks share this
  machine's CPUs (each gets ``available CPUs // nproc`` threads unless the user set
  ``OMP_NUM_THREADS`` or ``cpu_threads``) and die with the process that launched them.
"""

import os
from contextlib import contextmanager

import torch

from recbole_recgoat import threads
from recbole_recgoat.lifetime import die_with_parent


def rank_device(cfg):
    """Set ``device``, ``gpu_id`` (a string), ``single_spec`` and the logging keys of the rank
    ``cfg['local_rank']`` in the config dict ``cfg``."""
    gpu_id = cfg["gpu_id"]
    gpu_id = ",".join(map(str, gpu_id)) if isinstance(gpu_id, (tuple, list)) else str(gpu_id)
    cfg["gpu_id"] = gpu_id
    use_cuda = bool(cfg["use_gpu"]) and len(gpu_id) > 0 and torch.cuda.is_available()
    cfg["device"] = torch.device("cuda", cfg["local_rank"]) if use_cuda else torch.device("cpu")
    cfg["use_gpu"] = use_cuda  # as used
    cfg["single_spec"] = False
    if cfg["local_rank"] != 0:
        cfg["state"] = "error"
        cfg["show_progress"] = False
        cfg["verbose"] = False
        cfg["console"] = "quiet"


def join_process_group(config):
    """Join the process group of a multi-process run (nothing for a single-process one)."""
    if config["single_spec"]:
        return
    device = config["device"]
    backend = config["dist_backend"] or ("nccl" if device.type == "cuda" else "gloo")
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(
            backend=backend,
            rank=config["local_rank"] + config["offset"],
            world_size=config["world_size"],
            init_method=f"tcp://{config['ip']}:{config['port']}",
        )
    if device.type == "cuda":
        torch.cuda.set_device(config["local_rank"])


def _rank(local_rank, fn, kwargs, queue, parent_pid):
    """One spawned rank: ``fn`` with ``local_rank`` in its ``config_dict``; rank 0 reports back."""
    die_with_parent(parent_pid)
    config_dict = dict(kwargs.pop("config_dict") or {})
    config_dict["local_rank"] = local_rank
    try:
        result = fn(config_dict=config_dict, **kwargs)
        if local_rank == 0 and queue is not None:
            queue.put(result)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def launch(fn, kwargs, nproc, world_size=-1, ip="127.0.0.1", port="5678", group_offset=0):
    """Spawn ``nproc`` ranks running ``fn`` (a module-level function); rank 0's result, or None on
    a machine whose first rank is not 0."""
    import torch.multiprocessing as mp

    world_size = nproc if world_size <= 0 else world_size
    kwargs = dict(kwargs)
    config_dict = dict(kwargs.get("config_dict") or {})
    config_dict.update({"world_size": world_size, "ip": ip, "port": str(port), "nproc": nproc, "offset": group_offset})
    kwargs["config_dict"] = config_dict
    queue = mp.get_context("spawn").SimpleQueue()
    with _child_threads(threads.share_of_cpus(nproc)):
        mp.start_processes(_rank, args=(fn, kwargs, queue, os.getpid()), nprocs=nproc, join=True, start_method="spawn")
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
