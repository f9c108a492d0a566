"""SMORE: "Spectrum-based Modality Representation Fusion Graph Convolutional Network for Multimodal
Recommendation", Rongqing Kenneth Ong and Andy W. H. Khong, WSDM 2025, arXiv:2412.14978
(reference code: kennethorq/SMORE ``src/models/smore.py``, built on MMRec).

Notation: ``d = embedding_size``, ``M`` modalities, ``f_m`` the (fine-tuned) feature table of
modality ``m`` ``[n_items, F_m]``, ``E_u`` / ``E_i`` the ID embeddings, ``A_hat`` the normalised
training bipartite adjacency, ``R_hat = D_u^-1/2 R D_i^-1/2`` its user-item block
``[n_users, n_items]``, ``F`` / ``F^-1`` the real DFT along the feature axis (``torch.fft.rfft`` /
``irfft``, orthonormal scaling, ``d // 2 + 1`` frequencies).

* Spectrum-based modality fusion (uni-modal denoising filters, spectral cross-modal fusion):
  projected features ``X_m = f_m W_m + b_m`` ``[n_items, d]``; learnable complex filters ``K_m``,
  ``K_f`` ``[d // 2 + 1]``::

      X~_m = F^-1( K_m * F(X_m) )                      uni-modal denoising        [n_items, d]
      X~_f = F^-1( K_f * prod_m F(X_m) )               cross-modal fusion         [n_items, d]

  (``*`` and ``prod`` element-wise over frequencies; :func:`spectral_fusion`).
* Multi-modal graph learning, item-item views: per modality the kNN graph of the raw features,
  built once and frozen: the ``knn_k`` most cosine-similar items of every item (itself among
  them), directed, weighted by the cosine, ``S_m = D^-1/2 W_m D^-1/2`` (``D`` the row sums); the fused graph
  ``S_f = max_m S_m`` element-wise over the union of the edges. With ``v`` in ``{1..M, f}``::

      H_v = S_v^{L_mm} ( E_i * sigmoid(X~_v G_v + c_v) )     [n_items, d]
      V_v = [ R_hat H_v ; H_v ]                               [n_users + n_items, d]

* Multi-modal graph learning, user-item (behavioural) view (LightGCN)::

      C = mean_{l=0..L_ui} A_hat^l [E_u; E_i]                 [n_users + n_items, d]

* Modality-aware preference module: attention over the feature axis from the fusion view,
  preference gates from the behaviour view (dropout ``dropout`` on the gates while training)::

      P_v = dropout( sigmoid(C Q_v + q_v) )                                 v in {1..M, f}
      side = mean( [ P_m * softmax(tanh(V_f A_m + a_m) B_m) * V_m ]_m , P_f * V_f )
      [e_u; e_i] = C + side ;  score(u, i) = e_u . e_i

* Loss: ``L = BPR(e_u, e_i+, e_i-) + reg_weight * (||e_u||^2 + ||e_i+||^2 + ||e_i-||^2) / (2 B)
  + cl_weight * [InfoNCE(side_i+, C_i+) + InfoNCE(side_u, C_u)]`` over the batch's rows, each
  InfoNCE the mean over the ``B`` rows of ``-log softmax_j(cos(a_b, p_j) / tau)[b]`` with the
  batch's own ``B`` positives as candidates (in-batch negatives, a repeated id included).

Any number of modalities (the reference: image + text, ``M = 2``, which this reduces to): ``M``
filters, item gates, attention queries and preference gates, one each per modality, plus the
fusion filter and gates; the fused spectrum is the product of all ``M`` spectra, the fused graph
the element-wise maximum of all ``M`` graphs, and ``side`` the mean of ``M + 1`` terms. With one
modality the "fusion" view is that modality filtered by a second filter ``K_f`` on its own graph.

Deviations from the reference code:

* Per-modality kNN sizes: ``knn_k`` for every modality (the reference's ``image_knn_k`` and
  ``text_knn_k``), ``modality_knn_k: {modality: k}`` overrides it per modality.
* The embedding regulariser divides by the batch's actual size ``B``, the reference by the
  configured ``train_batch_size`` (they differ on an epoch's last, smaller batch only).
* The reference's InfoNCE temperature is hard-coded 0.2 (its yaml's ``temperature`` is unused):
  here ``tau``, default 0.2.
* The reference's learning-rate scheduler (``learning_rate_scheduler: [0.96, 50]``, MMRec's
  trainer) is not applied: the protocol's trainer has none (a constant ``learning_rate``).
* RecBole's PAD item (id 0) has no item-item edges; the graphs live on the model's device (the
  reference calls ``.cuda()``); the kNN graph is built in blocks (the reference builds the dense
  ``n_items x n_items`` similarity), so items tied at the k-th cosine may be picked differently.
No reference behaviour was found to be a defect, so there are no ``smore_*`` switches.
"""

