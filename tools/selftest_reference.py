"""Writes web/selftest-reference.json: all-MiniLM-L6-v2's embeddings of a few sentences by
sentence-transformers (PyTorch on the CPU, the tests' independent reference), which the
self-test page (/selftest, pybridge/checks/selftest.py) compares the model's embeddings with.

    .venv/bin/python tools/selftest_reference.py

It needs the `reference` extra (python3 tools/dev.py test installs it) and the model's source
package in .cache/downloads/ (the set-up fetches it). tests/unit/test_selftest_reference.py
recomputes the embeddings and fails when the file no longer matches them.

The file (about 13 kB): {"model", "by", "sentences": [...], "shape": [n, 384], "dtype":
"float32", "embeddings": base64 of the little-endian float32 rows, unit vectors}.
"""

from __future__ import annotations

import base64
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.cases.corpus import MODEL_SENTENCES  # noqa: E402

OUT = ROOT / "web" / "selftest-reference.json"
# plain and accented Latin text, CJK, emoji, the empty string: six texts, one batch
SENTENCES = [MODEL_SENTENCES[i] for i in (0, 1, 3, 4, 5, 6)]


def embeddings(sentences: list[str], folder: Path) -> np.ndarray:
    """sentence-transformers' embeddings of `sentences` (n, 384), normalized, float32. Raises
    SystemExit naming what is missing."""
    from tests.reference import sentence_transformer
    from tools.assets import CACHE
    from tools.convert_model import SOURCE_WHEEL

    if not (CACHE / SOURCE_WHEEL).exists():
        raise SystemExit(f"{CACHE / SOURCE_WHEEL} missing: run python3 tools/dev.py setup")
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        raise SystemExit("sentence-transformers missing: python3 tools/dev.py test installs "
                         "the reference extra into .venv") from None
    model = sentence_transformer(str(folder))
    out = model.encode(sentences, normalize_embeddings=True, convert_to_numpy=True,
                       batch_size=len(sentences))
    return np.ascontiguousarray(out, dtype="<f4")  # (n, 384)


def document(sentences: list[str], vectors: np.ndarray) -> dict:
    from importlib.metadata import version

    return {
        "model": "all-MiniLM-L6-v2",
        "by": f"sentence-transformers {version('sentence-transformers')} "
              f"(torch {version('torch')}, CPU), normalize_embeddings=True",
        "regenerate": "python tools/selftest_reference.py",
        "sentences": sentences,
        "shape": list(vectors.shape),
        "dtype": "float32",
        "embeddings": base64.b64encode(vectors.astype("<f4").tobytes()).decode("ascii"),
    }


def read(path: Path = OUT) -> tuple[list[str], np.ndarray]:
    """The stored sentences and their embeddings (n, 384)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    vectors = np.frombuffer(base64.b64decode(doc["embeddings"]), "<f4").reshape(doc["shape"])
    return doc["sentences"], vectors


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        vectors = embeddings(SENTENCES, Path(tmp))
    OUT.write_text(json.dumps(document(SENTENCES, vectors), indent=1, ensure_ascii=False) + "\n",
                   encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size} bytes, "
          f"{len(SENTENCES)} sentences)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
