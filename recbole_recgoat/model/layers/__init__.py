"""Shared layers of the plugin's models, one module per job.

* :mod:`.graph` - the training user-item graph, normalised adjacencies, the user-user co-occurrence
  graph (top-k of ``R R^T``), edge sampling, row gathers;
* :mod:`.knn` - cosine kNN graphs (exact in blocks, or faiss IVF) and their on-disk cache;
* :mod:`.sparse` - fixed sparse matrices as differentiable CSR operators, LightGCN propagation;
* :mod:`.attention` - graph attention (PyTorch Geometric ``GATConv``), in checkpointed edge chunks;
* :mod:`.alignment` - RecGOAT's alignment: cross-modal contrastive loss, optimal transport;
* :mod:`.losses` - BPR and InfoNCE, with the single-pass blockwise logsumexp.

Every graph is sparse: nothing here materialises a dense items x items (or users x users)
matrix.  Shapes: ``N`` nodes, ``E`` edges, ``d`` embedding size, ``B`` batch.
"""

from recbole_recgoat.compat import import_torch_geometric

import_torch_geometric()  # before the layers import PyG: without its import-time torch.jit deprecation