import torch
import torch.nn as nn

from recbole_recgoat.errors import InputError
from recbole_recgoat.model.abstract import GraphRecommender
from recbole_recgoat.model.layers.graph import normalized_graph, rows, sparse_from_edges, sparse_max
from recbole_recgoat.model.layers.losses import bpr_dot_loss, info_nce
from recbole_recgoat.model.layers.sparse import SparseOperator, propagate


def spectral_fusion(feats, filters, fusion_filter):
    """SMORE's spectrum convolution: per-modality filtering and the fused spectrum.

    Args:
        feats (list[Tensor]): ``M`` real ``[n, d]`` projected modality features ``X_m``.
        filters (list[Tensor]): ``M`` filters ``K_m`` ``[1, d // 2 + 1, 2]`` (real, imaginary).
        fusion_filter (Tensor): ``K_f`` ``[1, d // 2 + 1, 2]``.

    Returns:
        tuple[list[Tensor], Tensor]: ``[F^-1(K_m F(X_m))]_m`` and ``F^-1(K_f prod_m F(X_m))``, each
        ``[n, d]`` (``F`` the orthonormal real DFT along dim 1).
    """
    d = feats[0].shape[1]
    spectra = [torch.fft.rfft(x, dim=1, norm="ortho") for x in feats]  # [n, d // 2 + 1] complex
    convs = [
        torch.fft.irfft(s * torch.view_as_complex(k), n=d, dim=1, norm="ortho") for s, k in zip(spectra, filters)
    ]
    fused = spectra[0]
    for s in spectra[1:]:
        fused = fused * s
    return convs, torch.fft.irfft(fused * torch.view_as_complex(fusion_filter), n=d, dim=1, norm="ortho")


def _gate(d):
    """``x -> sigmoid(x G + c)``, ``[., d] -> [., d]``."""
    return nn.Sequential(nn.Linear(d, d), nn.Sigmoid())


def _query(d):
    """``x -> tanh(x A + a) B``, ``[., d] -> [., d]`` (the attention logits over the feature axis)."""
    return nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, d, bias=False))


