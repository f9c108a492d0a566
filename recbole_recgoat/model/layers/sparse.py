"""Fixed sparse matrices as differentiable linear maps (CSR kernels forwards and backwards),
LightGCN propagation over them, and per-edge sums / dot products over a fixed bipartite edge list
whose edge values change every step (:class:`BipartiteEdgeOps`, GRCN).

The CSR kernel is kept hand-written (not ``torch.sparse.mm`` on COO): docs/performance.md measures
it about 3x faster on CPU, because COO's backward transposes and re-sorts the matrix every call.
"""

import warnings

import torch
import torch.nn as nn


def _csr_mm(a, x):
    """``a @ x`` for a CSR ``a``. On CPU torch's row-parallel ``sparse.mm(..., "sum")`` kernel (one
    thread per output row, a fixed summation order): 1.6x faster than MKL's at 128 columns on one
    thread, 2.6x on two, and without its zero-filled temporaries. On CUDA cuSPARSE (``a @ x``)."""
    if a.device.type == "cpu":
        return torch.sparse.mm(a, x.contiguous(), "sum")
    return a @ x


class _CSRMatMul(torch.autograd.Function):
    """``A @ x`` with a fixed sparse CSR ``A`` (no gradient for ``A``); backward ``A^T @ g``."""

    @staticmethod
    def forward(ctx, x, a, a_t):
        ctx.a_t = a_t
        return _csr_mm(a, x)

    @staticmethod
    def backward(ctx, grad):
        return _csr_mm(ctx.a_t, grad), None, None


class SparseOperator(nn.Module):
    """A fixed sparse matrix ``A`` ``[N, M]`` as a differentiable linear map ``x -> A @ x`` (CSR).

    ``op @ x`` runs CSR kernels forwards and backwards (the transpose is kept as its own CSR, or
    ``A`` itself when ``symmetric``). Gradients flow to ``x`` only. The matrices are buffers, so
    the operator moves with the model that holds it (``model.to(device)``); they are not saved in
    checkpoints (rebuilt from the data).

    Args:
        a (Tensor): sparse COO (or CSR) ``[N, M]``.
        symmetric (bool): ``A == A^T`` (a normalised undirected graph); saves the transpose.
    """

    def __init__(self, a, symmetric=False):
        super().__init__()
        a = a.coalesce() if a.layout == torch.sparse_coo else a.to_sparse_coo().coalesce()
        self.shape = tuple(a.shape)
        self.symmetric = bool(symmetric)
        with warnings.catch_warnings():  # torch's notes on CSR (beta) and on its invariant checks
            for message in ("Sparse CSR tensor support is in beta state", "Sparse invariant checks are implicitly disabled"):
                warnings.filterwarnings("ignore", message=message, category=UserWarning)
            csr = a.to_sparse_csr()
            csr_t = None if symmetric else a.t().coalesce().to_sparse_csr()
        self._set(a, csr, csr_t)

    def _set(self, coo, csr, csr_t):
        self.register_buffer("coo", coo, persistent=False)  # [N, M] COO, for inspection
        self.register_buffer("csr", csr, persistent=False)  # [N, M]
        self.register_buffer("csr_t", csr_t, persistent=False)  # [M, N]; None when symmetric

    @property
    def device(self):
        return self.csr.device

    @property
    def T(self):
        """The transpose ``[M, N]`` as an operator (shares the CSR arrays)."""
        op = SparseOperator.__new__(SparseOperator)
        nn.Module.__init__(op)
        op.shape, op.symmetric = self.shape[::-1], self.symmetric
        if self.symmetric:
            op._set(None, self.csr, None)
        else:
            op._set(None, self.csr_t, self.csr)
        return op

    def __matmul__(self, x):
        return _CSRMatMul.apply(x, self.csr, self.csr if self.symmetric else self.csr_t)

    def extra_repr(self):
        return f"shape={self.shape}, nnz={self.csr.values().numel()}, symmetric={self.symmetric}"


def propagate(op, x, n_layers, mean=True):
    """``mean_{l=0..L} A^l x`` (LightGCN, He et al., SIGIR 2020, eq. 4) or, with ``mean=False``,
    ``A^L x`` (last layer only).

    Args:
        op (SparseOperator | Tensor): ``[N, N]`` normalised adjacency (operator or sparse tensor).
        x (Tensor): ``[N, d]`` layer-0 embeddings.
        n_layers (int): ``L``.
    """
    out, acc = x, x
    for _ in range(n_layers):
        out = op @ out
        if mean:
            acc = acc + out
    return acc / (n_layers + 1) if mean else out


