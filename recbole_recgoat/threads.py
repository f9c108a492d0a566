"""CPU thread policy: OpenMP threads that sleep when idle, as many as the process may use.

PyTorch's CPU kernels run on the OpenMP runtime (libgomp in the PyPI wheels). By default its
worker threads, one per core, spin for a while (``GOMP_SPINCOUNT`` 300,000) at the end of every
parallel region before they sleep. On a machine where another process also wants a core, a
spinning thread holds the core the other one needs and every small parallel region then waits
for a scheduler time slice: on the project's 2-core machine, beside ONE single-threaded job,
LightGCN's Last.fm-2K epoch went from 0.33 s to 9-15 s (issue 11; ``benchmarks/bench_contention.py``
measures it). The policy applied here, before torch loads its OpenMP runtime:

* ``OMP_WAIT_POLICY=PASSIVE``: idle threads sleep at once (no spinning);
* ``OMP_NUM_THREADS`` = the CPUs this process may actually use (:func:`available_cpus`: its
  affinity mask, capped by a cgroup CPU quota), not every core of the host.

Nothing the user set is overridden: an ``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT`` or
``OMP_NUM_THREADS`` in the environment is kept, and the config key ``cpu_threads`` (``auto`` or
an integer; ``properties/overall.yaml``) sets the thread count of a run. ``RECGOAT_THREAD_POLICY=off``
in the environment turns the policy off (the process then runs on torch's defaults).
The wait policy cannot change once torch is loaded: when torch was imported before
``recbole_recgoat``, :func:`describe` says so, and only the thread count applies.

No torch import at module level: this module runs before torch is loaded.
"""

import os
import sys

SWITCH = "RECGOAT_THREAD_POLICY"
MARKER = "RECGOAT_THREAD_POLICY_VARS"  # the variables the policy set (children inherit them)
_USER_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")

# What the package did, for describe(): filled by apply_environment_policy / apply_thread_count.
# ``expected``: torch's thread count as the package last left it (a different count means the
# program called torch.set_num_threads itself, which ``auto`` keeps).
_BY_PROGRAM = "set by the program (torch.set_num_threads)"
_STATE = {"applied": False, "torch_was_loaded": None, "user_env": {}, "inherited": None, "expected": None, "source": None}


def _cgroup_quota():
    """CPUs granted by a cgroup CPU quota (v2 ``cpu.max`` or v1 ``cfs_quota_us``), or None."""
    candidates = []
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as f:
            for line in f:
                parts = line.strip().split(":", 2)
                if len(parts) == 3 and parts[0] == "0":
                    candidates.append(os.path.join("/sys/fs/cgroup", parts[2].lstrip("/"), "cpu.max"))
    except OSError:
        pass
    candidates.append("/sys/fs/cgroup/cpu.max")
    for path in candidates:
        try:
            with open(path, encoding="utf-8") as f:
                quota, period = f.read().split()[:2]
        except (OSError, ValueError):
            continue
        return None if quota == "max" else int(quota) / int(period)
    try:  # cgroup v1
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", encoding="utf-8") as f:
            quota = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us", encoding="utf-8") as f:
            period = int(f.read())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 else quota / period


