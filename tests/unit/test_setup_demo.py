"""`dev.py demo` needs Python alone, on Linux and macOS: its lock has a hash-pinned wheel for
every interpreter, platform and macOS release it names (read offline from the lock's file
comments), and its set-up succeeds in a fresh copy of the working tree with apt-get, npm, sudo
and Chromium out of reach, twice (the second time doing nothing), then serves the page."""

from __future__ import annotations

import ast
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


@pytest.mark.parametrize("name", ["demo", "dev"])
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
    assert {"numpy", "pydantic-core", "aiohttp"} <= binary
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


def test_the_demo_lock_is_the_demo_extra_alone_and_agrees_with_the_dev_lock():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    demo = read_lock(lock_deps.LOCKS["demo"].path)
    dev_lock = read_lock(lock_deps.LOCKS["dev"].path)
    for req in extras["demo"]:
        name, version = req.split("==")
        assert demo[canonicalize_name(name)]["version"] == version
    for req in extras["dev"]:  # tests, browsers' drivers, wgpu: not the demo's
        assert canonicalize_name(req.split("==")[0]) not in demo
    for pkg, entry in demo.items():  # installed on top of each other: the same versions
        assert dev_lock[pkg]["version"] == entry["version"], pkg
    # wgpu needs rubicon-objc on macOS only; pip on Linux skips it unless lock_deps adds it
    assert str(dev_lock["rubicon-objc"]["marker"]) == 'sys_platform == "darwin"'


def test_dev_py_reads_the_pythons_each_lock_has_and_runs_on_macos_own_python():
    for name, lock in lock_deps.LOCKS.items():
        assert dev.lock_pythons(dev.LOCKS[name][0]) == list(lock.pythons), name
    # macOS's python3 is 3.9: dev.py must at least start there, to find a newer one
    ast.parse((ROOT / "tools" / "dev.py").read_text(), feature_version=(3, 9))


def test_on_an_older_python_dev_py_makes_the_venv_with_a_newer_one_on_path(tmp_path, monkeypatch):
    here = "%d.%d" % sys.version_info[:2]
    assert dev.python_for(["3.0", here]) == sys.executable
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SystemExit, match=r"needs CPython 3\.98 to 3\.99; this is " + here):
        dev.python_for(["3.98", "3.99"])
    for version in ("3.98", "3.99"):
        (tmp_path / f"python{version}").write_text("#!/bin/sh\n")
        (tmp_path / f"python{version}").chmod(0o755)
    assert dev.python_for(["3.98", "3.99"]) == str(tmp_path / "python3.99")  # the newest


def working_tree_copy(dest: Path) -> None:
    """The files a fresh clone of this working tree has (tracked and new, none ignored)."""
    names = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], capture_output=True, check=True).stdout
    for name in filter(None, names.decode().split("\0")):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def test_demo_setup_needs_python_alone_and_is_idempotent(tmp_path):
    """apt-get, npm, sudo, dpkg-query and chromium are on PATH but fail and log if called; the
    Pyodide and model downloads come from this checkout's cache (.cache/downloads) when there,
    the demo's wheels from PyPI (pip's own cache makes a rerun quick)."""
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
    cmd = [sys.executable, str(repo / "tools" / "dev.py"), "setup", "--demo"]

    first = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=1200)
    out = first.stdout + first.stderr
    assert first.returncode == 0, out[-4000:]
    assert not calls.exists(), calls.read_text()
    for step in ("[setup] 1/4 system packages: none needed", "[setup] 2/4 Python: installing "
                 "tools/requirements-demo.lock", "[setup] 3/4 assets", "[assets] ready:",
                 "[setup] 4/4 model"):
        assert step in out, out[-4000:]
    assert "requirements.lock" not in out  # the tests' lock is not the demo's
    venv_py = repo / ".venv" / "bin" / "python"
    probe = subprocess.run([str(venv_py), "-c", "import importlib.util as u; print("
                            "[m for m in ('pytest', 'playwright', 'wgpu') if u.find_spec(m)])"],
                           capture_output=True, text=True)
    assert probe.stdout.strip() == "[]"  # what serving needs, nothing more

    again = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    out = again.stdout + again.stderr
    assert again.returncode == 0, out[-4000:]
    assert "requirements-demo.lock up to date" in out
    assert "sha256 ok, from" not in out and "pip download" not in out, out
    assert not calls.exists(), calls.read_text()

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
        with urllib.request.urlopen(url + "pyodide/0.27.7/pyodide.mjs", timeout=10) as r:
            assert r.status == 200
        assert '"pyodide/0.27.7/pyodide.asm.wasm"' in config
    finally:
        server.terminate()
        server.wait(timeout=10)
