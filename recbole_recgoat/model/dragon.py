"""DRAGON: "Enhancing Dyadic Relations with Homogeneous Graphs for Multimodal Recommendation",
Hongyu Zhou, Xin Zhou, Lingzi Zhang and Zhiqi Shen, ECAI 2023, arXiv:2301.12097 (reference code:
MMRec ``src/models/dragon.py``, identical in the authors' ``hongyurain/DRAGON``).

Notation: ``M`` modalities, ``f_m`` the frozen raw item features of modality ``m`` ``[n_items, F_m]``,
``d = embedding_size = feat_embed_dim``, ``A_hat`` the normalised bipartite TRAINING graph
``[n_users + n_items]^2``, ``L = n_ui_layers``, ``L_i = n_mm_layers``.

* **Heterogeneous (user-item) graph, per modality**: the user preference embeddings
  ``P_m`` ``[n_users, d]`` stacked over the projected item features
  ``X_m = W2_m leaky_relu(W1_m f_m + b1) + b2`` (``W1 [F_m, 4d]``, ``W2 [4d, d]``), rows
  L2-normalised, propagated and SUMMED over layers 0..L::

      H_m^0 = normalize([P_m; X_m])                         [n_users + n_items, d]
      H_m   = sum_{l=0..L} A_hat^l H_m^0                     (aggr_mode add; mean: D^-1 A)

* **Concatenation** (construction ``cat``): ``h_u = ||_m alpha_{u,m} H_m[u]`` ``[n_users, M d]``
  with learnable per-user modality weights ``alpha`` ``[n_users, M, 1]`` (initialised as
  ``softmax(xavier_normal)`` over the modalities, then free parameters); ``h_i = ||_m H_m[i]``
  ``[n_items, M d]`` (items unweighted).
* **Homogeneous item-item graph** (frozen): per modality the cosine kNN graph of ``f_m``
  (``knn_k`` neighbours, the item itself among them), ``S_m = D^-1/2 A_m D^-1/2``, mixed as
  ``S = sum_m w_m S_m`` (``mm_image_weight``: the text modality weighs ``1 - mm_image_weight``, the
  others share ``mm_image_weight``, as FREEDOM's :func:`~recbole_recgoat.model.layers.graph.modality_mix_weights`);
  ``i = h_i + S^{L_i} h_i``.
* **Homogeneous user-user graph** (frozen): every user's ``user_topk`` co-users sharing the
  most TRAINING items (:func:`~recbole_recgoat.model.layers.graph.user_cooccurrence_topk`, built at
  load time from the training edges), weighted ``softmax_v(C_uv)`` over the kept co-users
  (``C = R R^T`` the shared-item counts); ``u = h_u + sum_v w_uv h_v`` (one layer).
* Score ``u . i``; loss (the reference's arithmetic)::

      L = mean_b -log2 sigmoid(u . i+ - u . i-)
          + reg_weight * (sum_m mean(P_m[batch users]^2) + mean(alpha^2))

Shapes: users ``[n_users, M d]``, items ``[n_items, M d]``. Any number of modalities.

Deviations from the reference code (MMRec ``dragon.py``, ``tools/generate-u-u-matrix.py``):

* The user-user graph is built at load time from the training split's edges, sparse (``R R^T``);
  the reference reads a file its preprocessing script computes from the training rows with a dense
  ``users x users`` matrix and a Python double loop (MMRec issue #5). Same counts; ties among equal
  counts are broken by the smaller user id (the reference: ``torch.topk``'s order).
* A user with fewer than ``user_topk`` co-users keeps just them (softmax over them). The reference
  pads the row to ``k`` by re-drawing random co-users each epoch (``np.random``), which reweights
  the duplicated ones at random: a fixed-width-tensor artefact, kept behind
  ``dragon_pad_user_neighbours: True`` (re-drawn every epoch with the torch RNG).
* The reference's ``k = 40`` and ``user_aggr_mode = softmax`` are hard-coded; here ``user_topk`` and
  ``user_aggr``. Its 2 user-item layers are hard-coded too (``n_ui_layers``, default 2).
* ``M`` modalities instead of image + text: ``alpha`` has ``M`` columns; with one modality there is
  no ``alpha`` (the reference leaves its two-column ``weight_u`` unused in the forward pass and only
  shrinks it by the regulariser).
* Scores come from a forward pass in evaluation mode; the reference scores with ``result_embed``
  cached by the last training batch (one optimizer step stale; there is no dropout, so this is the
  only difference).
* Not ported: the reference's unused parameters (``image_embedding``/``text_embedding`` copies,
  ``image_trs``/``text_trs``, ``MLP_v``/``MLP_t``/``MLP_user``, ``weight_i``: no gradient reaches
  them in ``cat``), its edge-dropped graphs (computed, never used: ``GCN.forward`` ignores
  ``edge_index_drop``), and the ``weighted_sum`` / ``weighted_max`` constructions (not the default).
* The kNN graph excludes RecBole's PAD item; ``knn_symmetric: False`` keeps the reference's
  directed kNN (every row averages its ``k`` neighbours, weight ``1/k``).
"""

