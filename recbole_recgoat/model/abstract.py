"""Base class of the plugin's multimodal models, and how they read their config.

Config keys are read as ``config[key]``: every default lives in yaml (``properties/overall.yaml``
for the keys all models share, ``properties/model/<Model>.yaml`` for a model's own), none in code.
"""

import math
import os
from logging import getLogger

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType

from recbole_recgoat.errors import InputError
from recbole_recgoat.model.layers.graph import (
    BufferDict,
    bipartite_norm_adj,
    rows,
    sparse_from_edges,
    training_edges,
    user_cooccurrence_topk,
)
from recbole_recgoat.model.layers.knn import cached_knn_graph, edge_cosines
from recbole_recgoat.model.layers.losses import bpr_dot_loss
from recbole_recgoat.model.layers.sparse import SparseOperator, propagate


class MultiModalRecommender(GeneralRecommender):
    """A RecBole ``GeneralRecommender`` that reads the dataset's feature matrices.

    Attributes set here (all built from the TRAINING split the model is given):

    * ``item_feats``: ``{modality: FloatTensor [n_items, f_m]}`` (frozen).
    * ``user_feats``: ``FloatTensor [n_users, f_u]`` or ``None``.
    * ``modalities``: modality names, in the dataset's order.
    * ``train_users``, ``train_items``: ``LongTensor [E]``, the distinct training pairs.
    * ``norm_adj``: sparse ``[n_users + n_items]^2`` symmetric-normalised bipartite adjacency, and
      ``adj_op``, the same as a :class:`~recbole_recgoat.model.layers.sparse.SparseOperator` (fast
      CSR products forwards and backwards) for propagation.

    Data tensors and graphs are buffers (``persistent=False``: rebuilt from the data, not saved in
    checkpoints), so ``model.to(device)`` moves them with the parameters.

    Subclasses may define ``pre_epoch_processing()`` (called before every training epoch) and
    ``epoch_diagnostics() -> dict`` (logged after every training epoch).

    Scoring: a subclass implements :meth:`inference_embeddings` (all users' and items' final
    vectors); ``predict`` and ``full_sort_predict`` score ``user . item`` from them, computed once
    per evaluation (cached while the model is in eval mode, dropped by ``train()`` and by every
    training step, see :meth:`invalidate`).
    """

    input_type = InputType.PAIRWISE
    uses_features = True
    min_modalities = 1  # item modalities the model needs (RecGOAT: 0, its "ID only" ablation)

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        features = getattr(dataset, "item_features", None) or {}
        if len(features) < self.min_modalities:
            raise InputError(
                f"item_feature_files: {self.__class__.__name__} needs item feature matrices and dataset "
                f"'{config['dataset']}' declares none (or load_features is false); expected modality: file.npy"
            )
        self.modalities = list(features)
        self.item_feats = BufferDict({m: f.to(self.device) for m, f in features.items()})
        uf = getattr(dataset, "user_features", None)
        self.register_buffer("user_feats", uf.to(self.device) if uf is not None else None, persistent=False)
        users, items = training_edges(dataset)
        norm_adj = bipartite_norm_adj(users, items, self.n_users, self.n_items).to(self.device)
        self.register_buffer("train_users", users.to(self.device), persistent=False)
        self.register_buffer("train_items", items.to(self.device), persistent=False)
        self.adj_op = SparseOperator(norm_adj, symmetric=True)
        self.graph_cache_dir = config["graph_cache_dir"]
        self.knn_method = config["knn_method"]
        self.knn_nprobe = config["knn_nprobe"]
        self.graph_stats = {}
        self._cache = None
        self.dataset_name = config["dataset"]

    def feature_set(self):
        """What the model reads: ``{"items": [modality, ...], "users": bool}`` (recorded per run, named
        by the leaderboard's feature-set column)."""
        return {"items": list(self.modalities), "users": False}

    @property
    def norm_adj(self):
        """The normalised bipartite adjacency, sparse COO ``[n_users + n_items]^2`` (``adj_op``'s)."""
        return self.adj_op.coo

    def matched_embedding_sizes(self, config, why):
        """``(embedding_size, feat_embed_dim)``, with a one-line error unless they are equal; ``why``
        says what the model does that needs them equal."""
        embedding_size, feat_embed_dim = int(config["embedding_size"]), int(config["feat_embed_dim"])
        if feat_embed_dim != embedding_size:
            raise InputError(f"feat_embed_dim: {feat_embed_dim}; expected embedding_size ({embedding_size}): {why}")
        return embedding_size, feat_embed_dim

    # -- scoring ---------------------------------------------------------------------------
    def inference_embeddings(self):
        """``(users [n_users, d], items [n_items, d])`` whose dot products are the scores: by the
        forward contract, the first two outputs of ``forward()`` (VBPR and BM3 override it)."""
        users, items, _ = self.forward()
        return users, items

    def cache_inference(self):
        """Whether :meth:`inference_embeddings` may be reused within an evaluation (False for a
        model that samples at inference)."""
        return True

    def invalidate(self):
        """Drop the cached scoring vectors (parameters are about to change)."""
        self._cache = None

    def scoring_embeddings(self):
        """:meth:`inference_embeddings` under ``no_grad``, cached in eval mode."""
        if self._cache is not None and not self.training:
            return self._cache
        with torch.no_grad():
            out = self.inference_embeddings()
        if not self.training and self.cache_inference():
            self._cache = out
        return out

    def predict(self, interaction):
        users, items = self.scoring_embeddings()
        return (rows(users, interaction[self.USER_ID]) * rows(items, interaction[self.ITEM_ID])).sum(dim=1)

    def full_sort_predict(self, interaction):
        users, items = self.scoring_embeddings()
        return rows(users, interaction[self.USER_ID]) @ items.T

    def train(self, mode=True):
        self.invalidate()
        return super().train(mode)

    def item_valid_mask(self):
        """``[n_items]`` True for real items (False for RecBole's PAD id 0)."""
        mask = torch.ones(self.n_items, dtype=torch.bool, device=self.device)
        mask[0] = False
        return mask

    def user_valid_mask(self):
        """``[n_users]`` True for real users (False for PAD)."""
        mask = torch.ones(self.n_users, dtype=torch.bool, device=self.device)
        mask[0] = False
        return mask

    def knn_graph(self, x, k, valid, tag, **kwargs):
        """Cached kNN edge list over rows of ``x`` (see :func:`~recbole_recgoat.model.layers.knn.cached_knn_graph`);
        ``knn_method`` / ``knn_nprobe`` from the config; the build (method, time, and recall
        against exact search when approximate) is logged."""
        cache = os.path.join(self.graph_cache_dir, self.dataset_name) if self.graph_cache_dir else None
        stats = {}
        kwargs.setdefault("method", self.knn_method)
        kwargs.setdefault("nprobe", self.knn_nprobe)
        edge_index = cached_knn_graph(x, k, cache_dir=cache, tag=tag, valid=valid, stats=stats, **kwargs).to(self.device)
        self.graph_stats[tag] = dict(stats, edges=int(edge_index.shape[1]))
        getLogger().info(f"kNN graph {tag.strip('-')}: {self.graph_stats[tag]}")
        return edge_index

    def cosine_knn_graph(self, x, k, tag, **kwargs):
        """The directed cosine kNN graph of the items' rows ``x [n_items, f]`` (the item itself among
        its ``k``, PAD excluded; cached edge list, :meth:`knn_graph`) weighted by the cosines:
        ``(edge_index [2, E], cosine [E])`` (MGCN's, SMORE's and LATTICE's raw item graphs)."""
        edge_index = self.knn_graph(x, k, self.item_valid_mask(), tag=tag, symmetric=False, **kwargs)
        return edge_index, edge_cosines(x, edge_index)


