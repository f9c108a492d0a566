#!/usr/bin/env python
"""How RecGOAT's and LightGCN's costs grow with the catalogue: graph build, epoch, memory.

    python benchmarks/bench_scaling.py                       # 1e4 .. 1e6 items + Baby + Sports
    python benchmarks/bench_scaling.py --sizes 1e4 1e5 --real none --steps 8

Catalogues:

* synthetic, ``--sizes`` items each, users and interactions in the proportions of Amazon Baby
  (2.76 users and 22.8 interactions per item, at least 5 per user), Zipf-like item popularity,
  80% of the interactions for training; item features 384-d ("text") and 128-d ("audio"), drawn
  around 1,000 cluster centres so that nearest neighbours mean something;
* the real Amazon Baby (19,445 users, 7,050 items) and Sports (35,598 users, 18,357 items)
  training interactions from ``--shared-data`` with random features of the same dimensions.

Every (catalogue, model) runs in its own process: data generated there (fixed seeds), then the
model is built (RecGOAT: the two item-item kNN graphs, exact up to 20,000 items and faiss IVF
above, with their measured recall@k; LightGCN: RecBole's normalised adjacency) and one training
epoch runs: ``--steps`` full-graph steps over all training interactions (``train_steps_per_epoch``,
the large-catalogue setting: batch = interactions / steps), uniform negatives, Adam. A step of a
full-graph model costs O(users + items + interactions), so a fixed number of steps makes an epoch
linear; with a fixed batch the number of steps grows too and the epoch grows quadratically.

Printed per row: users, items, training interactions, build time and the memory it adds, epoch
time and the memory it adds over the level after the build, the process's peak RSS, the time of a
reference kernel (below), and at the end the growth exponent b of
``cost ~ (users + items + interactions)^b`` fitted on the synthetic catalogues (b <= 1: no faster
than linear). Timing only; no evaluation.

The reference kernel is a fixed amount of O(interactions) work: one CSR product of the
catalogue's normalised user-item adjacency with a ``[users + items, 64]`` matrix, timed in the
row's own process. Its own exponent is the machine's: per non-zero, a sparse product gets slower
as the operands outgrow the caches (random row reads from DRAM instead of L2/L3), so even linear
work fits b > 1 over 10^4 .. 10^6 items. The last line therefore also fits each model's epoch time
divided by the reference time: b_rel <= 0 means the epoch grows no faster than a linear kernel on
this machine.
"""

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

DEFAULT_SHARED_DATA = os.path.join(REPO, "..", "shared", "data")
USERS_PER_ITEM, INTER_PER_ITEM = 19445 / 7050, 160792 / 7050  # Amazon Baby
FEATURE_DIMS = {"text": 384, "audio": 128}


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


def synthetic_interactions(n_items, seed=0):
    """Training (user, item) pairs of a synthetic catalogue: ``[E]``, ``[E]``, n_users, n_items."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n_users = int(round(USERS_PER_ITEM * n_items))
    total = int(round(INTER_PER_ITEM * n_items))
    # user degrees: 5 + geometric tail, scaled to the total
    extra = rng.geometric(5.0 / (total / n_users), size=n_users)
    deg = 5 + np.floor(extra * max(total - 5 * n_users, 0) / extra.sum()).astype(np.int64)
    users = np.repeat(np.arange(n_users, dtype=np.int64), deg)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8  # Zipf-like popularity
    items = rng.choice(n_items, size=users.size, p=pop / pop.sum()).astype(np.int64)
    key = np.unique(users * n_items + items)
    users, items = key // n_items, key % n_items
    train = rng.random(users.size) < 0.8
    return users[train], items[train], n_users, n_items


def real_interactions(name, shared_data):
    """Training pairs of Amazon Baby (LATTICE json) or Sports (MMRec .inter x_label 0)."""
    import json as _json

    import numpy as np
    import pandas as pd

    if name == "baby":
        data = _json.load(open(os.path.join(shared_data, "amazon-baby", "train.json")))
        users = np.array([int(u) for u, its in data.items() for _ in its], dtype=np.int64)
        items = np.array([int(i) for its in data.values() for i in its], dtype=np.int64)
    else:
        frame = pd.read_csv(os.path.join(shared_data, "amazon-sports", "sports.inter"), sep="\t")
        frame = frame[frame.x_label == 0]
        users, items = frame.userID.to_numpy(np.int64), frame.itemID.to_numpy(np.int64)
    return users, items, int(users.max()) + 1, int(items.max()) + 1


def clustered_features(n, dim, seed):
    """``[n, dim]`` float32 features around 1,000 random centres (so kNN is not pure noise)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, dim), dtype=np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    step = 200_000
    for start in range(0, n, step):
        stop = min(n, start + step)
        out[start:stop] = centres[rng.integers(0, 1000, stop - start)] + 0.6 * rng.standard_normal((stop - start, dim), dtype=np.float32)
    return out