import torch

from recbole_recgoat.model.abstract import PreferenceGraphRecommender
from recbole_recgoat.model.layers.graph import (
    modality_mix_weights,
    normalized_graph,
    sparse_from_edges,
    weighted_sparse_sum,
)
from recbole_recgoat.model.layers.sparse import SparseOperator


class DRAGON(PreferenceGraphRecommender):
    r"""DRAGON as a RecBole general recommender (pairwise BPR input): DualGNN's user-preference graph
    model (:class:`~recbole_recgoat.model.abstract.PreferenceGraphRecommender`) with frozen item-item
    graphs and the modalities concatenated.

    Not on the :class:`~recbole_recgoat.model.abstract.GraphRecommender` backbone: DRAGON has no
    item ID embedding and one user preference table per modality, so the backbone's two ID tables
    would be parameters nothing trains; it keeps its forward contract
    (``forward() -> (users, items, parts)``).

    Config keys (see ``properties/model/DRAGON.yaml``): ``embedding_size``, ``feat_embed_dim``,
    ``n_ui_layers``, ``n_mm_layers``, ``knn_k``, ``knn_symmetric``, ``mm_image_weight``,
    ``text_modality``, ``modality_weights``, ``aggr_mode``, ``user_topk``, ``user_aggr``,
    ``dragon_pad_user_neighbours``, ``reg_weight``.
    """

    pad_key = "dragon_pad_user_neighbours"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.n_mm_layers = int(config["n_mm_layers"])
        self.knn_k = int(config["knn_k"])
        self.knn_symmetric = bool(config["knn_symmetric"])
        self.aggr_mode = str(config["aggr_mode"]).lower()
        self.mix_weights = modality_mix_weights(
            self.modalities, float(config["mm_image_weight"]), str(config["text_modality"]), config["modality_weights"]
        )
        # frozen graphs (buffers, rebuilt from the training data; not in checkpoints)
        if self.aggr_mode != "add":
            self.ui_op = self.mean_ui_operator()
        self.mm_op = SparseOperator(self.build_item_graph(), symmetric=self.knn_symmetric)

    # -- graphs ----------------------------------------------------------------------------
    def mean_ui_operator(self):
        """``D^-1 A`` of the bipartite training graph (``aggr_mode: mean``), an operator."""
        nu = self.n_users
        rows = torch.cat([self.train_users, self.train_items + nu])
        cols = torch.cat([self.train_items + nu, self.train_users])
        deg = torch.bincount(rows, minlength=nu + self.n_items).float()
        adj = sparse_from_edges(rows, cols, 1.0 / deg[rows], (nu + self.n_items, nu + self.n_items))
        return SparseOperator(adj)

    def modality_graph(self, modality):
        """``D^-1/2 A_m D^-1/2`` of one modality's kNN graph, sparse ``[n_items, n_items]``."""
        edge_index = self.knn_graph(
            self.item_feats[modality], self.knn_k, self.item_valid_mask(), tag=f"item-{modality}-", symmetric=self.knn_symmetric
        )
        return normalized_graph(edge_index, self.n_items)

    def build_item_graph(self):
        """``S = sum_m w_m S_m``, sparse ``[n_items, n_items]``."""
        mods = [m for m in self.modalities if self.mix_weights[m] > 0]
        return weighted_sparse_sum([self.modality_graph(m) for m in mods], [self.mix_weights[m] for m in mods])

    # -- model -----------------------------------------------------------------------------
    def forward(self):
        """``(users [n_users, M d], items [n_items, M d], parts)``; ``parts["modality_nodes"]``:
        ``{m: H_m}``."""
        if self.uu_op is None:
            self.pre_epoch_processing()
        nodes = {m: self.modality_nodes(m) for m in self.modalities}
        users_m, items_m = zip(*(torch.split(h, [self.n_users, self.n_items]) for h in nodes.values()))
        if self.user_modality_weight is None:
            users = users_m[0]
        else:
            users = torch.cat([u * self.user_modality_weight[:, k] for k, u in enumerate(users_m)], dim=1)
        items = torch.cat(items_m, dim=1)
        h = items
        for _ in range(self.n_mm_layers):
            h = self.mm_op @ h
        return users + self.uu_op @ users, items + h, {"modality_nodes": nodes}
