from recbole_recgoat.data.dataset import MultiModalDataset

__all__ = ["MultiModalDataset"]
