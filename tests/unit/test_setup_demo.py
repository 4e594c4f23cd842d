"""`dev.py demo` needs Python alone, on Linux and macOS: its locks (CPython 3.11-3.14, and
3.9-3.10 for macOS's own python3) have a hash-pinned wheel for every interpreter, platform and
macOS release they name (read offline from the locks' file comments), and its set-up succeeds
in a fresh copy of the working tree with apt-get, npm, sudo and Chromium out of reach, twice
(the second time doing nothing), then serves the page; on CPython 3.9 too, with the same
page's lock and model files, byte for byte."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.tags import compatible_tags, cpython_tags, mac_platforms
from packaging.utils import canonicalize_name, parse_wheel_filename

from tools import dev, lock_deps

ROOT = Path(__file__).resolve().parents[2]
BLOCK_RE = re.compile(r"^(\S+)==(\S+?)(?: ; (.+?))? \\\n((?:    .*\n?)+)", re.M)
FLOOR_RE = re.compile(r"^# Only CPython (\S+) on (\S+) from macOS (\d+) ", re.M)
LINUX_TAGS = {  # what pip accepts on glibc 2.28 (the newest manylinux tag the locks resolve for)
    arch: [*(f"manylinux_2_{minor}_{arch}" for minor in range(28, 4, -1)),
           *(f"{legacy}_{arch}" for legacy in ("manylinux2014", "manylinux2010", "manylinux1"))]
    for arch in ("x86_64", "aarch64")}


def read_lock(path: Path) -> dict[str, dict]:
    """name -> {version, marker, hashes, files (sha256 -> file name)} from a lock's text."""
    out = {}
    for name, version, marker, body in BLOCK_RE.findall(path.read_text()):
        out[canonicalize_name(name)] = {
            "version": version,
            "marker": Marker(marker) if marker else None,
            "hashes": set(re.findall(r"--hash=sha256:([0-9a-f]{64})", body)),
            "files": {sha: file for file, sha in re.findall(r"#   (\S+\.whl)  sha256:([0-9a-f]{64})",
                                                             body)},
        }
    return out


def targets(lock: lock_deps.Lock, text: str):
    """(label, python, tags a machine of that kind accepts) for every target the lock promises:
    each macOS release from its floor (older ones lack a wheel, the header says so) up."""
    floors = {(py, label): int(n) for py, label, n in FLOOR_RE.findall(text)}
    for python in lock.pythons:
        version = tuple(int(x) for x in python.split("."))
        for label in lock.platforms:
            system, arch = label.split("-")
            if system == "linux":
                platforms = [[*LINUX_TAGS[arch], f"linux_{arch}"]]
            else:
                releases = [n for n in lock_deps.MACOS_RELEASES
                            if n >= floors.get((python, label), 0)]
                platforms = [list(mac_platforms((n, 0), arch)) for n in releases]
            for plats in platforms:
                tags = {*cpython_tags(version, platforms=plats),
                        *compatible_tags(version, platforms=plats)}
                yield label, python, plats[0], tags


@pytest.mark.parametrize("name", ["demo", "demo-legacy", "dev"])
def test_the_lock_has_a_pinned_wheel_for_every_platform_it_names(name):
    lock = lock_deps.LOCKS[name]
    assert set(lock.platforms) == {"linux-x86_64", "linux-aarch64", "macos-arm64", "macos-x86_64"}
    text = lock.path.read_text()
    packages = read_lock(lock.path)
    assert packages, f"{lock.path.name}: no packages read"
    for pkg, entry in packages.items():
        # every hash names its file and every file its hash; the files are this version's wheels
        assert entry["hashes"] == set(entry["files"]), pkg
        for file in entry["files"].values():
            wheel_name, wheel_version, _, _ = parse_wheel_filename(file)
            assert (wheel_name, str(wheel_version)) == (pkg, entry["version"]), file
    binary = {pkg for pkg, e in packages.items()
              if any(not f.endswith("-none-any.whl") for f in e["files"].values())}
    assert {"numpy", "aiohttp"} <= binary
    seen = set()
    for label, python, platform, tags in targets(lock, text):
        plat = lock_deps.PLATFORMS[label]
        env = lock_deps.marker_env(python, plat)
        for pkg, entry in packages.items():
            if entry["marker"] is not None and not entry["marker"].evaluate(env):
                continue
            fits = [f for f in entry["files"].values()
                    if set(parse_wheel_filename(f)[3]) & tags]
            assert fits, f"{lock.path.name}: {pkg} has no wheel for CPython {python} on {platform}"
            if pkg in binary and label.startswith("macos"):
                seen.add((pkg, python, label))
    for pkg in binary:  # the point of it: macOS wheels, both kinds of Mac, every Python
        for python in lock.pythons:
            assert {(pkg, python, "macos-arm64"), (pkg, python, "macos-x86_64")} <= seen


