"""LGMRec: "LGMRec: Local and Global Graph Learning for Multimodal Recommendation", Zhiqiang Guo,
Jianjun Li, Guohui Li, Chaoyang Wang, Si Shi and Bin Ruan, AAAI 2024, arXiv:2312.16400.

Notation: ``R`` the binary training matrix ``[n_users, n_items]``, ``A_hat`` the symmetric-
normalised bipartite adjacency, ``f_m`` the frozen raw features of modality ``m`` ``[n_items, F_m]``,
``d = embedding_size``, ``H = hyper_num``.

* Collaborative graph embedding (CGE): ``E_c = mean_{l=0..L_ui} A_hat^l [E_user; E_item]``.
* Modality graph embedding (MGE), per modality: ``X_m = f_m W_m`` ``[n_items, d]``;
  users ``deg(u)^-1 R X_m`` (mean over the user's training items); then ``L_mm`` propagations
  ``A_hat^{L_mm} [U_m; X_m]`` keeping only the last layer.
* Local embedding ``E_loc = E_c + sum_m normalize(E_m)``.
* Global hypergraph embedding (GHE), per modality: item incidence
  ``H_i = softmax_gumbel(f_m P_m / tau)`` ``[n_items, H]``, user incidence
  ``H_u = softmax_gumbel((R f_m P_m) / tau)`` ``[n_users, H]`` (rows sum to 1), each with dropout
  ``p = 1 - keep_rate`` during training; ``L_h`` passes from the collaborative item embeddings
  ``Z_i^0 = E_c[items]``: ``Λ = H_i^T Z_i``, ``Z_i = H_i Λ``, ``Z_u = H_u Λ``.
  ``E_glob = sum_m [Z_u^m; Z_i^m]``.
* Final ``E = E_loc + alpha * normalize(E_glob)``; ``score(u, i) = E_u . E_i``.

Loss: ``BPR + cl_weight * sum_{a<b} [InfoNCE(Z_u^a[B], Z_u^b[B]; all Z_u^b) +
InfoNCE(Z_i^a[B+], Z_i^b[B+]; all Z_i^b)] + reg_weight * (||E_u|| + ||E_i+|| + ||E_i-||) / B``
(InfoNCE with ``tau``, summed over the batch; unsquared Frobenius norms, as the reference code).

Fixes over the reference code (each a switch, documented in ``properties/model/LGMRec.yaml``):

* ``lgmrec_gumbel_at_inference: False``: at evaluation the incidences are the noiseless
  ``softmax(logits / tau)``, so scores are the same from call to call (the reference samples
  Gumbel noise at inference too: ``True``).
* ``lgmrec_missing_modality: use_available``: any number of modalities; with one modality there
  is no contrastive pair and the CL term is 0 (the reference crashes with a ``NameError``; its
  ``else`` branch meant ``cf_only``: collaborative embeddings only).
"""

import itertools

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.loss import EmbLoss

from recbole_recgoat.model.abstract import GraphRecommender
from recbole_recgoat.model.layers.batched import side_by_side_products
from recbole_recgoat.model.layers.graph import sparse_from_edges
from recbole_recgoat.model.layers.losses import bpr_loss, info_nce, info_nce_lowrank
from recbole_recgoat.model.layers.sparse import SparseOperator, propagate



