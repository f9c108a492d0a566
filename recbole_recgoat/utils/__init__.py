from recbole_recgoat.utils.registry import get_model, get_trainer, plugin_models, recbole_general_models

__all__ = ["get_model", "get_trainer", "plugin_models", "recbole_general_models"]
