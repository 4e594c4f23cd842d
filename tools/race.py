"""The page's peer: ONNX Runtime Web and all-MiniLM-L6-v2 exported to ONNX, for the race in the
demo page (web/race.js) and `bench compare`. Fetched only when asked:

    python3 tools/dev.py setup --race      (then `python3 tools/dev.py demo` shows the race)

Needs npm (the npm package onnxruntime-web@1.30.0, its tarball's sha256 pinned) and the
tests' reference lock (torch and onnx: Linux x86_64), both cached under .cache/; nothing is
committed. The export is torch's of the sentence-transformers model the tests compare with,
mean pooling and L2 norm included (as pybridge computes), with the IsNaN guards the export
puts after each attention softmax removed: ORT 1.30's WebGPU provider has no IsNaN kernel,
so with them every layer's attention would go to the CPU and back and the race would flatter
pybridge (the same results on these inputs: no row has every key masked).

What it puts in the site (build/site/race/, served beside the page, listed in config.json with
each file's sha256, and carried by `dev.py export`):

    race/ort.webgpu.min.mjs                          ONNX Runtime Web's WebGPU build
    race/ort-wasm-simd-threaded.asyncify.{mjs,wasm}  the wasm it loads
    race/all-MiniLM-L6-v2.onnx                       the model, float32
    race/race.json                                   what the page needs to know (config.json
                                                     carries it as "race")
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.assets import (  # noqa: E402
    CACHE, SITE, exit_status, npm_pack, precompress, sha256_file, write_config)

ORT_VERSION = "1.30.0"
ORT_TARBALL_SHA256 = "d2228df7e4616bc3348bf504ee888f3bec43789a273f0a63f3e68d203ce3bf71"
ORT_DIR = ROOT / ".cache" / f"onnxruntime-web-{ORT_VERSION}"
ONNX_DIR = ROOT / ".cache" / "minilm-onnx"
RACE_DIR = SITE / "race"
# what ort.webgpu.min.mjs loads, besides itself: its wasm (the asyncify build: the WebGPU
# provider of 1.30)
ORT_FILES = ("ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.mjs",
             "ort-wasm-simd-threaded.asyncify.wasm")
MODEL_NAME = "all-MiniLM-L6-v2.onnx"


def say(message: str) -> None:
    print(f"[race] {message}", flush=True)


def vendor_ort() -> Path:
    """ONNX Runtime Web's dist/ folder, from its npm tarball (sha256-checked, unpacked once)."""
    dist = ORT_DIR / "package" / "dist"
    if all((dist / name).exists() for name in ORT_FILES):
        return dist
    tarball = npm_pack("onnxruntime-web", ORT_VERSION, ORT_TARBALL_SHA256, CACHE, say=say)
    part = ORT_DIR.with_name(ORT_DIR.name + ".part")  # whole or not at all: an interrupted
    shutil.rmtree(part, ignore_errors=True)            # unpack is never taken for a done one
    with tarfile.open(tarball) as tar:
        tar.extractall(part, filter="data")
    shutil.rmtree(ORT_DIR, ignore_errors=True)
    os.replace(part, ORT_DIR)
    return dist


def export_onnx() -> Path:
    """The ONNX graph ONNX Runtime Web runs: torch's export without the NaN guard it puts after
    each attention softmax (see the module's docstring and tools/gpu/peers_pack.py
    drop_nan_guards)."""
    fair = ONNX_DIR / "model-nonan.onnx"
    if not fair.exists():
        import onnx

        from tools.gpu.peers_pack import drop_nan_guards

        model = onnx.load(str(_export_torch()))
        say(f"removed {drop_nan_guards(model)} IsNaN guards -> {fair.name}")
        part = fair.with_name(fair.name + ".part")
        onnx.save(model, str(part))
        os.replace(part, fair)
    return fair


def _export_torch() -> Path:
    out = ONNX_DIR / "model.onnx"
    if out.exists():
        return out
    say("exporting all-MiniLM-L6-v2 to ONNX with torch (once)")
    import torch

    from tests.reference import sentence_transformer

    bert = sentence_transformer(tempfile.mkdtemp())[0].auto_model.eval()

    class Embed(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            h = self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            e = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(e, p=2, dim=1)

    ONNX_DIR.mkdir(parents=True, exist_ok=True)
    ids = torch.ones(2, 12, dtype=torch.int64)
    part = out.with_name("model.part.onnx")
    torch.onnx.export(Embed(bert).eval(), (ids, ids), str(part), opset_version=17, dynamo=False,
                      input_names=["input_ids", "attention_mask"], output_names=["embeddings"],
                      dynamic_axes={"input_ids": {0: "b", 1: "t"},
                                    "attention_mask": {0: "b", 1: "t"}, "embeddings": {0: "b"}})
    os.replace(part, out)
    return out


def install() -> Path:
    """Put ONNX Runtime Web and the model in build/site/race/ (each file copied only when its
    bytes differ) and list them in config.json. Idempotent; returns the folder."""
    dist, model = vendor_ort(), export_onnx()
    RACE_DIR.mkdir(parents=True, exist_ok=True)
    for source, name in [*((dist / n, n) for n in ORT_FILES), (model, MODEL_NAME)]:
        target = RACE_DIR / name
        if target.exists() and target.stat().st_size == source.stat().st_size and \
                sha256_file(target) == sha256_file(source):
            continue
        part = target.with_name(name + ".part")
        shutil.copyfile(source, part)
        os.replace(part, target)
        say(f"{name}: {target.stat().st_size / 1e6:.1f} MB -> {target.relative_to(ROOT)}")
    precompress(RACE_DIR)
    about = {"ortVersion": ORT_VERSION, "module": f"race/{ORT_FILES[0]}",
             "model": f"race/{MODEL_NAME}", "modelBytes": (RACE_DIR / MODEL_NAME).stat().st_size,
             "dtype": "float32"}
    (RACE_DIR / "race.json").write_text(json.dumps(about, indent=1) + "\n")
    write_config()
    say(f"ready: ONNX Runtime Web {ORT_VERSION} and {MODEL_NAME} in "
        f"{RACE_DIR.relative_to(ROOT)}; the demo page shows the race")
    return RACE_DIR


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the reference model from local files only
    return exit_status("race", install)


if __name__ == "__main__":
    sys.exit(main())