class BipartiteEdgeOps(nn.Module):
    """Per-edge weighted sums and per-edge dot products over a fixed bipartite edge list
    ``(u_e, i_e)``, ``e = 1..E``, with edge values that change every step (GRCN's affinities and
    refined-graph weights), as sparse CSR kernels instead of ``[E, d]`` gathers and ``index_add``.

    * ``to_users(w, x) = sum_{e: u_e = u} w_e x[i_e]``  ``[n_users, d]`` (and ``to_items``): a CSR
      product (SpMM) with the values ``w``;
    * ``dot(a, b)_e = a[u_e] . b[i_e]``  ``[E]``: ``torch.sparse.sampled_addmm`` (SDDMM).

    Each is the other's backward (``d to_users / d w = dot(g, x)``, ``d dot / d a = to_users(g, b)``),
    so forwards and backwards never materialise an ``[E, d]`` tensor. Justification
    (``benchmarks/profile_step.py GRCN --dataset lastfm-2k --threads 1 --shapes``, commit 9ece2c3,
    docs/performance.md "The four baselines of issue 25"): GRCN's step spent ~80% of its time in
    ``[E, 64]`` ``mul`` / ``fill_`` / ``index_select`` / ``scatter_add_`` (E = 44,327). Median ms
    of one call, one thread, quiet, d = 64 (Last.fm-2K's graph size / Baby's, 1,859 x 1,426 users x
    items with 44 k edges / 19,446 x 7,051 with 120 k):

    ===============================================  ============  ============
    op                                               Last.fm-2K    Baby
    ===============================================  ============  ============
    SpMM ``zeros.index_add(0, u, w[:, None] x[i])``  2.92          14.8
    SpMM ``sparse.mm(csr, x, "sum")``                0.33          1.41 / 1.65
    SpMM MKL ``csr @ x`` (used)                      0.17          1.28 / 1.25
    SDDMM ``(a[u] * b[i]).sum(1)``                   2.74          18.2
    SDDMM ``sampled_addmm`` (used)                   0.27          1.39
    ===============================================  ============  ============

    Same sums in another order: equal to float tolerance (not bit-identical).

    ``copies = M`` stacks ``M`` copies of the graph side by side (block-diagonal: copy ``k``'s users
    are rows ``k n_users ..``, its items ``k n_items ..``, its edges ``k E ..``), so that ``M``
    modalities' computations over the same graph run as one kernel call each (tensors
    ``[M n_users, C]``, ``[M n_items, C]``, ``[M E]``): each row's sum is the one a single copy
    computes (the same numbers), and the per-call overhead, which on Last.fm-2K's small graph is about
    half of each op's cost, is paid once instead of ``M`` times.

    The values ``w`` and the outputs of :meth:`dot` are in the edge list's own order (copy after
    copy); ``users`` / ``items`` ``[copies E]`` are the (stacked) endpoints of each edge.

    Args:
        users, items (LongTensor): ``[E]`` edge endpoints (distinct pairs).
        n_users, n_items (int): node counts.
        copies (int): block-diagonal copies of the graph (default 1).
    """

    def __init__(self, users, items, n_users, n_items, copies=1):
        super().__init__()
        copies = int(copies)
        users = torch.cat([users + k * int(n_users) for k in range(copies)])
        items = torch.cat([items + k * int(n_items) for k in range(copies)])
        self.copies = copies
        self.n_users, self.n_items = int(n_users) * copies, int(n_items) * copies
        by_user = torch.argsort(users * self.n_items + items, stable=True)
        by_item = torch.argsort(items * self.n_users + users, stable=True)
        identity = torch.equal(by_user, torch.arange(users.numel(), device=users.device))
        # MKL's CSR kernels take 32-bit indices: stored so, they are not converted at every call
        index = torch.int32 if max(self.n_users, self.n_items, users.numel()) < 2**31 else torch.long
        self.register_buffer("users", users, persistent=False)
        self.register_buffer("items", items, persistent=False)
        self.register_buffer("by_user", None if identity else by_user, persistent=False)
        self.register_buffer("by_item", by_item, persistent=False)
        self.register_buffer("user_ptr", self._row_ptr(users, self.n_users).to(index), persistent=False)
        self.register_buffer("item_ptr", self._row_ptr(items, self.n_items).to(index), persistent=False)
        self.register_buffer("user_cols", items[by_user].to(index), persistent=False)  # items, user-major
        self.register_buffer("item_cols", users[by_item].to(index), persistent=False)  # users, item-major
        with warnings.catch_warnings():  # torch warns once per process that CSR is in beta
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state", category=UserWarning)
            # SDDMM's sparsity pattern (user-major, zero values): sampled_addmm's ``input``, times beta = 0
            self.register_buffer("pattern", self._csr(users.new_zeros(users.numel(), dtype=torch.float32), True), persistent=False)

    @staticmethod
    def _row_ptr(rows_, n):
        ptr = torch.zeros(n + 1, dtype=torch.long, device=rows_.device)
        ptr[1:] = torch.cumsum(torch.bincount(rows_, minlength=n), 0)
        return ptr

    def _csr(self, w, to_users):
        """CSR ``[n_users, n_items]`` (``to_users``) or ``[n_items, n_users]`` with edge values ``w``."""
        if to_users:
            vals = w if self.by_user is None else w.index_select(0, self.by_user)
            return torch.sparse_csr_tensor(self.user_ptr, self.user_cols, vals, (self.n_users, self.n_items), check_invariants=False)
        vals = w.index_select(0, self.by_item)
        return torch.sparse_csr_tensor(self.item_ptr, self.item_cols, vals, (self.n_items, self.n_users), check_invariants=False)

    def _spmm(self, w, x, to_users):
        # MKL's CSR product (``a @ x``), not the row-parallel ``sparse.mm(..., "sum")`` of
        # SparseOperator: at these widths (64) and sizes it is the faster one (figures above)
        return self._csr(w, to_users) @ x.contiguous()

    def _sddmm(self, a, b):
        """``a[u_e] . b[i_e]`` ``[E]`` (edge order)."""
        pattern = self.pattern if self.pattern.dtype == a.dtype else self.pattern.to(a.dtype)
        vals = torch.sparse.sampled_addmm(pattern, a.contiguous(), b.t(), beta=0.0).values()
        if self.by_user is None:
            return vals
        return torch.empty_like(vals).index_copy_(0, self.by_user, vals)

    def to_users(self, w, x_items):
        """``[n_users, d]``: ``sum_{i in N(u)} w_ui x_items[i]``."""
        return _EdgeSum.apply(w, x_items, self, True)

    def to_items(self, w, x_users):
        """``[n_items, d]``: ``sum_{u in N(i)} w_ui x_users[u]``."""
        return _EdgeSum.apply(w, x_users, self, False)

    def dot(self, x_users, x_items):
        """``[E]``: ``x_users[u_e] . x_items[i_e]``."""
        return _EdgeDot.apply(x_users, x_items, self)

    def extra_repr(self):
        return f"copies={self.copies}, n_users={self.n_users}, n_items={self.n_items}, edges={self.user_cols.numel()}"


