"""Reuse of freed memory by the C allocator (glibc), for training loops that allocate large tensors.

PyTorch on CPU allocates every tensor with ``malloc``; glibc serves blocks above its mmap threshold
(at most 32 MiB by default) with a fresh ``mmap`` and returns them to the kernel when freed, so a
tensor of that size allocated in every step (a 4096-d feature table's gradient, its gathered rows)
page-faults all its memory again each time: on the Baby catalogue FREEDOM's epoch took 19.5 s
instead of 8.9 s at one thread (docs/performance.md). With the threshold raised to 256 MiB and up to 2 GiB of free heap kept, freed blocks stay
in the heap and are reused; larger tensors are still mapped (their page faults are small beside
the work done on them), which bounds what fragmentation can add to the peak.
Process-wide (it stays set for the rest of the process) and glibc-only (elsewhere nothing
happens); numbers do not change, only where the bytes live. The price: freed blocks held by the
heap count in the resident set, so on large graphs fragmentation raises the peak (RecBole's
LightGCN at 10^5 items: 1.6x). Hence the protocol's ``reuse_freed_memory: auto`` turns it on only
below ``AUTO_LIMIT`` users + items + interactions (Baby: 0.15 M; the scaling benchmark's 10^5
items: 2 M).
"""

import ctypes
import sys

from recbole_recgoat.errors import InputError

M_TRIM_THRESHOLD = -1  # glibc's <malloc.h> parameter numbers
M_MMAP_THRESHOLD = -3
AUTO_LIMIT = 1_000_000  # users + items + interactions below which ``auto`` reuses freed memory


def reuse_setting(value):
    """The config's ``reuse_freed_memory`` as True, False or ``"auto"``; a one-line error otherwise."""
    if isinstance(value, bool):
        return value
    if str(value).lower() == "auto":
        return "auto"
    raise InputError(f"reuse_freed_memory: got {value!r}; expected True, False or auto")


def wants_reuse(setting, graph_size):
    """Whether ``reuse_freed_memory`` (True, False or ``auto``) applies to a graph of ``graph_size``
    users + items + interactions: ``auto`` is True below :data:`AUTO_LIMIT`."""
    setting = reuse_setting(setting)
    return setting if isinstance(setting, bool) else int(graph_size) < AUTO_LIMIT


def reuse_freed_memory(mmap_threshold=256 << 20, trim_threshold=(1 << 31) - 1):
    """Ask glibc to serve blocks below ``mmap_threshold`` bytes from the heap and to keep up to
    ``trim_threshold`` free bytes at its top instead of giving them back.

    Returns:
        bool: True when both settings were accepted (Linux with glibc), False otherwise.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(mallopt(M_TRIM_THRESHOLD, int(trim_threshold)))
