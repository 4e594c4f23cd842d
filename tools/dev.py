#!/usr/bin/env python3
"""pybridge's front door: set up whatever is missing, then run the demo, the tests or a benchmark.

    python3 tools/dev.py demo  [--host 127.0.0.1] [--port 8000]   serve the page
    python3 tools/dev.py test  [pytest args...]                    run the whole test suite
    python3 tools/dev.py bench NAME [args...]                      a benchmark: boot, datapath, model,
                                                                   compare (vs ONNX Runtime Web), all in
                                                                   the browser; tokenizer (CPython and
                                                                   Pyodide); kernels (wgpu-py, Dawn,
                                                                   torch) and gpu (the page's stack on
                                                                   a real GPU), for GPU machines;
                                                                   serve (N cold boots at once) and
                                                                   soak (10,000 searches), hardening
    python3 tools/dev.py setup                                     set-up only

Set-up (idempotent, each step skipped when already done, with visible progress):
  1. Debian packages: chromium (headless browser tests), mesa-vulkan-drivers (lavapipe for the
     native GPU backend), python3-venv, npm; via apt-get, only those absent.
  2. A virtual environment .venv/ with tools/requirements.lock (the `dev` extra of
     pyproject.toml, resolved and pinned by sha256 by tools/lock_deps.py); for `test` also
     tools/requirements-reference.lock (torch CPU, sentence-transformers, HF tokenizers).
  3. Vendored assets under build/site/ (tools/assets.py): Pyodide, numpy, the pybridge wheel.
  4. The default model, all-MiniLM-L6-v2, converted for the web (tools/convert_model.py).

Standard library only: this runs with the system's python3 before any venv exists.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
VENV_PY = VENV / "bin" / "python"
CHROMIUM = os.environ.get("PYBRIDGE_CHROMIUM", "/usr/bin/chromium")
DEBIAN_PACKAGES = {
    # package: how we know it is there
    "chromium": lambda: Path(CHROMIUM).exists(),
    "mesa-vulkan-drivers": lambda: dpkg_installed("mesa-vulkan-drivers"),
    "npm": lambda: shutil.which("npm") is not None,
}


def say(msg: str) -> None:
    print(f"[setup] {msg}", flush=True)


def run(cmd: list[str], **kw) -> None:
    proc = subprocess.run(cmd, **kw)
    if proc.returncode != 0:
        raise SystemExit(f"[setup] FAILED ({proc.returncode}): {' '.join(cmd)}")


def dpkg_installed(pkg: str) -> bool:
    if shutil.which("dpkg-query") is None:
        return False
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
    return proc.returncode == 0 and "install ok installed" in proc.stdout


def venv_works() -> bool:
    """python3 -m venv needs ensurepip, which Debian ships separately (python3-venv)."""
    try:
        import ensurepip  # noqa: F401  (only probing that it exists)
    except ImportError:
        return False
    return True


def setup_debian() -> None:
    missing = [pkg for pkg, present in DEBIAN_PACKAGES.items() if not present()]
    if not VENV_PY.exists() and not venv_works():
        missing.append(f"python3.{sys.version_info.minor}-venv")
    if not missing:
        say("1/4 Debian packages: chromium, mesa-vulkan-drivers, npm present")
        return
    if shutil.which("apt-get") is None:
        raise SystemExit(
            f"[setup] missing {', '.join(missing)} and this is not a Debian/Ubuntu system: install "
            f"them with your package manager (Chromium path: set PYBRIDGE_CHROMIUM)"
        )
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise SystemExit(f"[setup] need root to install {', '.join(missing)}: "
                             f"apt-get install {' '.join(missing)}")
        prefix = ["sudo"]
    say(f"1/4 Debian packages: installing {', '.join(missing)} (apt-get; a few minutes)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run([*prefix, "apt-get", "update", "-q"], env=env)
    run([*prefix, "apt-get", "install", "-y", "-q", *missing], env=env)


LOCKS = {
    "dev": (ROOT / "tools" / "requirements.lock",
            "aiohttp, numpy, playwright, pytest, wgpu, ...; no browser download"),
    "reference": (ROOT / "tools" / "requirements-reference.lock",
                  "torch 2.13.0 CPU, sentence-transformers, tokenizers: the tests' references"),
}


def setup_venv(locks: tuple[str, ...]) -> None:
    if not VENV_PY.exists():
        say(f"2/4 Python: creating {VENV.relative_to(ROOT)}")
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    for name in locks:
        lock, what = LOCKS[name]
        stamp = VENV / f".pybridge-{name}"
        fingerprint = hashlib.sha256(lock.read_bytes()).hexdigest()
        if stamp.exists() and stamp.read_text() == fingerprint:
            say(f"2/4 Python: {lock.name} up to date")
            continue
        say(f"2/4 Python: installing {lock.relative_to(ROOT)} into .venv ({what}; every wheel "
            "sha256-checked)")
        run([str(VENV_PY), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar",
             "off", "--only-binary=:all:", "--require-hashes", "-r", str(lock)])
        stamp.write_text(fingerprint)


def setup_assets() -> None:
    say("3/4 assets: Pyodide, numpy, pybridge wheel -> build/site/ (hash-checked, cached)")
    run([str(VENV_PY), str(ROOT / "tools" / "assets.py")])
    say("4/4 model: all-MiniLM-L6-v2 -> build/site/models/ (float32 and float16)")
    run([str(VENV_PY), str(ROOT / "tools" / "convert_model.py")])


def setup(locks: tuple[str, ...] = ("dev",)) -> None:
    setup_debian()
    setup_venv(locks)
    setup_assets()


def exec_in_venv(args: list[str]) -> None:
    """Replace this process with the venv's Python running args (signals reach it directly)."""
    env = {**os.environ, "PYBRIDGE_CHROMIUM": CHROMIUM}
    os.execve(str(VENV_PY), [str(VENV_PY), *args], env)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in ("demo", "test", "bench", "setup"):
        print(f"unknown command {command!r}; expected demo, test, bench or setup\n{__doc__}",
              file=sys.stderr)
        return 2
    needs_reference = command == "test" or (command == "bench" and (
        rest[:1] == ["compare"] or (rest[:1] == ["gpu"] and "--peers" in rest)))  # ONNX export
    setup(("dev", "reference") if needs_reference else ("dev",))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the references load from local files only
    os.chdir(ROOT)
    if command == "demo":
        exec_in_venv([str(ROOT / "tools" / "server.py"), *rest])
    elif command == "test":
        exec_in_venv(["-m", "pytest", *rest])
    elif command == "bench":
        names = sorted(p.stem[6:] for p in (ROOT / "tools").glob("bench_*.py")
                       if not p.stem.endswith("_page"))
        if not rest or rest[0] not in names:
            print(f"usage: python3 tools/dev.py bench {{{'|'.join(names)}}} [args...]",
                  file=sys.stderr)
            return 2
        exec_in_venv([str(ROOT / "tools" / f"bench_{rest[0]}.py"), *rest[1:]])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
