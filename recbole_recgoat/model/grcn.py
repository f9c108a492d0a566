"""GRCN: "Graph-Refined Convolutional Network for Multimedia Recommendation with Implicit Feedback",
Yinwei Wei, Xiang Wang, Liqiang Nie, Xiangnan He and Tat-Seng Chua, ACM MM 2020, arXiv:2111.02036
(reference code: MMRec ``src/models/grcn.py``, from the authors' ``weiyinwei/GRCN``).

Notation: ``M`` modalities, ``f_m`` the frozen raw item features ``[n_items, F_m]``, the TRAINING
edges ``(u_e, i_e)``, ``e = 1..E``, ``N(u)`` / ``N(i)`` a user's items / an item's users,
``d = embedding_size``, ``C = feat_embed_dim`` (the reference's ``latent_embedding``),
``R = num_routing``, ``L = n_ui_layers``.

* **Content features and user preferences**, per modality (``normalize``: rows to unit L2 norm)::

      x_i^m = normalize(leaky_relu(W_m f_m[i] + b_m))        [n_items, C]
      p_u^m = normalize(P_m[u])                              [n_users, C]   (learned P_m)

* **Routing** (the user's modality preference, paper eq. 2-3), ``R`` iterations::

      a_ui = softmax_{i in N(u)}(p_u^m . x_i^m)
      p_u^m <- normalize(p_u^m + sum_{i in N(u)} a_ui x_i^m)

* **Graph refinement** (paper eq. 4-6): the affinity of each edge in each direction, a softmax of
  the same dot product over the target's edges (the reference's GAT layer)::

      s_e = p_u^m . x_i^m
      alpha^m_{u->i} = softmax_{u' in N(i)}(s),   alpha^m_{i->u} = softmax_{i' in N(u)}(s)

  fused over modalities with learned per-node confidences ``c`` ``[n_users + n_items, M]``
  (``weight_mode: confid``; the reference's default)::

      w_{u->i} = max_m alpha^m_{u->i} c_u^m,    w_{i->u} = max_m alpha^m_{i->u} c_i^m

  and pruned (``pruning: True``, hard): ``w <- relu(w)``: an edge whose weighted content affinity
  is negative (the confidence disagrees) is dropped from the graph; ``pruning: False`` keeps the
  signed weights (soft). ``weight_mode: mean`` / ``max`` fuse ``mean_m`` / ``max_m alpha^m``
  without confidences.

* **Content representation** per modality (one GAT layer over the bipartite graph)::

      c_u^m = p_u^m + sum_{i in N(u)} alpha^m_{i->u} x_i^m,   c_i^m = x_i^m + sum_{u in N(i)} alpha^m_{u->i} p_u^m

* **Convolution on the refined graph** of the ID embeddings ``E`` (``[n_users + n_items, d]``),
  ``L`` layers of weighted sums (the reference's SAGEConv, ``aggr = add``), SUMMED over layers::

      h^0 = normalize(E),   h^{l+1}_i = sum_{u in N(i)} w_{u->i} h^l_u,   h^{l+1}_u = sum_{i in N(u)} w_{i->u} h^l_i
      id = h^0 + ... + h^L

* **Fusion** (concat): ``u = [id_u || c_u^1 || ... || c_u^M]``, the same for items:
  ``[n, d + M C]``. Score ``u . i``.

* **Loss** (the reference's arithmetic)::

      L = mean_b -log sigmoid(u . i+ - u . i-)
          + reg_weight * ( mean(E_u[batch users]^2) + mean(E_i[batch pos; neg]^2)
                           + mean(P_1^2) + sum_m mean(P_m[batch users]^2) )

  (``mean(P_1^2)`` over ALL users: the reference adds it for its first, visual, modality.)

Vectorised over the edge list: every edge sum ``sum_{i in N(u)} w_ui x_i`` and every edge dot
product ``p_u . x_i`` is a sparse CSR kernel (:class:`~recbole_recgoat.model.layers.sparse.BipartiteEdgeOps`,
SpMM and SDDMM; memory ``O(E M)``), no dense ``users x items`` matrix. Any number of modalities.

Deviations from the reference code (MMRec ``grcn.py``):

* Routing: the reference's routing GAT runs on the one-directional ``user -> item`` edge list with
  PyG's default ``source_to_target`` flow, so its messages reach the ITEMS and the users' part of
  the output (``x_hat_1[:num_user]``) is zero: ``preference + 0``, the ``R`` routing iterations
  are a no-op. Here the routing aggregates at the users (the paper's eq. 2-3);
  ``grcn_route_to_users: False`` restores the reference (no update).
* ``M`` modalities instead of image + text; with text only the reference crashes (the
  ``conetent_rep`` typo leaves ``content_rep`` None); the extra ``mean(P^2)`` over all users is
  the first modality's (the reference: visual's).
* Scores come from a forward pass in evaluation mode; the reference scores with ``self.result``
  saved by the last training batch (one optimizer step stale; no dropout, so the only difference).
* Not ported: edge dropout (``dropout = 0``, hard-coded), the word-embedding features
  (``is_word = False``), ``has_act`` (False) and ``has_norm`` (True) are fixed as the reference's
  defaults, the ``fusion_mode`` variants ``id`` / ``mean`` (``mean`` reads undefined variables),
  the unused confidence regulariser ``reg_confid_loss`` (computed, never added).
* The reference hard-codes 2 refined-graph layers (``n_ui_layers``, default 2); its yaml's
  ``n_layers: 3`` is the routing count (``num_routing``).
* Initialisation as the reference: Xavier-normal of the stacked ``[n_users + n_items, d]`` ID table
  (split into the backbone's ``user_embedding`` / ``item_embedding``), of ``P_m``, ``W_m`` and the
  confidences; ``b_m`` PyTorch's default.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_recgoat.model.abstract import GraphRecommender
from recbole_recgoat.model.layers.graph import edge_softmax, rows
from recbole_recgoat.model.layers.sparse import BipartiteEdgeOps
from recbole_recgoat.model.layers.losses import bpr_dot_loss


class GRCN(GraphRecommender):
    r"""GRCN as a RecBole general recommender (pairwise BPR input), on the
    :class:`~recbole_recgoat.model.abstract.GraphRecommender` backbone (its ID embeddings ``E``; the
    propagation is GRCN's own, over the refined graph, whose weights change every step).

    Config keys (see ``properties/model/GRCN.yaml``): ``embedding_size``, ``feat_embed_dim``,
    ``n_ui_layers``, ``num_routing``, ``pruning``, ``weight_mode``, ``grcn_route_to_users``,
    ``reg_weight``.
    """

    id_init = None  # Xavier-normal of the stacked table, below

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.feat_embed_dim = int(config["feat_embed_dim"])
        self.num_routing = int(config["num_routing"])
        self.pruning = bool(config["pruning"])
        self.weight_mode = str(config["weight_mode"]).lower()
        self.route_to_users = bool(config["grcn_route_to_users"])
        self.reg_weight = float(config["reg_weight"])

        stacked = nn.init.xavier_normal_(torch.empty(self.n_users + self.n_items, self.embedding_size))
        with torch.no_grad():
            self.user_embedding.weight.copy_(stacked[: self.n_users])
            self.item_embedding.weight.copy_(stacked[self.n_users :])
        self.preference = nn.ParameterDict()
        self.feature_mlp = nn.ModuleDict()
        for m, f in self.item_feats.items():
            self.preference[m] = nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_users, self.feat_embed_dim)))
            mlp = nn.Linear(f.shape[1], self.feat_embed_dim)
            nn.init.xavier_normal_(mlp.weight)
            self.feature_mlp[m] = mlp
        n_mod = len(self.modalities)
        if self.weight_mode == "confid":
            self.confidence = nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_users + self.n_items, n_mod)))
        else:
            self.confidence = None
        self.edges = BipartiteEdgeOps(self.train_users, self.train_items, self.n_users, self.n_items)
        self.modal_edges = BipartiteEdgeOps(self.train_users, self.train_items, self.n_users, self.n_items, copies=n_mod)

    # -- refinement --------------------------------------------------------------------------
    # The M modalities run side by side: their tensors are stacked along the rows (``[M n_users, C]``,
    # ``[M n_items, C]``, ``[M E]``, modality after modality) over ``modal_edges``, M block-diagonal
    # copies of the training graph (each modality's numbers are those of its own graph; one kernel
    # call per step instead of M, docs/performance.md "The four baselines of issue 25").
    def content_features(self, modality):
        """``x^m = normalize(leaky_relu(W_m f_m + b_m))`` ``[n_items, C]``."""
        return F.normalize(F.leaky_relu(self.feature_mlp[modality](self.item_feats[modality])), dim=1)

    def route(self, pref, feat):
        """``R`` routing iterations: ``p_u <- normalize(p_u + sum_{i in N(u)} softmax_{N(u)}(p_u . x_i) x_i)``,
        for ``pref`` ``[M n_users, C]`` and ``feat`` ``[M n_items, C]`` (modalities stacked)."""
        if not self.route_to_users:  # the reference: messages reach the items, the users get 0
            return pref
        g = self.modal_edges
        for _ in range(self.num_routing):
            a = edge_softmax(g.dot(pref, feat), g.users, num_nodes=g.n_users)
            pref = F.normalize(pref + g.to_users(a, feat), dim=1)
        return pref

    def modality_graphs(self):
        """Every modality's content representation and edge affinities:
        ``(users [M, n_users, C], items [M, n_items, C], alpha_ui [E, M], alpha_iu [E, M])`` with
        ``alpha_ui = alpha_{u->i}`` (softmax over the item's users) and ``alpha_iu = alpha_{i->u}``
        (softmax over the user's items)."""
        g, n_mod = self.modal_edges, len(self.modalities)
        feat = torch.cat([self.content_features(m) for m in self.modalities])  # [M n_items, C]
        pref = torch.cat([F.normalize(self.preference[m], dim=1) for m in self.modalities])  # [M n_users, C]
        pref = self.route(pref, feat)
        s = g.dot(pref, feat)  # [M E]: p_u . x_i
        alpha_ui = edge_softmax(s, g.items, num_nodes=g.n_items)
        alpha_iu = edge_softmax(s, g.users, num_nodes=g.n_users)
        users = pref + g.to_users(alpha_iu, feat)
        items = feat + g.to_items(alpha_ui, pref)
        return (
            users.view(n_mod, self.n_users, -1),
            items.view(n_mod, self.n_items, -1),
            alpha_ui.view(n_mod, -1).T,
            alpha_iu.view(n_mod, -1).T,
        )

    def edge_weights(self, alpha_ui, alpha_iu):
        """The refined graph's weights ``(w_ui [E], w_iu [E])`` from the per-modality affinities
        ``[E, M]`` (fusion by ``weight_mode``, then ``relu`` when ``pruning``)."""
        if self.weight_mode == "confid":
            c_user = self.confidence.index_select(0, self.train_users)  # [E, M]
            c_item = self.confidence.index_select(0, self.train_items + self.n_users)
            w_ui, w_iu = (alpha_ui * c_user).max(dim=1).values, (alpha_iu * c_item).max(dim=1).values
        elif self.weight_mode == "max":
            w_ui, w_iu = alpha_ui.max(dim=1).values, alpha_iu.max(dim=1).values
        else:  # mean
            w_ui, w_iu = alpha_ui.mean(dim=1), alpha_iu.mean(dim=1)
        if self.pruning:
            w_ui, w_iu = torch.relu(w_ui), torch.relu(w_iu)
        return w_ui, w_iu

    def refined_propagation(self, w_ui, w_iu):
        """``sum_{l=0..L} h^l`` over the refined graph, ``h^0 = normalize(E)``: ``[n_users + n_items, d]``."""
        h_u, h_i = torch.split(F.normalize(self.ego_embeddings(), dim=1), [self.n_users, self.n_items])
        acc_u, acc_i = h_u, h_i
        for _ in range(self.n_ui_layers):
            h_u, h_i = self.edges.to_users(w_iu, h_i), self.edges.to_items(w_ui, h_u)
            acc_u, acc_i = acc_u + h_u, acc_i + h_i
        return acc_u, acc_i

    def forward(self):
        """``(users [n_users, d + M C], items [n_items, d + M C], parts)``; ``parts``: ``w_ui``,
        ``w_iu`` (the refined graph's weights ``[E]``), ``content`` ``{m: (users, items)}``."""
        cu, ci, a_ui, a_iu = self.modality_graphs()
        content = {m: (cu[k], ci[k]) for k, m in enumerate(self.modalities)}
        w_ui, w_iu = self.edge_weights(a_ui, a_iu)
        id_u, id_i = self.refined_propagation(w_ui, w_iu)
        users = torch.cat([id_u] + [content[m][0] for m in self.modalities], dim=1)
        items = torch.cat([id_i] + [content[m][1] for m in self.modalities], dim=1)
        return users, items, {"w_ui": w_ui, "w_iu": w_iu, "content": content}

    def calculate_loss(self, interaction):
        self.invalidate()
        users = interaction[self.USER_ID]
        pos = interaction[self.ITEM_ID]
        neg = interaction[self.NEG_ITEM_ID]
        user_all, item_all, _ = self.forward()
        u = rows(user_all, users)
        loss = bpr_dot_loss(u, rows(item_all, pos), rows(item_all, neg))
        e_u = self.user_embedding(users)
        e_i = self.item_embedding(torch.cat([pos, neg]))
        reg = (e_u**2).mean() + (e_i**2).mean() + (self.preference[self.modalities[0]] ** 2).mean()
        reg = reg + sum((self.preference[m].index_select(0, users) ** 2).mean() for m in self.modalities)
        return loss + self.reg_weight * reg