class ArrayDataset:
    """The slice of RecBole's ``Dataset`` interface the models read, over in-memory arrays.

    Internal ids are the original ids shifted by one (0 is RecBole's PAD), as RecBole numbers them.
    """

    uid_field, iid_field = "user_id", "item_id"

    def __init__(self, users, items, n_users, n_items, item_features):
        import recbole_recgoat  # noqa: F401  (first: its thread policy applies before torch loads)
        import torch

        self.users, self.items = users + 1, items + 1
        self.n_users, self.n_items = n_users + 1, n_items + 1
        self.item_features = {m: torch.cat([torch.zeros(1, f.shape[1]), torch.from_numpy(f)]) for m, f in item_features.items()}
        self.user_features = None

    def num(self, field):
        return self.n_users if field == self.uid_field else self.n_items

    def inter_matrix(self, form="coo", value_field=None):
        import numpy as np
        import scipy.sparse as sp

        m = sp.coo_matrix((np.ones(self.users.size, dtype=np.float32), (self.users, self.items)), shape=(self.n_users, self.n_items))
        return m.asformat(form)


# ---------------------------------------------------------------------------------------------
# one measurement (subprocess)
# ---------------------------------------------------------------------------------------------


def reference_kernel_seconds(users, items, n_users, n_items, dim=64, reps=5):
    """Median time of ``A @ X``: ``A`` the normalised bipartite adjacency of the training pairs
    (CSR, ``2 E`` non-zeros, the models' own :class:`SparseOperator` kernel), ``X``
    ``[n_users + n_items, dim]``: O(E) work, the machine's scale."""
    import torch

    from recbole_recgoat.model.layers.graph import bipartite_norm_adj
    from recbole_recgoat.model.layers.sparse import SparseOperator

    adj = SparseOperator(bipartite_norm_adj(torch.from_numpy(users), torch.from_numpy(items), n_users, n_items), symmetric=True)
    x = torch.randn(adj.shape[0], dim, generator=torch.Generator().manual_seed(0))
    times = []
    with torch.no_grad():
        adj @ x  # warm-up
        for _ in range(reps):
            t0 = time.perf_counter()
            adj @ x
            times.append(time.perf_counter() - t0)
    return sorted(times)[reps // 2]


def measure(model_name, catalogue, shared_data, steps, threads, reuse="False"):
    import numpy as np
    import torch

    from recbole.data.interaction import Interaction

    from recbole_recgoat.config import Config
    from recbole_recgoat.quick_start import init_seed
    from recbole_recgoat.utils.allocator import reuse_freed_memory, wants_reuse
    from recbole_recgoat.utils.profiling import PeakMemory, current_rss_bytes

    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    if catalogue in ("baby", "sports"):
        users, items, n_users, n_items = real_interactions(catalogue, shared_data)
    else:
        users, items, n_users, n_items = synthetic_interactions(int(float(catalogue)))
    feats = {m: clustered_features(n_items, d, seed=k + 1) for k, (m, d) in enumerate(FEATURE_DIMS.items())} if model_name != "LightGCN" else {}
    ds = ArrayDataset(users, items, n_users, n_items, feats)
    data_s = time.perf_counter() - t0

    work = tempfile.mkdtemp(prefix="scaling-")
    os.makedirs(os.path.join(work, "synthetic"))
    config = Config(model_name, "synthetic", config_dict={
        "data_path": work, "state": "ERROR", "use_gpu": False, "graph_cache_dir": None,
        "load_features": False, "item_feature_files": None,
    }, cmd_args={"reuse_freed_memory": reuse})  # parsed as run_recbole.py's --reuse_freed_memory=...
    if wants_reuse(config["reuse_freed_memory"], n_users + n_items + users.size):  # the rule of quick_start.prepare
        reuse_freed_memory()
    init_seed(config["seed"], config["reproducibility"])
    base = current_rss_bytes()
    t0 = time.perf_counter()
    with PeakMemory() as build_mem:
        model = config.model_class(config, ds)
    build_s = time.perf_counter() - t0
    knn = {tag: {k: v for k, v in st.items() if k in ("method", "recall_at_k", "seconds")} for tag, st in getattr(model, "graph_stats", {}).items()}

    optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"])
    n_train = users.size
    batch = -(-n_train // steps)
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(n_train, generator=gen)
    u_all, i_all = torch.from_numpy(ds.users), torch.from_numpy(ds.items)
    model.train()
    t0 = time.perf_counter()
    with PeakMemory() as epoch_mem:
        for start in range(0, n_train, batch):
            idx = perm[start : start + batch]
            inter = Interaction({
                "user_id": u_all[idx], "item_id": i_all[idx],
                "neg_item_id": torch.randint(1, ds.n_items, (idx.numel(),), generator=gen),
            })
            optimizer.zero_grad()
            loss = model.calculate_loss(inter)
            loss = sum(loss) if isinstance(loss, tuple) else loss
            loss.backward()
            optimizer.step()
    epoch_s = time.perf_counter() - t0
    del model, optimizer
    ref_s = reference_kernel_seconds(users, items, n_users, n_items)
    return {
        "model": model_name, "catalogue": catalogue, "users": n_users, "items": n_items, "train": int(n_train),
        "size": n_users + n_items + int(n_train), "data_s": data_s, "build_s": build_s,
        "build_mb": build_mem.peak_bytes / 2**20, "epoch_s": epoch_s, "epoch_mb": epoch_mem.peak_bytes / 2**20,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_before_build_mb": base / 2**20,
        "steps": -(-n_train // batch), "batch": batch, "threads": torch.get_num_threads(), "knn": knn,
        "ref_s": ref_s,
    }


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------


def run_one(model, catalogue, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", model, "--_catalogue", catalogue,
           "--steps", str(args.steps), "--threads", str(args.threads), "--shared-data", args.shared_data,
           "--reuse-freed-memory", args.reuse_freed_memory]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"model": model, "catalogue": catalogue, "error": " | ".join(tail)}


def growth_exponent(rows, key):
    """Least-squares slope of log(cost) on log(users + items + interactions)."""
    pts = [(math.log(r["size"]), math.log(r[key])) for r in rows if r.get(key, 0) > 0]
    if len(pts) < 2:
        return float("nan")
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def print_row(r):
    if "error" in r:
        print(f"{r['catalogue']:>8} {r['model']:<9} ERROR {r['error']}", flush=True)
        return
    knn = "; ".join(f"{t.strip('-').replace('recgoat-item-', '')}: {s['method']} {s['seconds']:.1f}s"
                    + (f" recall@k {s['recall_at_k']:.3f}" if "recall_at_k" in s else "") for t, s in r["knn"].items())
    print(f"{r['catalogue']:>8} {r['model']:<9} {r['users']:>9,} {r['items']:>9,} {r['train']:>11,} "
          f"{r['build_s']:8.1f} {r['build_mb']:9.0f} {r['epoch_s']:8.1f} {r['epoch_mb']:9.0f} {r['peak_rss_mb']:9.0f} "
          f"{r['steps']:>5} {r['batch']:>9,} {r['ref_s'] * 1e3:7.1f}  {knn}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["1e4", "3e4", "1e5", "3e5", "1e6"], help="synthetic catalogue sizes (items)")
    parser.add_argument("--real", nargs="+", default=["baby", "sports"], help="real catalogues (baby, sports) or none")
    parser.add_argument("--models", nargs="+", default=["LightGCN", "RecGOAT"])
    parser.add_argument("--steps", type=int, default=8, help="training steps per epoch (train_steps_per_epoch)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--shared-data", default=DEFAULT_SHARED_DATA, help="folder holding amazon-baby/ and amazon-sports/")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    parser.add_argument("--reuse-freed-memory", choices=["False", "True", "auto"], default="False",
                        help="the allocator setting of every row (default False: one setting at every size, so "
                             "the growth rates compare like with like; auto is the protocol's rule, on below 10^6)")
    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    parser.add_argument("--_catalogue", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._worker:
        print("RESULT " + json.dumps(measure(args._worker, args._catalogue, args.shared_data, args.steps, args.threads,
                                             args.reuse_freed_memory)))
        return 0

    real = [] if args.real == ["none"] else args.real
    print(f"bench_scaling: {args.steps} steps per epoch, torch threads {args.threads or 'default'}, one process per row, "
          f"reuse_freed_memory {args.reuse_freed_memory}; "
          "synthetic catalogues in Amazon Baby's proportions; random features (timing only)")
    print(f"{'catalog':>8} {'model':<9} {'users':>9} {'items':>9} {'train int.':>11} {'build s':>8} {'build MB':>9} "
          f"{'epoch s':>8} {'epoch MB':>9} {'peak RSS':>9} {'steps':>5} {'batch':>9} {'ref ms':>7}  kNN graphs")
    rows, t_start = [], time.perf_counter()
    for catalogue in list(args.sizes) + real:
        for model in args.models:
            row = run_one(model, catalogue, args)
            rows.append(row)
            print_row(row)
    print(f"\ntotal wall time {time.perf_counter() - t_start:.0f} s")
    synthetic = [r for r in rows if "error" not in r and r["catalogue"] in args.sizes]
    print("growth exponent b of cost ~ (users + items + interactions)^b on the synthetic catalogues (b <= 1: linear or better):")
    for model in args.models:
        mine = [r for r in synthetic if r["model"] == model]
        print(f"  {model:<9} epoch time b = {growth_exponent(mine, 'epoch_s'):.2f}, epoch memory b = {growth_exponent(mine, 'epoch_mb'):.2f}, "
              f"peak RSS b = {growth_exponent(mine, 'peak_rss_mb'):.2f}, build time b = {growth_exponent(mine, 'build_s'):.2f}, "
              f"build memory b = {growth_exponent(mine, 'build_mb'):.2f}")
    refs = [r for r in synthetic if r.get("ref_s")]
    print(f"  reference kernel (CSR A @ X, O(interactions) work) b = {growth_exponent(refs, 'ref_s'):.2f}: this machine's scale")
    print("epoch time relative to the reference kernel, b_rel of epoch_s / ref_s (b_rel <= 0: no faster than linear work here):")
    for model in args.models:
        mine = [dict(r, rel=r["epoch_s"] / r["ref_s"]) for r in refs if r["model"] == model]
        print(f"  {model:<9} b_rel = {growth_exponent(mine, 'rel'):+.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
