#!/usr/bin/env python3
"""pybridge's front door: set up whatever is missing, then run the demo, the tests, a benchmark or
the benchmarks' report.

    python3 tools/dev.py demo  [--host 127.0.0.1] [--port 8000]   serve the page
    python3 tools/dev.py test  [pytest args...]                    run the whole test suite
    python3 tools/dev.py test --browser safari                     only the WebKit tests, on Safari
                                                                   (macOS, safaridriver)
    python3 tools/dev.py bench NAME [args...]                      a benchmark: boot, datapath, model,
                                                                   compare (vs ONNX Runtime Web), all in
                                                                   the browser; tokenizer (CPython and
                                                                   Pyodide); kernels (wgpu-py, Dawn,
                                                                   torch) and gpu (the page's stack on
                                                                   a real GPU), for GPU machines;
                                                                   serve (N cold boots at once) and
                                                                   soak (10,000 searches), hardening
    python3 tools/dev.py report [--run|--reuse] [--out FILE]       one self-contained HTML page of
                                [--results DIR] [--png DIR]        the benchmarks' plots, from their
                                                                   JSON in bench-results/ (the
                                                                   browser ones missing there run
                                                                   first, quick; --reuse: none;
                                                                   tools/report.py)
    python3 tools/dev.py setup [--demo]                            set-up only (--demo: the demo's)
    python3 tools/dev.py setup --race                              also the demo's race: ONNX Runtime
                                                                   Web (npm) and the model as ONNX
                                                                   (torch; Linux x86_64), tools/race.py
    python3 tools/dev.py export DIR [--force]                      the whole site (pages, Pyodide,
                                                                   wheels, model) in a folder any
                                                                   static host serves, with its
                                                                   headers (tools/export.py)

Set-up (idempotent, each step skipped when already done, with visible progress):
  1. Debian packages: chromium (headless browser tests), mesa-vulkan-drivers (lavapipe for the
     native GPU backend), python3-venv, npm; for `test` also webkit2gtk-driver and xvfb (WebKit
     tests); via apt-get, only those absent.
  2. A virtual environment .venv/ with tools/requirements.lock (the `demo` and `dev` extras of
     pyproject.toml, resolved and pinned by sha256 by tools/lock_deps.py); for `test` also
     tools/requirements-reference.lock (torch CPU, sentence-transformers, HF tokenizers).
  3. Vendored assets under build/site/ (tools/assets.py): Pyodide, numpy, the pybridge wheel.
  4. The default model, all-MiniLM-L6-v2, converted for the web (tools/convert_model.py).
`demo` (and `setup --demo`) needs Python alone, on Linux or macOS: no step 1 (no apt-get, no
npm, no browser), and step 2 installs tools/requirements-demo.lock (the `demo` extra: server,
vendoring, model converter; wheels for Linux x86_64/aarch64 and macOS arm64/x86_64),
or, in a .venv of CPython 3.9 or 3.10, tools/requirements-demo-legacy.lock (the same, older
releases).

Standard library only, and Python 3.9 syntax (macOS's own python3): this runs with the system's
python3 before any venv exists; .venv gets a CPython the lock has wheels for (this one, or the
newest python3.X on PATH that fits; for `demo`, this 3.9 or 3.10 where none is on PATH).
"""

from __future__ import annotations

import hashlib
import os
import re
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
# `test` only: WebKit, Safari's engine, driven through WebDriver (tests/webkit/,
# tools/webdriver.py): WebKitWebDriver + MiniBrowser, and a headless X server for its window. Without Recommends
# (56 packages, 61 MB instead of 215): MiniBrowser needs none of them.
TEST_DEBIAN_PACKAGES = {
    "webkit2gtk-driver": lambda: shutil.which("WebKitWebDriver") is not None,
    "xvfb": lambda: shutil.which("Xvfb") is not None,
}
NO_RECOMMENDS = {"webkit2gtk-driver", "xvfb"}


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


def setup_debian(packages: dict = DEBIAN_PACKAGES) -> None:
    missing = [pkg for pkg, present in packages.items() if not present()]
    if not VENV_PY.exists() and not venv_works():
        missing.append(f"python3.{sys.version_info.minor}-venv")
    if not missing:
        say(f"1/4 Debian packages: {', '.join(packages)} present")
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
    for group, flags in (([p for p in missing if p not in NO_RECOMMENDS], []),
                         ([p for p in missing if p in NO_RECOMMENDS], ["--no-install-recommends"])):
        if group:
            run([*prefix, "apt-get", "install", "-y", "-q", *flags, *group], env=env)


