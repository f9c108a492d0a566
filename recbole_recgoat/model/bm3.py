"""BM3: "Bootstrap Latent Representations for Multi-modal Recommendation", Xin Zhou, Hongyu Zhou,
Yong Liu, Zhiwei Zeng, Chunyan Miao, Pengwei Wang, Yuan You and Feijun Jiang, WWW 2023,
arXiv:2207.05969.

Self-supervised, **without negative items**: a positive pair ``(u, i)`` is the only input.
With ``d = embedding_size``, ``A_hat`` the normalised bipartite adjacency and ``p`` the shared
predictor (a ``d x d`` linear layer)::

    online:  [h_U; h_I] = mean_{l=0..L} A_hat^l [E_user; E_item],   h_I += E_item   ([n, d])
             h_m(i)     = W_m f_m(i) + b_m                            (per modality, [B, d])
    target:  t = dropout(stop_grad(online), p=dropout)               (the perturbed "target view")
    L_rec   = (1 - cos(p(h_u), t_i)) + (1 - cos(p(h_i), t_u))        (graph reconstruction)
    L_align = sum_m (1 - cos(p(h_m(i)), t_i))                         (inter-modality alignment)
            + sum_m (1 - cos(p(h_m(i)), dropout(stop_grad(h_m(i)))))  (intra-modality masked reconstruction)
    L = L_rec + cl_weight * L_align + reg_weight * (||h_U||_F + ||h_I||_F) / n_items
    score(u, i) = p(h_u) . p(h_i)

(each ``1 - cos`` averaged over the batch; the regulariser is the reference code's ``EmbLoss``
over all online ID embeddings; every target draws one dropout mask per user / item, as the
reference, whose masks cover the whole tables, while the modality encoders run only on the
batch's distinct items). ``f_m`` are fine-tuned feature tables (``finetune_features``).
Any number of modalities: one ``W_m`` and two alignment terms per modality.

Input: RecBole ``POINTWISE`` with ``train_neg_sample_args: ~`` (no negatives are sampled); the
loss reads only ``USER_ID`` and ``ITEM_ID``.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.loss import EmbLoss
from recbole.utils import InputType

from recbole_recgoat.model.abstract import GraphRecommender
from recbole_recgoat.model.layers.batched import apply_once, cosine_distances


class BM3(GraphRecommender):
    r"""BM3 as a RecBole general recommender (pointwise input of positive pairs only), on the
    LightGCN backbone.

    Config keys (see ``properties/model/BM3.yaml``): ``embedding_size``, ``n_ui_layers``,
    ``dropout``, ``reg_weight``, ``cl_weight``, ``finetune_features``.
    """

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d = self.embedding_size
        self.dropout = float(config["dropout"])
        self.reg_weight = float(config["reg_weight"])
        self.cl_weight = float(config["cl_weight"])
        self.emb_loss = EmbLoss()

        self.predictor = nn.Linear(d, d)
        nn.init.xavier_normal_(self.predictor.weight)

        # fine-tuned copies of the feature tables (parameters), or the frozen features themselves
        self.finetune_features = bool(config["finetune_features"])
        self.feature_tables = nn.ParameterDict()
        self.feature_proj = nn.ModuleDict()
        for m, f in self.item_feats.items():
            if self.finetune_features:
                self.feature_tables[m] = nn.Parameter(f.clone())
            self.feature_proj[m] = nn.Linear(f.shape[1], d)
            nn.init.xavier_normal_(self.feature_proj[m].weight)

    def forward(self):
        """Online ID embeddings ``(h_U [n_users, d], h_I [n_items, d], {})``: LightGCN, then the
        item's own ID embedding added (``h_I += E_item``)."""
        users, items = self.split_nodes(self.propagate_ui())
        return users, items + self.item_embedding.weight, {}

    def modality_online(self, modality, items):
        """``h_m(i) = W_m f_m(i) + b_m`` for ``items [B]``: ``[B, d]``."""
        table = self.feature_tables[modality] if self.finetune_features else self.item_feats[modality]
        return self.feature_proj[modality](table[items])

    def calculate_loss(self, interaction):
        """BM3's loss of a batch of positive pairs; no negative item is read."""
        self.invalidate()
        users = interaction[self.USER_ID]
        items = interaction[self.ITEM_ID]
        u_online_all, i_online_all, _ = self.forward()
        with torch.no_grad():  # target view: perturbed, no gradient
            u_target = F.dropout(u_online_all.detach(), self.dropout)[users]
            i_target = F.dropout(i_online_all.detach(), self.dropout)[items]
        uniq, inverse = torch.unique(items, return_inverse=True)  # one row (and one target mask) per item
        h = [self.modality_online(m, uniq) for m in self.modalities]  # [U, d] each
        with torch.no_grad():
            m_targets = [F.dropout(h_m.detach(), self.dropout)[inverse] for h_m in h]
        p_u, p_i, *p_m = apply_once(self.predictor, [u_online_all[users], i_online_all[items]] + h)
        p_m = [p[inverse] for p in p_m]
        dist = cosine_distances(  # [2 + 2M]: each 1 - mean_b cos(online, target)
            [(p_i, u_target), (p_u, i_target)]  # L_rec
            + [(p, t) for p, t_m in zip(p_m, m_targets) for t in (i_target, t_m)]  # L_align: inter, intra
        )
        loss, align = dist[:2].sum(), dist[2:].sum()
        reg = self.emb_loss(u_online_all, i_online_all)
        return loss + self.reg_weight * reg + self.cl_weight * align

    # -- inference -------------------------------------------------------------------------
    def inference_embeddings(self):
        """Scores are ``predictor(h_u) . predictor(h_i)`` (the online predictor's outputs)."""
        users, items, _ = self.forward()
        return self.predictor(users), self.predictor(items)
