#!/usr/bin/env python
"""Epoch time alone and beside a busy neighbour process, with and without the thread policy.

    python benchmarks/bench_contention.py                          # the six models, bundled Last.fm-2K
    python benchmarks/bench_contention.py --models LightGCN RecGOAT --epochs 5
    python benchmarks/bench_contention.py --arm spin1k:GOMP_SPINCOUNT=1000 --arm 1thread:OMP_NUM_THREADS=1
    python benchmarks/bench_contention.py --alone-only --repeats 3 --epochs 8     # the idle price, repeated
    python benchmarks/bench_contention.py --set fused_optimizer=True              # a config override, every arm
    python benchmarks/bench_contention.py --wake --repeats 3                      # the cost of one parallel region

Every measurement is its own process (``bench_models.measure``: data and model built, then
``warmup + epochs`` training epochs through the plugin's trainer; the median epoch is reported).
For each model and arm it runs twice: alone, and beside a NEIGHBOUR, a single-threaded pure-Python
busy loop this script starts once the worker's set-up is done (so only epochs are contended) and
stops when the worker finishes (it also stops itself after ``--neighbour-limit`` seconds and dies
with this script).  Arms:

* ``torch default``: ``RECGOAT_THREAD_POLICY=off`` (OpenMP threads spin, one per core);
* ``policy``: the package's thread policy (``recbole_recgoat/threads.py``: passive waiting, threads =
  CPUs available);
* ``--arm NAME:KEY=VALUE,...``: any other environment (the policy stays on, and keeps what is set);
  ``config.KEY=VALUE`` there is a config override of that arm (``--arm fused:config.fused_optimizer=True``).

OpenMP variables of this script's own environment are removed from every arm, so each arm is
exactly what it names.  ``--repeats R`` measures every (arm, alone/beside) R times, interleaved
(arm A, arm B, arm A, ...), so a drift of the machine's speed reaches every arm alike; each epoch
time is then the median over the repeats, and the idle price the median of the per-repeat ratios
(each printed: their spread is the machine's run-to-run noise).  Each measurement also prints the
share of CPU time the hypervisor stole from this VM during its epochs.  ``--alone-only`` skips the
neighbour (the idle price only).  ``--wake`` measures only what one parallel region costs in each
arm (and on one thread): a 1 MiB elementwise operator in a loop with ~1 us of Python between calls,
the pattern of a model's batch-sized operators; passive threads pay the wake-up of a sleeping vCPU.
Printed per model: each arm's epoch alone and beside the neighbour, the slowdown ratio
beside / alone, and the arm's idle price (alone / torch default alone).  Targets (issue 11):
policy slowdown <= 1.5 and idle price within 5%.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = ["LightGCN", "FREEDOM", "LGMRec", "VBPR", "BM3", "RecGOAT"]
OMP_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
            "RECGOAT_THREAD_POLICY", "RECGOAT_THREAD_POLICY_VARS")
NEIGHBOUR = (
    "import ctypes, signal, sys, time\n"
    "ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # die with the benchmark\n"
    "end = time.monotonic() + float(sys.argv[1])\n"
    "x = 0\n"
    "while time.monotonic() < end:\n"
    "    x += 1\n"
)


def cpu_ticks():
    """``(all, steal)`` jiffies of the machine so far (``/proc/stat``), or None off Linux. Steal is
    the time the hypervisor ran something else while a vCPU wanted to run: the VM's own noise."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(fields[:8]), (fields[7] if len(fields) > 7 else 0)


