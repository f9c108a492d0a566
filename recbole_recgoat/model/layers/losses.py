"""Recommendation losses: BPR, and InfoNCE over all candidates through a single-pass blockwise
logsumexp (never the whole ``[B, N]`` logits; docs/performance.md: half the work of a forward pass
followed by a backward pass).  The embedding-norm penalty is RecBole's ``EmbLoss``.
"""

import torch
import torch.nn.functional as F


def bpr_loss(pos_scores, neg_scores):
    """BPR (Rendle et al., UAI 2009): ``mean(-log sigmoid(s+ - s-))`` over ``[B]`` score pairs.

    Not RecBole's ``BPRLoss``, which computes ``-log(1e-10 + sigmoid(.))``: another function (it
    saturates at 23 and rounds differently, 4e-7 on a batch), so the published numbers would move.
    """
    return -F.logsigmoid(pos_scores - neg_scores).mean()


def bpr_dot_loss(u, pos_items, neg_items):
    """:func:`bpr_loss` of inner-product scores, ``mean(-log sigmoid(<u, i+> - <u, i->))``.

    Args:
        u, pos_items, neg_items (Tensor): ``[B, d]`` the batch's users, positive and negative items.
    """
    return bpr_loss((u * pos_items).sum(dim=1), (u * neg_items).sum(dim=1))


def info_nce(anchor, positive, candidates, tau, weights=None):
    """InfoNCE summed over the batch: ``sum_b -log softmax_j(cos(a_b, c_j) / tau)[positive]``.

    Args:
        anchor, positive (Tensor): ``[B, d]``; ``positive[b]`` is ``anchor[b]``'s positive.
        candidates (Tensor): ``[N, d]`` the denominator's candidates (the positives among them).
        tau (float): temperature.
        weights (Tensor | None): ``[B]`` multiplicity of each row (a batch's repeated rows
            computed once, counted ``weights[b]`` times).

    Returns:
        Tensor: scalar, ``sum_b w_b (logsumexp_j(cos(a_b, c_j)/tau) - cos(a_b, p_b)/tau)``.
    """
    a = F.normalize(anchor, dim=1)
    p = F.normalize(positive, dim=1)
    c = F.normalize(candidates, dim=1)
    return logsumexp_dot(a, c, 1.0 / tau, weights, bounded=True) - _weighted_sum((a * p).sum(dim=1) / tau, weights)


def dot_info_nce(anchor, positive, tau):
    """In-batch InfoNCE over raw dot products, ``mean_b -log softmax_j(a_b . p_j / tau)[b]``
    (``F.cross_entropy(a @ p.T / tau, arange(B))``, SLMRec's FAC terms), through the blockwise
    :func:`logsumexp_dot` (stable, max-shifted: dot products are unbounded) instead of the whole
    ``[B, B]`` logits, their ``log_softmax`` and its backward.

    Justification: ``benchmarks/profile_step.py SLMRec --dataset lastfm-2k --threads 1 --shapes``
    (commit 9ece2c3): the two ``cross_entropy`` calls of FAC on ``[2048, 2048]`` logits (div,
    ``log_softmax`` and backward, the zero-filled ``nll_loss`` gradient, four ``B x B x k`` products)
    took ~180 of the step's ~290 profiled ms. Equal to float tolerance (another summation order).

    Args:
        anchor, positive (Tensor): ``[B, k]``; ``positive[b]`` is ``anchor[b]``'s positive, the
            other rows its negatives.
        tau (float): temperature.
    """
    lse = logsumexp_dot(anchor, positive, 1.0 / tau)
    return (lse - (anchor * positive).sum(dim=1).sum() / tau) / anchor.shape[0]


def _weighted_sum(x, weights=None):
    """``sum_b w_b x_b`` (``w = 1`` when ``weights`` is None)."""
    return x.sum() if weights is None else (x * weights).sum()


# Floor of the max-shifted logits before ``exp`` (unbounded case): ``exp(-80) = 1.8e-35``, so each
# row's sum (at least ``exp(0) = 1``, its maximum's term) and its gradients are the same float32
# numbers for any ``N < 10^27`` candidates, while no ``exp`` underflows to a subnormal float: those
# slow the CPU ops that read them many-fold (SLMRec's FAC logits spread past 87 after two epochs
# on Last.fm-2K; its fourth epoch took 16.9 s instead of 1.8 s, docs/performance.md).
UNDERFLOW = -80.0