class _EdgeSum(torch.autograd.Function):
    """``out[dst] = sum_e w_e x[src_e]``; backward ``dx = A(w)^T g``, ``dw_e = g[dst_e] . x[src_e]``."""

    @staticmethod
    def forward(ctx, w, x, ops, to_users):
        ctx.ops, ctx.to_users = ops, to_users
        ctx.save_for_backward(w, x)
        return ops._spmm(w, x, to_users)

    @staticmethod
    def backward(ctx, grad):
        w, x = ctx.saved_tensors
        ops, to_users = ctx.ops, ctx.to_users
        grad_w = grad_x = None
        if ctx.needs_input_grad[1]:
            grad_x = ops._spmm(w, grad, not to_users)
        if ctx.needs_input_grad[0]:
            grad_w = ops._sddmm(grad, x) if to_users else ops._sddmm(x, grad)
        return grad_w, grad_x, None, None


class _EdgeDot(torch.autograd.Function):
    """``s_e = a[u_e] . b[i_e]``; backward ``da = A(g) b``, ``db = A(g)^T a``."""

    @staticmethod
    def forward(ctx, a, b, ops):
        ctx.ops = ops
        ctx.save_for_backward(a, b)
        return ops._sddmm(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        ops = ctx.ops
        grad_a = ops._spmm(grad, b, True) if ctx.needs_input_grad[0] else None
        grad_b = ops._spmm(grad, a, False) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b, None
