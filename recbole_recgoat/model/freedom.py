"""FREEDOM: "A Tale of Two Graphs: Freezing and Denoising Graph Structures for Multimodal
Recommendation", Xin Zhou and Zhiqi Shen, ACM Multimedia 2023, arXiv:2211.06924.

Two graphs:

* a **frozen item-item graph** ``S`` (built once from the raw modality features, never trained):
  per modality ``m``, the cosine kNN graph of the L2-normalised features (``knn_k`` neighbours,
  the item itself among them), unweighted, symmetrised and symmetric-normalised,
  ``S_m = D^-1/2 A_m D^-1/2``; the modalities are mixed ``S = sum_m w_m S_m`` (``sum w_m = 1``);
* a **denoised user-item graph**: before every training epoch, ``(1 - dropout) |E|`` training
  edges are kept, sampled without replacement with probability ``prop. to 1 / sqrt(d_u d_i)``
  (degree-sensitive pruning: edges between popular nodes go first), and re-normalised.
  Prediction uses the full graph.

Embeddings (``d = embedding_size``)::

    h       = S^{L_mm} E_item                                   [n_items, d]
    U, I    = mean_{l=0..L_ui} A_hat^l [E_user; E_item]         [n_users, d], [n_items, d]
    user    = U ;  item = I + h ;  score(u, i) = user_u . item_i

Loss (no L2 term, as published)::

    L = BPR(user_u, item_i+, item_i-) + reg_weight * sum_m BPR(user_u, W_m f_m(i+), W_m f_m(i-))

with ``f_m`` the (fine-tuned) modality feature table and ``W_m`` a linear map to ``d``; the
projected features enter only the loss.

Any number of modalities; the published mix ``0.1 image + 0.9 text`` generalises to: the text
modality (``text_modality``) weighs ``1 - mm_image_weight`` and every other modality shares
``mm_image_weight`` equally (a dataset without text: equal weights; one modality: weight 1), or
an explicit ``modality_weights`` mapping.
"""

import torch
import torch.nn as nn

from recbole_recgoat.model.abstract import GraphRecommender
from recbole_recgoat.model.layers.batched import encoded_pair_scores, pair_scores
from recbole_recgoat.model.layers.graph import (
    bipartite_norm_adj,
    modality_mix_weights,
    normalized_graph,
    sample_without_replacement,
    weighted_sparse_sum,
)
from recbole_recgoat.model.layers.losses import bpr_loss
from recbole_recgoat.model.layers.sparse import SparseOperator, propagate


