"""MGCN: "Multi-View Graph Convolutional Network for Multimedia Recommendation", Penghang Yu,
Zhiyi Tan, Guanming Lu and Bing-Kun Bao, ACM Multimedia 2023, arXiv:2308.03588 (reference code:
MMRec ``src/models/mgcn.py``; the authors' ``demonph10/MGCN``).

Notation: ``d = embedding_size``, ``M`` modalities, ``N = n_users + n_items``, ``E_id`` the item ID
embeddings ``[n_items, d]``, ``E_u`` the user ID embeddings ``[n_users, d]``, ``f_m`` the item
features of modality ``m`` ``[n_items, F_m]`` (fine-tuned copies with ``finetune_features``),
``A_hat`` the normalised training bipartite adjacency, ``R_hat = D_u^-1/2 R D_i^-1/2``
``[n_users, n_items]`` its user-item block, ``S_m`` the frozen item-item graph of modality ``m``.

* Behaviour-guided purifier (eq. 1), per modality::

      x_m       = W_m f_m + b_m                                   [n_items, d]   (projection)
      E~_m      = E_id * sigmoid(W_g,m x_m + b_g,m)               [n_items, d]   (the ID gates the feature)

* Multi-view graph convolution (eqs. 2-4)::

      user-item view:  E_bar_id = mean_{l=0..L_ui} A_hat^l [E_u; E_id]          [N, d]
      item-item view:  H_m = S_m^{L_mm} E~_m  (last layer),  U_m = R_hat H_m     [n_items, d], [n_users, d]
                       E_bar_m = [U_m; H_m]                                     [N, d]

  ``S_m = D^-1/2 W_m D^-1/2``: the ``knn_k`` cosine neighbours of every item in the RAW features
  (the item itself among them), weighted by the cosine, directed, ``D`` the row sums of ``W_m``;
  built once from item features only (no interaction enters it) and frozen.

* Behaviour-aware fuser (eqs. 5-8), for every node (users and items)::

      alpha_m   = softmax_m( q^T tanh(W_q E_bar_m + b_q) )                      [N, M]   (common-part attention)
      E_c       = sum_m alpha_m E_bar_m                                         [N, d]   (common part)
      P_m       = sigmoid(W_p,m E_bar_id + b_p,m)                               [N, d]   (behaviour preference)
      E_s,m     = P_m * (E_bar_m - E_c)                                         [N, d]   (modality-specific part)
      E_side    = (E_c + sum_m E_s,m) / (M + 1)                                 [N, d]
      E         = E_bar_id + E_side ;  score(u, i) = E_u . E_i

* Loss (eqs. 9-11)::

      L = BPR(E_u, E_i+, E_i-) + cl_weight * L_cl
          + reg_weight * (||E_u||^2 + ||E_i+||^2 + ||E_i-||^2) / (2 train_batch_size)
      L_cl = InfoNCE_tau(E_side[items+], E_bar_id[items+]) + InfoNCE_tau(E_side[users], E_bar_id[users])

  ``InfoNCE_tau(a, b) = mean_b -log( exp(cos(a_b, b_b)/tau) / sum_j exp(cos(a_b, b_j)/tau) )``, the
  denominator over the batch's rows ``j`` of the second view (repeated rows included), as the
  reference's ``InfoNCE``; :func:`~recbole_recgoat.model.layers.losses.info_nce` with the
  positives as candidates, divided by ``B``. The regulariser divides by the configured
  ``train_batch_size`` (the reference's ``self.batch_size``), also in an epoch's last, smaller batch.

Any number of modalities: the reference hard-codes image and text (two softmax logits, two gates
per kind, ``/ 3``). Here the views are stacked ``[M, N, d]``; one shared query network scores
every modality, the softmax runs over the ``M`` modalities, the common part is the
attention-weighted sum of the ``M`` views, every modality has its own purifier gate and preference
gate, and the side embedding is the mean of the common part and the ``M`` specific parts
(``/ (M + 1)``, the reference's ``/ 3`` for ``M = 2``). With one modality ``alpha = 1``, the common
part is the view itself and the specific part is zero.

Deviations from the reference code:

* Softmax axis (``mgcn_softmax_over``): ``modalities`` (default; MMRec's ``Softmax(dim=-1)``, the
  paper's attention over modalities). The authors' repository has ``Softmax(dim=0)``: over all
  ``N`` nodes of each modality (``nodes``), so the weights shrink as ``1/N`` and do not sum to one
  per node; kept as the switch for reproduction.
* The kNN graph: the shared blockwise builder (no dense ``n_items x n_items`` similarity), PAD
  (id 0) excluded; the edge weights are the cosines of the kept pairs recomputed from the
  normalised rows, so the cached edge list is reused. Ties in the top-k may be broken differently.
* The user-item block ``R_hat`` is built from the distinct training pairs (the reference slices the
  normalised adjacency of ``dataset.inter_matrix``; the same matrix without duplicate rows).
* No learning-rate scheduler: the reference's ``learning_rate_scheduler: [0.96, 50]`` (lr x
  ``0.96^(epoch / 50)``) is not part of the plugin's trainer; it lowers the rate by 8% after
  100 epochs.
* The reference's unused keys and members are dropped (``lambda_coeff``, ``self.tau = 0.5`` (the
  InfoNCE temperature is the hard-coded 0.2, here ``tau``), the authors' unused ``query_fusion``).
* Features: with ``finetune_features`` the tables are trained, as the reference's
  ``nn.Embedding.from_pretrained(..., freeze=False)``; the graphs stay built from the raw rows.
"""