LOCKS = {
    "demo": (ROOT / "tools" / "requirements-demo.lock",
             "aiohttp, numpy, setuptools: what serving the demo needs"),
    "demo-legacy": (ROOT / "tools" / "requirements-demo-legacy.lock",
                    "aiohttp, numpy, setuptools for CPython 3.9 and 3.10: the demo's"),
    "dev": (ROOT / "tools" / "requirements.lock",
            "aiohttp, numpy, playwright, pytest, wgpu, ...; no browser download"),
    "reference": (ROOT / "tools" / "requirements-reference.lock",
                  "torch 2.13.0 CPU, sentence-transformers, tokenizers: the tests' references"),
}


def lock_pythons(lock: Path) -> list[str]:
    """The CPython versions a lock has wheels for, from its header (tools/lock_deps.py)."""
    found = re.search(r"^# Wheels for CPython ([0-9., ]+) on ", lock.read_text(), re.M)
    if not found:
        raise SystemExit(f"[setup] {lock.relative_to(ROOT)} names no CPython versions")
    return [v.strip() for v in found.group(1).split(",")]


# A lock -> the one a .venv of an older CPython installs instead: the demo runs on macOS's own
# python3 (3.9) with older releases of its packages, where no newer python3.X is on PATH.
OLDER_PYTHONS = {"demo": "demo-legacy"}


def python_for(pythons: list[str], older: list[str] | None = None) -> str:
    """The interpreter to make .venv with: this one if the lock has wheels for it, else the
    newest python3.X on PATH that it has (macOS's own python3 is 3.9), else this one if the
    older Pythons' lock has wheels for it."""
    here = "%d.%d" % sys.version_info[:2]
    if here in pythons:
        return sys.executable
    for version in sorted(pythons, key=lambda v: tuple(map(int, v.split("."))), reverse=True):
        found = shutil.which(f"python{version}")
        if found:
            return found
    if older and here in older:
        return sys.executable
    wanted = [*(older or []), *pythons]
    raise SystemExit(
        f"[setup] needs CPython {wanted[0]} to {wanted[-1]}; this is {here} and "
        f"no python{pythons[-1]} ... python{pythons[0]} is on PATH. Install one (macOS: the "
        "installer from python.org, or Homebrew's python@3.13; Debian/Ubuntu: apt-get install "
        "python3) and run this again")


def make_venv(pythons: list[str], older: list[str] | None = None) -> None:
    exe = python_for(pythons, older)
    say(f"2/4 Python: creating {VENV.relative_to(ROOT)} with {exe}")
    if exe != sys.executable:
        run([exe, "-m", "venv", "--clear", str(VENV)])
        return
    if not venv_works():
        raise SystemExit(
            f"[setup] this python3 cannot make a virtual environment (Debian ships `venv` apart): "
            f"apt-get install python3.{sys.version_info.minor}-venv, or run `python3 tools/dev.py "
            "setup`, which installs it, then run this again")
    venv.EnvBuilder(with_pip=True, clear=True).create(VENV)