def test_the_demo_locks_are_the_demo_extra_alone_and_agree_with_the_dev_lock():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    dev_lock = read_lock(lock_deps.LOCKS["dev"].path)
    locks = {name: read_lock(lock_deps.LOCKS[name].path) for name in ("demo", "demo-legacy")}
    assert lock_deps.LOCKS["demo-legacy"].pythons == ("3.9", "3.10")  # macOS's own is 3.9.6
    for name, demo in locks.items():
        for python in lock_deps.LOCKS[name].pythons:  # each lock takes its Pythons' pins
            env = lock_deps.marker_env(python, lock_deps.PLATFORMS["macos-arm64"])
            pins = [Requirement(r) for r in extras["demo"]]
            pins = [r for r in pins if r.marker is None or r.marker.evaluate(env)]
            assert {"aiohttp", "numpy", "setuptools"} <= {canonicalize_name(r.name) for r in pins}
            for req in pins:
                assert demo[canonicalize_name(req.name)]["version"] == str(req.specifier)[2:]
        for req in extras["dev"]:  # tests, browsers' drivers, wgpu: not the demo's
            assert canonicalize_name(Requirement(req).name) not in demo, name
    for pkg, entry in locks["demo"].items():  # installed on top of each other: the same versions
        assert dev_lock[pkg]["version"] == entry["version"], pkg
    # pyodide-lock has no release for 3.9: the set-up writes the page's lock without it
    assert "pyodide-lock" in locks["demo"] and "pyodide-lock" not in locks["demo-legacy"]
    assert locks["demo-legacy"]["numpy"]["version"] == "2.0.2"  # the last with cp39 wheels
    # wgpu needs rubicon-objc on macOS only; pip on Linux skips it unless lock_deps adds it
    assert str(dev_lock["rubicon-objc"]["marker"]) == 'sys_platform == "darwin"'


def test_dev_py_reads_the_pythons_each_lock_has_and_runs_on_macos_own_python():
    for name, lock in lock_deps.LOCKS.items():
        assert dev.lock_pythons(dev.LOCKS[name][0]) == list(lock.pythons), name
    # macOS's python3 is 3.9: dev.py starts there, and the demo's set-up and server run there
    # (the set-up on 3.9 itself: test_demo_sets_up_on_macos_own_python_3_9_alike)
    probe = subprocess.run([sys.executable, "-c", "import sys, tools.convert_model, tools.server; "
                            "print(*(m.__file__ for n, m in sys.modules.items() "
                            "if n.split('.')[0] in ('pybridge', 'tools') and m.__file__))"],
                           cwd=ROOT, capture_output=True, text=True, check=True)
    files = {Path(f) for f in probe.stdout.split()} | {ROOT / "tools" / "dev.py"}
    assert ROOT / "tools" / "assets.py" in files and ROOT / "pybridge" / "weights.py" in files
    for path in files:
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 9))