class GraphRecommender(MultiModalRecommender):
    r"""The LightGCN backbone (He et al., SIGIR 2020) that the plugin's graph models extend, as
    RecBole-GNN's SimGCL extends its LightGCN.

    Parameters: ``user_embedding`` ``[n_users, d]`` and ``item_embedding`` ``[n_items, d]`` (the ID
    embeddings ``E``, ``d = embedding_size``), Xavier-uniform initialised as the MMRec references
    (``id_init = None``: the subclass initialises every parameter itself, e.g. RecBole's
    ``xavier_normal_initialization`` over the whole model). Graph: the inherited normalised
    training adjacency ``A_hat = D^-1/2 [[0, R], [R^T, 0]] D^-1/2`` (``adj_op``).

    :meth:`propagate_ui` is LightGCN's layer combination (eq. 4)::

        [U; I] = readout_{l=0..L} A_hat^l [E_user; E_item]       L = n_ui_layers, readout mean (or last)

    The forward contract of every graph model: ``forward(...) -> (users [n_users, d],
    items [n_items, d], parts)``, where ``parts`` is a dict of the model's intermediate results that
    its loss reads (empty here); scoring is ``users . items`` of ``forward()`` in eval mode.
    """

    id_init = "xavier_uniform"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_size = int(config["embedding_size"])
        self.n_ui_layers = int(config["n_ui_layers"])
        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        if self.id_init == "xavier_uniform":
            nn.init.xavier_uniform_(self.user_embedding.weight)
            nn.init.xavier_uniform_(self.item_embedding.weight)

    def ego_embeddings(self, user_ego=None):
        """Layer 0, ``[E_user; E_item]`` ``[n_users + n_items, d]`` (``user_ego`` replaces ``E_user``)."""
        users = self.user_embedding.weight if user_ego is None else user_ego
        return torch.cat([users, self.item_embedding.weight], dim=0)

    def propagate_ui(self, ego=None, adj_op=None, n_layers=None, mean=True):
        """``readout_{l=0..L} A_hat^l ego`` over the user-item graph: ``[n_users + n_items, d]``.

        Args:
            ego (Tensor | None): ``[n_users + n_items, d']`` layer 0 (default :meth:`ego_embeddings`).
            adj_op (SparseOperator | None): the graph (default the full training graph ``adj_op``;
                FREEDOM passes its pruned graph).
            n_layers (int | None): ``L`` (default ``n_ui_layers``).
            mean (bool): mean over layers 0..L (LightGCN), else layer ``L`` only.
        """
        ego = self.ego_embeddings() if ego is None else ego
        adj_op = self.adj_op if adj_op is None else adj_op
        return propagate(adj_op, ego, self.n_ui_layers if n_layers is None else n_layers, mean=mean)

    def split_nodes(self, x):
        """``(x[:n_users], x[n_users:])`` of a ``[n_users + n_items, d]`` node matrix."""
        return torch.split(x, [self.n_users, self.n_items], dim=0)

    def forward(self):
        """LightGCN: ``(users [n_users, d], items [n_items, d], {})``."""
        users, items = self.split_nodes(self.propagate_ui())
        return users, items, {}

