"""recbole-recgoat: RecGOAT and multimodal baselines as a RecBole 1.2.1 plugin.

Importing the package first applies the CPU thread policy (:mod:`recbole_recgoat.threads`:
passive OpenMP waiting, threads = CPUs available; before torch is loaded, never over the user's
environment), then the compatibility shims (:mod:`recbole_recgoat.compat`) before RecBole is
loaded, then the speed patches (:mod:`recbole_recgoat.speed_patches`).
"""

from recbole_recgoat import lifetime as _lifetime
from recbole_recgoat import threads as _threads_policy

_threads_policy.apply_environment_policy()  # must run before torch is imported
_lifetime.apply_environment()  # RECGOAT_DIE_WITH_PARENT=1: never outlive the parent process

from recbole_recgoat import compat  # noqa: F401,E402  (must run before recbole is imported)
from recbole_recgoat import speed_patches  # noqa: F401,E402

__version__ = "0.1.0"

from recbole_recgoat.config import Config  # noqa: E402
from recbole_recgoat.quick_start import load_data_and_model, run  # noqa: E402
from recbole_recgoat.trainer import get_trainer  # noqa: E402
from recbole_recgoat.utils.registry import get_model  # noqa: E402

__all__ = ["Config", "run", "load_data_and_model", "get_model", "get_trainer", "__version__"]