def venv_version() -> str:
    out = subprocess.run([str(VENV_PY), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def setup_venv(locks: tuple[str, ...]) -> None:
    pythons = {name: lock_pythons(LOCKS[name][0]) for name in locks}
    older = OLDER_PYTHONS.get(locks[0]) if len(locks) == 1 else None
    if older:
        pythons[older] = lock_pythons(LOCKS[older][0])
    if not VENV_PY.exists():
        make_venv([v for v in pythons[locks[0]] if all(v in pythons[n] for n in locks)],
                  pythons.get(older))
    version = venv_version()
    for name in locks:
        if older and version in pythons[older]:
            name = older  # a .venv of CPython 3.9 or 3.10: the older releases' lock
        lock, what = LOCKS[name]
        if version not in pythons[name]:
            fits = "%d.%d" % sys.version_info[:2] in pythons[name] or any(
                shutil.which(f"python{v}") for v in pythons[name])
            raise SystemExit(
                f"[setup] .venv has CPython {version}, for which {lock.relative_to(ROOT)} has no "
                f"wheels (it has {', '.join(pythons[name])}): " + (
                    "remove .venv and run this again" if fits else
                    f"install CPython {pythons[name][0]} to {pythons[name][-1]} first (macOS: the "
                    "installer from python.org, or Homebrew's python@3.13), then remove .venv "
                    "and run this again"))
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


def setup(locks: tuple[str, ...] = ("dev",), debian: dict | None = DEBIAN_PACKAGES) -> None:
    if debian is not None:  # None: no Debian packages (the demo; Safari's tests on a Mac)
        setup_debian(debian)
    elif not VENV_PY.exists() and not venv_works() and shutil.which("apt-get") is not None:
        setup_debian({})  # a Debian python3 without its venv module: python3.X-venv alone
    else:
        say("1/4 system packages: none needed (Python alone: no apt-get, no npm, no browser)")
    setup_venv(locks)
    setup_assets()


def exec_in_venv(args: list[str]) -> None:
    """Replace this process with the venv's Python running args (signals reach it directly)."""
    env = {**os.environ, "PYBRIDGE_CHROMIUM": CHROMIUM}
    os.execve(str(VENV_PY), [str(VENV_PY), *args], env)


def report_runs_compare(args: list[str]) -> bool:
    """Whether `report` may run `bench compare` (which needs the references' lock): with --run,
    or without --reuse where the results folder has no compare.json."""
    if "--reuse" in args:
        return False
    given = [a.split("=", 1)[1] for a in args if a.startswith("--results=")] + [
        args[i + 1] for i, a in enumerate(args[:-1]) if a == "--results"]
    results = Path(os.getcwd(), given[-1]) if given else ROOT / "bench-results"
    return "--run" in args or not (results / "compare.json").exists()


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in ("demo", "test", "bench", "report", "setup", "export"):
        print(f"unknown command {command!r}; expected demo, test, bench, report, setup or export\n"
              f"{__doc__}",
              file=sys.stderr)
        return 2
    race = command == "setup" and "--race" in rest
    needs_reference = command == "test" or race or (command == "bench" and (
        rest[:1] == ["compare"] or (rest[:1] == ["gpu"] and "--peers" in rest))  # ONNX export
    ) or (command == "report" and report_runs_compare(rest))
    browser = None  # test --browser webkit|safari: only the WebKit job (tests/webkit/), on it
    if command == "test" and "--browser" in rest:
        i = rest.index("--browser")
        browser = rest[i + 1] if i + 1 < len(rest) else ""
        del rest[i:i + 2]
        if browser not in ("webkit", "safari"):
            print("usage: python3 tools/dev.py test --browser {webkit|safari} [pytest args...]",
                  file=sys.stderr)
            return 2
    if command in ("demo", "export") or (command == "setup" and "--demo" in rest and not race):
        setup(("demo",), debian=None)  # Python alone, on Linux or macOS: no apt-get, no npm
    elif browser == "safari":  # macOS: safaridriver comes with Safari; the references' lock is
        setup(("dev",), debian=None)  # Linux-only (the tokenizer check skips without it)
    else:
        setup(("dev", "reference") if needs_reference else ("dev",),
              debian={**DEBIAN_PACKAGES, **TEST_DEBIAN_PACKAGES} if command == "test"
              else DEBIAN_PACKAGES)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the references load from local files only
    cwd = os.getcwd()
    os.chdir(ROOT)
    if command == "demo":
        exec_in_venv([str(ROOT / "tools" / "server.py"), *rest])
    elif race:
        exec_in_venv([str(ROOT / "tools" / "race.py")])
    elif command in ("export", "report"):
        rest = [a if a.startswith("-") and "=" not in a  # paths from where the command ran
                else f"{a.split('=', 1)[0]}={Path(cwd, a.split('=', 1)[1]).resolve()}"
                if a.startswith("-") else str(Path(cwd, a).resolve()) for a in rest]
        exec_in_venv([str(ROOT / "tools" / f"{command}.py"), *rest])
    elif command == "test":
        if browser:
            os.environ["PYBRIDGE_WEBKIT_BROWSER"] = browser  # tests/webkit/conftest.py
            rest = [*rest, str(ROOT / "tests" / "webkit")]
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