def test_on_an_older_python_dev_py_makes_the_venv_with_a_newer_one_on_path(tmp_path, monkeypatch):
    here = "%d.%d" % sys.version_info[:2]
    assert dev.python_for(["3.0", here]) == sys.executable
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SystemExit, match=r"needs CPython 3\.98 to 3\.99; this is " + here):
        dev.python_for(["3.98", "3.99"])
    with pytest.raises(SystemExit, match=r"needs CPython 3\.97 to 3\.99; this is " + here):
        dev.python_for(["3.98", "3.99"], older=["3.97"])
    # only this Python (as macOS's own 3.9 with nothing newer): the older releases' lock's
    assert dev.python_for(["3.98", "3.99"], older=[here]) == sys.executable
    for version in ("3.98", "3.99"):
        (tmp_path / f"python{version}").write_text("#!/bin/sh\n")
        (tmp_path / f"python{version}").chmod(0o755)
    assert dev.python_for(["3.98", "3.99"]) == str(tmp_path / "python3.99")  # the newest
    assert dev.python_for(["3.98", "3.99"], older=[here]) == str(tmp_path / "python3.99")


@pytest.mark.parametrize(("version", "lock"), [("3.9", "requirements-demo-legacy.lock"),
                                               ("3.10", "requirements-demo-legacy.lock"),
                                               ("3.11", "requirements-demo.lock"),
                                               ("3.14", "requirements-demo.lock")])
def test_the_demo_installs_the_lock_of_the_venvs_python(version, lock, tmp_path, monkeypatch):
    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    installed = []
    monkeypatch.setattr(dev, "VENV", venv)
    monkeypatch.setattr(dev, "VENV_PY", venv / "bin" / "python")
    monkeypatch.setattr(dev, "venv_version", lambda: version)
    monkeypatch.setattr(dev, "run", lambda cmd, **kw: installed.append(Path(cmd[-1]).name))
    dev.setup_venv(("demo",))
    assert installed == [lock]
    if version in ("3.9", "3.10"):  # the tests' lock has no such wheels: say so, install nothing
        with pytest.raises(SystemExit, match=f"has CPython {version}, for which "
                           r"tools/requirements\.lock has no wheels.*remove \.venv"):
            dev.setup_venv(("dev",))
        # where no CPython the tests' lock fits is to be had, removing .venv would only lose
        # the demo's: the message says to install one first (found in review)
        monkeypatch.setattr(dev.shutil, "which", lambda name: None)
        monkeypatch.setattr(dev.sys, "version_info", (3, 9, 6))
        with pytest.raises(SystemExit, match=r"install CPython 3\.11 to 3\.13 first"):
            dev.setup_venv(("dev",))


def working_tree_copy(dest: Path) -> None:
    """The files a fresh clone of this working tree has (tracked and new, none ignored)."""
    names = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], capture_output=True, check=True).stdout
    for name in filter(None, names.decode().split("\0")):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


# CPython 3.9 (macOS's own python3 is 3.9.6), where a pyenv (CI: /root/.pyenv) has one
PYTHON_3_9 = next(iter(sorted((Path.home() / ".pyenv" / "versions").glob("3.9*/bin/python"))), None)
SITE_FILES = ("build/site/pyodide/0.27.7/pyodide-lock.json",
              "build/site/models/all-MiniLM-L6-v2/manifest.json")


def set_up_demo(python: str, tmp_path: Path) -> tuple[Path, dict, list[str], str]:
    """`python tools/dev.py setup --demo` in a fresh copy: (repo, env, command, its output).
    apt-get, npm, sudo, dpkg-query and chromium are on PATH but fail and log if called; no
    python3.X is on PATH; the Pyodide and model downloads come from this checkout's cache
    (.cache/downloads) when there, the demo's wheels from PyPI (pip's own cache makes a rerun
    quick)."""
    repo, fake_bin, calls = tmp_path / "repo", tmp_path / "bin", tmp_path / "calls.log"
    repo.mkdir()
    fake_bin.mkdir()
    working_tree_copy(repo)
    (ROOT / ".cache" / "downloads").mkdir(parents=True, exist_ok=True)
    (repo / ".cache").mkdir()
    (repo / ".cache" / "downloads").symlink_to(ROOT / ".cache" / "downloads")
    for tool in ("apt-get", "apt", "npm", "node", "sudo", "dpkg-query", "chromium"):
        (fake_bin / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\nexit 1\n')
        (fake_bin / tool).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(PATH=str(fake_bin), PYBRIDGE_CHROMIUM=str(tmp_path / "no-chromium"))
    cmd = [python, str(repo / "tools" / "dev.py"), "setup", "--demo"]
    first = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=1200)
    out = first.stdout + first.stderr
    assert first.returncode == 0, out[-4000:]
    assert not calls.exists(), calls.read_text()
    return repo, env, cmd, out


