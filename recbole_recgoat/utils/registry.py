"""Model lookup: the plugin first, then RecBole, through one door (the trainer's is
:func:`recbole_recgoat.trainer.get_trainer`).

``get_model('RecGOAT')`` finds ``recbole_recgoat/model/recgoat.py``; ``get_model('LightGCN')``
falls back to ``recbole.model.general_recommender.lightgcn``.  Names are matched without regard
to case and an unknown name raises an :class:`~recbole_recgoat.errors.InputError` that lists
what exists (RecBole's own lookup says ``No module named 'lightgbm'`` instead).
"""

import importlib
import importlib.util
import pkgutil
from functools import lru_cache

from recbole.utils import ModelType

from recbole_recgoat.errors import InputError

PLUGIN_MODEL_PACKAGE = "recbole_recgoat.model"
RECBOLE_GENERAL_PACKAGE = "recbole.model.general_recommender"
# Searched only so that their models get a clear "not a general recommender" error from Config.
RECBOLE_OTHER_PACKAGES = (
    "recbole.model.sequential_recommender",
    "recbole.model.context_aware_recommender",
    "recbole.model.knowledge_aware_recommender",
)
_NOT_MODELS = {"layers", "abstract", "init"}


def _find_class(module, name):
    for attr in dir(module):
        if attr.lower() == name.lower():
            obj = getattr(module, attr)
            if isinstance(obj, type):
                return obj
    return None


def _model_classes(package):
    """The model class of each module of ``package`` (the class named like its module)."""
    pkg = importlib.import_module(package)
    names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name not in _NOT_MODELS)
    classes = (_find_class(importlib.import_module(f"{package}.{mod}"), mod) for mod in names)
    return [cls for cls in classes if cls is not None]


@lru_cache(maxsize=None)
def plugin_models():
    """Class names of the plugin's models (one file each in ``recbole_recgoat/model``)."""
    return tuple(cls.__name__ for cls in _model_classes(PLUGIN_MODEL_PACKAGE))


@lru_cache(maxsize=None)
def recbole_general_models():
    """Class names of RecBole's general recommenders (BPR, LightGCN, NGCF, ...)."""
    general = (ModelType.GENERAL, ModelType.TRADITIONAL)
    return tuple(cls.__name__ for cls in _model_classes(RECBOLE_GENERAL_PACKAGE) if getattr(cls, "type", None) in general)


def get_model(name):
    """Return the model class called ``name`` (plugin first, then RecBole's general models)."""
    if isinstance(name, type):
        return name
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"model: expected a model name, got {name!r}")
    key = name.strip().lower()
    for package in (PLUGIN_MODEL_PACKAGE, RECBOLE_GENERAL_PACKAGE) + RECBOLE_OTHER_PACKAGES:
        path = f"{package}.{key}"
        if importlib.util.find_spec(path) is not None:
            cls = _find_class(importlib.import_module(path), key)
            if cls is not None:
                return cls
    raise InputError(
        f"--model={name}: unknown model; plugin models: {', '.join(plugin_models())}; "
        f"RecBole general models: {', '.join(recbole_general_models())}"
    )
