r"""MMGCN: "Multi-modal Graph Convolution Network for Personalized Recommendation of Micro-video",
Yinwei Wei, Xiang Wang, Liqiang Nie, Xiangnan He, Richang Hong and Tat-Seng Chua, ACM MM 2019,
arXiv:1908.04322 (reference code: MMRec ``src/models/mmgcn.py``, after the authors' ``weiyinwei/MMGCN``).

Notation: ``M`` modalities, ``f_m`` the frozen raw item features of modality ``m`` ``[n_items, F_m]``,
``d = embedding_size``, ``D_m`` the modality's input size (``F_m``, or ``mmgcn_latent_dim[m]`` when the
features are first projected by a linear layer), ``R`` the TRAINING user-item edges,
``G = [[0, R], [R^T, 0]]`` ``[n_users + n_items]^2``, ``L = n_ui_layers``, ``lrelu`` leaky ReLU (slope 0.01).

One graph convolution network per modality, over the same user-item graph:

* Layer 0: the modality-specific user preferences ``P_m`` ``[n_users, D_m]`` stacked over the items'
  features, rows L2-normalised: ``x^0 = normalize([P_m; W0_m f_m + b0])`` ``[n_users + n_items, D_m]``
  (no projection ``W0_m`` unless ``mmgcn_latent_dim`` names the modality).
* **Aggregation layer** (paper eq. 1-3; ``aggr_mode``): ``h^l = lrelu(agg_{j in N(v)} W1_l x_j^{l-1})``,
  ``agg`` the mean over the training neighbours (``aggr_mode: mean``, ``D^-1 G``) or their sum (``add``,
  ``G``); an isolated node aggregates zero.
* **Combination layer** (paper eq. 4-6): ``u_hat^l = lrelu(W2_l x^{l-1} + b2) + e_id`` (``mmgcn_has_id``:
  the ID embedding ``E`` ``[n_users + n_items, d]``, shared by the modalities) and
  ``x^l = lrelu(W3_l [h^l ; u_hat^l] + b3)`` (``mmgcn_concat: True``) or ``lrelu(W3_l h^l + b3 + u_hat^l)``
  (``False``). Shapes: ``W1_1 [D_m, D_m]``, ``W2_1 [D_m -> d]``, ``W3_1 [D_m + d -> d]``; for ``l > 1`` all
  ``d``-sized.
* Representation: the modalities' last layers averaged, ``[U; I] = (1/M) sum_m x_m^L`` (the paper's sum
  scaled by ``1/M``, as the reference); score ``u . i``.
* Loss (the reference's arithmetic)::

      L = mean_b -log sigmoid(u . i+ - u . i-)
          + reg_weight * (mean over the batch's (user, pos) and (user, neg) rows of (E[u]^2 + E[i]^2)
                          + sum_m mean(P_m^2))

Shapes: users ``[n_users, d]``, items ``[n_items, d]``. Any number of modalities.

Deviations from the reference code (MMRec ``mmgcn.py``; the authors' ``Model.py`` is the same on these
points):

* The reference's ID embeddings ``E`` and user preferences ``P_m`` are plain tensors
  (``xavier_normal_(torch.rand(..., requires_grad=True)).to(device)``), never registered as parameters:
  the optimizer never updates them and they stay at their random initialisation (the commented-out
  ``nn.Parameter`` line shows they were meant to be trained, as the paper trains them). Here they are
  parameters; ``mmgcn_train_id_and_preference: False`` keeps the reference's fixed random tensors.
* The reference's three layers are hard-coded (its ``n_layers: 2`` is read and ignored); here
  ``n_ui_layers`` layers, default 3 (the reference's arithmetic). Initialisation as the reference:
  ``W1_l`` and ``W2_l`` Xavier-normal, ``W3_1`` Xavier-normal, ``W3_l`` (``l > 1``), the projection and
  every bias PyTorch's ``nn.Linear`` default; ``E`` is Xavier-normal over the whole
  ``[n_users + n_items, d]`` table (std ``sqrt(2 / (n_users + n_items + d))``), ``P_m`` Xavier-normal.
* ``concate = 'False'`` in the reference is a non-empty string, so its ``if self.concate`` is true: the
  reference concatenates. ``mmgcn_concat: True`` (default) is that behaviour (the paper's concatenation
  variant); ``False`` is the element-wise variant.
* Which modality is projected: the reference projects the visual features to 256 (``dim_latent=256``)
  and feeds the text features raw; ``mmgcn_latent_dim`` (``{modality: size}``, default ``{image: 256}``)
  names the projected modalities of any dataset.
* The reference regularises only the visual GCN's preference (``v_gcn.preference``); here every
  modality's ``P_m`` (with the reference's untrained tensors its term was a constant either way).
* BPR as ``-logsigmoid`` (the same function as the reference's ``-log(sigmoid(.))``, without its
  underflow to ``-inf`` for large negative margins).
* Scores come from a forward pass in evaluation mode; the reference scores with ``self.result`` cached by
  the last training batch (one optimizer step stale; no dropout, so this is the only difference).
* ``M`` modalities instead of visual + text (+ acoustic in the authors' code).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_recgoat.model.abstract import GraphRecommender
from recbole_recgoat.model.layers.graph import rows, sparse_from_edges
from recbole_recgoat.model.layers.losses import bpr_dot_loss
from recbole_recgoat.model.layers.sparse import SparseOperator


class ModalityGCN(nn.Module):
    """One modality's graph convolution network: user preferences ``P_m`` ``[n_users, D_m]``, optional
    feature projection ``F_m -> D_m``, and per layer ``conv[l]`` (``W1``), ``linear[l]`` (``W2``),
    ``combine[l]`` (``W3``)."""

    def __init__(self, n_users, feat_dim, latent_dim, d, n_layers, concat, trainable):
        super().__init__()
        d0 = latent_dim if latent_dim else feat_dim
        self.project = nn.Linear(feat_dim, latent_dim) if latent_dim else None
        self.preference = nn.Parameter(nn.init.xavier_normal_(torch.empty(n_users, d0)), requires_grad=trainable)
        self.conv = nn.ParameterList()
        self.linear = nn.ModuleList()
        self.combine = nn.ModuleList()
        for layer in range(n_layers):
            din = d0 if layer == 0 else d
            self.conv.append(nn.Parameter(nn.init.xavier_normal_(torch.empty(din, din))))
            lin = nn.Linear(din, d)
            nn.init.xavier_normal_(lin.weight)
            self.linear.append(lin)
            comb = nn.Linear(din + d, d) if concat else nn.Linear(din, d)
            if layer == 0:  # the reference initialises only its first combination layer
                nn.init.xavier_normal_(comb.weight)
            self.combine.append(comb)


class MMGCN(GraphRecommender):
    r"""MMGCN as a RecBole general recommender (pairwise BPR input), on the
    :class:`~recbole_recgoat.model.abstract.GraphRecommender` backbone: its ``user_embedding`` and
    ``item_embedding`` are the ID embeddings ``E`` the combination layers add.

    Config keys (see ``properties/model/MMGCN.yaml``): ``embedding_size``, ``n_ui_layers``, ``aggr_mode``,
    ``mmgcn_concat``, ``mmgcn_has_id``, ``mmgcn_latent_dim``, ``mmgcn_train_id_and_preference``,
    ``reg_weight``.
    """

    id_init = None  # Xavier-normal over the joint [n_users + n_items, d] table, below

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d = self.embedding_size
        self.aggr_mode = str(config["aggr_mode"]).lower()
        self.concat = bool(config["mmgcn_concat"])
        self.has_id = bool(config["mmgcn_has_id"])
        self.train_id_and_preference = bool(config["mmgcn_train_id_and_preference"])
        self.reg_weight = float(config["reg_weight"])
        latent = dict(config["mmgcn_latent_dim"] or {})

        std = math.sqrt(2.0 / (self.n_users + self.n_items + d))  # xavier_normal_ of the joint table
        for emb in (self.user_embedding, self.item_embedding):
            nn.init.normal_(emb.weight, 0.0, std)
            emb.weight.requires_grad_(self.train_id_and_preference)
        self.gcn = nn.ModuleDict()
        for m, f in self.item_feats.items():
            self.gcn[m] = ModalityGCN(
                self.n_users, f.shape[1], latent.get(m), d, self.n_ui_layers, self.concat, self.train_id_and_preference
            )
        self.ui_op = self.ui_operator()  # frozen, from the training edges

    def ui_operator(self):
        """``D^-1 G`` (``aggr_mode: mean``, PyG's mean aggregation) or ``G`` (``add``) of the bipartite
        TRAINING graph, an operator ``[n_users + n_items]^2``."""
        nu, n = self.n_users, self.n_users + self.n_items
        rows = torch.cat([self.train_users, self.train_items + nu])
        cols = torch.cat([self.train_items + nu, self.train_users])
        values = torch.ones(rows.numel(), device=rows.device)
        if self.aggr_mode == "mean":
            values = values / torch.bincount(rows, minlength=n).float()[rows]
        return SparseOperator(sparse_from_edges(rows, cols, values, (n, n)))

    # -- model -----------------------------------------------------------------------------
    def layer_input(self, modality):
        """``x^0 = normalize([P_m; W0 f_m + b0])`` ``[n_users + n_items, D_m]``."""
        gcn = self.gcn[modality]
        feats = self.item_feats[modality]
        items = gcn.project(feats) if gcn.project is not None else feats
        return F.normalize(torch.cat([gcn.preference, items], dim=0), dim=1)

    def aggregate(self, modality, layer, x):
        """Aggregation layer before its activation: ``agg_{j in N(v)} W1_l x_j`` ``[n_users + n_items, D]``."""
        return self.ui_op @ (x @ self.gcn[modality].conv[layer])

    def combine(self, modality, layer, x, h):
        """Combination layer: ``x^l`` from ``x^{l-1}`` and the activated aggregation ``h^l``."""
        gcn = self.gcn[modality]
        u_hat = F.leaky_relu(gcn.linear[layer](x))
        if self.has_id:
            u_hat = u_hat + self.ego_embeddings()
        if self.concat:
            return F.leaky_relu(gcn.combine[layer](torch.cat([h, u_hat], dim=1)))
        return F.leaky_relu(gcn.combine[layer](h) + u_hat)

    def modality_nodes(self, modality):
        """``x_m^L`` ``[n_users + n_items, d]``."""
        x = self.layer_input(modality)
        for layer in range(self.n_ui_layers):
            h = F.leaky_relu(self.aggregate(modality, layer, x))
            x = self.combine(modality, layer, x, h)
        return x

    def forward(self):
        """``(users [n_users, d], items [n_items, d], parts)``; ``parts["modality_nodes"]``: ``{m: x_m^L}``."""
        nodes = {m: self.modality_nodes(m) for m in self.modalities}
        rep = torch.stack(list(nodes.values())).mean(dim=0)
        users, items = self.split_nodes(rep)
        return users, items, {"modality_nodes": nodes}

    def calculate_loss(self, interaction):
        self.invalidate()
        users = interaction[self.USER_ID]
        pos = interaction[self.ITEM_ID]
        neg = interaction[self.NEG_ITEM_ID]
        user_all, item_all, _ = self.forward()
        u = rows(user_all, users)
        loss = bpr_dot_loss(u, rows(item_all, pos), rows(item_all, neg))
        # the reference: mean over the 2B interleaved (user, item) rows of E[u]^2 + E[i]^2
        reg = (self.user_embedding(users) ** 2).mean() + (self.item_embedding(torch.cat([pos, neg])) ** 2).mean()
        reg = reg + sum((self.gcn[m].preference ** 2).mean() for m in self.modalities)
        return loss + self.reg_weight * reg