def worker(model, dataset, epochs, warmup, protocol=None):
    """Child: set up, print READY, wait for a line on stdin, time the epochs, print RESULT."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: dies with the benchmark
    import recbole_recgoat  # noqa: F401  (first: the thread policy applies before torch loads)

    sys.path.insert(0, HERE)
    from bench_models import measure

    from recbole_recgoat import threads

    start = []

    def ready():
        print("READY", flush=True)
        sys.stdin.readline()
        start.append(cpu_ticks())

    res = measure(model, dataset, None, epochs, warmup, 0, "cpu", protocol=protocol, before_epochs=ready)
    res["policy"] = threads.describe()
    end = cpu_ticks()
    if start and start[0] and end and end[0] > start[0][0]:
        res["steal_share"] = (end[1] - start[0][1]) / (end[0] - start[0][0])
    print("RESULT " + json.dumps(res), flush=True)


def wake_probe(numel=262144, calls=2000, rounds=5):
    """Child of ``--wake``: the time one elementwise operator on ``[numel]`` floats (one OpenMP
    parallel region, 1 MiB) takes in a loop with a short Python gap between calls, as between a
    model's operators; minus the loop's own time. Prints ``WAKE <us per call>``."""
    import recbole_recgoat  # noqa: F401  (first: the thread policy applies before torch loads)
    import torch

    x, y = torch.ones(numel), torch.ones(numel)

    def loop(op):
        t0 = time.perf_counter()
        for _ in range(calls):
            op()
            sum(range(30))  # ~1 us of Python
        return (time.perf_counter() - t0) / calls * 1e6

    gap = statistics.median(loop(lambda: None) for _ in range(rounds))
    per_call = statistics.median(loop(lambda: x.add_(y)) for _ in range(rounds)) - gap
    print(f"WAKE {per_call:.2f} {torch.get_num_threads()}", flush=True)


def measure_wake(env):
    """``(us per call, torch threads)`` of :func:`wake_probe` in a worker with ``env``, or None."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--_wake"], env=env, capture_output=True, text=True)
    line = next((l for l in out.stdout.splitlines() if l.startswith("WAKE ")), None)
    return None if line is None else (float(line.split()[1]), int(line.split()[2]))


def measure_arm(model, args, env, beside, config=()):
    """One worker process with ``env`` and the config overrides ``--set`` + ``config`` (``KEY=VALUE``
    each); ``beside``: a busy neighbour runs during its epochs."""
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", model, "--dataset", args.dataset,
           "--epochs", str(args.epochs), "--warmup", str(args.warmup)]
    for item in list(args.set or []) + list(config):
        cmd += ["--set", item]
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    neighbour = None
    try:
        result = None
        for line in proc.stdout:
            if line.startswith("READY"):
                if beside:
                    neighbour = subprocess.Popen([sys.executable, "-c", NEIGHBOUR, str(args.neighbour_limit)])
                    time.sleep(0.5)  # the neighbour is running before the first epoch
                proc.stdin.write("go\n")
                proc.stdin.flush()
            elif line.startswith("RESULT "):
                result = json.loads(line[len("RESULT "):])
        proc.wait()
        if result is None:
            tail = proc.stderr.read().strip().splitlines()[-3:]
            return {"error": " | ".join(tail) or f"exit {proc.returncode}"}
        return result
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
        if proc.poll() is None:
            proc.kill()


def arms(extra):
    """``[(name, env, config)]``: torch default, policy, and each ``--arm NAME:K=V,...`` (a key
    ``config.KEY`` is a config override of that arm's runs, any other key an environment variable)."""
    base = {k: v for k, v in os.environ.items() if k not in OMP_KEYS}
    out = [("torch default", {**base, "RECGOAT_THREAD_POLICY": "off"}, []), ("policy", dict(base), [])]
    for spec in extra or []:
        name, _, assigns = spec.partition(":")
        env, config = dict(base), []
        for item in filter(None, assigns.split(",")):
            key, _, value = item.partition("=")
            if key.strip().startswith("config."):
                config.append(f"{key.strip()[len('config.'):]}={value.strip()}")
            else:
                env[key.strip()] = value.strip()
        out.append((name, env, config))
    return out


def _median_epoch(rows, model, arm, beside):
    """Median over the repeats of one (model, arm, side), or None when one of them failed."""
    got = [r for r in rows if r["model"] == model and r["arm"] == arm and r["beside"] == beside]
    if not got or any("error" in r for r in got):
        return None
    return statistics.median(r["epoch_s"] for r in got)


