#!/usr/bin/env python
"""Where a model's training step goes: torch's profiler over a few training steps, per operator.

    python benchmarks/profile_step.py LGMRec --dataset baby --threads 1
    python benchmarks/profile_step.py FREEDOM --dataset baby --shapes          # per input shape
    python benchmarks/profile_step.py RecGOAT --set use_user_graph=False       # any config override
    python benchmarks/profile_step.py VBPR --dataset lastfm-2k --phases         # ms per phase, unprofiled
    python benchmarks/profile_step.py VBPR --dataset lastfm-2k --regions       # + OpenMP regions per phase

Data and model are built as in ``bench_models.py`` (Baby: the real split with RANDOM 4096-d image
and 384-d text features, timing only), one untimed epoch warms the allocator and caches, then
``--steps`` training steps (zero_grad, loss, backward, optimizer step, as the trainer does) run
under the profiler. Printed: the epoch time of the warm-up epoch, the mean step time outside the
profiler, and the operators sorted by their own CPU time, with totals per step.  ``--phases``
instead times each phase of the step (zero_grad, loss, backward, optimizer step) without the
profiler, over every batch of the epoch ``--repeats`` times, and prints each phase's median;
``--regions`` adds how many OpenMP parallel regions each phase opens (exact: the script builds
``benchmarks/tools/count_regions.c`` with gcc and re-runs itself with it preloaded).
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (REPO, os.path.join(REPO, "benchmarks")):
    if path not in sys.path:
        sys.path.insert(0, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--dataset", default="baby", help="lastfm-2k (bundled) or baby")
    parser.add_argument("--shared-data", default="/work/shared/data", help="folder holding amazon-baby/")
    parser.add_argument("--steps", type=int, default=6, help="profiled training steps")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--rows", type=int, default=25, help="operators printed")
    parser.add_argument("--shapes", action="store_true", help="one row per operator and input shape")
    parser.add_argument("--phases", action="store_true", help="median ms per phase of the step, no profiler")
    parser.add_argument("--repeats", type=int, default=4, help="with --phases: passes over the epoch's batches")
    parser.add_argument("--regions", action="store_true", help="--phases with the OpenMP parallel regions of each phase (needs gcc)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override, e.g. --set fused_optimizer=True")
    args = parser.parse_args(argv)
    args.phases = args.phases or args.regions
    if args.regions and not os.environ.get("RECGOAT_COUNT_REGIONS"):
        return preload_region_counter(argv)

    import recbole_recgoat  # noqa: F401  (first: its thread policy applies before torch loads)
    import torch
    from torch.profiler import ProfilerActivity, profile

    from bench_models import build_baby
    from recbole_recgoat.quick_start import build_model, prepare
    from recbole_recgoat.trainer import get_trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    work = tempfile.mkdtemp(prefix="profile-")
    cwd = os.getcwd()
    try:
        os.chdir(work)
        cfg = {"state": "ERROR", "show_progress": False, "checkpoint_dir": os.path.join(work, "saved"),
               "graph_cache_dir": os.path.join(work, "graphs"), "use_gpu": False}
        if args.dataset == "baby":
            cfg["data_path"] = build_baby(args.shared_data, os.path.join(work, "data"))
        for key, _, value in (item.partition("=") for item in args.set or []):
            cfg[key] = yaml.safe_load(value)
        config, _, train_data, _, _, _ = prepare(args.model, args.dataset, config_dict=cfg, log=False)
        net = build_model(config, train_data)
        trainer = get_trainer(config.model_class)(config, net)
        t0 = time.perf_counter()
        trainer.train_epoch(train_data, 0)
        epoch_s = time.perf_counter() - t0
        batches = [batch for _, batch in zip(range(args.steps), train_data)]
        if hasattr(net, "pre_epoch_processing"):
            net.pre_epoch_processing()

        def step(batch):
            trainer.optimizer.zero_grad()
            loss = net.calculate_loss(batch.to(config["device"]))
            (sum(loss) if isinstance(loss, tuple) else loss).backward()  # RecBole: a tuple of loss parts
            trainer.optimizer.step()

        if args.phases:
            print_phases(args, config, net, trainer, list(train_data))
            return 0
        t0 = time.perf_counter()
        for batch in batches:
            step(batch)
        step_ms = (time.perf_counter() - t0) / len(batches) * 1000
        with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as prof:
            for batch in batches:
                step(batch)
        print(f"{args.model} on {args.dataset}: warm-up epoch {epoch_s:.2f} s ({len(train_data)} steps); "
              f"{step_ms:.1f} ms per step unprofiled; torch threads {torch.get_num_threads()}; "
              f"{len(batches)} profiled steps")
        averages = prof.key_averages(group_by_input_shape=args.shapes)
        rows = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)[: args.rows]
        total = sum(e.self_cpu_time_total for e in averages) / len(batches) / 1000
        print(f"{'operator':<40} {'ms/step':>8} {'share':>6} {'calls/step':>10}" + ("  input shapes" if args.shapes else ""))
        for e in rows:
            ms = e.self_cpu_time_total / len(batches) / 1000
            shapes = f"  {e.input_shapes}" if args.shapes else ""
            print(f"{e.key[:40]:<40} {ms:8.1f} {ms / total:6.1%} {e.count / len(batches):10.1f}{shapes}")
        print(f"{'all operators (self time)':<40} {total:8.1f}")
    finally:
        os.chdir(cwd)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def preload_region_counter(argv):
    """Build ``tools/count_regions.c`` into a temporary folder and run this script again with it
    preloaded (``LD_PRELOAD``); returns that run's exit status."""
    import subprocess

    src = os.path.join(REPO, "benchmarks", "tools", "count_regions.c")
    folder = tempfile.mkdtemp(prefix="regions-")
    lib = os.path.join(folder, "count_regions.so")
    try:
        try:
            subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", lib, src, "-ldl"], check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"--regions: could not build {src} with gcc ({exc}); expected gcc on PATH", file=sys.stderr)
            return 2
        env = dict(os.environ, RECGOAT_COUNT_REGIONS="1",
                   LD_PRELOAD=":".join(filter(None, [lib, os.environ.get("LD_PRELOAD")])))
        argv = list(argv if argv is not None else sys.argv[1:])
        return subprocess.run([sys.executable, os.path.abspath(__file__)] + argv, env=env).returncode
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def region_counter():
    """The preloaded shim's count of OpenMP parallel regions so far (a callable), or None."""
    if not os.environ.get("RECGOAT_COUNT_REGIONS"):
        return None
    import ctypes

    count = ctypes.CDLL(None).recgoat_parallel_regions
    count.restype = ctypes.c_ulonglong
    return count