import torch
import torch.nn as nn

from recbole_recgoat.model.abstract import GraphRecommender
from recbole_recgoat.model.layers.graph import normalized_graph, rows, sparse_from_edges
from recbole_recgoat.model.layers.losses import bpr_dot_loss, info_nce
from recbole_recgoat.model.layers.sparse import SparseOperator, propagate


def purify(id_embeddings, projected, gate):
    """Behaviour-guided purifier: ``E_id * sigmoid(W_g x_m + b_g)``.

    Args:
        id_embeddings (Tensor): ``[n, d]`` item ID embeddings ``E_id``.
        projected (Tensor): ``[n, d]`` projected modality features ``x_m``.
        gate (nn.Linear): ``d -> d``, the modality's gate ``(W_g, b_g)``.
    """
    return id_embeddings * torch.sigmoid(gate(projected))


def fuse(views, behaviour, query, prefer_gates, softmax_over="modalities"):
    """Behaviour-aware fuser of ``M`` modality views.

    Args:
        views (Tensor): ``[M, N, d]`` the item-item-view embeddings ``E_bar_m`` of every node.
        behaviour (Tensor): ``[N, d]`` the user-item-view embeddings ``E_bar_id``.
        query (nn.Module): ``d -> 1``, the common-part attention ``q^T tanh(W_q . + b_q)``.
        prefer_gates (list[nn.Linear]): ``M`` maps ``d -> d``, the preference gates ``(W_p,m, b_p,m)``.
        softmax_over (str): ``modalities`` (per node over the ``M`` modalities) or ``nodes``
            (per modality over the ``N`` nodes: the authors' code).

    Returns:
        tuple[Tensor, Tensor]: ``E_side [N, d] = (E_c + sum_m P_m * (E_bar_m - E_c)) / (M + 1)`` and
        the attention ``alpha [M, N]``.
    """
    alpha = torch.softmax(query(views).squeeze(-1), dim=0 if softmax_over == "modalities" else 1)  # [M, N]
    common = (alpha.unsqueeze(-1) * views).sum(dim=0)  # [N, d]
    prefer = torch.stack([torch.sigmoid(g(behaviour)) for g in prefer_gates])  # [M, N, d]
    specific = (prefer * (views - common)).sum(dim=0)  # [N, d]
    return (common + specific) / (views.shape[0] + 1), alpha


