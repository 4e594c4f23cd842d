"""The real-GPU benchmark's parts that need no GPU (tools/bench_gpu.py, tools/gpu/): the
runner's loopback server with Range requests, random weights in the real layout, the carry
folder's unpacking and split weights, the one-line exit where Dawn finds no adapter, and the
page's stack booting under Node.

Needs Node (Debian's nodejs, installed with npm by set-up); the boot test also needs
build/site/ (set-up).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import lzma
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from pybridge.weights import header_length, parse_header, write_safetensors
from tests.conftest import IN_CI, SITE
from tools import bench_gpu
from tools.gpu import pack
from tools.gpu.model_files import DTYPE_FILES, model_folder, prepare_model, random_safetensors
from tools.gpu.node_app import NodeApp

ROOT = Path(__file__).resolve().parent.parent.parent
NODE = shutil.which("node")


def need_node() -> str:
    if NODE is None:
        if IN_CI:
            pytest.fail("CI must run the Node tests, but `node` is missing (tools/dev.py setup)")
        pytest.skip("node not found (python3 tools/dev.py setup installs nodejs with npm)")
    return NODE


# --- the loopback server -------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    (folder / "data.bin").write_bytes(bytes(range(256)) * 4)  # 1024 bytes
    (folder / "sub").mkdir()
    (folder / "sub" / "a.json").write_text('{"a": 1}')
    (folder.parent / "secret.txt").write_text("outside")
    proc = subprocess.Popen([need_node(), str(ROOT / "tools" / "gpu" / "serve.mjs"),
                             f"/m/={folder}"], stdout=subprocess.PIPE, text=True)
    origin = proc.stdout.readline().strip()
    assert origin.startswith("http://127.0.0.1:"), origin
    yield origin.removeprefix("http://")
    proc.terminate()
    proc.wait(timeout=10)


def get(host: str, path: str, method: str = "GET", **headers) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection(host, timeout=10)
    conn.request(method, path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def test_server_sends_whole_files_and_ranges(server):
    data = bytes(range(256)) * 4
    status, h, body = get(server, "/m/data.bin")
    assert (status, body, h["accept-ranges"], h["content-length"]) == (200, data, "bytes", "1024")
    status, h, body = get(server, "/m/data.bin", Range="bytes=2-9")
    assert (status, body, h["content-range"]) == (206, data[2:10], "bytes 2-9/1024")
    assert get(server, "/m/data.bin", Range="bytes=1000-")[2] == data[1000:]
    assert get(server, "/m/data.bin", Range="bytes=-4")[2] == data[-4:]
    status, h, _ = get(server, "/m/data.bin", Range="bytes=2000-2001")
    assert (status, h["content-range"]) == (416, "bytes */1024")
    status, h, body = get(server, "/m/data.bin", "HEAD", Range="bytes=0-7")
    assert (status, h["content-length"], body) == (206, "8", b"")
    status, h, body = get(server, "/m/sub/a.json")
    assert (status, h["content-type"], json.loads(body)) == (200, "application/json", {"a": 1})


def test_server_serves_nothing_outside_its_folders(server):
    assert get(server, "/m/missing.bin")[0] == 404
    assert get(server, "/m/sub")[0] == 404  # a folder
    assert get(server, "/m/../secret.txt")[0] == 404
    assert get(server, "/m/%2e%2e/secret.txt")[0] == 404
    assert get(server, "/other/data.bin")[0] == 404
    assert get(server, "/m/data.bin", "POST")[0] == 405


# --- random weights in the real layout --------------------------------------------------------
def small_model(folder: Path) -> dict[str, bytes]:
    """A model folder like build/site/models/all-MiniLM-L6-v2 with tiny weights files; returns
    each file's header (what a pack carries)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    files, headers = {}, {}
    for dtype, name in DTYPE_FILES.items():
        mat = np.float16 if dtype == "float16" else np.float32
        tensors = {"embeddings.LayerNorm.weight": rng.standard_normal(8, dtype=np.float32),
                   "layer.0.weight": rng.standard_normal((3, 5)).astype(mat),
                   "layer.0.bias": rng.standard_normal(3, dtype=np.float32)}
        sha = write_safetensors(folder / name, tensors, {"format": "test"})
        files[name] = {"bytes": (folder / name).stat().st_size, "sha256": sha}
        headers[name] = pack._safetensors_header(folder / name)
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\n")
    (folder / "manifest.json").write_text(json.dumps({"config": {"hidden_size": 8},
                                                      "files": files}))
    return headers


