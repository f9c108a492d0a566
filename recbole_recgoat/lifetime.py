"""Worker processes that never outlive the process that started them.

A process killed with SIGKILL cannot stop its children: DDP ranks, benchmark workers and the
subprocesses of a killed test run would train on as orphans. On Linux a child can ask the kernel
for a signal when its parent dies (``prctl(PR_SET_PDEATHSIG)``); :func:`die_with_parent` asks for
SIGKILL. Every worker the package starts calls it; ``RECGOAT_DIE_WITH_PARENT=1`` in the environment
makes ``import recbole_recgoat`` call it too (the test suite sets it, so no process a test starts
survives a killed ``pytest``).
"""

import os
import signal
import sys

ENV = "RECGOAT_DIE_WITH_PARENT"
PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid=None):
    """Have the kernel SIGKILL this process when its parent exits (Linux; elsewhere a no-op).

    Args:
        parent_pid (int): the parent's pid as the parent saw it; when the process's parent is
            already another one (the parent died before this call), exit at once.

    Returns:
        bool: True when the kernel accepted the request.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        ok = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL) == 0
    except (OSError, AttributeError):  # pragma: no cover - no libc prctl
        return False
    if parent_pid is not None and os.getppid() != parent_pid:  # died before prctl took effect
        os._exit(1)
    return ok


def apply_environment():
    """:func:`die_with_parent` when ``RECGOAT_DIE_WITH_PARENT`` is ``1`` (inherited by children)."""
    if os.environ.get(ENV, "").strip() in ("1", "true", "True", "yes"):
        return die_with_parent()
    return False