class MGCN(GraphRecommender):
    r"""MGCN as a RecBole general recommender (pairwise BPR input), on the LightGCN backbone.

    Config keys (see ``properties/model/MGCN.yaml``): ``embedding_size``, ``n_ui_layers``,
    ``n_mm_layers``, ``knn_k``, ``reg_weight``, ``cl_weight``, ``tau``, ``finetune_features``,
    ``mgcn_softmax_over``.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d = self.embedding_size
        self.n_mm_layers = int(config["n_mm_layers"])
        self.knn_k = int(config["knn_k"])
        self.reg_weight = float(config["reg_weight"])
        self.cl_weight = float(config["cl_weight"])
        self.tau = float(config["tau"])
        self.softmax_over = str(config["mgcn_softmax_over"]).lower()
        self.reg_denominator = int(config["train_batch_size"])  # the reference divides by the configured batch size

        # fine-tuned copies of the feature tables (parameters), or the frozen features themselves
        self.finetune_features = bool(config["finetune_features"])
        self.feature_tables = nn.ParameterDict(
            {m: nn.Parameter(f.clone()) for m, f in self.item_feats.items()} if self.finetune_features else {}
        )
        self.feature_proj = nn.ModuleDict({m: nn.Linear(f.shape[1], d) for m, f in self.item_feats.items()})
        self.purifier_gate = nn.ModuleDict({m: nn.Linear(d, d) for m in self.modalities})
        self.prefer_gate = nn.ModuleDict({m: nn.Linear(d, d) for m in self.modalities})
        self.query_common = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, 1, bias=False))

        # frozen graphs: per-modality item-item kNN graphs (item features only) and R_hat (training pairs)
        self.mm_ops = nn.ModuleDict({m: SparseOperator(self.modality_graph(m)) for m in self.modalities})
        du = torch.bincount(self.train_users, minlength=self.n_users).float()
        di = torch.bincount(self.train_items, minlength=self.n_items).float()
        values = (du[self.train_users] * di[self.train_items]).rsqrt()
        self.r_op = SparseOperator(
            sparse_from_edges(self.train_users, self.train_items, values, (self.n_users, self.n_items))
        )

    # -- graphs ----------------------------------------------------------------------------
    def modality_graph(self, modality):
        """``S_m = D^-1/2 W D^-1/2`` ``[n_items, n_items]`` sparse: directed top-``knn_k`` cosine
        neighbours of the raw features (self included), weighted by the cosine, ``D`` = row sums."""
        edge_index, cosine = self.cosine_knn_graph(self.item_feats[modality], self.knn_k, tag=f"mgcn-item-{modality}-")
        return normalized_graph(edge_index, self.n_items, cosine)

    def feature_table(self, modality):
        """``[n_items, F_m]``: the fine-tuned table (``finetune_features``) or the frozen features."""
        return self.feature_tables[modality] if self.finetune_features else self.item_feats[modality]

    # -- model -----------------------------------------------------------------------------
    def modality_views(self):
        """``E_bar_m = [R_hat H_m; H_m]`` with ``H_m = S_m^{L_mm} E~_m``: ``[M, N, d]``."""
        views = []
        for m in self.modalities:
            x = purify(self.item_embedding.weight, self.feature_proj[m](self.feature_table(m)), self.purifier_gate[m])
            h = propagate(self.mm_ops[m], x, self.n_mm_layers, mean=False)
            views.append(torch.cat([self.r_op @ h, h], dim=0))
        return torch.stack(views)

    def forward(self):
        """``(users [n_users, d], items [n_items, d], {"side": E_side [N, d], "behaviour": E_bar_id [N, d],
        "alpha": [M, N]})``."""
        behaviour = self.propagate_ui()
        side, alpha = fuse(
            self.modality_views(), behaviour, self.query_common, [self.prefer_gate[m] for m in self.modalities],
            self.softmax_over,
        )
        users, items = self.split_nodes(behaviour + side)
        return users, items, {"side": side, "behaviour": behaviour, "alpha": alpha}

    def calculate_loss(self, interaction):
        self.invalidate()
        users = interaction[self.USER_ID]
        pos = interaction[self.ITEM_ID]
        neg = interaction[self.NEG_ITEM_ID]
        user_all, item_all, parts = self.forward()
        u, p, n = rows(user_all, users), rows(item_all, pos), rows(item_all, neg)
        loss = bpr_dot_loss(u, p, n)
        reg = 0.5 * (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / self.reg_denominator
        side_u, side_i = self.split_nodes(parts["side"])
        beh_u, beh_i = self.split_nodes(parts["behaviour"])
        b_i, b_u = rows(beh_i, pos), rows(beh_u, users)
        cl = (info_nce(rows(side_i, pos), b_i, b_i, self.tau) + info_nce(rows(side_u, users), b_u, b_u, self.tau)) / users.numel()
        return loss + self.reg_weight * reg + self.cl_weight * cl