def test_random_weights_keep_the_header_and_layout(tmp_path):
    headers = small_model(tmp_path / "real")
    name = DTYPE_FILES["float16"]
    size, sha = random_safetensors(headers[name], tmp_path / "random.safetensors", seed=3)
    data = (tmp_path / "random.safetensors").read_bytes()
    real = (tmp_path / "real" / name).read_bytes()
    assert (size, sha) == (len(real), hashlib.sha256(data).hexdigest())
    assert data[:len(headers[name])] == headers[name] and data != real
    n = header_length(data[:8])
    layout = parse_header(data[8:8 + n], len(data))
    by_name = {t.name: t for t in layout.tensors}
    assert by_name["layer.0.weight"].dtype.name == "float16"
    w = np.frombuffer(data[by_name["layer.0.weight"].begin:by_name["layer.0.weight"].end],
                      np.float16)
    ln = by_name["embeddings.LayerNorm.weight"]
    gamma = np.frombuffer(data[ln.begin:ln.end], np.float32)
    assert np.isfinite(w).all() and np.abs(w).max() < 1 and np.abs(gamma - 1).max() < 0.5


def test_prepare_model_fills_in_random_weights_and_links_real_ones(tmp_path):
    headers = small_model(tmp_path / "real")
    carried = tmp_path / "carried"  # what a pack holds: no values
    carried.mkdir()
    for f in ("manifest.json", "vocab.txt"):
        shutil.copy(tmp_path / "real" / f, carried / f)
    for name, header in headers.items():
        (carried / (name + ".header")).write_bytes(header)
    shutil.copy(tmp_path / "real" / DTYPE_FILES["float32"], carried / DTYPE_FILES["float32"])
    kinds = prepare_model(carried, tmp_path / "work")
    assert kinds == {"float32": "real", "float16": "random"}
    out = model_folder(tmp_path / "work")
    manifest = json.loads((out / "manifest.json").read_text())
    for name in DTYPE_FILES.values():
        assert manifest["files"][name]["sha256"] == pack.sha256_file(out / name)
    # the random file's blocks, as the page checks them, against hashlib over each block
    data = (out / DTYPE_FILES["float16"]).read_bytes()
    blocks = manifest["files"][DTYPE_FILES["float16"]]["blocks"]
    assert blocks["sha256"] == [hashlib.sha256(data[i:i + blocks["bytes"]]).hexdigest()
                                for i in range(0, len(data), blocks["bytes"])]
    assert manifest["weights"] == kinds and (out / "vocab.txt").exists()


def test_weight_pieces_are_staged_and_joined(tmp_path):
    small_model(tmp_path / "real")
    work = tmp_path / "work"
    wholes = {}
    for dtype, name in DTYPE_FILES.items():  # one carry folder per file, staged one by one
        wholes[name] = (tmp_path / "real" / name).read_bytes()
        pieces = pack.write_weight_pieces(tmp_path / dtype, [name], piece_mb=1,
                                          model=tmp_path / "real")
        assert [p.name for p in pieces] == [f"{name}.000"]
        sha = hashlib.sha256(wholes[name]).hexdigest()
        assert pack.staged_weights(name, sha, work) is None
        assert pack.stage(tmp_path / dtype, work) == [f"{name}.000"]
    for name, whole in wholes.items():
        joined = pack.staged_weights(name, hashlib.sha256(whole).hexdigest(), work)
        assert joined is not None and joined.read_bytes() == whole
    with pytest.raises(SystemExit, match="sha256"):  # a piece that does not add up
        (tmp_path / "bad").mkdir()
        name = DTYPE_FILES["float32"]
        pack.write_weight_pieces(tmp_path / "bad", [name], 1, model=tmp_path / "real")
        pack.stage(tmp_path / "bad", tmp_path / "work2")
        pack.staged_weights(name, "0" * 64, tmp_path / "work2")


