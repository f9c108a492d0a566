"""LATTICE: "Mining Latent Structures for Multimedia Recommendation", Jinghao Zhang, Yanqiao Zhu,
Qiang Liu, Shu Wu, Shuhui Wang and Liang Wang, ACM Multimedia 2021, arXiv:2104.09036.
Reference code: MMRec ``src/models/lattice.py`` (Zhou) and the authors' ``CRIPAC-DIG/LATTICE``
``codes/Models.py`` (the same arithmetic).

Notation: ``f_m`` the feature table of modality ``m`` ``[n_items, F_m]`` (fine-tuned,
``finetune_features``), ``k = knn_k``, ``lambda = lambda_coeff``, ``d = embedding_size``,
``d' = feat_embed_dim``, ``M`` modalities.

* **Initial (raw) graphs**, built once from the RAW features and frozen (paper eq. 1-3):
  ``S_m[i, j] = cos(f_m(i), f_m(j))`` for the ``k`` nearest ``j`` of ``i`` (``i`` itself among
  them), 0 elsewhere (directed, weighted by the cosine), then
  ``S~_m = D_m^-1/2 S_m D_m^-1/2`` with ``D_m = diag(row sums of S_m)``.
* **Learned graphs**, from trainable projections (eq. 4-5): ``f~_m = W_m f_m + b_m`` ``[n_items, d']``,
  ``A_m`` = the same weighted kNN of ``f~_m`` (the kept similarities carry gradients to ``W_m``,
  ``f_m`` and the modality weights; the top-k selection has none; computed in row blocks by
  :func:`~recbole_recgoat.model.layers.knn.knn_similarities`, never an ``N x N`` matrix).
* **Modality weights** ``alpha = softmax(a)`` ``[M]`` (``a`` trainable, initialised equal).
* **Mix** (eq. 6-7, as the reference writes it)::

      A_learned = D^-1/2 (sum_m alpha_m A_m) D^-1/2          (mixed, THEN normalised)
      A_raw     = sum_m alpha_m S~_m                           (normalised per modality, then mixed)
      A         = (1 - lambda) A_learned + lambda A_raw          [n_items, n_items], sparse

* **Item graph convolution** on the item ID embeddings (eq. 8): ``h = A^{L_mm} E_item`` (last
  layer only, ``L_mm = n_mm_layers``).
* **CF backbone** (``cf_model: lightgcn``, the reference's default) over the reference's own
  user-item graph ``A_ui = D^-1 (R_bip + I)`` (row-normalised, self-loops; NOT LightGCN's
  symmetric ``A_hat``): ``[U; I] = mean_{l=0..L_ui} A_ui^l [E_user; E_item]``; ``cf_model: mf``:
  ``U = E_user, I = E_item``.
* Final ``users = U`` ``[n_users, d]``, ``items = I + normalize(h)`` ``[n_items, d]``;
  ``score(u, i) = users_u . items_i``.

Loss (the reference's ``bpr_loss``)::

    L = mean_b -log sigmoid(s(u, i+) - s(u, i-))
        + reg_weight * (||users_u||^2 + ||items_i+||^2 + ||items_i-||^2) / (2 train_batch_size)

(squared norms of the batch's FINAL embeddings, divided by the configured batch size, as the
reference divides by its ``batch_size`` also on a shorter last batch).

**Graph schedule** (the reference's ``build_item_graph`` flag): at the first training batch of
every epoch (``pre_epoch_processing`` sets the flag) ``A`` is rebuilt from the current
projections WITH gradients, so that batch trains ``W_m``, ``f_m`` and ``a`` through the graph; the
epoch's other batches reuse that graph detached (no gradient reaches ``W_m``, ``f_m`` or ``a``
there; they are not updated by Adam on those steps). Evaluation rebuilds ``A`` from the current
parameters (the reference's ``full_sort_predict`` passes ``build_item_graph=True``), once per
evaluation here (the reference rebuilds it per user batch: same graph, same scores).

Deviations from the reference code (each for a reason):

* Any number of modalities: one projection and one weight per modality; ``a`` is initialised to
  ``0.5`` for each (the reference's ``[0.5, 0.5]``: softmax gives equal weights). With one
  modality the weight is ``softmax([a]) = 1``, the reference's single-modality branch.
* RecBole's PAD item (id 0) is in no graph (the reference has no PAD row).
* Sparse throughout: the kNN search is blockwise and the graphs are edge lists (the reference
  builds dense ``N x N`` similarity and adjacency matrices); the same matrices, summed in another
  order (float rounding only).
* A row whose kept similarities sum to <= 0 gets degree 0 (its row and column vanish) where the
  reference's ``pow(-0.5)`` gives NaN (never met with ``i`` among its own neighbours).
* ``cf_model: ngcf`` is not implemented (not the reference's default; ``mess_dropout`` and
  ``weight_size``'s per-layer sizes exist only for it: ``n_ui_layers`` is ``len(weight_size)``).
* The learning-rate schedule ``0.96^(epoch / 50)`` of the reference trainer is not applied (the
  protocol's optimizer has a constant rate; over 100 epochs the reference's rate falls by 8%).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_recgoat.model.abstract import GraphRecommender
from recbole_recgoat.model.layers.graph import rows, sparse_from_edges
from recbole_recgoat.model.layers.knn import knn_similarities
from recbole_recgoat.model.layers.losses import bpr_dot_loss
from recbole_recgoat.model.layers.sparse import SparseOperator, propagate


def sym_normalize_edges(edge_index, values, n_nodes):
    """Values of ``D^-1/2 A D^-1/2`` for a weighted edge list (degree = row sum; duplicates add,
    as in the matrix they sum to); differentiable w.r.t. ``values``. A node of degree <= 0 gets
    ``D^-1/2 = 0``.

    Args:
        edge_index (LongTensor): ``[2, E]``.
        values (Tensor): ``[E]``.

    Returns:
        Tensor: ``[E]`` normalised values.
    """
    deg = values.new_zeros(n_nodes).index_add(0, edge_index[0], values)
    safe = torch.where(deg > 0, deg, torch.ones_like(deg))
    inv = torch.where(deg > 0, safe.rsqrt(), torch.zeros_like(deg))
    return values * rows(inv, edge_index[0]) * rows(inv, edge_index[1])


def edge_matmul(edge_index, values, x, n_rows):
    """``A @ x`` for ``A`` given as a (possibly duplicated) weighted edge list, differentiable
    w.r.t. both ``values`` ``[E]`` and ``x`` ``[N, d]`` (gather, scale, ``index_add``: memory
    ``O(E d)``, deterministic on CPU)."""
    msg = values.unsqueeze(1) * rows(x, edge_index[1])
    return x.new_zeros(n_rows, x.shape[1]).index_add(0, edge_index[0], msg)


class LATTICE(GraphRecommender):
    r"""LATTICE as a RecBole general recommender (pairwise BPR input), on the plugin's graph backbone
    (ID embeddings ``user_embedding`` / ``item_embedding``, Xavier-uniform as the reference).

    Config keys (see ``properties/model/LATTICE.yaml``): ``embedding_size``, ``feat_embed_dim``,
    ``knn_k``, ``lambda_coeff``, ``n_ui_layers``, ``n_mm_layers``, ``cf_model``, ``reg_weight``,
    ``finetune_features``.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.feat_embed_dim = int(config["feat_embed_dim"])
        self.knn_k = int(config["knn_k"])
        self.lambda_coeff = float(config["lambda_coeff"])
        self.n_mm_layers = int(config["n_mm_layers"])
        self.cf_model = str(config["cf_model"])
        self.reg_weight = float(config["reg_weight"])
        self.batch_size = int(config["train_batch_size"])  # the reference's L2 divisor

        # fine-tuned copies of the feature tables (reference: Embedding.from_pretrained(freeze=False))
        self.finetune_features = bool(config["finetune_features"])
        self.feature_tables = nn.ParameterDict(
            {m: nn.Parameter(f.clone()) for m, f in self.item_feats.items()} if self.finetune_features else {}
        )
        self.feature_proj = nn.ModuleDict({m: nn.Linear(f.shape[1], self.feat_embed_dim) for m, f in self.item_feats.items()})
        self.modal_weight = nn.Parameter(torch.full((len(self.modalities),), 0.5))  # a, alpha = softmax(a)

        # the reference's user-item graph D^-1 (R_bip + I) (row-normalised, self-loops), [N, N] N = n_users + n_items
        self.ui_op = SparseOperator(self.mean_adjacency(), symmetric=False)

        # frozen raw graphs: every modality's normalised kNN edges, concatenated (``raw_modality`` says whose)
        edges, values, owner = [], [], []
        for k, m in enumerate(self.modalities):
            e, v = self.raw_graph(m)
            edges.append(e)
            values.append(v)
            owner.append(torch.full_like(v, k, dtype=torch.long))
        self.register_buffer("raw_edges", torch.cat(edges, dim=1), persistent=False)  # [2, E_raw]
        self.register_buffer("raw_values", torch.cat(values), persistent=False)  # [E_raw], S~_m entries
        self.register_buffer("raw_modality", torch.cat(owner), persistent=False)  # [E_raw]

        self.rebuild_item_graph = True  # the reference's build_item_graph flag
        self.item_op = None  # the epoch's graph A, detached (a SparseOperator)

    # -- graphs ----------------------------------------------------------------------------
    def mean_adjacency(self):
        """``D^-1 (R_bip + I)`` of the TRAINING edges, sparse ``[n_users + n_items]^2`` (degree with
        the self-loop: every row sums to 1)."""
        n = self.n_users + self.n_items
        loops = torch.arange(n, device=self.train_users.device)
        r = torch.cat([self.train_users, self.train_items + self.n_users, loops])
        c = torch.cat([self.train_items + self.n_users, self.train_users, loops])
        deg = torch.bincount(r, minlength=n).float()
        return sparse_from_edges(r, c, 1.0 / deg[r], (n, n)).to(self.device)

    def raw_graph(self, modality):
        """``S~_m`` of the raw features: ``(edge_index [2, E], values [E])`` (cached kNN edge list,
        cosine weights, directed, symmetric normalisation by the row sums)."""
        edge_index, sims = self.cosine_knn_graph(self.item_feats[modality], self.knn_k, tag=f"item-{modality}-", include_self=True)
        return edge_index, sym_normalize_edges(edge_index, sims, self.n_items)

    def feature_table(self, modality):
        """``[n_items, F_m]``: the fine-tuned table (``finetune_features``) or the frozen features."""
        return self.feature_tables[modality] if self.finetune_features else self.item_feats[modality]

    def modality_weights(self):
        """``alpha = softmax(a)`` ``[M]``."""
        return torch.softmax(self.modal_weight, dim=0)

    def learned_graph(self):
        """The learned kNN graphs of the projected features, mixed and normalised:
        ``(edge_index [2, E], values [E])`` of ``D^-1/2 (sum_m alpha_m A_m) D^-1/2`` (differentiable
        w.r.t. the projections, the feature tables and ``a``; no dense matrix)."""
        alpha = self.modality_weights()
        valid = self.item_valid_mask()
        edges, values = [], []
        for k, m in enumerate(self.modalities):
            e, s = knn_similarities(self.feature_proj[m](self.feature_table(m)), self.knn_k, valid=valid)
            edges.append(e)
            values.append(alpha[k] * s)
        edge_index, values = torch.cat(edges, dim=1), torch.cat(values)
        return edge_index, sym_normalize_edges(edge_index, values, self.n_items)

    def item_graph(self):
        """``A = (1 - lambda) A_learned + lambda A_raw`` as ``(edge_index [2, E], values [E])``
        (duplicate pairs are summed by every product with it)."""
        learned_edges, learned = self.learned_graph()
        raw = self.modality_weights()[self.raw_modality] * self.raw_values  # sum_m alpha_m S~_m
        edge_index = torch.cat([learned_edges, self.raw_edges], dim=1)
        return edge_index, torch.cat([(1.0 - self.lambda_coeff) * learned, self.lambda_coeff * raw])

    def pre_epoch_processing(self):
        """Rebuild the item graph (with gradients) at the epoch's first training batch."""
        self.rebuild_item_graph = True

    def epoch_diagnostics(self):
        alpha = self.modality_weights().detach().cpu().tolist()
        return {f"alpha_{m}": round(a, 4) for m, a in zip(self.modalities, alpha)}

    # -- model -----------------------------------------------------------------------------
    def item_graph_conv(self, build):
        """``h = A^{L_mm} E_item`` ``[n_items, d]``; ``build``: from a graph rebuilt now (with
        gradients when enabled; kept, detached, for the epoch's next batches when training), else
        over the kept detached graph."""
        h = self.item_embedding.weight
        if build or self.item_op is None:
            edge_index, values = self.item_graph()
            for _ in range(self.n_mm_layers):
                h = edge_matmul(edge_index, values, h, self.n_items)
            if self.training:
                adj = sparse_from_edges(edge_index[0], edge_index[1], values.detach(), (self.n_items, self.n_items))
                self.item_op = SparseOperator(adj)
            return h
        return propagate(self.item_op, h, self.n_mm_layers, mean=False)

    def forward(self, build_item_graph=True):
        """``(users [n_users, d], items [n_items, d], {"h": [n_items, d]})``; ``build_item_graph``
        rebuilds ``A`` from the current parameters (evaluation always does)."""
        h = self.item_graph_conv(build_item_graph)
        if self.cf_model == "lightgcn":
            users, items = self.split_nodes(self.propagate_ui(adj_op=self.ui_op))
        else:  # mf
            users, items = self.user_embedding.weight, self.item_embedding.weight
        return users, items + F.normalize(h, p=2, dim=1), {"h": h}

    def calculate_loss(self, interaction):
        self.invalidate()
        user_all, item_all, _ = self.forward(build_item_graph=self.rebuild_item_graph)
        self.rebuild_item_graph = False
        u = rows(user_all, interaction[self.USER_ID])
        pos = rows(item_all, interaction[self.ITEM_ID])
        neg = rows(item_all, interaction[self.NEG_ITEM_ID])
        loss = bpr_dot_loss(u, pos, neg)
        if self.reg_weight != 0.0:
            reg = 0.5 * (u.pow(2).sum() + pos.pow(2).sum() + neg.pow(2).sum()) / self.batch_size
            loss = loss + self.reg_weight * reg
        return loss
