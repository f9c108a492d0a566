"""RecGOAT's dual semantic alignment: instance level (cross-modal contrastive loss, Lemma 3.3)
and distribution level (entropic optimal transport: Sinkhorn W1, the dimension transport map).

Optimal transport is POT's (``ot.sinkhorn`` log-domain, ``ot.emd2``).
"""

import numpy as np
import torch
import torch.nn.functional as F

from recbole_recgoat.threads import single_thread


def cosine_logits(z_m, z):
    """``[B, B]`` cosine similarities ``z^m_i . z_j`` of L2-normalised rows."""
    return F.normalize(z_m, dim=1) @ F.normalize(z, dim=1).T


def cmcl(z_m, z, tau):
    """Cross-modal contrastive loss, Lemma 3.3 of RecGOAT:

    ``L = 1/B sum_i -log( exp(z^m_i . z_i / tau) / sum_j exp(z^m_i . z_j / tau) )``
    with ``z^m_i``, ``z_j`` L2-normalised.

    Args:
        z_m (Tensor): ``[B, d]`` modality representations.
        z (Tensor): ``[B, d]`` unified representations (row i is the same entity as in ``z_m``).
        tau (float): temperature.

    Returns:
        Tensor: scalar.
    """
    logits = cosine_logits(z_m, z) / tau
    return F.cross_entropy(logits, torch.arange(z.shape[0], device=z.device))


@torch.no_grad()
def lemma33_sides(z_m, z, tau, loss=None):
    """Both sides of Lemma 3.3 on a batch: ``E_i ||z^m_i - z_i||`` and ``sqrt(2 tau L + 2 tau log B)``.

    ``loss`` is the batch's CMCL value for this pair (computed if not given).
    """
    lhs = (F.normalize(z_m, dim=1) - F.normalize(z, dim=1)).norm(dim=1).mean()
    loss = cmcl(z_m, z, tau) if loss is None else loss
    b = z.shape[0]
    rhs = torch.sqrt(2 * tau * loss + 2 * tau * np.log(b))
    return float(lhs), float(rhs)


def unit_euclidean_cost(x, y):
    """``[n, m]`` Euclidean distances between the L2-normalised rows of ``x [n, d]`` and ``y [m, d]`` (in [0, 2])."""
    return torch.cdist(F.normalize(x, dim=1), F.normalize(y, dim=1))


def entropic_plan(cost, eps, n_iter=200, stop_thr=1e-6, warmstart=None, return_potentials=False):
    """Entropic OT plan with uniform marginals, log-domain Sinkhorn (POT ``method='sinkhorn_log'``).

    ``P* = argmin_P <P, C> - eps H(P)`` s.t. ``P 1 = 1/n``, ``P^T 1 = 1/m``.  Computed in the log
    domain, so no entry underflows to zero for costs that are large relative to ``eps``.

    Args:
        cost (Tensor): ``[n, m]`` cost (no gradient is taken through the plan).
        eps (float): entropic regularisation.
        warmstart (tuple | None): log-potentials ``(u [n], v [m])`` to start from (e.g. the
            previous batch's); the fixed point is the same, it is reached in fewer iterations.
        return_potentials (bool): also return the final ``(u, v)``.

    Returns:
        Tensor: ``[n, m]`` plan (and the potentials when asked).
    """
    import ot

    c = cost.detach()
    n, m = c.shape
    a = torch.full((n,), 1.0 / n, dtype=c.dtype, device=c.device)
    b = torch.full((m,), 1.0 / m, dtype=c.dtype, device=c.device)
    with single_thread():  # hundreds of small kernels: one thread, no OpenMP wake-ups (same bits)
        plan, log = ot.sinkhorn(
            a, b, c, eps, method="sinkhorn_log", numItermax=n_iter, stopThr=stop_thr, warn=False, log=True, warmstart=warmstart
        )
    return (plan, (log["log_u"], log["log_v"])) if return_potentials else plan


def sinkhorn_w1(x, y, eps=0.05, n_iter=200):
    """Entropic estimate of ``W1(P, Q)`` between the empirical distributions of rows of ``x`` and ``y``.

    Cost: Euclidean distance between L2-normalised rows; uniform weights.  Value ``<P*, C>`` with the
    entropic plan ``P*``; differentiable in ``x`` and ``y`` (gradient ``P*`` w.r.t. the cost, the
    envelope theorem; the plan itself is not differentiated).

    Returns:
        Tensor: scalar.
    """
    cost = unit_euclidean_cost(x, y)
    return (cost * entropic_plan(cost, eps, n_iter)).sum()


@torch.no_grad()
def exact_w1(x, y):
    """Exact ``W1`` (network simplex, POT ``emd2``) between rows of ``x`` and ``y``, same cost as :func:`sinkhorn_w1`."""
    import ot

    cost = unit_euclidean_cost(x, y).double().cpu().numpy()
    n, m = cost.shape
    return float(ot.emd2(np.full(n, 1.0 / n), np.full(m, 1.0 / m), cost))


@torch.no_grad()
def dimension_transport_map(z_m, z_id, eps=0.05, n_iter=200, warmstart=None, return_potentials=False):
    """Barycentric map ``d * P*`` between the ``d`` feature dimensions of ``z_m`` and ``z_id``.

    Each dimension is a point: column ``k`` of ``z_m [N, d]`` (L2-normalised over the ``N`` rows)
    against column ``l`` of ``z_id [N, d]``; ``P*`` is the entropic plan (uniform marginals ``1/d``)
    of their Euclidean cost, so ``d * P*`` is row-stochastic and ``z_m @ (d P*)`` carries the
    modality into the ID space.  Log-domain: it stays non-zero at any embedding scale.

    Returns:
        Tensor: ``[d, d]``, no gradient (and the Sinkhorn potentials when asked, see
        :func:`entropic_plan`).
    """
    out = entropic_plan(unit_euclidean_cost(z_m.T, z_id.T), eps, n_iter, warmstart=warmstart, return_potentials=return_potentials)
    if return_potentials:
        return out[0] * z_m.shape[1], out[1]
    return out * z_m.shape[1]
