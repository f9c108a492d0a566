"""The same arithmetic in fewer, larger kernel calls: regroupings that keep a model's loss readable.

On a CPU every small op opens an OpenMP parallel region, and on a busy 2-core machine each region
pays for waking the idle thread. Issue 11 measured the regions per training step with
``benchmarks/profile_step.py --regions`` (docs/performance.md, "OpenMP regions per step"): batching
the loss terms below took VBPR from 56 to 45 regions per step, FREEDOM from 132 to 104 and BM3 from
235 to 158, with identical numbers (the store's seed-999 records reproduce to the last digit).
A model calls these helpers where its paper writes the plain formula, so the loss reads like the
paper and the regrouping lives here, once, beside the benchmark that justifies it.

Shapes: ``B`` batch, ``d`` / ``k`` vector sizes, ``N`` rows of a table, ``M`` encoders.
"""

import torch
import torch.nn.functional as F


def item_pairs(pos, neg):
    """``[B, 2]``: each row ``(i+, i-)``."""
    return torch.stack([pos, neg], dim=1)


def pair_scores(user_vecs, item_table, pos, neg):
    """``(s+ [B], s- [B])`` with ``s_b = u_b . item_table[i_b]``: one ``[B, 2]`` gather and one ``bmm``
    instead of two gathers, two products and two reductions.

    Args:
        user_vecs (Tensor): ``[B, d]`` the batch's users.
        item_table (Tensor): ``[N, d]`` every item's vector.
        pos, neg (LongTensor): ``[B]`` positive and negative items.
    """
    s = torch.bmm(item_table[item_pairs(pos, neg)], user_vecs.unsqueeze(2)).squeeze(2)  # [B, 2]
    return s[:, 0], s[:, 1]


def encode_pairs(encode, pos, neg):
    """``[B, 2, k]``: ``encode(items)`` of every ``(i+, i-)`` pair, each distinct item encoded once.

    Args:
        encode (callable): ``LongTensor [U] -> Tensor [U, k]`` (a projection of item features).
    """
    uniq, inverse = torch.unique(item_pairs(pos, neg), return_inverse=True)
    return encode(uniq)[inverse]


def encoded_pair_scores(user_vecs, encoders, pos, neg):
    """``[(s+ [B], s- [B]) per encoder]`` with ``s_b = u_b . encoder(i_b)``: each distinct item encoded
    once per encoder, and every encoder's scores in one ``[B, 2M]`` ``bmm``.

    Args:
        user_vecs (Tensor): ``[B, d]``.
        encoders (list[callable]): ``LongTensor [U] -> Tensor [U, d]`` each.
    """
    uniq, inverse = torch.unique(item_pairs(pos, neg), return_inverse=True)
    feats = torch.cat([encode(uniq)[inverse] for encode in encoders], dim=1)  # [B, 2M, d]
    s = torch.bmm(feats, user_vecs.unsqueeze(2)).squeeze(2)  # [B, 2M]: (pos, neg) per encoder
    return [(s[:, 2 * k], s[:, 2 * k + 1]) for k in range(len(encoders))]


def pair_dot(pair_vecs, user_vecs):
    """``[B, 2]``: ``pair_vecs[b, j] . user_vecs[b]`` for ``pair_vecs [B, 2, k]``, ``user_vecs [B, k]`` (one ``bmm``)."""
    return torch.bmm(pair_vecs, user_vecs.unsqueeze(2)).squeeze(2)


def pair_emb_loss(user_vecs, pair_vecs):
    """RecBole's ``EmbLoss(u, q+, q-)`` = ``(||u||_F + ||q+||_F + ||q-||_F) / B`` (unsquared norms) for
    ``pair_vecs [B, 2, k]``: one reduction over both halves (``EmbLoss`` on the two strided halves
    costs 10 more regions per step in backward)."""
    norms = torch.linalg.vector_norm(pair_vecs, dim=(0, 2))  # [2]: ||q+||_F, ||q-||_F
    return (torch.linalg.vector_norm(user_vecs) + norms.sum()) / user_vecs.shape[0]


def apply_once(module, inputs):
    """``[module(x) for x in inputs]`` as one call on the rows of all inputs (a shared predictor)."""
    out = module(torch.cat(inputs))
    return list(torch.split(out, [x.shape[0] for x in inputs]))


def cosine_distances(pairs):
    """``[P]``: ``1 - mean_b cos(a_b, c_b)`` for each ``(a [B, d], c [B, d])`` of ``pairs``, in one
    stacked ``[P, B, d]`` call."""
    online = torch.stack([a for a, _ in pairs])
    target = torch.stack([c for _, c in pairs])
    return 1.0 - F.cosine_similarity(online, target, dim=-1).mean(dim=1)


def side_by_side_products(feats, weights):
    """``[N, sum_m c_m]``: ``f_m @ W_m`` for every ``m``, side by side (``feats [N, F_m]``,
    ``weights [F_m, c_m]``).

    Each product is computed as ``(W_m^T f_m^T)^T``, the same product, which MKL runs about 20%
    faster on CPU for a tall ``f_m`` (``profile_step.py``), and one output keeps the later sparse
    products to one call for all modalities.
    """
    return torch.cat([(w.T @ f.T).T for f, w in zip(feats, weights)], dim=1)