class LGMRec(GraphRecommender):
    r"""LGMRec as a RecBole general recommender (pairwise BPR input), on the LightGCN backbone (its
    CGE is the backbone's propagation).

    Config keys (see ``properties/model/LGMRec.yaml``): ``embedding_size``, ``feat_embed_dim``,
    ``n_ui_layers``, ``n_mm_layers``, ``n_hyper_layer``, ``hyper_num``, ``keep_rate``, ``alpha``,
    ``cl_weight``, ``reg_weight``, ``tau``, ``lgmrec_gumbel_at_inference``,
    ``lgmrec_missing_modality``.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        _, self.feat_embed_dim = self.matched_embedding_sizes(config, "LGMRec adds modality and collaborative embeddings")
        self.n_mm_layers = int(config["n_mm_layers"])
        self.n_hyper_layer = int(config["n_hyper_layer"])
        self.hyper_num = int(config["hyper_num"])
        self.keep_rate = float(config["keep_rate"])
        self.alpha = float(config["alpha"])
        self.cl_weight = float(config["cl_weight"])
        self.reg_weight = float(config["reg_weight"])
        self.tau = float(config["tau"])
        self.gumbel_at_inference = bool(config["lgmrec_gumbel_at_inference"])
        self.missing_modality = str(config["lgmrec_missing_modality"]).lower()
        # the reference's intended fallback when not every modality is present: CGE only
        self.use_modalities = not (self.missing_modality == "cf_only" and len(self.modalities) < 2)

        self.drop = nn.Dropout(p=1.0 - self.keep_rate)
        self.item_trs = nn.ParameterDict()
        self.hyper = nn.ParameterDict()
        for m, f in self.item_feats.items():
            self.item_trs[m] = nn.Parameter(nn.init.xavier_uniform_(torch.zeros(f.shape[1], self.feat_embed_dim)))
            self.hyper[m] = nn.Parameter(nn.init.xavier_uniform_(torch.zeros(f.shape[1], self.hyper_num)))

        users, items = self.train_users, self.train_items
        ones = torch.ones(users.numel(), device=self.device)
        self.R_op = SparseOperator(sparse_from_edges(users, items, ones, (self.n_users, self.n_items)))  # binary R
        deg = torch.bincount(users, minlength=self.n_users).float()
        self.register_buffer("inv_user_deg", (1.0 / (deg + 1e-7)).unsqueeze(1), persistent=False)  # [n_users, 1]
        self.emb_loss = EmbLoss()

    @property
    def R(self):
        """The binary training matrix, sparse COO ``[n_users, n_items]``."""
        return self.R_op.coo

    # -- parts -----------------------------------------------------------------------------
    def cge(self):
        """Collaborative graph embedding ``[n_users + n_items, d]`` (the backbone's LightGCN, mean over layers)."""
        return self.propagate_ui()

    def _soft_assign(self, logits):
        """Hyperedge incidences ``[n, H]`` (rows sum to 1) of ``logits [n, H]``: Gumbel-softmax when
        training (or with ``lgmrec_gumbel_at_inference``), else the plain ``softmax(logits / tau)``."""
        if self.training or self.gumbel_at_inference:
            return F.gumbel_softmax(logits, tau=self.tau, dim=1, hard=False)
        return torch.softmax(logits / self.tau, dim=1)

    def hypergraph(self, item_inc, user_inc, item_emb):
        """``n_hyper_layer`` hypergraph passes from ``item_emb`` ``[n_items, d]``.

        Returns ``(Z_u [n_users, d], Z_i [n_items, d], lat [H, d])`` with ``Z_u = user_inc @ lat``
        and ``Z_i = item_inc @ lat`` (``lat`` the last pass's hyperedge embeddings).
        """
        z_i = item_emb
        for _ in range(self.n_hyper_layer):
            lat = item_inc.T @ z_i  # [H, d]
            z_i = item_inc @ lat
        return user_inc @ lat, z_i, lat

    def forward(self):
        """``(users [n_users, d], items [n_items, d], {modality: (Z_u, Z_i, H_u, H_i, lat)})``.

        All modalities share one pass over the features (``f_m [W_m | P_m]``), one sparse product
        with ``R`` and one propagation per layer (their columns side by side).
        """
        cge = self.cge()
        hyper = {}
        if not self.use_modalities:
            users, items = self.split_nodes(cge)
            return users, items, hyper
        d, h, mods = self.feat_embed_dim, self.hyper_num, self.modalities
        item_in = side_by_side_products(
            [self.item_feats[m] for m in mods], [torch.cat([self.item_trs[m], self.hyper[m]], dim=1) for m in mods]
        )  # [n_items, M (d + H)]: per modality d columns of f_m W_m, then H logits f_m P_m
        user_in = self.R_op @ item_in  # [n_users, M (d + H)], sums over each user's items
        # one split per tensor (not a slice per part): its backward concatenates the parts' gradients
        # instead of zero-filling a full-size gradient for every slice
        item_parts = torch.split(item_in, [d, h] * len(mods), dim=1)  # x_1, logits_1, x_2, logits_2, ...
        user_parts = torch.split(user_in, [d, h] * len(mods), dim=1)
        mge_in = torch.cat(
            [torch.cat([user_parts[2 * k] * self.inv_user_deg, item_parts[2 * k]], dim=0) for k in range(len(mods))], dim=1
        )  # [n_users + n_items, M d]
        mge = propagate(self.adj_op, mge_in, self.n_mm_layers, mean=False)
        local = cge
        for part in torch.split(mge, d, dim=1):
            local = local + F.normalize(part, dim=1)
        glob = 0.0
        cge_items = self.split_nodes(cge)[1]
        for k, m in enumerate(mods):
            item_inc = self.drop(self._soft_assign(item_parts[2 * k + 1]))
            user_inc = self.drop(self._soft_assign(user_parts[2 * k + 1]))
            z_u, z_i, lat = self.hypergraph(item_inc, user_inc, cge_items)
            hyper[m] = (z_u, z_i, user_inc, item_inc, lat)
            glob = glob + torch.cat([z_u, z_i], dim=0)
        final = local + self.alpha * F.normalize(glob, dim=1)
        users, items = self.split_nodes(final)
        return users, items, hyper

    def contrastive_loss(self, hyper, users, pos):
        """Sum over modality pairs ``a < b`` of the user and item InfoNCE of the hypergraph embeddings.

        A user's (an item's) term depends only on its id, so each distinct id of the batch is
        computed once and counted as often as it occurs. The candidates ``Z^b = H^b lat^b`` have
        rank ``H``: while ``H < d`` the similarities go through the factors
        (:func:`info_nce_lowrank`, same value, ``d / H`` times fewer multiplications).
        """
        loss = 0.0
        lowrank = self.hyper_num < self.feat_embed_dim
        uu, cu = torch.unique(users, return_counts=True)
        ui, ci = torch.unique(pos, return_counts=True)
        cu, ci = cu.to(self.user_embedding.weight.dtype), ci.to(self.user_embedding.weight.dtype)
        for a, b in itertools.combinations([m for m in self.modalities if m in hyper], 2):
            ua, ia = hyper[a][0], hyper[a][1]
            ub, ib, hub, hib, lat_b = hyper[b]
            if lowrank:
                loss = loss + info_nce_lowrank(ua[uu], ub[uu], hub, lat_b, self.tau, cu)
                loss = loss + info_nce_lowrank(ia[ui], ib[ui], hib, lat_b, self.tau, ci)
            else:
                loss = loss + info_nce(ua[uu], ub[uu], ub, self.tau, cu) + info_nce(ia[ui], ib[ui], ib, self.tau, ci)
        return loss

    def calculate_loss(self, interaction):
        self.invalidate()
        users = interaction[self.USER_ID]
        pos = interaction[self.ITEM_ID]
        neg = interaction[self.NEG_ITEM_ID]
        user_all, item_all, hyper = self.forward()
        u, ip, ineg = user_all[users], item_all[pos], item_all[neg]
        loss = bpr_loss((u * ip).sum(1), (u * ineg).sum(1))
        if self.cl_weight != 0.0 and len(hyper) >= 2:
            loss = loss + self.cl_weight * self.contrastive_loss(hyper, users, pos)
        return loss + self.reg_weight * self.emb_loss(u, ip, ineg)

    # -- inference (the backbone's inference_embeddings: forward()) ---------------------------
    def cache_inference(self):
        """The reference behaviour samples Gumbel noise at inference: then nothing is reused."""
        return not self.gumbel_at_inference
