"""VBPR: "VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback", Ruining He and
Julian McAuley, AAAI 2016, arXiv:1510.01784.

Matrix factorisation whose item factor is extended by a linear map of the item's content
features. With ``f_i`` the item's content vector (all modalities concatenated, see below) and
``d = embedding_size``::

    score(u, i) = gamma_u . gamma_i          (ID part:      [d] . [d])
                + theta_u . (E f_i + b)      (content part: [d] . ([d x F] [F] + [d]))
               [+ beta_i + beta' . f_i        with vbpr_bias: True, the paper's item and visual biases]

i.e. user ``[gamma_u ; theta_u]`` ``[2d]`` against item ``[gamma_i ; E f_i + b]`` ``[2d]``.
Loss: ``BPR + reg_weight * (||P_u|| + ||Q_i+|| + ||Q_i-||) / B`` (unsquared Frobenius norms of the
batch's user and item vectors, as the MMRec reference).

Any number of modalities: ``f_i = [f_i^1 / ||f_i^1|| ; f_i^2 / ||f_i^2|| ; ...]`` in the dataset's
modality order, frozen: each block L2-normalised so that no modality dominates by its scale alone
(``vbpr_feature_norm: none`` concatenates the raw features as MMRec's reference does). Otherwise
MMRec's "recommended version" (no bias terms), which produced the published numbers;
``vbpr_bias`` adds the paper's bias terms.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole_recgoat.model.abstract import MultiModalRecommender
from recbole_recgoat.model.layers.batched import encode_pairs, pair_dot, pair_emb_loss
from recbole_recgoat.model.layers.losses import bpr_loss



class VBPR(MultiModalRecommender):
    r"""VBPR as a RecBole general recommender (pairwise BPR input).

    Config keys (see ``properties/model/VBPR.yaml``): ``embedding_size``, ``reg_weight``,
    ``vbpr_feature_norm``, ``vbpr_bias``.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_size = d = int(config["embedding_size"])
        self.reg_weight = float(config["reg_weight"])
        self.feature_norm = str(config["vbpr_feature_norm"]).lower()
        self.use_bias = bool(config["vbpr_bias"])

        blocks = [F.normalize(f, dim=1) if self.feature_norm == "l2" else f for f in self.item_feats.values()]
        self.register_buffer("content", torch.cat(blocks, dim=1), persistent=False)  # [n_items, F]

        self.user_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, 2 * d)))  # [gamma; theta]
        self.item_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))  # gamma_i
        self.item_linear = nn.Linear(self.content.shape[1], d)  # E, b
        nn.init.xavier_normal_(self.item_linear.weight)
        nn.init.zeros_(self.item_linear.bias)
        if self.use_bias:
            self.item_bias = nn.Parameter(torch.zeros(self.n_items))  # beta_i
            self.visual_bias = nn.Parameter(torch.zeros(self.content.shape[1]))  # beta'

    # -- parts -----------------------------------------------------------------------------
    def item_vectors(self, items=None):
        """Item vectors ``[gamma_i ; E f_i + b]`` ``[n, 2d]`` (all items when ``items`` is None)."""
        ids = self.item_embedding if items is None else self.item_embedding[items]
        feats = self.content if items is None else self.content[items]
        return torch.cat([ids, self.item_linear(feats)], dim=1)

    def _biases(self, items=None):
        """``(beta_i, beta' . f_i)`` ``([n], [n])``."""
        feats = self.content if items is None else self.content[items]
        beta = self.item_bias if items is None else self.item_bias[items]
        return beta, feats @ self.visual_bias

    def score_parts(self, users, items=None):
        """The two summands of the score: ``(id_part, content_part)``.

        ``items`` None: full-sort ``[B, n_items]`` each; else pairwise ``[B]`` each.
        ``id_part = gamma_u . gamma_i (+ beta_i)``, ``content_part = theta_u . (E f_i + b) (+ beta' . f_i)``.
        """
        d = self.embedding_size
        gamma_u, theta_u = self.user_embedding[users, :d], self.user_embedding[users, d:]
        q = self.item_vectors(items)
        gamma_i, content_i = q[:, :d], q[:, d:]
        if items is None:
            id_part, content_part = gamma_u @ gamma_i.T, theta_u @ content_i.T
        else:
            id_part, content_part = (gamma_u * gamma_i).sum(1), (theta_u * content_i).sum(1)
        if self.use_bias:
            beta, vis = self._biases(items)
            id_part, content_part = id_part + beta, content_part + vis
        return id_part, content_part

    def calculate_loss(self, interaction):
        """``BPR(P_u . Q_i+, P_u . Q_i-) + reg_weight * (||P_u|| + ||Q_i+|| + ||Q_i-||) / B``."""
        self.invalidate()
        users = interaction[self.USER_ID]
        pos = interaction[self.ITEM_ID]
        neg = interaction[self.NEG_ITEM_ID]
        u = self.user_embedding[users]  # [B, 2d]: [gamma_u; theta_u]
        q = encode_pairs(self.item_vectors, pos, neg)  # [B, 2, 2d]: [gamma_i; E f_i + b] of (i+, i-)
        s = pair_dot(q, u)  # [B, 2] scores of (i+, i-)
        if self.use_bias:
            s = s + encode_pairs(lambda items: sum(self._biases(items)).unsqueeze(1), pos, neg).squeeze(2)
        return bpr_loss(s[:, 0], s[:, 1]) + self.reg_weight * pair_emb_loss(u, q)

    # -- inference -------------------------------------------------------------------------
    def inference_embeddings(self):
        """``([p_u ; 1], [q_i ; beta_i + beta'^T f_i])``: the dot product is the full VBPR score."""
        users, items = self.user_embedding, self.item_vectors()
        if self.use_bias:
            users = torch.cat([users, users.new_ones(users.shape[0], 1)], dim=1)
            items = torch.cat([items, sum(self._biases()).unsqueeze(1)], dim=1)
        return users, items