class PreferenceGraphRecommender(MultiModalRecommender):
    r"""The user-preference graph model that DualGNN (Wang et al., IEEE TMM 2021) defines and DRAGON
    (Zhou et al., ECAI 2023) extends: no ID embeddings; per modality ``m`` a user preference table
    ``P_m`` ``[n_users, d]`` stacked over projected item features ``X_m = MLP_m(f_m)`` ``[n_items, d]``
    (``F_m -> 4d -> d``, leaky ReLU), rows L2-normalised and propagated over the user-item graph
    ``ui_op`` (``A_hat`` unless a subclass sets another), SUMMED over layers 0..L::

        H_m = sum_{l=0..L} ui_op^l normalize([P_m; X_m])           [n_users + n_items, d]

    per-user modality weights ``alpha`` ``[n_users, M, 1]`` (with two or more modalities), and the
    frozen user co-occurrence graph: every user's ``user_topk`` co-users sharing the most TRAINING
    items (:func:`~recbole_recgoat.model.layers.graph.user_cooccurrence_topk`), weighted by
    ``user_aggr``; ``config[pad_key]`` re-draws the reference's random padding of short rows every
    epoch. Loss, the references' arithmetic::

        L = mean_b -log2 sigmoid(u . i+ - u . i-) + reg_weight * (sum_m mean(P_m[batch users]^2) + mean(alpha^2))

    A subclass names its padding switch (``pad_key``) and defines ``forward``.
    """

    pad_key = None  # the subclass's config key of the reference's padding switch

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d, _ = self.matched_embedding_sizes(
            config, f"{type(self).__name__} stacks user preferences and projected item features in one node matrix"
        )
        self.embedding_size = d
        self.n_ui_layers = int(config["n_ui_layers"])
        self.user_topk = int(config["user_topk"])
        self.user_aggr = str(config["user_aggr"]).lower()
        self.pad_user_neighbours = bool(config[self.pad_key])
        self.reg_weight = float(config["reg_weight"])

        # parameters: per-modality user preferences P_m and feature MLPs, per-user modality weights alpha
        self.preference = nn.ParameterDict()
        self.feature_mlp = nn.ModuleDict()
        for m, f in self.item_feats.items():
            self.preference[m] = nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_users, d)))
            self.feature_mlp[m] = nn.Sequential(nn.Linear(f.shape[1], 4 * d), nn.LeakyReLU(), nn.Linear(4 * d, d))
        n_mod = len(self.modalities)
        if n_mod > 1:
            alpha = F.softmax(nn.init.xavier_normal_(torch.empty(self.n_users, n_mod, 1)), dim=1)
            self.user_modality_weight = nn.Parameter(alpha)
        else:
            self.user_modality_weight = None

        # the frozen user co-occurrence graph from the TRAINING edges (buffers: not in checkpoints)
        self.ui_op = self.adj_op
        weighting = "count" if self.pad_user_neighbours and self.user_aggr == "softmax" else self.user_aggr
        edges, weights = user_cooccurrence_topk(
            self.train_users.cpu(), self.train_items.cpu(), self.n_users, self.n_items, self.user_topk, weighting=weighting
        )
        self.register_buffer("user_edges", edges.to(self.device), persistent=False)  # [2, E_u]
        self.register_buffer("user_edge_weights", weights.to(self.device), persistent=False)  # [E_u]
        self.uu_op = None if self.pad_user_neighbours else self.user_operator(self.user_edge_weights)

    def user_operator(self, weights):
        """The user-user graph ``[n_users, n_users]`` with ``weights [E_u]`` as an operator."""
        row, col = self.user_edges
        return SparseOperator(sparse_from_edges(row, col, weights.float(), (self.n_users, self.n_users)))

    def padded_user_weights(self):
        """The reference's padding (``pad_key``): a row with ``n_u < user_topk``
        co-users draws ``user_topk - n_u`` more of them uniformly (with replacement); a co-user
        drawn ``r`` extra times weighs ``(1 + r) exp(C_uv)`` before the row's normalisation
        (softmax over the padded row), or ``(1 + r) / user_topk`` (mean). ``[E_u]``."""
        row = self.user_edges[0]
        n = torch.bincount(row, minlength=self.n_users)
        start = torch.cumsum(n, 0) - n  # rows are contiguous (sorted by row)
        short = (n > 0) & (n < self.user_topk)
        extra = torch.where(short, self.user_topk - n, torch.zeros_like(n))
        slot_row = torch.repeat_interleave(torch.arange(self.n_users, device=row.device), extra)
        pick = start[slot_row] + (torch.rand(slot_row.numel(), device=row.device) * n[slot_row]).long()
        mult = 1.0 + torch.bincount(pick, minlength=row.numel()).double()
        if self.user_aggr == "softmax":
            cnt = self.user_edge_weights.double()  # the counts
            row_max = torch.full((self.n_users,), -float("inf"), dtype=torch.float64, device=row.device)
            row_max = row_max.scatter_reduce(0, row, cnt, "amax")
            w = mult * torch.exp(cnt - row_max[row])
        else:
            w = mult
        return w / torch.zeros(self.n_users, dtype=torch.float64, device=row.device).index_add_(0, row, w)[row]

    def pre_epoch_processing(self):
        """With the padding switch, re-draw the padded user-user weights (the reference's
        ``topk_sample`` every epoch); otherwise the user graph is fixed."""
        if self.pad_user_neighbours:
            self.invalidate()
            self.uu_op = self.user_operator(self.padded_user_weights())

    def modality_nodes(self, modality):
        """``H_m = sum_{l=0..L} ui_op^l normalize([P_m; X_m])`` ``[n_users + n_items, d]``."""
        x = self.feature_mlp[modality](self.item_feats[modality])
        out = F.normalize(torch.cat([self.preference[modality], x], dim=0), dim=1)
        acc = out
        for _ in range(self.n_ui_layers):
            out = self.ui_op @ out
            acc = acc + out
        return acc

    def calculate_loss(self, interaction):
        self.invalidate()
        users = interaction[self.USER_ID]
        pos = interaction[self.ITEM_ID]
        neg = interaction[self.NEG_ITEM_ID]
        user_all, item_all, _ = self.forward()
        u = rows(user_all, users)
        loss = bpr_dot_loss(u, rows(item_all, pos), rows(item_all, neg)) / math.log(2.0)  # the reference's -mean(log2 sigmoid)
        reg = sum((self.preference[m].index_select(0, users) ** 2).mean() for m in self.modalities)
        if self.user_modality_weight is not None:
            reg = reg + (self.user_modality_weight**2).mean()
        return loss + self.reg_weight * reg