def summary(rows, models, arm_names, alone_only=False):
    """The printed table: per model and arm, the median epoch alone / beside, their ratio, and the
    idle price (this arm alone / torch default alone; with repeats, also each repeat's price)."""
    lines = [f"{'model':<9} {'arm':<14} {'alone s':>8} {'beside s':>9} {'beside/alone':>12} {'idle price':>10}  {'per repeat':<20} policy in force"]
    verdict = []
    for model in models:
        for name in arm_names:
            alone = _median_epoch(rows, model, name, False)
            beside = None if alone_only else _median_epoch(rows, model, name, True)
            if alone is None or (beside is None and not alone_only):
                lines.append(f"{model:<9} {name:<14} ERROR")
                continue
            slow = beside / alone if beside is not None else float("nan")
            pairs = {}
            for r in rows:
                if r["model"] == model and not r["beside"] and "error" not in r and r["arm"] in (name, "torch default"):
                    pairs.setdefault(r["repeat"], {})[r["arm"]] = r["epoch_s"]
            per = [p[name] / p["torch default"] for _, p in sorted(pairs.items()) if name in p and "torch default" in p]
            # the price: median of the per-repeat ratios (each pair measured back to back)
            price = statistics.median(per) if per else float("nan")
            policy = next((r.get("policy", "") for r in rows if r["model"] == model and r["arm"] == name and "error" not in r), "")
            spread = " ".join(f"{x:.3f}" for x in per) if len(per) > 1 else "-"
            lines.append(f"{model:<9} {name:<14} {alone:8.3f} {'-' if beside is None else f'{beside:.3f}':>9} "
                         f"{'-' if beside is None else f'{slow:.2f}':>12} {price:10.3f}  {spread:<20} {policy}")
            if name == "policy":
                verdict.append((model, slow, price))
    missed = [(f"{m} (idle price {p:.3f})" if alone_only else f"{m} (slowdown {s:.2f}, idle price {p:.3f})")
              for m, s, p in verdict if s > 1.5 or p > 1.05]
    target = "idle price <= 1.05" if alone_only else "beside/alone <= 1.5, idle price <= 1.05"
    lines.append(f"targets (policy: {target}): "
                 + ("met" if not missed else "MISSED by " + ", ".join(missed)))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--dataset", default="lastfm-2k")
    parser.add_argument("--epochs", type=int, default=3, help="timed training epochs (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed first epochs")
    parser.add_argument("--arm", action="append", metavar="NAME:KEY=VALUE,...", help="an extra environment to measure")
    parser.add_argument("--repeats", type=int, default=1, help="measurements per arm, interleaved (median reported)")
    parser.add_argument("--alone-only", action="store_true", help="no neighbour: the idle price only")
    parser.add_argument("--neighbour-limit", type=float, default=900.0, help="seconds after which a neighbour stops itself")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="config override for every model and arm (yaml value), e.g. --set fused_optimizer=True")
    parser.add_argument("--json", help="also write the measurements to this file")
    parser.add_argument("--wake", action="store_true",
                        help="only the per-region cost: one 1 MiB elementwise operator per arm, and on one thread")
    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    parser.add_argument("--_wake", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._wake:
        wake_probe()
        return 0
    if args._worker:
        protocol = {key: yaml.safe_load(value) for key, _, value in (item.partition("=") for item in args.set or [])}
        worker(args._worker, args.dataset, args.epochs, args.warmup, protocol)
        return 0

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    arm_list = arms(args.arm)
    if args.wake:
        print(f"bench_contention --wake: {cpus} CPUs; arms: " + ", ".join(n for n, _, _ in arm_list) + ", 1 thread", flush=True)
        one = [("1 thread", {**arm_list[1][1], "OMP_NUM_THREADS": "1"}, [])]
        for rep in range(args.repeats):
            for name, env, _ in arm_list + one:
                got = measure_wake(env)
                print(f"  {name:<14} #{rep} " + (f"{got[0]:.1f} us per 1 MiB operator ({got[1]} threads)" if got else "ERROR"), flush=True)
        return 0
    print(f"bench_contention: {args.dataset}, {args.warmup} warm-up + {args.epochs} timed training epochs, "
          f"{cpus} CPUs; neighbour: one single-threaded busy loop during the epochs; arms: "
          + ", ".join(name for name, _, _ in arm_list)
          + (f"; config overrides: {', '.join(args.set)}" if args.set else ""), flush=True)
    rows = []
    sides = (False,) if args.alone_only else (False, True)
    for model in args.models:
        for rep in range(args.repeats):
            for name, env, config in arm_list:
                for beside in sides:
                    t0 = time.perf_counter()
                    res = measure_arm(model, args, env, beside, config)
                    rows.append({"model": model, "arm": name, "beside": beside, "repeat": rep, **res})
                    what = (f"{res['epoch_s']:.3f} s/epoch ({res['threads']} threads)"
                            + (f", host steal {100 * res['steal_share']:.0f}%" if "steal_share" in res else "")
                            if "error" not in res else "ERROR " + res["error"])
                    print(f"  {model:<9} {name:<14} {'beside' if beside else 'alone':<6} #{rep} {what}  [{time.perf_counter() - t0:.0f} s]", flush=True)
    print()
    print(summary(rows, args.models, [name for name, _, _ in arm_list], args.alone_only))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