class SMORE(GraphRecommender):
    r"""SMORE as a RecBole general recommender (pairwise BPR input), on the LightGCN backbone.

    Config keys (see ``properties/model/SMORE.yaml``): ``embedding_size``, ``feat_embed_dim``,
    ``n_ui_layers``, ``n_mm_layers``, ``knn_k``, ``modality_knn_k``, ``reg_weight``, ``cl_weight``,
    ``tau``, ``dropout``, ``finetune_features``.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d, _ = self.matched_embedding_sizes(config, "SMORE gates the item ID embeddings with the filtered features")
        self.n_mm_layers = int(config["n_mm_layers"])
        self.reg_weight = float(config["reg_weight"])
        self.cl_weight = float(config["cl_weight"])
        self.tau = float(config["tau"])
        self.dropout = float(config["dropout"])
        self.knn_ks = self.modality_knn_ks(int(config["knn_k"]), config["modality_knn_k"])
        self.finetune_features = bool(config["finetune_features"])

        # fine-tuned copies of the feature tables (the reference's nn.Embedding(freeze=False)), or the frozen features
        self.feature_tables = nn.ParameterDict(
            {m: nn.Parameter(f.clone()) for m, f in self.item_feats.items()} if self.finetune_features else {}
        )
        self.feature_proj = nn.ModuleDict({m: nn.Linear(f.shape[1], d) for m, f in self.item_feats.items()})
        n_freq = d // 2 + 1
        self.filters = nn.ParameterDict({m: nn.Parameter(torch.randn(1, n_freq, 2)) for m in self.modalities})
        self.fusion_filter = nn.Parameter(torch.randn(1, n_freq, 2))
        self.item_gates = nn.ModuleDict({m: _gate(d) for m in self.modalities})
        self.fusion_item_gate = _gate(d)
        self.queries = nn.ModuleDict({m: _query(d) for m in self.modalities})
        self.prefer_gates = nn.ModuleDict({m: _gate(d) for m in self.modalities})
        self.fusion_prefer_gate = _gate(d)
        self.gate_dropout = nn.Dropout(p=self.dropout)

        # frozen graphs (buffers, rebuilt from the data): S_m, S_f = max_m S_m, R_hat
        self.mm_ops = nn.ModuleDict({m: SparseOperator(self.modality_graph(m)) for m in self.modalities})
        self.fusion_op = SparseOperator(sparse_max([op.coo for op in self.mm_ops.values()]))
        self.R_op = SparseOperator(self.user_item_block())

    def modality_knn_ks(self, knn_k, explicit):
        """``{modality: k}``: ``knn_k`` unless ``modality_knn_k`` names the modality."""
        explicit = dict(explicit or {})
        unknown = [m for m in explicit if m not in self.modalities]
        bad = [m for m, k in explicit.items() if isinstance(k, bool) or not isinstance(k, int) or k < 1]
        if unknown or bad:
            raise InputError(
                f"modality_knn_k: {explicit}; expected a positive int per modality among {', '.join(self.modalities)}"
            )
        return {m: int(explicit.get(m, knn_k)) for m in self.modalities}

    # -- graphs ----------------------------------------------------------------------------
    def modality_graph(self, modality):
        """``S_m = D^-1/2 W_m D^-1/2``, sparse ``[n_items, n_items]``: the directed cosine kNN graph
        of the raw features (itself among an item's ``k``), weighted by the cosine, ``D`` its row sums."""
        edge_index, cosine = self.cosine_knn_graph(self.item_feats[modality], self.knn_ks[modality], tag=f"item-{modality}-")
        return normalized_graph(edge_index, self.n_items, cosine)

    def user_item_block(self):
        """``R_hat``: the user-item block of ``A_hat``, sparse ``[n_users, n_items]`` (training edges only)."""
        adj = self.norm_adj
        idx, val = adj.indices(), adj.values()
        keep = (idx[0] < self.n_users) & (idx[1] >= self.n_users)
        return sparse_from_edges(idx[0][keep], idx[1][keep] - self.n_users, val[keep], (self.n_users, self.n_items))

    @property
    def mm_adj(self):
        """``{modality: S_m}`` sparse COO ``[n_items, n_items]``, and ``"fusion"``: ``S_f``."""
        return {**{m: op.coo for m, op in self.mm_ops.items()}, "fusion": self.fusion_op.coo}

    def feature_table(self, modality):
        """``[n_items, F_m]``: the fine-tuned table (``finetune_features``) or the frozen features."""
        return self.feature_tables[modality] if self.finetune_features else self.item_feats[modality]

    # -- model -----------------------------------------------------------------------------
    def forward(self):
        """``(users [n_users, d], items [n_items, d], {"content": C, "side": side})`` (``C`` and
        ``side`` ``[n_users + n_items, d]``)."""
        mods, d = self.modalities, self.embedding_size
        content = self.propagate_ui()  # C
        convs, fused = spectral_fusion(
            [self.feature_proj[m](self.feature_table(m)) for m in mods],
            [self.filters[m] for m in mods],
            self.fusion_filter,
        )
        ids = self.item_embedding.weight
        item_views = [
            propagate(self.mm_ops[m], ids * self.item_gates[m](conv), self.n_mm_layers, mean=False)
            for m, conv in zip(mods, convs)
        ]
        item_views.append(propagate(self.fusion_op, ids * self.fusion_item_gate(fused), self.n_mm_layers, mean=False))
        items_cat = torch.cat(item_views, dim=1)  # [n_items, (M + 1) d]: one R_hat product for every view
        views = torch.split(torch.cat([self.R_op @ items_cat, items_cat], dim=0), d, dim=1)  # V_1..V_M, V_f
        fusion_view = views[-1]
        terms = [
            self.gate_dropout(self.prefer_gates[m](content)) * torch.softmax(self.queries[m](fusion_view), dim=-1) * view
            for m, view in zip(mods, views)
        ]
        terms.append(self.gate_dropout(self.fusion_prefer_gate(content)) * fusion_view)
        side = torch.stack(terms).mean(dim=0)
        users, items = self.split_nodes(content + side)
        return users, items, {"content": content, "side": side}

    def view_info_nce(self, anchor, positive):
        """Mean over the ``B`` rows of InfoNCE with the batch's positives as candidates."""
        return info_nce(anchor, positive, positive, self.tau) / anchor.shape[0]

    def calculate_loss(self, interaction):
        self.invalidate()
        users = interaction[self.USER_ID]
        pos = interaction[self.ITEM_ID]
        neg = interaction[self.NEG_ITEM_ID]
        user_all, item_all, parts = self.forward()
        u, ip, ineg = rows(user_all, users), rows(item_all, pos), rows(item_all, neg)
        loss = bpr_dot_loss(u, ip, ineg)
        reg = (u.square().sum() + ip.square().sum() + ineg.square().sum()) / (2 * users.numel())
        loss = loss + self.reg_weight * reg
        if self.cl_weight != 0.0:
            side_u, side_i = self.split_nodes(parts["side"])
            content_u, content_i = self.split_nodes(parts["content"])
            cl = self.view_info_nce(rows(side_i, pos), rows(content_i, pos))
            cl = cl + self.view_info_nce(rows(side_u, users), rows(content_u, users))
            loss = loss + self.cl_weight * cl
        return loss
