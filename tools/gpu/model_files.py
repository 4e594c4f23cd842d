"""The model folder the benchmark serves: real weights where they are here, else random values
in the real layout.

A pack carries each weights file's safetensors header (`<file>.header`: the 8-byte length and
the JSON listing every tensor's name, dtype, shape and offsets) instead of its 45-90 MB of
values. `random_safetensors` writes a file with exactly that header and layout, filled with
random values, so the GPU runs the same shapes, dtypes and buffer sizes: right for timing,
meaningless as embeddings (the benchmark's table says which weights it ran).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np

from pybridge.weights import header_length, parse_header
from tools.convert_model import file_hashes
from tools.gpu.pack import WORK, staged_weights

DTYPE_FILES = {"float32": "model-f32.safetensors", "float16": "model-f16.safetensors"}
SCALE = 0.05  # random values ~ N(0, SCALE); LayerNorm scales ~ 1 + N(0, SCALE)


def random_safetensors(header: bytes, dest: Path, seed: int = 0) -> tuple[int, str]:
    """Write a safetensors file with `header` (length + JSON, as in the real file) and random
    values of each tensor's dtype and shape; returns (bytes, sha256)."""
    n = header_length(header[:8])
    body = header[8:8 + n]
    if len(body) != n:
        raise ValueError(f"safetensors header: {len(body)} bytes of JSON, the length says {n}")
    layout = parse_header(body, file_size=1 << 62)  # the values are what we write
    rng = np.random.default_rng(seed)
    h = hashlib.sha256()
    pos = 8 + n
    with dest.open("wb") as f:
        for part in (header[:8], body):
            f.write(part)
            h.update(part)
        for t in layout.tensors:
            if t.begin > pos:  # alignment padding between tensors, if any
                gap = bytes(t.begin - pos)
                f.write(gap)
                h.update(gap)
            values = rng.standard_normal(math.prod(t.shape), dtype=np.float32) * SCALE
            if t.name.endswith("LayerNorm.weight"):
                values += 1.0
            data = values.astype(t.dtype.numpy).tobytes() if t.dtype.name.startswith("float") \
                else rng.integers(0, 100, math.prod(t.shape)).astype(t.dtype.numpy).tobytes()
            f.write(data)
            h.update(data)
            pos = t.end
    return pos, h.hexdigest()


def prepare_model(src: Path, work: Path = WORK, seed: int = 0) -> dict[str, str]:
    """Fill work/model/ with manifest.json, vocab.txt and each dtype's weights file; returns
    for each dtype "real" or "random": real when `src` has the file (or its pieces were staged,
    see tools/gpu/pack.py), linked; else random values in the layout of `src/<file>.header`.
    The manifest written there carries the sha256 of the random files, so pybridge's integrity
    check runs as usual."""
    manifest = json.loads((src / "manifest.json").read_text())
    out = model_folder(work)
    out.mkdir(parents=True, exist_ok=True)
    kinds: dict[str, str] = {}
    for dtype, name in DTYPE_FILES.items():
        entry = manifest["files"][name]
        target = out / name
        if target.is_symlink() or target.exists():
            target.unlink()
        here = src / name
        if not (here.exists() and here.stat().st_size == entry["bytes"]):
            here = staged_weights(name, entry["sha256"], work)
        if here is not None:
            os.symlink(here.resolve(), target)
            kinds[dtype] = "real"
            continue
        header = src / (name + ".header")
        if not header.exists():
            raise SystemExit(f"[gpu] {src}: neither {name} nor {header.name}")
        size, _ = random_safetensors(header.read_bytes(), target, seed)
        sha, blocks = file_hashes(target)  # the page checks the blocks (web/bridge.js)
        manifest["files"][name] = {"bytes": size, "sha256": sha, "blocks": blocks}
        kinds[dtype] = "random"
    (out / "vocab.txt").write_bytes((src / "vocab.txt").read_bytes())
    manifest["weights"] = kinds
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return kinds


def model_folder(work: Path = WORK) -> Path:
    """Where prepare_model puts the model the benchmark serves."""
    return work / "model"
