"""DualGNN: "Dual Graph Neural Network for Multimedia Recommendation", Qifan Wang, Yinwei Wei, Jianhua
Yin, Jianlong Wu, Xuemeng Song and Liqiang Nie, IEEE Transactions on Multimedia 25, 2021
(reference code: MMRec ``src/models/dualgnn.py``, config ``src/configs/model/DualGNN.yaml``).

Notation: ``M`` modalities, ``f_m`` the frozen raw item features of modality ``m`` ``[n_items, F_m]``,
``d = embedding_size = feat_embed_dim``, ``A_hat = D^-1/2 A D^-1/2`` the normalised bipartite TRAINING
graph ``[n_users + n_items]^2``, ``L = n_ui_layers``.

* **Single-modal representation learning** (one GCN per modality, paper eq. 1-3): user preferences
  ``P_m`` ``[n_users, d]`` stacked over the projected item features
  ``X_m = W2_m leaky_relu(W1_m f_m + b1) + b2`` (``W1 [F_m, 4d]``, ``W2 [4d, d]``), rows
  L2-normalised, propagated and SUMMED over layers 0..L (the reference: ``x + h + h_1``)::

      H_m^0 = normalize([P_m; X_m])                         [n_users + n_items, d]
      H_m   = sum_{l=0..L} A_hat^l H_m^0

* **Multi-modal representation fusion** (construction ``weighted_sum``, the reference's default):
  per-user learned modality weights ``alpha`` ``[n_users, M, 1]`` (initialised
  ``softmax_m(xavier_normal)``, then free parameters)::

      h_u = sum_m alpha_{u,m} H_m[u]                        [n_users, d]
      i   = sum_m H_m[i]                                    [n_items, d]  (items unweighted)

* **User co-occurrence graph** (frozen, paper eq. 6-8): every user's ``user_topk`` co-users sharing
  the most TRAINING items (:func:`~recbole_recgoat.model.layers.graph.user_cooccurrence_topk`, built
  at load time from the training edges), weighted ``softmax_v(C_uv)`` over the kept co-users
  (``C = R R^T``, the shared-item counts; ``user_aggr: mean``: ``1 / n``); one aggregation layer::

      u = h_u + sum_v w_uv h_v                              [n_users, d]

* Score ``u . i``; loss (the reference's arithmetic: BPR in base 2 plus its regulariser)::

      L = mean_b -log2 sigmoid(u . i+ - u . i-)
          + reg_weight * (sum_m mean(P_m[batch users]^2) + mean(alpha^2))

Shapes: users ``[n_users, d]``, items ``[n_items, d]``. Any number of modalities.

Deviations from the reference code (MMRec ``dualgnn.py``, ``tools/generate-u-u-matrix.py``):

* The user-user graph is built at load time from the training split's edges, sparse (``R R^T``);
  the reference reads ``user_graph_dict_file``, which its preprocessing script computes from the
  training rows with a dense ``users x users`` matrix. Same counts; ties among equal counts are
  broken by the smaller user id.
* A user with fewer than ``user_topk`` co-users keeps just them (softmax over them). The reference
  pads the row to ``k`` by re-drawing random co-users every epoch, which reweights the duplicated
  ones at random: kept behind ``dualgnn_pad_user_neighbours: True`` (re-drawn every epoch with the
  torch RNG; the same padding as DRAGON's: both extend ``PreferenceGraphRecommender``).
* Reference defect: ``representation = v_rep; representation += t_rep`` adds in place, so the
  first modality's user representation that ``weighted_sum`` weighs is ``H_v + H_t``, not ``H_v``
  (``h_u = alpha_v (H_v + H_t) + alpha_t H_t``). Default here: the paper's ``sum_m alpha_m H_m``;
  ``dualgnn_first_modality_sum: True`` reproduces the reference (first modality replaced by the
  sum of all modalities before the weighting).
* ``k = 40``, ``user_aggr_mode = softmax`` and the two GCN layers are hard-coded in the reference;
  here ``user_topk``, ``user_aggr`` and ``n_ui_layers`` (defaults 40, softmax, 2). The reference's
  ``dim_latent = 64`` is hard-coded too: here ``embedding_size`` (default 64). ``aggr_mode`` is
  ``add`` only (the reference's default and only searched value): ``A_hat``.
* ``M`` modalities instead of visual + textual; with one modality there is no ``alpha`` (the
  reference leaves its two-column ``weight_u`` unused in the forward pass and only shrinks it by
  the regulariser).
* Not ported: ``weight_i`` (used by no forward pass, only regularised towards 0: no effect on the
  scores), the edge-dropped graphs ``edge_index_dropv/t`` (built, never used: ``GCN.forward``
  ignores ``edge_index_drop``), ``MLP_v``/``MLP_t``/``MLP_user`` (unused by ``weighted_sum``), the
  ``result_embed`` parameter and the ``cat_mlp`` construction (not the default).
* Scores come from a forward pass in evaluation mode; the reference scores with ``result_embed``
  cached by the last training batch (one optimizer step stale; there is no dropout, so this is the
  only difference).
"""

import torch

from recbole_recgoat.model.abstract import PreferenceGraphRecommender


class DualGNN(PreferenceGraphRecommender):
    r"""DualGNN as a RecBole general recommender (pairwise BPR input); the user-preference graph model
    itself is :class:`~recbole_recgoat.model.abstract.PreferenceGraphRecommender` (DRAGON extends it
    too), this class adds the ``weighted_sum`` fusion.

    Not on the :class:`~recbole_recgoat.model.abstract.GraphRecommender` backbone: DualGNN has no
    ID embeddings (one user preference table per modality, items from their features only), so the
    backbone's two ID tables would be parameters nothing trains; it keeps the forward contract
    (``forward() -> (users, items, parts)``).

    Config keys (see ``properties/model/DualGNN.yaml``): ``embedding_size``, ``feat_embed_dim``,
    ``n_ui_layers``, ``user_topk``, ``user_aggr``, ``dualgnn_pad_user_neighbours``,
    ``dualgnn_first_modality_sum``, ``reg_weight``.
    """

    pad_key = "dualgnn_pad_user_neighbours"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.first_modality_sum = bool(config["dualgnn_first_modality_sum"])

    # -- model -----------------------------------------------------------------------------
    def fuse_users(self, users_m):
        """``h_u = sum_m alpha_{u,m} H_m[u]`` ``[n_users, d]`` (``weighted_sum``); with
        ``dualgnn_first_modality_sum`` the first ``H_m`` is the sum of all (the reference's in-place add)."""
        if self.user_modality_weight is None:
            return users_m[0]
        users_m = list(users_m)
        if self.first_modality_sum:
            users_m[0] = torch.stack(users_m).sum(0)
        return sum(u * self.user_modality_weight[:, k] for k, u in enumerate(users_m))

    def forward(self):
        """``(users [n_users, d], items [n_items, d], parts)``; ``parts``: ``modality_nodes``
        ``{m: H_m}`` and ``fused_users`` ``h_u`` (before the user graph)."""
        if self.uu_op is None:
            self.pre_epoch_processing()
        nodes = {m: self.modality_nodes(m) for m in self.modalities}
        users_m, items_m = zip(*(torch.split(h, [self.n_users, self.n_items]) for h in nodes.values()))
        users = self.fuse_users(users_m)
        items = torch.stack(items_m).sum(0)
        return users + self.uu_op @ users, items, {"modality_nodes": nodes, "fused_users": users}