def available_cpus():
    """CPUs this process may run on: ``len(os.sched_getaffinity(0))`` (all CPUs where the OS
    has no affinity call), capped by a cgroup quota rounded down (at least 1)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cpus = min(cpus, max(1, int(quota)))
    return max(1, cpus)


def policy_enabled(environ=None):
    """False when ``RECGOAT_THREAD_POLICY`` is ``off`` / ``0`` / ``false`` in the environment."""
    environ = os.environ if environ is None else environ
    return environ.get(SWITCH, "on").strip().lower() not in ("off", "0", "false", "no")


def user_environment(environ=None):
    """The OpenMP variables the USER set: those in the environment that the policy (of this
    process or of a parent process, :data:`MARKER`) did not set itself."""
    environ = os.environ if environ is None else environ
    ours = set(filter(None, environ.get(MARKER, "").split(",")))
    return {k: environ[k] for k in _USER_KEYS if k in environ and k not in ours}


def apply_environment_policy(environ=None):
    """Set the OpenMP environment before torch loads (``import recbole_recgoat`` calls this):
    ``OMP_WAIT_POLICY=PASSIVE`` unless the user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``, and
    ``OMP_NUM_THREADS`` = :func:`available_cpus` unless the user set it. Child processes inherit
    both, and :data:`MARKER` tells them which were the policy's.

    Returns:
        dict: the variables this call set (empty when the policy is off or all were the user's).
    """
    environ = os.environ if environ is None else environ
    user = user_environment(environ)
    if environ is os.environ:
        _STATE["torch_was_loaded"] = "torch" in sys.modules
        _STATE["user_env"] = user
    if not policy_enabled(environ):
        return {}
    changed = {}
    if "OMP_WAIT_POLICY" not in user and "GOMP_SPINCOUNT" not in user:
        changed["OMP_WAIT_POLICY"] = "PASSIVE"
    inherited = None
    if "OMP_NUM_THREADS" in environ and "OMP_NUM_THREADS" not in user:  # a parent's policy chose it
        inherited = _positive_int(environ["OMP_NUM_THREADS"])
    if "OMP_NUM_THREADS" not in user:
        changed["OMP_NUM_THREADS"] = str(inherited or available_cpus())
    environ.update(changed)
    if changed:
        environ[MARKER] = ",".join(sorted(changed))
    if environ is os.environ:
        _STATE["applied"] = True
        _STATE["inherited"] = inherited
        threads = user.get("OMP_NUM_THREADS", changed.get("OMP_NUM_THREADS"))
        _STATE["expected"] = _positive_int(threads) if not _STATE["torch_was_loaded"] else None
    return changed


def _positive_int(text):
    try:
        n = int(str(text).split(",")[0])
    except (TypeError, ValueError):
        return None
    return n if n > 0 else None


def thread_count_setting(value):
    """The config's ``cpu_threads`` as ``"auto"`` or a positive int; a one-line error otherwise."""
    from recbole_recgoat.errors import InputError

    if value is None or str(value).strip().lower() == "auto":
        return "auto"
    if isinstance(value, bool):
        raise InputError(f"cpu_threads: got {value!r}; expected auto or a positive integer")
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise InputError(f"cpu_threads: got {value!r}; expected auto or a positive integer") from None
    if n < 1 or n != float(value):
        raise InputError(f"cpu_threads: got {value!r}; expected auto or a positive integer")
    return n


def apply_thread_count(setting="auto"):
    """Set torch's intra-op threads for a run from the config's ``cpu_threads``.

    ``N``: N threads. ``auto``, in this order: a count the program set itself with
    ``torch.set_num_threads`` (benchmark workers do), the user's ``OMP_NUM_THREADS``, the share a
    parent process's policy gave (distributed workers), :func:`available_cpus` (policy on),
    torch's own choice (policy off).

    Returns:
        int: the thread count in force.
    """
    import torch

    setting = thread_count_setting(setting)
    current = torch.get_num_threads()
    expected = _STATE["expected"]
    if setting != "auto":
        n, source = setting, "config cpu_threads"
    elif expected is not None and (current != expected or _STATE["source"] == _BY_PROGRAM):
        # the program's own count, also on its next run in this process (a benchmark worker's
        # second cell: it sets the same count again, which then equals the one last left)
        n, source = current, _BY_PROGRAM
    elif expected is None and _STATE["source"] is None and _STATE["torch_was_loaded"]:
        n, source = min(current, available_cpus()), "torch was started before recbole_recgoat"
    elif "OMP_NUM_THREADS" in _STATE["user_env"]:
        n, source = _positive_int(_STATE["user_env"]["OMP_NUM_THREADS"]) or current, "OMP_NUM_THREADS in the environment"
    elif policy_enabled() and _STATE["inherited"]:
        n, source = _STATE["inherited"], "auto: as the parent process's policy set it"
    elif policy_enabled():
        n, source = available_cpus(), "auto: CPUs available to the process"
    else:
        n, source = current, f"torch's default ({SWITCH}=off)"
    if current != n:
        torch.set_num_threads(n)
    _STATE["expected"], _STATE["source"] = torch.get_num_threads(), source
    return _STATE["expected"]


def wait_policy():
    """The OpenMP wait policy in force, in words (what libgomp read when torch loaded)."""
    user_env = _STATE["user_env"]
    if "GOMP_SPINCOUNT" in user_env or "OMP_WAIT_POLICY" in user_env:
        given = ", ".join(f"{k}={user_env[k]}" for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in user_env)
        return f"{given} (the environment's)"
    if _STATE["torch_was_loaded"]:
        return ("torch's default, spinning (torch was imported before recbole_recgoat; "
                "set OMP_WAIT_POLICY=PASSIVE before python starts)")
    if _STATE["applied"]:
        return "PASSIVE (recbole_recgoat's thread policy)"
    return f"torch's default, spinning ({SWITCH}=off)"


def describe():
    """One line for the log: the thread count and wait policy in force, and who chose them."""
    import torch

    source = _STATE["source"] or "torch"
    return (f"CPU threads: {torch.get_num_threads()} ({source}; {available_cpus()} CPUs available); "
            f"OpenMP wait policy: {wait_policy()}")


def share_of_cpus(processes):
    """Threads for each of ``processes`` workers sharing this machine's CPUs:
    ``available_cpus() // processes`` (at least 1), or None when the user set ``OMP_NUM_THREADS``
    or the policy is off (the workers then keep what they are given)."""
    if not policy_enabled() or "OMP_NUM_THREADS" in _STATE["user_env"]:
        return None
    return max(1, available_cpus() // max(1, int(processes)))


class single_thread:
    """Context manager: torch on ONE intra-op thread inside the block, the previous count after.

    For solver loops of many small kernels (POT's Sinkhorn: hundreds of 256 x 256 log-sum-exps
    per call). Each kernel above torch's grain size opens an OpenMP parallel region; with the
    passive wait policy every region wakes a sleeping thread, which costs more than the kernel
    (measured: 100 Sinkhorn iterations on 256 x 256 took 5 ms on 2 spinning threads, 6 ms on one
    thread and 50-370 ms on 2 passive threads, idle 2-core VM). Row-wise kernels give the same
    bits on one thread as on several (``tests/test_threads.py`` checks the solvers used).
    """

    def __enter__(self):
        import torch

        self._n = torch.get_num_threads()
        if self._n != 1:
            torch.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        import torch

        if self._n != 1:
            torch.set_num_threads(self._n)
        return False
