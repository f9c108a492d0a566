r"""RecGOAT: graph attention + dual semantic alignment for LLM-enhanced multimodal recommendation.

Reference:
    "RecGOAT: Graph Optimal Adaptive Transport for LLM-Enhanced Multimodal Recommendation with
    Dual Semantic Alignment", SIGIR 2026, arXiv 2602.00682 (and its supplement: the LLM prompt of
    Table 1, the proofs of Lemma 3.3 and 3.4).

The method, with every decision where the paper is silent, is in ``docs/method.md``; each decision
is a switch in ``properties/model/RecGOAT.yaml``.  In short (``d`` = embedding size, ``M``
modalities, ``B`` batch):

1. ``E_U = ID + W_u X^u`` (user LM features, optional), ``E_I = ID``.
2. ``Z^cf = LightGCN(E)`` on the training user-item graph (``ui_graph: gat`` for attention).
3. ``Z^m_I = GAT(W_m X^m)`` on the cosine kNN item-item graph of modality ``m``.
4. ``Z^llm_U = GAT(W_u X^u)`` on the cosine kNN user-user graph.
5. ``T_m(Z^m_I) = Z^m_I (d P*_m + Delta_m)``: entropic plan between the ``d`` dimensions of
   ``Z^m_I`` and ``Z^cf_I`` of ALL items (log-domain, no gradient) plus a learned residual; every
   training step recomputes it and evaluation scores with the last step's plan.
6. ``z_i = LayerNorm(w_id Z^cf_I + sum_m w_m T_m(Z^m_I))`` (L2-normalised only with
   ``normalize_items: True``; the default is False); ``z_u = w_cf Z^cf_U + w_llm Z^llm_U``.
7. ``L = BPR + lambda_reg L2 + lambda_cl L_CMCL + lambda_ot L_OAT`` with ``L_CMCL`` of Lemma 3.3
   (minimised) and ``L_OAT`` the entropic ``W1`` between modality and unified representations.
"""

from collections import defaultdict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.init import xavier_normal_initialization
from recbole.model.loss import EmbLoss

from recbole_recgoat.errors import InputError
from recbole_recgoat.model.abstract import GraphRecommender
from recbole_recgoat.model.layers.alignment import cmcl, dimension_transport_map, exact_w1, lemma33_sides, sinkhorn_w1
from recbole_recgoat.model.layers.attention import GATEncoder
from recbole_recgoat.model.layers.graph import BufferDict, rows
from recbole_recgoat.model.layers.losses import bpr_dot_loss



def initial_fusion_weights(init, keys):
    """Initial fusion weights of ``keys`` (item side ``["id", *modalities]``, user side
    ``["cf", "llm"]``) from ``fusion_init`` (``{key: weight}``); they sum to 1 for any key set.

    Listed keys keep their values; the unlisted ones share ``1 - sum(listed)`` equally.  When
    nothing is left (the listed values sum to >= 1 - 1e-6, or every key is listed), each unlisted key
    gets the smallest listed value (no part starts at zero) and all are rescaled to sum 1, which
    keeps the listed values' proportions.  Entries for keys not in ``keys`` are ignored.

    Returns:
        list[float]: one weight per key, in the order of ``keys``.
    """
    for k in keys:
        if k in init and not float(init[k]) > 0:
            raise InputError(f"fusion_init: {k}: {init[k]!r}; expected a weight > 0")
    listed = {k: float(init[k]) for k in keys if k in init}
    unlisted = [k for k in keys if k not in listed]
    left = 1.0 - sum(listed.values())
    if unlisted and left > 1e-6:
        w = {**listed, **{k: left / len(unlisted) for k in unlisted}}
    else:
        fill = min(listed.values()) if listed else 1.0
        w = {**listed, **{k: fill for k in unlisted}}
    total = sum(w.values())
    return [w[k] / total for k in keys]