def print_phases(args, config, net, trainer, batches):
    """Median ms of zero_grad, loss, backward and optimizer step over ``args.repeats`` passes
    (and, with the region counter preloaded, the OpenMP parallel regions each phase opened)."""
    import statistics

    import torch

    counter = region_counter()
    count = counter or (lambda: 0)
    keys = ("zero_grad", "loss", "backward", "optimizer step")
    times, regions = {k: [] for k in keys}, {k: [] for k in keys}
    for _ in range(args.repeats):
        for batch in batches:
            batch = batch.to(config["device"])
            marks = [(time.perf_counter(), count())]
            trainer.optimizer.zero_grad()
            marks.append((time.perf_counter(), count()))
            loss = net.calculate_loss(batch)
            loss = sum(loss) if isinstance(loss, tuple) else loss
            marks.append((time.perf_counter(), count()))
            loss.backward()
            marks.append((time.perf_counter(), count()))
            trainer.optimizer.step()
            marks.append((time.perf_counter(), count()))
            for key, (t0, r0), (t1, r1) in zip(keys, marks, marks[1:]):
                times[key].append(1000 * (t1 - t0))
                regions[key].append(r1 - r0)
    line = (f"{args.model} on {args.dataset}: torch threads {torch.get_num_threads()}; median ms per step over "
            f"{args.repeats} x {len(batches)} steps: "
            + ", ".join(f"{key} {statistics.median(v):.2f}" for key, v in times.items())
            + f"; sum {sum(statistics.median(v) for v in times.values()):.2f}")
    if counter is not None:
        line += ("; OpenMP regions per step: " + ", ".join(f"{key} {statistics.median(v):g}" for key, v in regions.items())
                 + f"; sum {sum(statistics.median(v) for v in regions.values()):g}")
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
