#!/usr/bin/env python
"""The shared kernels of ``recbole_recgoat.model.layers`` (``sparse``, ``losses``) against the plain torch formulation,
measured in the same run on Baby-sized shapes.

    python benchmarks/bench_kernels.py                 # one torch thread
    python benchmarks/bench_kernels.py --threads 2

* ``logsumexp_dot`` (InfoNCE's log-normaliser, value + gradients in one blockwise pass) against
  autograd through ``torch.logsumexp(scale * a @ c.T)``, which holds the ``[B, N]`` logits and
  their softmax: LGMRec's user term (B = 1,900 distinct users of a batch, N = 19,446 users, rank
  4 factors) and item term (1,500 x 7,051).
* ``SparseOperator @ x`` (CPU: torch's row-parallel ``sparse.mm(..., "sum")``) against MKL's CSR
  product (``csr @ x``) and ``torch.sparse.mm`` on COO (RecBole's LightGCN), on the normalised
  adjacency of a random bipartite graph of Baby's size (19,446 + 7,051 nodes, 119,674 edges), 64
  and 128 columns (the backward pass is the same product with the transpose).

Each figure is the median of ``--reps`` runs after a warm-up; the ratio is baseline / ours.
"""

import argparse
import os
import statistics
import sys
import time
import warnings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def median_ms(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args(argv)

    import recbole_recgoat  # noqa: F401  (first: its thread policy applies before torch loads)
    import torch
    import torch.nn.functional as F

    from recbole_recgoat.model.layers.graph import bipartite_norm_adj
    from recbole_recgoat.model.layers.losses import logsumexp_dot
    from recbole_recgoat.model.layers.sparse import SparseOperator

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", UserWarning)  # CSR beta notice
    print(f"bench_kernels: torch {torch.__version__}, {torch.get_num_threads()} thread(s), median of {args.reps}")
    gen = torch.Generator().manual_seed(0)

    print("\nlogsumexp_dot, value + backward       plain ms   ours ms   ratio  max |grad diff|")
    for name, b, n in (("LGMRec user term", 1900, 19446), ("LGMRec item term", 1500, 7051)):
        a = F.normalize(torch.randn(b, 4, generator=gen), dim=1).requires_grad_()
        c = F.normalize(torch.rand(n, 4, generator=gen), dim=1).requires_grad_()
        w = torch.randint(1, 3, (b,), generator=gen).float()

        def plain():
            a.grad = c.grad = None
            (torch.logsumexp(5.0 * a @ c.T, dim=1) * w).sum().backward()
            return a.grad, c.grad

        def ours():
            a.grad = c.grad = None
            logsumexp_dot(a, c, 5.0, w, bounded=True).backward()
            return a.grad, c.grad

        diff = max((x - y).abs().max().item() for x, y in zip([g.clone() for g in plain()], ours()))
        t_plain, t_ours = median_ms(plain, args.reps), median_ms(ours, args.reps)
        print(f"  {name:<34} {t_plain:9.1f} {t_ours:9.1f} {t_plain / t_ours:7.2f}  {diff:.1e}")

    print("\nsparse A @ x (one product; a backward pass is one more)  COO ms   MKL CSR ms   ours ms   vs COO   vs MKL")
    n_users, n_items, n_edges = 19446, 7051, 119674
    users = torch.randint(0, n_users, (n_edges,), generator=gen)
    items = torch.randint(0, n_items, (n_edges,), generator=gen)
    adj = bipartite_norm_adj(users, items, n_users, n_items).coalesce()
    op = SparseOperator(adj, symmetric=True)
    with torch.no_grad():
        for cols in (64, 128):
            x = torch.randn(n_users + n_items, cols, generator=gen)
            t_coo = median_ms(lambda: torch.sparse.mm(adj, x), args.reps)
            t_mkl = median_ms(lambda: op.csr @ x, args.reps)
            t_ours = median_ms(lambda: op @ x, args.reps)
            print(f"  {cols:>3} columns {'':<42} {t_coo:8.2f} {t_mkl:12.2f} {t_ours:9.2f} {t_coo / t_ours:8.2f} {t_mkl / t_ours:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