def test_unpack_checks_every_file(tmp_path):
    src = tmp_path / "pack"
    src.mkdir()
    (src / "node.xz").write_bytes(lzma.compress(b"#!/bin/sh\n"))
    site = tmp_path / "site"
    (site / "web").mkdir(parents=True)
    (site / "web" / "bridge.js").write_text("export const x = 1;\n")
    with tarfile.open(src / "site.tar.xz", "w:xz") as tar:
        tar.add(site / "web", arcname="web")
    files = {p.name: {"bytes": p.stat().st_size, "sha256": pack.sha256_file(p)}
             for p in src.iterdir()}
    meta = {"format": pack.PACK_FORMAT, "files": files, "source": "test", "created": "now",
            "node": "n", "webgpu": "w"}
    (src / "pack.json").write_text(json.dumps(meta))
    rt = pack.unpack(src, tmp_path / "work")
    assert rt.node.read_bytes() == b"#!/bin/sh\n" and os.access(rt.node, os.X_OK)
    assert (rt.web / "bridge.js").exists() and rt.vk is None
    meta["files"]["node.xz"]["sha256"] = "0" * 64
    (src / "pack.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match="sha256"):
        pack.unpack(src, tmp_path / "work")


# --- Node: no adapter, and the page's stack booting ------------------------------------------
def fake_webgpu(folder: Path) -> Path:
    """A stand-in for the npm package `webgpu` whose create() finds no adapter."""
    folder.mkdir(parents=True, exist_ok=True)
    index = folder / "index.mjs"
    index.write_text("export const globals = {};\n"
                     "export function create(flags) {\n"
                     "  return { requestAdapter: async () => null };\n"
                     "}\n")
    return index


def test_no_adapter_is_one_line_and_a_failing_status(tmp_path, monkeypatch, capsys):
    # Dawn is asked while Python starts (as the page checks WebGPU while its worker boots):
    # the answer comes at once, before Python is ready
    runtime = pack.Runtime(node=Path(need_node()), webgpu=fake_webgpu(tmp_path / "webgpu"),
                           pyodide=site_pyodide(), web=ROOT / "web",
                           model=tmp_path / "unused")
    monkeypatch.setattr(pack, "WORK", tmp_path / "work")
    args = argparse.Namespace(
        shapes="1x12", dtypes="float32", dawn_flag=[], out=tmp_path / "out" / "gpu.json")
    assert bench_gpu.measure(runtime, args) == 3
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("bench gpu: no WebGPU adapter: Dawn")


def site_pyodide() -> Path:
    """build/site/'s Pyodide folder (the page's files); fails in CI where set-up did not make
    it, skips elsewhere."""
    pyodide = pack.pyodide_dir()
    if not (pyodide / "pyodide-lock.json").exists():
        if IN_CI:
            pytest.fail("build/site/ is missing (tools/dev.py setup)")
        pytest.skip("build/site/ is missing (python3 tools/dev.py setup)")
    return pyodide


def test_page_stack_boots_under_node(tmp_path):
    """Pyodide from build/site/, the pybridge wheel, web/bridge.js as pybridge_js; the
    model's manifest fetched over the runner's loopback server (no GPU asked for)."""
    node, pyodide = need_node(), site_pyodide()
    model = SITE / "models" / pack.MODEL_NAME
    with NodeApp(Path(node), tmp_path / "unused", pyodide, ROOT / "web", {"/models/": model},
                 gpu=False, log=tmp_path / "node.log") as app:
        assert app.ready["pyodide"] == pyodide.name
        assert app.py("import pybridge_js, numpy as np\n"
                      "pybridge_js.viewInfo(np.arange(8, dtype=np.uint8)).isWasmHeap") is True
        manifest = app.py("import js, json\n"
                          f"r = await js.fetch({app.origin + '/models/manifest.json'!r})\n"
                          "json.loads(await r.text())['config']")
        assert manifest["hidden_size"] == 384
        with pytest.raises(RuntimeError, match="ZeroDivisionError"):
            app.py("1 / 0")


def test_page_stack_under_node_starts_python_from_a_snapshot(tmp_path):
    """runner.mjs --snapshot-dir: the first start makes the snapshot (web/snapshot.js, as the
    page's worker does) and goes on from it; the next restores it; a damaged one is refused and
    made again. numpy's compiled parts (loaded after the restore) answer the same bits. The
    packages as the first start installed them (with their bytecode) are kept beside it and
    written back by the next instead of unpacking the wheels."""
    node, pyodide = need_node(), site_pyodide()
    snapshots = tmp_path / "snapshots"
    code = ("import hashlib, random, numpy as np\n"
            "m = np.random.default_rng(3).standard_normal((5, 5))\n"
            "[hashlib.sha256(np.linalg.inv(m).tobytes()).hexdigest(), random.random()]")

    def start(timeout_ms: int | None = None) -> tuple[dict, list]:
        with NodeApp(Path(node), tmp_path / "unused", pyodide, ROOT / "web", {}, gpu=False,
                     log=tmp_path / "node.log", snapshot_dir=snapshots,
                     snapshot_timeout_ms=timeout_ms) as app:
            return app.ready["start"], app.py(code)

    made, first = start()
    assert made["how"] == "made" and made["why"] == "no snapshot stored yet for these files"
    assert made["packages"] == {"how": "none", "why": "none stored yet for these files"}
    stored = sorted(p.name for p in snapshots.iterdir())
    key = stored[0].split(".")[0]
    assert stored == [f"{key}.{part}" for part in ("packages", "packages.sha256", "snapshot",
                                                   "snapshot.sha256")], stored
    bundle = (snapshots / f"{key}.packages").read_bytes()
    assert hashlib.sha256(bundle).hexdigest() == (snapshots / f"{key}.packages.sha256").read_text()
    restored, second = start()
    assert restored["how"] == "snapshot" and restored["bytes"] == made["bytes"]
    assert restored["packages"]["how"] == "installed" and restored["packages"]["bytes"] == len(bundle)
    assert restored["packages"]["files"] >= 400, restored["packages"]
    assert first[0] == second[0]  # the same bits from numpy's compiled linalg
    assert first[1] != second[1]  # each restored Python reseeded its random module
    snapshot = next(snapshots.glob("*.snapshot"))
    data = bytearray(snapshot.read_bytes())
    data[len(data) // 2] ^= 1
    snapshot.write_bytes(bytes(data))
    refused, third = start()
    assert refused["how"] == "made" and "refused" in refused["why"] and "sha256" in refused["why"]
    assert third[0] == first[0]
    # bytes whose stored sha256 matches but whose memory cannot be instantiated: Pyodide's
    # restore never settles (found in review: the boot hung); it is refused after the timeout
    snapshot = next(snapshots.glob("*.snapshot"))
    snapshot.write_bytes(bytes(4096))
    snapshot.with_suffix(".snapshot.sha256").write_text(hashlib.sha256(bytes(4096)).hexdigest())
    late, fourth = start(timeout_ms=5000)
    assert late["how"] == "made" and "not restored in 5 s" in late["why"], late
    assert fourth[0] == first[0]
    assert start()[0]["how"] == "snapshot"