class FREEDOM(GraphRecommender):
    r"""FREEDOM as a RecBole general recommender (pairwise BPR input), on the LightGCN backbone
    (``user_embedding``, ``item_embedding``, ``propagate_ui``).

    Config keys (see ``properties/model/FREEDOM.yaml``): ``embedding_size``, ``feat_embed_dim``,
    ``knn_k``, ``mm_image_weight``, ``text_modality``, ``modality_weights``, ``n_mm_layers``,
    ``n_ui_layers``, ``dropout``, ``reg_weight``, ``finetune_features``, ``knn_symmetric``.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        _, self.feat_embed_dim = self.matched_embedding_sizes(
            config, "FREEDOM scores projected features against user embeddings"
        )
        self.knn_k = int(config["knn_k"])
        self.n_mm_layers = int(config["n_mm_layers"])
        self.dropout = float(config["dropout"])
        self.reg_weight = float(config["reg_weight"])
        self.knn_symmetric = bool(config["knn_symmetric"])
        self.mix_weights = modality_mix_weights(
            self.modalities, float(config["mm_image_weight"]), str(config["text_modality"]), config["modality_weights"]
        )

        # fine-tuned copies of the feature tables (parameters), or the frozen features themselves
        self.finetune_features = bool(config["finetune_features"])
        self.feature_tables = nn.ParameterDict(
            {m: nn.Parameter(f.clone()) for m, f in self.item_feats.items()} if self.finetune_features else {}
        )
        self.feature_proj = nn.ModuleDict(
            {m: nn.Linear(f.shape[1], self.feat_embed_dim) for m, f in self.item_feats.items()}
        )

        # frozen item-item graph, [n_items, n_items] sparse (COO kept for inspection, CSR to compute)
        self.mm_op = SparseOperator(self.build_item_graph(), symmetric=self.knn_symmetric)

        # degree-sensitive pruning: sampling weight 1/sqrt(d_u d_i) of every training edge
        du = torch.bincount(self.edge_users, minlength=self.n_users).float()
        di = torch.bincount(self.edge_items, minlength=self.n_items).float()
        self.register_buffer("edge_weights", (du[self.edge_users] * di[self.edge_items]).rsqrt(), persistent=False)  # [E]
        self.masked_op = None  # the current epoch's pruned graph (a SparseOperator)
        self.register_buffer("kept_edges", None, persistent=False)  # [E'] edges of the current epoch's graph

    @property
    def edge_users(self):
        """``[E]`` users of the training edges (the edges pruning samples from)."""
        return self.train_users

    @property
    def edge_items(self):
        """``[E]`` items of the training edges."""
        return self.train_items

    @property
    def mm_adj(self):
        """The frozen item-item graph ``S``, sparse COO ``[n_items, n_items]``."""
        return self.mm_op.coo

    @property
    def masked_adj(self):
        """The current epoch's pruned user-item graph, sparse COO (None before the first epoch)."""
        return None if self.masked_op is None else self.masked_op.coo

    def feature_table(self, modality):
        """``[n_items, F_m]``: the fine-tuned table (``finetune_features``) or the frozen features."""
        return self.feature_tables[modality] if self.finetune_features else self.item_feats[modality]

    # -- graphs ----------------------------------------------------------------------------
    def modality_graph(self, modality):
        """Normalised kNN graph of one modality, sparse ``[n_items, n_items]`` (cached edge list)."""
        x = self.item_feats[modality]
        edge_index = self.knn_graph(
            x, self.knn_k, self.item_valid_mask(), tag=f"item-{modality}-", symmetric=self.knn_symmetric
        )
        return normalized_graph(edge_index, self.n_items)

    def build_item_graph(self):
        """``S = sum_m w_m D_m^-1/2 A_m D_m^-1/2``, sparse ``[n_items, n_items]``."""
        mods = [m for m in self.modalities if self.mix_weights[m] > 0]
        return weighted_sparse_sum([self.modality_graph(m) for m in mods], [self.mix_weights[m] for m in mods])

    def prune_edges(self):
        """Indices ``[(1 - dropout) E]`` of kept training edges (degree-sensitive, without replacement)."""
        n_keep = int(self.edge_weights.numel() * (1.0 - self.dropout))
        return sample_without_replacement(self.edge_weights, n_keep)

    def pre_epoch_processing(self):
        """Re-sample the pruned, re-normalised user-item graph (called before every training epoch)."""
        self.invalidate()
        if self.dropout <= 0.0:
            self.kept_edges = torch.arange(self.edge_weights.numel(), device=self.device)
            self.masked_op = self.adj_op
            return
        self.kept_edges = self.prune_edges()
        masked_adj = bipartite_norm_adj(
            self.edge_users[self.kept_edges], self.edge_items[self.kept_edges], self.n_users, self.n_items
        ).to(self.device)
        self.masked_op = SparseOperator(masked_adj, symmetric=True)

    def epoch_diagnostics(self):
        if self.kept_edges is None:
            return {}
        kept = int(self.kept_edges.numel())
        return {"kept_edges": kept, "kept_fraction": kept / self.edge_weights.numel()}

    # -- model -----------------------------------------------------------------------------
    def forward(self, adj_op=None):
        """Final embeddings over the user-item graph ``adj_op`` (a :class:`SparseOperator`; default the
        full training graph): ``(users [n_users, d], items [n_items, d], {})`` with
        ``items = I + S^{L_mm} E_item``."""
        h = propagate(self.mm_op, self.item_embedding.weight, self.n_mm_layers, mean=False)
        users, items = self.split_nodes(self.propagate_ui(adj_op=adj_op))
        return users, items + h, {}

    def modality_encoder(self, modality):
        """``items [U] -> W_m f_m(items) [U, d]`` (the projected, fine-tuned features)."""
        return lambda items: self.feature_proj[modality](self.feature_table(modality)[items])

    def calculate_loss(self, interaction):
        """``BPR(u, i+, i-)`` on the pruned graph ``+ reg_weight * sum_m BPR(u, W_m f_m(i+), W_m f_m(i-))``."""
        self.invalidate()
        if self.masked_op is None:
            self.pre_epoch_processing()
        users = interaction[self.USER_ID]
        pos = interaction[self.ITEM_ID]
        neg = interaction[self.NEG_ITEM_ID]
        user_all, item_all, _ = self.forward(self.masked_op)
        u = user_all[users]  # [B, d]
        loss = bpr_loss(*pair_scores(u, item_all, pos, neg))
        if self.reg_weight != 0.0:  # with weight 0 the term (and its gradient) is exactly zero
            encoders = [self.modality_encoder(m) for m in self.modalities]
            loss = loss + self.reg_weight * sum(bpr_loss(s_pos, s_neg) for s_pos, s_neg in encoded_pair_scores(u, encoders, pos, neg))
        return loss

    # inference_embeddings (the backbone's): forward() on the full (unpruned) graph