class _WeightedLogSumExpDot(torch.autograd.Function):
    """``sum_b w_b lse_b`` with ``lse_b = log sum_j exp(scale * a_b . c_j)``, in row blocks.

    One pass over the ``[B, N]`` logits, never held whole: each block of rows is exponentiated
    once and, while it is in cache, also gives the gradients (the output is a scalar, so
    ``d/da_b = w_b scale softmax_b @ c`` and ``d/dc = scale sum_b w_b softmax_b^T a_b`` are final
    up to the incoming scalar). Half the work of a forward pass followed by a backward pass that
    recomputes the logits. ``bounded``: the caller guarantees ``|a_b . c_j| <= 1`` and ``scale < 80``,
    so float32 ``exp`` cannot overflow and the max-shift is skipped. The candidates are kept
    transposed (``[k, N]``, contiguous): a thin ``k`` (a low-rank factor) then streams along ``N``.
    """

    @staticmethod
    def forward(ctx, a, c, weights, scale, rows, bounded, need_grad):
        a_scaled = a * scale
        c_t = c.T.contiguous()  # [k, N]
        total = a.new_zeros(())
        grad_a = torch.empty_like(a_scaled) if need_grad else None
        grad_c_t = torch.zeros_like(c_t) if need_grad else None
        for s in range(0, a.shape[0], rows):
            a_s, w = a_scaled[s : s + rows], weights[s : s + rows]
            e = a_s @ c_t  # [r, N] logits
            shift = None if bounded else e.max(dim=1, keepdim=True).values
            e = e.exp_() if bounded else e.sub_(shift).clamp_(min=UNDERFLOW).exp_()
            sums = e.sum(dim=1)  # [r]
            lse = sums.log() if bounded else sums.log() + shift[:, 0]
            total += (w * lse).sum()
            if need_grad:
                coef = (w / sums)[:, None]  # softmax_bj w_b = e_bj coef_b
                grad_a[s : s + rows] = (e @ c_t.T).mul_(coef)
                grad_c_t.addmm_((a_s * coef).T, e)
        if need_grad:
            ctx.save_for_backward(grad_a.mul_(scale), grad_c_t.T)
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        grad_a, grad_c = ctx.saved_tensors
        return grad_a * grad, grad_c * grad, None, None, None, None, None


def logsumexp_dot(a, c, scale=1.0, weights=None, block_bytes=None, bounded=False):
    """``sum_b w_b logsumexp_j(scale * a_b . c_j)`` (a scalar) for ``a [B, k]``, ``c [N, k]``,
    ``weights [B]`` (default 1), in ``O(block x N)`` memory (blocks of ``block_bytes``; default
    1 MiB on CPU, which stays in a core's cache and measured fastest, 64 MiB on a GPU, where fewer
    and larger kernels win).

    ``bounded=True`` promises ``|a_b . c_j| <= 1`` (cosines); with ``scale < 80`` it skips the max
    shift (float32 ``exp`` cannot overflow), otherwise the stable logsumexp is used. Differentiable
    in ``a`` and ``c`` (once; not in ``weights``).
    """
    if block_bytes is None:
        block_bytes = 2**20 if a.device.type == "cpu" else 64 * 2**20
    rows = max(1, int(block_bytes // (a.element_size() * max(c.shape[0], 1))))
    if weights is None:
        weights = a.new_ones(a.shape[0])
    need_grad = torch.is_grad_enabled() and (a.requires_grad or c.requires_grad)
    bounded = bool(bounded) and abs(float(scale)) < 80.0
    return _WeightedLogSumExpDot.apply(a, c, weights.to(a.dtype), float(scale), rows, bounded, need_grad)


def info_nce_lowrank(anchor, positive, cand_left, cand_right, tau, weights=None):
    """:func:`info_nce` whose candidates are the rows of ``cand_left @ cand_right`` (``[N, r] x [r, d]``).

    Identical value (up to rounding): ``cos(a, c_j) = (a_hat . (L_j R)) / ||L_j R||`` is computed as
    ``(a_hat R^T) . (L_j / ||L_j R||)``, so the ``B x N`` similarity costs ``B N r`` instead of
    ``B N d`` (LGMRec's hypergraph embeddings have rank ``r`` = the number of hyperedges).
    """
    a = F.normalize(anchor, dim=1)
    p = F.normalize(positive, dim=1)
    norms = (cand_left @ cand_right).norm(dim=1, keepdim=True).clamp_min(1e-12)  # [N, 1]
    lse = logsumexp_dot(a @ cand_right.T, cand_left / norms, 1.0 / tau, weights, bounded=True)
    return lse - _weighted_sum((a * p).sum(dim=1) / tau, weights)