@pytest.fixture(scope="module")
def demo_copy(tmp_path_factory):
    """The demo set up by this Python (3.11 or newer), once for the tests below."""
    return set_up_demo(sys.executable, tmp_path_factory.mktemp("demo"))


def serves_the_page(venv_py: Path, repo: Path, env: dict) -> None:
    server = subprocess.Popen([str(venv_py), str(repo / "tools" / "server.py"), "--port", "0"],
                              cwd=repo, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        line = ""
        while "pybridge is serving" not in line:
            line = server.stdout.readline()
            assert line, "the server exited before serving"
        url = re.search(r"http://\S+/", line).group(0)
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200
        with urllib.request.urlopen(url + "config.json", timeout=10) as r:
            config = r.read().decode()
        for path in ("pyodide/0.27.7/pyodide.mjs", "pyodide/0.27.7/pyodide-lock.json",
                     "models/all-MiniLM-L6-v2/manifest.json"):
            with urllib.request.urlopen(url + path, timeout=10) as r:
                assert r.status == 200 and r.read() == (repo / "build" / "site" / path).read_bytes()
        assert '"pyodide/0.27.7/pyodide.asm.wasm"' in config
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_demo_setup_needs_python_alone_and_is_idempotent(demo_copy):
    repo, env, cmd, out = demo_copy
    for step in ("[setup] 1/4 system packages: none needed", "[setup] 2/4 Python: installing "
                 "tools/requirements-demo.lock", "[setup] 3/4 assets", "[assets] ready:",
                 "[setup] 4/4 model"):
        assert step in out, out[-4000:]
    assert "requirements.lock" not in out  # the tests' lock is not the demo's
    venv_py = repo / ".venv" / "bin" / "python"
    probe = subprocess.run([str(venv_py), "-c", "import importlib.util as u; print([m for m in "
                            "('pytest', 'playwright', 'wgpu') if u.find_spec(m)])"],
                           capture_output=True, text=True)
    assert probe.stdout.strip() == "[]"  # what serving needs, nothing more

    again = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    out = again.stdout + again.stderr
    assert again.returncode == 0, out[-4000:]
    assert "requirements-demo.lock up to date" in out
    assert "sha256 ok, from" not in out and "pip download" not in out, out
    assert not (repo.parent / "calls.log").exists()
    serves_the_page(venv_py, repo, env)


@pytest.mark.skipif(PYTHON_3_9 is None, reason="no CPython 3.9 in ~/.pyenv/versions (CI has "
                    "one; macOS's own python3 is 3.9.6)")
def test_demo_sets_up_on_macos_own_python_3_9_alike(demo_copy, tmp_path):
    """Only CPython 3.9 and nothing newer on PATH: .venv is made with it and gets the older
    releases' lock; the page's lock and the model come out byte for byte as on 3.11+."""
    repo, env, _, out = set_up_demo(str(PYTHON_3_9), tmp_path)
    assert f"[setup] 2/4 Python: creating .venv with {PYTHON_3_9}" in out, out[-4000:]
    assert "[setup] 2/4 Python: installing tools/requirements-demo-legacy.lock" in out, out[-4000:]
    venv_py = repo / ".venv" / "bin" / "python"
    version = subprocess.run([str(venv_py), "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True).stdout.strip()
    assert version == "(3, 9)"
    for name in SITE_FILES:
        assert (repo / name).read_bytes() == (demo_copy[0] / name).read_bytes(), name
    manifest = json.loads((repo / SITE_FILES[1]).read_text())
    for name, entry in manifest["files"].items():  # the weights as well as their manifest
        path = repo / "build" / "site" / "models" / "all-MiniLM-L6-v2" / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], name
    serves_the_page(venv_py, repo, env)
