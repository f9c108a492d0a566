#!/usr/bin/env python
"""Training-epoch time and peak memory of the plugin's models, as ratios to RecBole's LightGCN.

    python benchmarks/bench_models.py                                  # every plugin model, lastfm-2k + Baby
    python benchmarks/bench_models.py --models RecGOAT --datasets baby --user-features
    python benchmarks/bench_models.py --models FREEDOM LGMRec VBPR BM3 --threads 1
    python benchmarks/bench_models.py --shared-data /path/to/shared/data
    python benchmarks/bench_models.py --protocol-set fused_optimizer=True   # every model, LightGCN too

Per dataset, every model runs in its own subprocess (so one model's freed memory cannot hide
another's peak) right after a LightGCN run, its reference (a shared machine's load drifts: a
ratio compares two adjacent runs): data and model are built, then ``warmup`` + ``epochs``
training epochs run through the plugin's trainer (``train_epoch``, so FREEDOM's pre-epoch
pruning is included; no evaluation). Reported: the median time of the timed epochs, the peak
memory the training epochs add (CPU: sampled RSS above the level after the model was built;
CUDA: allocator peak), the set-up time and peak memory (data excluded: model construction, e.g.
the item-item and user-user kNN graphs, graph cache empty) and each ratio to the adjacent
LightGCN run (LightGCN's own row: its median run).

The Baby catalogue is the real Amazon Baby interaction split (``<shared-data>/amazon-baby/
{train,val,test}.json``, LATTICE format, 19,445 users, 7,050 items, 160,792 interactions) with
RANDOM feature matrices of the standard dimensions (image 4096, text 384; with
``--user-features`` also 384-d user LM features): the numbers are for timing and memory only,
not for accuracy.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

MODELS = ["LightGCN", "FREEDOM", "LGMRec", "VBPR", "BM3", "LATTICE", "MGCN", "DRAGON", "SMORE", "MMGCN", "DualGNN", "GRCN", "SLMRec", "RecGOAT"]
DEFAULT_SHARED_DATA = "/work/shared/data"
BABY_DIMS = {"image": 4096, "text": 384}


# ---------------------------------------------------------------------------------------------
# one measurement (subprocess)
# ---------------------------------------------------------------------------------------------


def measure(model, dataset, data_path, epochs, warmup, threads, device, overrides=None, protocol=None, before_epochs=None):
    """One model's set-up and ``warmup + epochs`` training epochs; ``before_epochs()`` is called
    between the set-up and the first epoch (the contention benchmark starts its neighbour there)."""
    import recbole_recgoat  # noqa: F401  (first: its thread policy applies before torch loads)
    import torch

    from recbole_recgoat.quick_start import build_model, prepare
    from recbole_recgoat.utils.profiling import PeakMemory, current_rss_bytes
    from recbole_recgoat.trainer import get_trainer

    if threads:
        torch.set_num_threads(threads)
    work = tempfile.mkdtemp(prefix="bench-")
    os.chdir(work)
    cfg = {
        "state": "ERROR",
        "show_progress": False,
        "checkpoint_dir": os.path.join(work, "saved"),
        "graph_cache_dir": os.path.join(work, "graphs"),  # empty: set-up includes building graphs
        "use_gpu": device == "cuda",
    }
    if data_path:
        cfg["data_path"] = data_path
        if os.path.isfile(os.path.join(data_path, dataset, "user_feat.npy")):
            cfg["user_feature_file"] = "user_feat.npy"  # --user-features
    cfg.update(protocol or {})
    if model != "LightGCN":
        cfg.update(overrides or {})
    try:
        config, ds, train_data, _, _, _ = prepare(model, dataset, config_dict=cfg, log=False)
        dev = config["device"]
        t0 = time.perf_counter()
        with PeakMemory(dev) as setup_mem:
            net = build_model(config, train_data)
        setup_s = time.perf_counter() - t0
        trainer = get_trainer(config.model_class)(config, net)
        base_rss = current_rss_bytes()
        if before_epochs is not None:
            before_epochs()
        with PeakMemory(dev) as mem:
            for epoch in range(warmup + epochs):
                trainer.train_epoch(train_data, epoch)
        times = trainer.epoch_times[warmup:]
        return {
            "model": model,
            "dataset": dataset,
            "epoch_s": statistics.median(times),
            "epoch_times": times,
            "peak_bytes": int(mem.peak_bytes),
            "setup_s": setup_s,
            "setup_peak_bytes": int(setup_mem.peak_bytes),
            "rss_after_build": base_rss,
            "params": sum(p.numel() for p in net.parameters()),
            "batches": len(train_data),
            "device": str(dev),
            "threads": torch.get_num_threads(),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


def build_baby(shared_data, out_root, seed=0, user_features=False):
    """Baby split (LATTICE json) -> ``<out_root>/baby`` with random image (4096) / text (384)
    features, and random 384-d user features when ``user_features``."""
    import numpy as np

    from recbole_recgoat.data.converters import convert_lattice_json

    json_dir = os.path.join(shared_data, "amazon-baby")
    if not os.path.isfile(os.path.join(json_dir, "train.json")):
        raise SystemExit(f"error: {json_dir}/train.json not found; pass --shared-data (folder holding amazon-baby/)")
    n_items = 1 + max(
        int(i) for split in ("train", "val", "test") for items in json.load(open(os.path.join(json_dir, f"{split}.json"))).values() for i in items
    )
    rng = np.random.default_rng(seed)
    feat_dir = os.path.join(out_root, "_features")
    os.makedirs(feat_dir, exist_ok=True)
    files = {}
    for name, dim in BABY_DIMS.items():
        arr = rng.random((n_items, dim), dtype=np.float32)  # non-negative, like CNN / pooled LM features
        path = os.path.join(feat_dir, f"{name}_feat.npy")
        np.save(path, arr)
        files[f"{name}_feat.npy"] = path
    if user_features:
        n_users = len(json.load(open(os.path.join(json_dir, "train.json"))))
        path = os.path.join(feat_dir, "user_feat.npy")
        np.save(path, rng.random((n_users, 384), dtype=np.float32))
        files["user_feat.npy"] = path
    convert_lattice_json(json_dir, os.path.join(out_root, "baby"), "baby", feature_files=files)
    return out_root


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------


def run_one(model, dataset, data_path, args):
    cmd = [
        sys.executable, os.path.abspath(__file__), "--_worker", model, "--_dataset", dataset,
        "--epochs", str(args.epochs), "--warmup", str(args.warmup), "--threads", str(args.threads),
        "--device", args.device,
    ]
    if data_path:
        cmd += ["--_data_path", data_path]
    for item in args.set or []:
        cmd += ["--set", item]
    for item in args.protocol_set or []:
        cmd += ["--protocol-set", item]
    env = dict(os.environ)
    if args.threads:
        env.setdefault("OMP_NUM_THREADS", str(args.threads))
        env.setdefault("MKL_NUM_THREADS", str(args.threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return {"model": model, "dataset": dataset, "error": " | ".join(tail)}


def fmt_mb(b):
    return f"{b / 2**20:8.1f}"


def print_table(dataset, rows, note):
    """``rows``: ``[(result, lightgcn_result measured just before it)]``, LightGCN's own runs included."""
    print(f"\n== {dataset} {note}")
    print(
        f"{'model':<9} {'epoch s':>8} {'x LGCN':>7} {'peak MiB':>9} {'x LGCN':>7} {'setup s':>8} {'setup MiB':>9} {'batches':>7}"
        f"  epoch times (adjacent LightGCN)"
    )
    slow = []
    for r, base in rows:
        if "error" in r or (base is not None and "error" in base):
            err = r.get("error") or base.get("error")
            print(f"{r['model']:<9} ERROR {err}")
            continue
        if r["model"] == "LightGCN":
            t_ratio = m_ratio = 1.0
            ref = ""
        else:
            t_ratio = r["epoch_s"] / base["epoch_s"]
            m_ratio = r["peak_bytes"] / base["peak_bytes"] if base["peak_bytes"] > 0 else float("nan")
            ref = f"  ({' '.join(f'{t:.2f}' for t in base['epoch_times'])})"
            if t_ratio > 3.0:
                slow.append(f"{r['model']} ({t_ratio:.1f}x)")
        times = " ".join(f"{t:.2f}" for t in r["epoch_times"])
        print(
            f"{r['model']:<9} {r['epoch_s']:8.3f} {t_ratio:7.2f} {fmt_mb(r['peak_bytes']):>9} {m_ratio:7.2f} "
            f"{r['setup_s']:8.2f} {fmt_mb(r.get('setup_peak_bytes', 0)):>9} {r['batches']:7d}  {times}{ref}"
        )
    print("target (no model slower than 3x LightGCN per epoch):", "met" if not slow else f"MISSED by {', '.join(slow)}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared-data", default=DEFAULT_SHARED_DATA, help=f"folder holding amazon-baby/ (default {DEFAULT_SHARED_DATA})")
    parser.add_argument("--datasets", nargs="+", default=["lastfm-2k", "baby"], help="lastfm-2k (bundled) and/or baby")
    parser.add_argument("--models", nargs="+", default=MODELS, help="LightGCN is always measured first")
    parser.add_argument("--epochs", type=int, default=2, help="timed training epochs per model (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed first epochs")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, one per core; 1: steadier timings on a shared machine)")
    parser.add_argument("--user-features", action="store_true", help="Baby: also random 384-d user LM features (RecGOAT's user-user graph)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override for the models (not LightGCN), e.g. --set finetune_features=False")
    parser.add_argument("--protocol-set", action="append", metavar="KEY=VALUE", help="config override for every model, LightGCN included, e.g. --protocol-set fused_optimizer=True")
    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    parser.add_argument("--_dataset", help=argparse.SUPPRESS)
    parser.add_argument("--_data_path", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._worker:
        def parse(items):
            return {key: yaml.safe_load(value) for key, _, value in (item.partition("=") for item in items or [])}

        res = measure(args._worker, args._dataset, args._data_path, args.epochs, args.warmup, args.threads, args.device,
                      parse(args.set), parse(args.protocol_set))
        print("RESULT " + json.dumps(res))
        return 0

    models = ["LightGCN"] + [m for m in args.models if m != "LightGCN"]
    print(
        f"bench_models: {args.epochs} timed + {args.warmup} warm-up training epoch(s) per model, no evaluation; "
        f"device {args.device}, torch threads {args.threads or 'default'}; each model in its own process"
        + (f"; models with {' '.join(args.set)}" if args.set else "; defaults of properties/model/<Model>.yaml")
        + (f"; every model (LightGCN too) with {' '.join(args.protocol_set)}" if args.protocol_set else "")
    )
    tmp = tempfile.mkdtemp(prefix="bench-data-")
    try:
        for dataset in args.datasets:
            if dataset == "baby":
                data_path = build_baby(args.shared_data, tmp, user_features=args.user_features)
                note = "(real Baby split; RANDOM image 4096-d + text 384-d" + (" + user 384-d" if args.user_features else "") + " features: timing only)"
            else:
                data_path, note = None, "(bundled; real features)"
            # LightGCN runs again right before every model: each ratio compares runs made minutes
            # apart, not an hour (a shared machine's load drifts); LightGCN's row is its median run.
            rows, lgcn_runs = [], []
            for model in models[1:] or [None]:
                t0 = time.perf_counter()
                base = run_one("LightGCN", dataset, data_path, args)
                lgcn_runs.append(base)
                res = run_one(model, dataset, data_path, args) if model else None
                if res is not None:
                    rows.append((res, base))
                print(f"  measured LightGCN + {model} on {dataset} in {time.perf_counter() - t0:.0f} s", flush=True)
            ok = [r for r in lgcn_runs if "error" not in r]
            lgcn = sorted(ok, key=lambda r: r["epoch_s"])[len(ok) // 2] if ok else lgcn_runs[0]
            print_table(dataset, [(lgcn, lgcn)] + rows, note)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