class RecGOAT(GraphRecommender):
    """RecGOAT as a RecBole ``GeneralRecommender`` (pairwise, BPR), on the LightGCN backbone (its
    ``Z^cf``; every parameter, the ID embeddings included, starts from RecBole's
    ``xavier_normal_initialization``).

    ``modalities: []`` with ``use_user_features: False`` is the "ID only" row of the paper's claim:
    no LM input at all (LightGCN's propagation, then the fusion's LayerNorm)."""

    min_modalities = 0
    id_init = None  # xavier_normal_initialization over the whole model, below

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d = self.embedding_size
        self.tau = config["tau"]
        self.lambda_cl = config["lambda_cl"]
        self.lambda_ot = config["lambda_ot"]
        self.reg_weight = config["reg_weight"]
        self.ot_eps = config["ot_eps"]
        self.ot_iters = config["ot_iters"]
        self.ot_sample = config["ot_sample"]
        self.cl_sample = config["cl_sample"]
        self.plan_eps = config["plan_eps"]
        self.use_transport_map = config["use_transport_map"]
        self.normalize_items = bool(config["normalize_items"])
        self.gat_chunk_edges = config["gat_chunk_edges"]
        self.fusion = str(config["fusion"]).lower()
        self.ui_graph = str(config["ui_graph"]).lower()
        heads, drop, n_mm = config["gat_heads"], config["gat_dropout"], config["n_mm_layers"]

        # 1. ID embeddings (the backbone's user_embedding, item_embedding) + user LM features
        self.use_user_features = bool(config["use_user_features"]) and self.user_feats is not None
        self.use_user_graph = self.use_user_features and bool(config["use_user_graph"])
        if self.use_user_features:
            self.user_proj = nn.Linear(self.user_feats.shape[1], d)
        # 2. user-item graph
        if self.ui_graph == "gat":
            self.ui_gat = GATEncoder(d, self.n_ui_layers, heads, drop, layer_mean=True)
            self.register_buffer("ui_edges", self.norm_adj.coalesce().indices(), persistent=False)
        # 3. item-item graph per modality
        self.mm_proj = nn.ModuleDict({m: nn.Linear(f.shape[1], d) for m, f in self.item_feats.items()})
        self.mm_gat = nn.ModuleDict({m: GATEncoder(d, n_mm, heads, drop) for m in self.modalities})
        valid = self.item_valid_mask()
        self.mm_edges = BufferDict({
            m: self.knn_graph(f, config["knn_k"], valid, tag=f"recgoat-item-{m}-", symmetric=True, self_loops=True)
            for m, f in self.item_feats.items()
        })
        # 4. user-user graph
        if self.use_user_graph:
            self.user_gat = GATEncoder(d, n_mm, heads, drop)
            self.register_buffer("user_edges", self.knn_graph(
                self.user_feats, config["user_knn_k"], self.user_valid_mask(), tag="recgoat-user-", symmetric=True, self_loops=True
            ), persistent=False)
        # 5. adaptive transport map residuals
        if self.use_transport_map:
            self.delta = nn.ParameterDict({m: nn.Parameter(torch.zeros(d, d)) for m in self.modalities})
            # d P*_m of the last training step (saved in checkpoints: the best model scores with its own map)
            self.register_buffer("transport_plan", torch.zeros(len(self.modalities), d, d))
            self.register_buffer("transport_plan_steps", torch.zeros((), dtype=torch.long))
        # 6. fusion
        if self.fusion == "weighted":
            init = config["fusion_init"] or {}
            w = initial_fusion_weights(init, ["id"] + self.modalities)
            self.fusion_weights = nn.Parameter(torch.tensor(w, dtype=torch.float32))
            self.item_norm = nn.LayerNorm(d)
            if self.use_user_graph:
                self.user_fusion_weights = nn.Parameter(torch.tensor(initial_fusion_weights(init, ["cf", "llm"]), dtype=torch.float32))
        elif self.fusion == "concat":
            self.item_concat = nn.Linear(d * (1 + len(self.modalities)), d)
            if self.use_user_graph:
                self.user_concat = nn.Linear(2 * d, d)

        self.apply(xavier_normal_initialization)
        if self.use_transport_map:  # the residual starts at zero: T_m = Z^m (d P*) at first
            for p in self.delta.values():
                nn.init.zeros_(p)

        # diagnostics: a fixed item sample (own generator: the training RNG stream is untouched)
        gen = torch.Generator().manual_seed(int(config["seed"]))
        items = torch.nonzero(valid.cpu()).flatten()
        diag_items = items[torch.randperm(items.numel(), generator=gen)[: config["diag_sample"]]].to(self.device)
        self.register_buffer("diag_items", diag_items, persistent=False)
        self.emb_loss = EmbLoss()
        self._plan_potentials = {}
        self._reset_epoch_stats()

    # ------------------------------------------------------------------------------------------
    # representations
    # ------------------------------------------------------------------------------------------
    def forward(self, users=None, items=None):
        """Representations of ``users`` and ``items`` (sorted distinct ids; None = all).

        Training asks only for the batch's rows: LightGCN still propagates over the whole graph,
        but each GAT (one layer: a node sees only its neighbours) attends only along the edges
        into the rows asked for.  The transport plan always comes from ALL items (see
        :meth:`_transport_plans`), so the rows do not depend on which others are asked for.
        Evaluation asks for everything.

        Returns:
            tuple: ``z_u [U, d]``, ``z_i [I, d]`` (rows L2-normalised with ``normalize_items``), in
            the order of ``users`` / ``items``, and a dict of the parts, row-aligned the same way:
            ``z_cf_u``, ``z_cf_i``, ``z_llm_u`` (or None), ``z_m`` ({m: Z^m_I}), ``t_m`` ({m: T_m(Z^m_I)}),
            ``plan`` ({m: d P*_m [d, d]} used here, or None without the transport map).
        """
        user_ego = self.user_embedding.weight
        p_u = None
        if self.use_user_features:
            p_u = self.user_proj(self.user_feats)  # W_u X^u, [n_users, d]
            user_ego = user_ego + p_u
        ego = self.ego_embeddings(user_ego)
        if self.ui_graph == "gat":
            z_cf = self.ui_gat(ego, self.ui_edges)
        else:
            z_cf = self.propagate_ui(ego)
        z_cf_u, z_cf_all = self.split_nodes(z_cf)
        if users is not None:
            z_cf_u = rows(z_cf_u, users)
        z_cf_i = z_cf_all if items is None else rows(z_cf_all, items)

        z_m = {m: self._attend(self.mm_gat[m], self.mm_proj[m](self.item_feats[m]), self.mm_edges[m], items) for m in self.modalities}
        plans = self._transport_plans(z_cf_all, z_m, items) if self.use_transport_map else None
        t_m = {m: z_m[m] @ (plans[m] + self.delta[m]) for m in self.modalities} if self.use_transport_map else z_m
        z_i = self._fuse_items(z_cf_i, [t_m[m] for m in self.modalities])

        z_llm_u = self._attend(self.user_gat, p_u, self.user_edges, users) if self.use_user_graph else None
        z_u = self._fuse_users(z_cf_u, z_llm_u)
        return z_u, z_i, {"z_cf_u": z_cf_u, "z_cf_i": z_cf_i, "z_llm_u": z_llm_u, "z_m": z_m, "t_m": t_m, "plan": plans}

    @torch.no_grad()
    def _transport_plans(self, z_cf_all, z_m, items):
        """``{m: d P*_m}`` (no gradient), always between the dimensions of ALL items' ``Z^m_I`` and
        ``Z^cf_I``, so training and evaluation use one population.

        Training: recomputed every step from the parameters at the start of the step (``Z^m_I``
        of all items by a gradient-free GAT pass without dropout; Sinkhorn warm-started from the
        previous step's potentials, same fixed point) and stored in ``transport_plan``.
        Evaluation: the stored plan of the last training step, i.e. exactly the map training last
        used (also after loading a checkpoint); before any training step, computed from all items
        from scratch and not stored.
        """
        if not self.training and int(self.transport_plan_steps) > 0:
            return {m: self.transport_plan[k] for k, m in enumerate(self.modalities)}
        plans = {}
        for k, m in enumerate(self.modalities):
            full = z_m[m] if items is None and not self.training else self._all_items_modality(m)
            if self.training:
                plans[m], self._plan_potentials[m] = dimension_transport_map(
                    full, z_cf_all, self.plan_eps, self.ot_iters, warmstart=self._plan_potentials.get(m), return_potentials=True
                )
                self.transport_plan[k].copy_(plans[m])
            else:
                plans[m] = dimension_transport_map(full, z_cf_all, self.plan_eps, self.ot_iters)
        if self.training:
            self.transport_plan_steps += 1
        return plans

    @torch.no_grad()
    def _all_items_modality(self, m):
        """``Z^m_I`` of all items, without gradient and without attention dropout (the GAT's mode is restored)."""
        gat = self.mm_gat[m]
        was_training = gat.training
        gat.eval()
        try:
            return self._attend(gat, self.mm_proj[m](self.item_feats[m]), self.mm_edges[m], None)
        finally:
            gat.train(was_training)

    def _attend(self, gat, x, edge_index, targets):
        """``gat(x)`` at the rows ``targets`` (all when None), along the edges into them only, in
        chunks of ``gat_chunk_edges`` edges (see :meth:`GATEncoder.rows`)."""
        return gat.rows(x, edge_index, targets, chunk_edges=self.gat_chunk_edges)

    def _fuse_items(self, z_cf_i, parts):
        """``z_i = LayerNorm(w_id Z^cf_I + sum_m w_m T_m)`` (weighted; sum / concat: naive fusions), L2-normalised
        when ``normalize_items``."""
        if self.fusion == "weighted":
            w = self.fusion_weights
            fused = self.item_norm(w[0] * z_cf_i + sum(w[k + 1] * p for k, p in enumerate(parts)))
        elif self.fusion == "sum":
            fused = z_cf_i + sum(parts)
        else:
            fused = self.item_concat(torch.cat([z_cf_i] + parts, dim=1))
        return F.normalize(fused, dim=1) if self.normalize_items else fused

    def _fuse_users(self, z_cf_u, z_llm_u):
        """``z_u = w_cf Z^cf_U + w_llm Z^llm_U`` (weighted), ``Z^cf_U`` alone without the user branch."""
        if z_llm_u is None:
            return z_cf_u
        if self.fusion == "weighted":
            w = self.user_fusion_weights
            return w[0] * z_cf_u + w[1] * z_llm_u
        if self.fusion == "sum":
            return z_cf_u + z_llm_u
        return self.user_concat(torch.cat([z_cf_u, z_llm_u], dim=1))

    # ------------------------------------------------------------------------------------------
    # alignment losses
    # ------------------------------------------------------------------------------------------
    def alignment_pairs(self, parts, z_i, items, users):
        """``[(name, z_side_a [B, d], z_side_b [B, d])]``: each modality vs unified on the rows
        ``items`` of ``z_i``, and (with the user branch) LLM vs collaborative on the rows ``users``
        of the user parts."""
        pairs = [(m, rows(parts["t_m"][m], items), rows(z_i, items)) for m in self.modalities]
        if parts["z_llm_u"] is not None:
            pairs.append(("user", rows(parts["z_llm_u"], users), rows(parts["z_cf_u"], users)))
        return pairs

    def cmcl_loss(self, pairs, record=True):
        """``L_CMCL``: mean over the pairs of Lemma 3.3's loss (0 without pairs); logs both sides of the lemma."""
        if not pairs:
            return self.item_embedding.weight.new_zeros(())
        losses = []
        for name, a, b in pairs:
            loss = cmcl(a, b, self.tau)
            losses.append(loss)
            if record:
                lhs, rhs = lemma33_sides(a, b, self.tau, loss.detach())
                self.lemma_log.append((name, a.shape[0], lhs, rhs))
        return torch.stack(losses).mean()

    def oat_loss(self, parts, z_i, items):
        """``L_OAT``: mean over modalities of the entropic ``W1(P^m, Q)`` on (a sample of) the batch's items (0 without modalities)."""
        if not self.modalities:
            return z_i.new_zeros(())
        items = self._subsample(items, self.ot_sample)
        w = [sinkhorn_w1(rows(parts["t_m"][m], items), rows(z_i, items), self.ot_eps, self.ot_iters) for m in self.modalities]
        return torch.stack(w).mean()

    # ------------------------------------------------------------------------------------------
    # RecBole interface
    # ------------------------------------------------------------------------------------------
    def calculate_loss(self, interaction):
        self.invalidate()
        user = interaction[self.USER_ID]
        pos = interaction[self.ITEM_ID]
        neg = interaction[self.NEG_ITEM_ID]
        users, user_pos = torch.unique(user, return_inverse=True)
        items, item_pos = torch.unique(torch.cat([pos, neg]), return_inverse=True)
        pos_pos, neg_pos = item_pos[: pos.numel()], item_pos[pos.numel() :]
        z_u, z_i, parts = self.forward(users, items)
        u_e = rows(z_u, user_pos)
        bpr = bpr_dot_loss(u_e, rows(z_i, pos_pos), rows(z_i, neg_pos))
        reg = self.reg_weight * self.emb_loss(self.user_embedding(user), self.item_embedding(pos), self.item_embedding(neg))
        # alignment on the batch's distinct positive items and distinct users (row positions in z_i / z_u)
        cl_items = self._subsample(torch.unique(pos_pos), self.cl_sample)
        cl_users = self._subsample(torch.arange(users.numel(), device=users.device), self.cl_sample)
        zero = bpr.new_zeros(())
        cl = self.lambda_cl * self.cmcl_loss(self.alignment_pairs(parts, z_i, cl_items, cl_users)) if self.lambda_cl > 0 else zero
        ot_ = self.lambda_ot * self.oat_loss(parts, z_i, cl_items) if self.lambda_ot > 0 else zero
        for key, value in (("bpr", bpr), ("reg", reg), ("cmcl", cl), ("oat", ot_)):
            self.epoch_stats[key] += float(value.detach())
        self.epoch_stats["batches"] += 1
        return bpr, reg, cl, ot_

    @staticmethod
    def _subsample(index, size):
        """At most ``size`` entries of ``index``, drawn at random (torch RNG) when there are more."""
        if size and index.numel() > size:
            index = index[torch.randperm(index.numel(), device=index.device)[:size]]
        return index

    def feature_set(self):
        return {"items": list(self.modalities), "users": self.use_user_features}

    # ------------------------------------------------------------------------------------------
    # diagnostics (logged by the trainer after every epoch)
    # ------------------------------------------------------------------------------------------
    def _reset_epoch_stats(self):
        self.epoch_stats = defaultdict(float)
        self.lemma_log = []  # [(pair, B, E||z^m - z||, sqrt(2 tau L + 2 tau log B))] per batch

    @torch.no_grad()
    def epoch_diagnostics(self):
        """Loss parts (epoch means), Lemma 3.3 sides, exact and entropic W1, fusion weights."""
        n = max(self.epoch_stats["batches"], 1)
        out = {f"loss_{k}": v / n for k, v in self.epoch_stats.items() if k != "batches"}
        by_pair = defaultdict(list)
        for name, _, lhs, rhs in self.lemma_log:
            by_pair[name].append((lhs, rhs))
        for name, vals in by_pair.items():
            arr = np.array(vals)
            out[f"lemma33_{name}_lhs"] = float(arr[:, 0].mean())
            out[f"lemma33_{name}_rhs"] = float(arr[:, 1].mean())
            out[f"lemma33_{name}_violations"] = int((arr[:, 0] > arr[:, 1] + 1e-6).sum())
        was_training = self.training
        self.eval()
        z_u, z_i, parts = self.forward()
        for m in self.modalities:
            a, b = rows(parts["t_m"][m], self.diag_items), rows(z_i, self.diag_items)
            out[f"w1_exact_{m}"] = exact_w1(a, b)
            out[f"w1_sinkhorn_{m}"] = float(sinkhorn_w1(a, b, self.ot_eps, self.ot_iters))
        if self.fusion == "weighted":
            for name, w in zip(["id"] + self.modalities, self.fusion_weights.tolist()):
                out[f"fusion_w_{name}"] = float(w)
        self.train(was_training)
        self._reset_epoch_stats()
        return out
