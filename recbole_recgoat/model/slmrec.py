"""SLMRec: "Self-supervised Learning for Multimedia Recommendation", Zhulin Tao, Xiaohao Liu, Yewei
Xia, Xiang Wang, Lifang Yang, Xianglin Huang and Tat-Seng Chua, IEEE Transactions on Multimedia 2022
(reference code: MMRec ``src/models/slmrec.py``; the authors' ``zltao/SLMRec``).

Notation: ``d = embedding_size``, ``M`` modalities ``m_1..m_M`` (the dataset's / ``modalities``
order), ``K = M + 1`` branches (the ID branch ``0`` and one per modality), ``N = n_users + n_items``,
``L = n_ui_layers``, ``A_hat`` the normalised training bipartite adjacency, ``E_u [n_users, d]`` and
``E_i [n_items, d]`` the ID embeddings, ``f_m [n_items, F_m]`` the frozen item features.

* Branches (one LightGCN per modality, the users' ID embeddings shared)::

      x_m      = W_m normalize(f_m) + b_m                            [n_items, d]   (dense layer per modality)
      H_0      = [E_u; E_i],  H_k = [E_u; x_{m_k}]                   [N, d]
      Z_k      = mean_{l=0..L} A_hat^l H_k                           [N, d]

  All branches are propagated at once as one ``[N, K d]`` matrix ``[H_0 | H_1 | ... | H_M]``
  (``A_hat`` acts on columns, so this is the reference's K separate propagations).

* Fusion (``mm_fusion_mode: concat``), users and items with their own layer::

      e_u = W_U [Z_0 | ... | Z_M]_u + b_U,   e_i = W_I [Z_0 | ... | Z_M]_i + b_I      [., d]
      score(u, i) = e_u . e_i      (the reference's sigmoid of it: the same ranking)

* Main task: in-batch InfoNCE over the batch's (user, positive item) pairs (the reference's
  ``infonce``; ``slmrec_main_loss: bpr`` gives BPR with the sampled negatives instead)::

      L_main = mean_b -log softmax_j(cos(e_{u_b}, e_{i_j}) / slmrec_temp)[b]

* Self-supervised tasks (``slmrec_ssl_task``), weight ``cl_weight`` (the reference's ``ssl_alpha``),
  temperature ``tau`` (``ssl_temp``)::

      L = L_main + cl_weight * L_ssl

  - ``FAC`` (fine and coarse-grained alignment, the reference's default): a chain of spaces from the
    ID branch, each coarser space holding one more modality. With ``z_k = Z_k[items of the batch]``::

        s_0 = z_0 ;  s_k = G_k s_{k-1}   (the chain: ID -> ID+m_1 -> ID+m_1+m_2 -> ...)
        L_ssl = sum_{k=1..M} CE( (s_k (P_k z_k)^T) / tau , diag )     (raw dot products, no cosine)

    ``G_k, P_k`` are linear maps ``d -> d_k`` with ``d_k = d`` except the last space of a chain of
    two or more (``d_M = d / 2``), as the reference's ``g_i_iv, g_v_iv`` (``d``), ``g_iv_iva,
    g_a_iva`` (``d``), ``g_iva_ivat, g_t_ivat`` (``d / 2``).
  - ``FD`` (feature dropout): two views of every branch, each propagated layer ``A_hat^l H_k``
    (``l >= 1``) dropped out independently (rate ``slmrec_dropout``, scaled by ``1 / (1 - p)``),
    mean over the layers, fused as above, then per user and item of the batch::

        L_ssl = InfoNCE_tau(e'_u, e''_u) + InfoNCE_tau(e'_i, e''_i)    (cosines, in-batch candidates)

  - ``FM`` (feature masking): two distinct branches ``k' != k''`` drawn uniformly among the ``K``;
    view 1 zeroes the item rows of ``H_{k'}`` (layer 0), view 2 those of ``H_{k''}``; loss as FD.
  - ``FD+FM``: masking and dropout together.

  ``InfoNCE`` here is the reference's ``CrossEntropyLoss`` over the ``B x B`` in-batch logits: mean
  over the batch (repeated users or items of a batch count as negatives, as the reference).

Shapes: the batch ``B``; logits ``[B, B]``; nothing ``n_items x n_items`` or ``n_users x n_users``.

Deviations from the reference code:

* Any number of modalities: the reference hard-codes visual, (acoustic,) textual features (MMRec
  keeps image and text, the audio code being commented out). Here every modality has a dense layer
  and a branch; FAC's chain runs over the modalities in the configured order (the reference's
  visual -> acoustic -> textual order for ``modalities: [v, a, t]``), and MMRec's audio-less chain
  ``i -> iv -> iva -> ivat`` (the ``iva`` space without its contrast) becomes ``i -> iv -> ivt``:
  a stage without a contrast is a linear map composed with the next one.
* FD and FM crash in MMRec (they read ``a_dense_emb`` and ``config["data.input.dataset"]``, which
  do not exist): implemented as the authors' code describes them, over all ``K`` branches.
* FM draws its branches with torch's generator (seeded by RecBole), not ``np.random``; the two
  draws are uniform and distinct, as the reference's rejection loop.
* Dropout: ``rand >= p`` masks scaled by ``1/(1-p)`` (``nn.Dropout``'s distribution, drawn with
  ``torch.rand`` so a fixed seed gives a known mask).
* The reference's unused keys are dropped: ``reg`` (searched over but read nowhere: the regulariser
  is the optimizer's ``weight_decay: 1e-4``, kept), ``init: xavier`` (the backbone's init),
  ``adj_type: pre`` (``A_hat`` is that matrix), ``mm_fusion_mode`` (only ``concat`` runs: ``mean``
  gives ``d`` columns to a layer expecting ``K d``).
* Crossed views (``slmrec_mix_views``, default false): the reference appends view 1's propagated
  layers to view 2's list and vice versa (``embs_sub_2.append(ego_emb_sub_1)``), so under FM each
  view is the layer 0 of one mask with the propagated layers of the other (under FD the two views
  are exchangeable: no effect). Default: each view from its own mask; true reproduces the reference.
* The adjacency is built from the distinct training pairs (the reference's ``inter_matrix``).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_recgoat.errors import InputError
from recbole_recgoat.model.abstract import GraphRecommender
from recbole_recgoat.model.layers.graph import BufferDict, rows
from recbole_recgoat.model.layers.losses import bpr_dot_loss, dot_info_nce, info_nce


def drop(x, p, generator=None):
    """Feature dropout: ``x * (rand >= p) / (1 - p)`` (``rand`` uniform ``[0, 1)`` of ``x``'s shape)."""
    if p <= 0.0:
        return x
    keep = torch.rand(x.shape, generator=generator, device=x.device) >= p
    return x * keep / (1.0 - p)


def propagated_layers(adj_op, ego, n_layers, p=0.0, generator=None):
    """``sum_{l=1..L} D_l(A_hat X_{l-1})`` with ``X_0 = ego``, ``X_l = D_l(A_hat X_{l-1})``: LightGCN's
    propagated layers (layer 0 excluded), each dropped out by an independent :func:`drop` of rate
    ``p`` and fed to the next propagation, as the reference's ``feature_dropout``. The view is
    ``(ego + this) / (L + 1)``."""
    out, acc = ego, torch.zeros_like(ego)
    for _ in range(n_layers):
        out = drop(adj_op @ out, p, generator)
        acc = acc + out
    return acc


def mask_branch(ego, branch, d, n_users):
    """``ego [N, K d]`` with the item rows of branch ``branch``'s columns ``[branch d, (branch+1) d)``
    zeroed (feature masking: the users' rows are kept)."""
    keep = torch.ones_like(ego)
    keep[n_users:, branch * d : (branch + 1) * d] = 0.0
    return ego * keep


def draw_two_branches(k, generator=None, device=None):
    """Two distinct branch indices, each uniform over ``0..k-1`` (the second uniform over the others)."""
    first = int(torch.randint(k, (1,), generator=generator, device=device))
    second = (first + 1 + int(torch.randint(k - 1, (1,), generator=generator, device=device))) % k
    return first, second


def fac_dims(d, n_modalities):
    """The widths ``d_1..d_M`` of FAC's spaces: ``d``, the last one ``d // 2`` when ``M >= 2``."""
    return [d // 2 if (k == n_modalities - 1 and n_modalities >= 2) else d for k in range(n_modalities)]


def dot_nce(a, b, tau):
    """The reference's in-batch CE over raw dot products: ``mean_b -log softmax_j(a_b . b_j / tau)[b]``."""
    return dot_info_nce(a, b, tau)  # = F.cross_entropy(a @ b.T / tau, arange(B)), blockwise


class SLMRec(GraphRecommender):
    r"""SLMRec as a RecBole general recommender (pairwise input: the negatives serve ``bpr`` only).

    Config keys (see ``properties/model/SLMRec.yaml``): ``embedding_size``, ``n_ui_layers``,
    ``cl_weight``, ``tau``, ``slmrec_temp``, ``slmrec_ssl_task``, ``slmrec_dropout``,
    ``slmrec_main_loss``, ``slmrec_mix_views``.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d = self.embedding_size
        self.cl_weight = float(config["cl_weight"])
        self.tau = float(config["tau"])
        self.main_temp = float(config["slmrec_temp"])
        self.ssl_task = str(config["slmrec_ssl_task"]).upper()
        self.dropout_rate = float(config["slmrec_dropout"])
        self.main_loss = str(config["slmrec_main_loss"]).lower()
        self.mix_views = bool(config["slmrec_mix_views"])
        if self.ssl_task == "FAC" and d < 2 and len(self.modalities) >= 2:
            raise InputError(f"embedding_size: {d}; expected at least 2 for slmrec_ssl_task FAC (its last space has d // 2)")
        self.n_branches = len(self.modalities) + 1
        # the reference L2-normalises the feature rows before its dense layers
        self.feats = BufferDict({m: F.normalize(f.float(), dim=1) for m, f in self.item_feats.items()})
        self.dense = nn.ModuleDict({m: nn.Linear(f.shape[1], d) for m, f in self.item_feats.items()})
        self.user_fuse = nn.Linear(self.n_branches * d, d)
        self.item_fuse = nn.Linear(self.n_branches * d, d)
        layers = list(self.dense.values()) + [self.user_fuse, self.item_fuse]
        if self.ssl_task == "FAC":
            dims = fac_dims(d, len(self.modalities))
            ins = [d] + dims[:-1]
            self.fac_chain = nn.ModuleList([nn.Linear(i, o) for i, o in zip(ins, dims)])  # G_k: s_{k-1} -> s_k
            self.fac_modal = nn.ModuleList([nn.Linear(d, o) for o in dims])  # P_k: z_k -> space k
            layers += list(self.fac_chain) + list(self.fac_modal)
        for layer in layers:  # Xavier-uniform weights, default biases (the reference)
            nn.init.xavier_uniform_(layer.weight)

    # -- model -----------------------------------------------------------------------------
    def branch_ego(self):
        """Layer 0 of every branch side by side: ``[N, K d]`` = ``[H_0 | H_1 | ... | H_M]``."""
        users = self.user_embedding.weight.repeat(1, self.n_branches)
        items = torch.cat([self.item_embedding.weight] + [self.dense[m](self.feats[m]) for m in self.modalities], dim=1)
        return torch.cat([users, items], dim=0)

    def fuse(self, z):
        """``(e_users [n_users, d], e_items [n_items, d])`` from the branch outputs ``z [N, K d]``."""
        zu, zi = self.split_nodes(z)
        return self.user_fuse(zu), self.item_fuse(zi)

    def forward(self):
        """``(users [n_users, d], items [n_items, d], {"branches": Z [N, K d]})``."""
        z = self.propagate_ui(self.branch_ego())
        users, items = self.fuse(z)
        return users, items, {"branches": z}

    # -- self-supervised tasks ---------------------------------------------------------------
    def fac_loss(self, z, pos):
        """Fine and coarse-grained alignment over the batch's positive items ``pos [B]``."""
        d = self.embedding_size
        _, zi = self.split_nodes(z)
        zi = rows(zi, pos)  # [B, K d]
        s, loss = zi[:, :d], 0.0
        for k in range(1, self.n_branches):
            s = self.fac_chain[k - 1](s)
            loss = loss + dot_nce(s, self.fac_modal[k - 1](zi[:, k * d : (k + 1) * d]), self.tau)
        return loss

    def view_loss(self, users, pos, dropout, masking):
        """FD / FM / FD+FM: two augmented views, InfoNCE over the batch's users and items."""
        ego = self.branch_ego()
        p = self.dropout_rate if dropout else 0.0
        branches = draw_two_branches(self.n_branches, device=self.device) if masking else (None, None)
        egos = [mask_branch(ego, b, self.embedding_size, self.n_users) if b is not None else ego for b in branches]
        layers = [propagated_layers(self.adj_op, e, self.n_ui_layers, p) for e in egos]
        if self.mix_views:  # the reference's crossed lists: view 1 = layer 0 of view 1 + layers of view 2
            layers = layers[::-1]
        (u1, i1), (u2, i2) = [self.fuse((e + s) / (self.n_ui_layers + 1)) for e, s in zip(egos, layers)]
        a_u, b_u, a_i, b_i = rows(u1, users), rows(u2, users), rows(i1, pos), rows(i2, pos)
        n = users.numel()
        return (info_nce(a_u, b_u, b_u, self.tau) + info_nce(a_i, b_i, b_i, self.tau)) / n

    def calculate_loss(self, interaction):
        self.invalidate()
        users = interaction[self.USER_ID]
        pos = interaction[self.ITEM_ID]
        user_all, item_all, parts = self.forward()
        u, p = rows(user_all, users), rows(item_all, pos)
        if self.main_loss == "infonce":
            main = info_nce(u, p, p, self.main_temp) / users.numel()
        else:
            n = rows(item_all, interaction[self.NEG_ITEM_ID])
            main = bpr_dot_loss(u, p, n)
        if self.ssl_task == "FAC":
            ssl = self.fac_loss(parts["branches"], pos)
        else:
            ssl = self.view_loss(users, pos, dropout="FD" in self.ssl_task, masking="FM" in self.ssl_task)
        return main + self.cl_weight * ssl
