#!/usr/bin/env python
"""Epoch time alone and beside a busy neighbour process, with and without the thread policy.

    python benchmarks/bench_contention.py                          # the six models, bundled Last.fm-2K
    python benchmarks/bench_contention.py --models LightGCN RecGOAT --epochs 5
    python benchmarks/bench_contention.py --arm spin1k:GOMP_SPINCOUNT=1000 --arm 1thread:OMP_NUM_THREADS=1
    python benchmarks/bench_contention.py --alone-only --repeats 3 --epochs 8     # the idle price, repeated

Every measurement is its own process (``bench_models.measure``: data and model built, then
``warmup + epochs`` training epochs through the plugin's trainer; the median epoch is reported).
For each model and arm it runs twice: alone, and beside a NEIGHBOUR, a single-threaded pure-Python
busy loop this script starts once the worker's set-up is done (so only epochs are contended) and
stops when the worker finishes (it also stops itself after ``--neighbour-limit`` seconds and dies
with this script).  Arms:

* ``torch default``: ``RECGOAT_THREAD_POLICY=off`` (OpenMP threads spin, one per core);
* ``policy``: the package's thread policy (``recbole_recgoat/threads.py``: passive waiting, threads =
  CPUs available);
* ``--arm NAME:KEY=VALUE,...``: any other environment (the policy stays on, and keeps what is set).

OpenMP variables of this script's own environment are removed from every arm, so each arm is
exactly what it names.  ``--repeats R`` measures every (arm, alone/beside) R times, interleaved
(arm A, arm B, arm A, ...), so a drift of the machine's speed reaches every arm alike; each epoch
time is then the median over the repeats, and the idle price the median of the per-repeat ratios
(each printed: their spread is the machine's run-to-run noise).  Each measurement also prints the
share of CPU time the hypervisor stole from this VM during its epochs.  ``--alone-only`` skips the
neighbour (the idle price only).
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


def worker(model, dataset, epochs, warmup):
    """Child: set up, print READY, wait for a line on stdin, time the epochs, print RESULT."""
    import recbole_recgoat  # noqa: F401  (first: the thread policy applies before torch loads)

    sys.path.insert(0, HERE)
    from bench_models import measure

    from recbole_recgoat import threads

    start = []

    def ready():
        print("READY", flush=True)
        sys.stdin.readline()
        start.append(cpu_ticks())

    res = measure(model, dataset, None, epochs, warmup, 0, "cpu", before_epochs=ready)
    res["policy"] = threads.describe()
    end = cpu_ticks()
    if start and start[0] and end and end[0] > start[0][0]:
        res["steal_share"] = (end[1] - start[0][1]) / (end[0] - start[0][0])
    print("RESULT " + json.dumps(res), flush=True)


def measure_arm(model, args, env, beside):
    """One worker process with ``env``; ``beside``: a busy neighbour runs during its epochs."""
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", model, "--dataset", args.dataset,
           "--epochs", str(args.epochs), "--warmup", str(args.warmup)]
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
    """``[(name, env)]``: torch default, policy, and each ``--arm NAME:K=V,...``."""
    base = {k: v for k, v in os.environ.items() if k not in OMP_KEYS}
    out = [("torch default", {**base, "RECGOAT_THREAD_POLICY": "off"}), ("policy", dict(base))]
    for spec in extra or []:
        name, _, assigns = spec.partition(":")
        env = dict(base)
        for item in filter(None, assigns.split(",")):
            key, _, value = item.partition("=")
            env[key.strip()] = value.strip()
        out.append((name, env))
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
    parser.add_argument("--json", help="also write the measurements to this file")
    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._worker:
        worker(args._worker, args.dataset, args.epochs, args.warmup)
        return 0

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    arm_list = arms(args.arm)
    print(f"bench_contention: {args.dataset}, {args.warmup} warm-up + {args.epochs} timed training epochs, "
          f"{cpus} CPUs; neighbour: one single-threaded busy loop during the epochs; arms: "
          + ", ".join(name for name, _ in arm_list), flush=True)
    rows = []
    sides = (False,) if args.alone_only else (False, True)
    for model in args.models:
        for rep in range(args.repeats):
            for name, env in arm_list:
                for beside in sides:
                    t0 = time.perf_counter()
                    res = measure_arm(model, args, env, beside)
                    rows.append({"model": model, "arm": name, "beside": beside, "repeat": rep, **res})
                    what = (f"{res['epoch_s']:.3f} s/epoch ({res['threads']} threads)"
                            + (f", host steal {100 * res['steal_share']:.0f}%" if "steal_share" in res else "")
                            if "error" not in res else "ERROR " + res["error"])
                    print(f"  {model:<9} {name:<14} {'beside' if beside else 'alone':<6} #{rep} {what}  [{time.perf_counter() - t0:.0f} s]", flush=True)
    print()
    print(summary(rows, args.models, [name for name, _ in arm_list], args.alone_only))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
