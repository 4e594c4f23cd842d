"""Regenerate the hash-pinned locks of every Python package set-up installs.

    .venv/bin/python tools/lock_deps.py [--check] [--fresh] [demo|dev|reference ...]

tools/requirements-demo.lock       the `demo` extra (server, asset vendoring, model converter):
                                   what `dev.py demo` installs; CPython 3.11-3.14 on Linux
                                   x86_64/aarch64 and macOS arm64/x86_64
tools/requirements-demo-legacy.lock  the same extra for CPython 3.9 and 3.10 (macOS's own
                                   python3 is 3.9): its `python_version < '3.11'` pins, the same
                                   four platforms; `dev.py demo` takes it only where no newer
                                   python3.X is on PATH
tools/requirements.lock            `demo` + `dev` (tests, benchmarks, wgpu): what `dev.py test`
                                   installs; CPython 3.11-3.13, the same four platforms
tools/requirements-reference.lock  `demo` + `dev` + `reference` (torch, sentence-transformers,
                                   HF tokenizers: test-time references), for CPython 3.11 on
                                   Linux x86_64, where the CPU build of torch 2.13.0 lies on this
                                   project's machines

Each lock holds every layer below it, so one `pip install --require-hashes -r LOCK` is complete.
The extras are resolved with pip's resolver (`pip install --dry-run --report`, metadata only)
once per interpreter, platform and, on macOS, OS release (11, 12, 13, 14, 15, 26: a Mac takes
the wheel with the highest release tag not above its own, so numpy's `macosx_14_0` wheel and its
`macosx_11_0` wheel are both locked). Every wheel's sha256 is recorded, with its file name in a
comment under its package (tests/unit/test_setup_demo.py reads them offline).

pip evaluates environment markers for the machine it runs on, not the target: after each
resolution the dependency closure is walked again with the target's markers (`sys_platform ==
"darwin"`, `python_version`), a requirement the host skipped is added and the target resolved
again (wgpu needs rubicon-objc on macOS only), and a package needed on some targets only gets a
marker in the lock. The extras' own markers (the demo's pins for CPython < 3.11) are evaluated
for the target before pip sees them. A lock holds one version of each package: its oldest
Python is resolved first and its versions are constraints for the others (3.10 gets what 3.9
can have); fails if two targets still resolve a package to different versions.

Versions already in any lock that shares a Python with this one are passed as constraints, so
re-locking moves nothing that the extras do not ask to move and shared packages stay equal
across the locks installed on one interpreter; --fresh drops them (to take new releases of
dependencies). --check writes nothing and fails if a lock would change.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
MACOS_RELEASES = (11, 12, 13, 14, 15, 26)  # 16 (what old builds see on 26) has no wheels of its own


@dataclass(frozen=True)
class Platform:
    sys_platform: str  # the markers' view of it
    system: str
    machine: str
    levels: tuple[tuple[str, ...], ...]  # one resolution per entry: the --platform tags it passes


@dataclass(frozen=True)
class Lock:
    path: Path
    extras: tuple[str, ...]  # pyproject.toml's optional-dependencies, lowest layer first
    pythons: tuple[str, ...]
    platforms: tuple[str, ...]


PLATFORMS = {
    "linux-x86_64": Platform("linux", "Linux", "x86_64", ((
        "manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
        "manylinux2014_x86_64", "manylinux_2_24_x86_64"),)),
    "linux-aarch64": Platform("linux", "Linux", "aarch64", ((
        "manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux_2_17_aarch64",
        "manylinux2014_aarch64", "manylinux_2_24_aarch64"),)),
    # pip expands macosx_N_0_ARCH to every release up to N and to universal2 wheels
    "macos-arm64": Platform("darwin", "Darwin", "arm64",
                            tuple((f"macosx_{n}_0_arm64",) for n in MACOS_RELEASES)),
    "macos-x86_64": Platform("darwin", "Darwin", "x86_64",
                             tuple((f"macosx_{n}_0_x86_64",) for n in MACOS_RELEASES)),
}
ALL_PLATFORMS = ("linux-x86_64", "linux-aarch64", "macos-arm64", "macos-x86_64")
LOCKS = {
    "demo": Lock(ROOT / "tools" / "requirements-demo.lock", ("demo",),
                 ("3.11", "3.12", "3.13", "3.14"), ALL_PLATFORMS),
    "demo-legacy": Lock(ROOT / "tools" / "requirements-demo-legacy.lock", ("demo",),
                        ("3.9", "3.10"), ALL_PLATFORMS),
    "dev": Lock(ROOT / "tools" / "requirements.lock", ("demo", "dev"),
                ("3.11", "3.12", "3.13"), ALL_PLATFORMS),
    "reference": Lock(ROOT / "tools" / "requirements-reference.lock",
                      ("demo", "dev", "reference"), ("3.11",), ("linux-x86_64",)),
}
PIN_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.M)
NO_WHEELS = ("No matching distribution found", "Could not find a version that satisfies")


class NoWheels(Exception):
    """pip found no wheel for some package at this target (an older macOS release, usually)."""


def marker_env(python: str, plat: Platform) -> dict[str, str]:
    return {"implementation_name": "cpython", "implementation_version": f"{python}.0",
            "os_name": "posix", "platform_machine": plat.machine,
            "platform_python_implementation": "CPython", "platform_release": "",
            "platform_system": plat.system, "platform_version": "",
            "python_full_version": f"{python}.0", "python_version": python,
            "sys_platform": plat.sys_platform, "extra": ""}


def pip_report(requirements: list[str], constraints: Path, python: str,
               tags: tuple[str, ...]) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q",
               "--report", str(report), "--only-binary=:all:", "--python-version", python,
               "--target", str(Path(tmp) / "t"), "-c", str(constraints)]
        for tag in tags:
            cmd += ["--platform", tag]
        proc = subprocess.run(cmd + requirements, capture_output=True, text=True)
        if proc.returncode != 0:
            if any(s in proc.stderr for s in NO_WHEELS):
                raise NoWheels(proc.stderr.strip().splitlines()[-1])
            raise SystemExit(f"resolve failed for Python {python} {tags[0]}:\n{proc.stderr}")
        return json.loads(report.read_text())["install"]


def closure(requirements: list[str], items: dict[str, dict],
            env: dict[str, str]) -> tuple[set[str], list[Requirement]]:
    """The packages `requirements` need on the target `env`, and those the resolution lacks."""
    todo = [(Requirement(r), frozenset({""})) for r in requirements]
    needed: set[str] = set()
    missing: list[Requirement] = []
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req, parent_extras = todo.pop()
        if req.marker is not None and not any(
                req.marker.evaluate({**env, "extra": x}) for x in parent_extras):
            continue
        name = canonicalize_name(req.name)
        if name not in items:
            missing.append(req)
            continue
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        needed.add(name)
        for dep in items[name]["metadata"].get("requires_dist") or []:
            todo.append((Requirement(dep), frozenset({""} | req.extras)))
    return needed, missing


def resolve(requirements: list[str], constraints: Path, python: str, plat: Platform,
            tags: tuple[str, ...]) -> dict[str, tuple[str, str, str]]:
    """name -> (version, sha256, file name) of every wheel the target needs."""
    env = marker_env(python, plat)
    requirements = [r for r in requirements
                    if Requirement(r).marker is None or Requirement(r).marker.evaluate(env)]
    wanted = [r.split(";")[0].strip() for r in requirements]  # pip would use the host's markers
    added: list[str] = []
    for _ in range(5):
        items = {canonicalize_name(i["metadata"]["name"]): i
                 for i in pip_report(wanted + added, constraints, python, tags)}
        needed, missing = closure(requirements, items, env)
        # pip's dry run took a wheel whose Requires-Python excludes --python-version (from a
        # file index: aiohappyeyeballs 2.7.1 for 3.9; the install then refused it): another one
        too_new = [f"{name}!={items[name]['metadata']['version']}" for name in sorted(needed)
                   if not SpecifierSet(items[name]["metadata"].get("requires_python") or "")
                   .contains(env["python_full_version"])]
        if not missing and not too_new:
            return {name: (items[name]["metadata"]["version"],
                           items[name]["download_info"]["archive_info"]["hashes"]["sha256"],
                           items[name]["download_info"]["url"].rsplit("/", 1)[1])
                    for name in needed}
        added += [f"{r.name}{r.specifier}" for r in missing]  # the host's markers skipped them
        added += too_new
    raise SystemExit(f"Python {python} {tags[0]}: the closure never settled ({added})")


def existing_pins(pythons: tuple[str, ...]) -> dict[str, str]:
    """The versions in the locks for any of these Pythons (installed on one interpreter, they
    must agree; the 3.9 lock's older releases constrain no 3.11 lock)."""
    pins: dict[str, str] = {}
    for lock in LOCKS.values():
        if lock.path.exists() and set(lock.pythons) & set(pythons):
            for name, version in PIN_RE.findall(lock.path.read_text()):
                pins.setdefault(canonicalize_name(name), version)
    return pins


def lock_text(name: str, fresh: bool) -> str:
    lock = LOCKS[name]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    requirements = [r for extra in lock.extras for r in extras[extra]]
    top = {canonicalize_name(Requirement(r).name) for r in requirements}
    pins = {} if fresh else {n: v for n, v in existing_pins(lock.pythons).items() if n not in top}

    jobs = [(python, label, tags) for python in lock.pythons for label in lock.platforms
            for tags in PLATFORMS[label].levels]
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "constraints.txt"

        def job(args: tuple[str, str, tuple[str, ...]]):
            python, label, tags = args
            try:
                out: dict | NoWheels = resolve(requirements, constraints, python,
                                               PLATFORMS[label], tags)
            except NoWheels as e:
                out = e
            print(f"  {name}: CPython {python} {tags[0]}: "
                  f"{'no wheels' if isinstance(out, NoWheels) else f'{len(out)} packages'}",
                  flush=True)
            return args, out

        print(f"{name}: {len(jobs)} resolutions ({', '.join(lock.pythons)} x "
              f"{', '.join(lock.platforms)}, each macOS release)", flush=True)
        with ThreadPoolExecutor(6) as pool:  # pip waits on the index as much as on the CPU
            constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
            results = list(pool.map(job, [j for j in jobs if j[0] == lock.pythons[0]]))
            for _, out in results:  # the other Pythons take the oldest one's versions
                if not isinstance(out, NoWheels):
                    pins.update({n: v for n, (v, _, _) in out.items() if n not in top})
            constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
            results += pool.map(job, [j for j in jobs if j[0] != lock.pythons[0]])

    versions: dict[str, str] = {}
    files: dict[str, dict[str, str]] = {}  # name -> sha256 -> file name
    where: dict[str, set[tuple[str, str]]] = {}  # name -> {(sys_platform, python)}
    floors: list[str] = []
    for python in lock.pythons:
        for label in lock.platforms:
            outcomes = [r for (p, lab, _), r in results if p == python and lab == label]
            ok = [not isinstance(r, NoWheels) for r in outcomes]
            if not any(ok):
                raise SystemExit(f"{name}: no wheels for Python {python} on {label}: {outcomes[-1]}")
            first = ok.index(True)
            if not all(ok[first:]):
                raise SystemExit(f"{name}: Python {python} on {label}: wheels for an older "
                                 f"release but not a newer one: {outcomes}")
            if first:
                floors.append(f"CPython {python} on {label} from macOS {MACOS_RELEASES[first]}")
            for resolved in outcomes[first:]:
                for pkg, (version, sha, file) in resolved.items():
                    if versions.setdefault(pkg, version) != version:
                        raise SystemExit(f"{pkg}: {versions[pkg]} vs {version} on {python} {label}")
                    files.setdefault(pkg, {})[sha] = file
                    where.setdefault(pkg, set()).add((PLATFORMS[label].sys_platform, python))

    everywhere = {(PLATFORMS[label].sys_platform, p) for label in lock.platforms
                  for p in lock.pythons}
    lines = [
        f"# Generated by tools/lock_deps.py from the {' + '.join(f'`{e}`' for e in lock.extras)} "
        "extras of pyproject.toml: do not edit.",
        f"# Wheels for CPython {', '.join(lock.pythons)} on {', '.join(lock.platforms)}.",
        *(f"# Only {floor} (older releases have no wheel of some package)." for floor in floors),
        "# tools/dev.py installs it with `pip install --require-hashes`; under each package, the",
        "# file each hash belongs to.",
    ]
    for pkg in sorted(versions):
        marker = "" if where[pkg] == everywhere else f" ; {marker_for(where[pkg], lock.pythons)}"
        lines.append(f"{pkg}=={versions[pkg]}{marker} \\")
        shas = sorted(files[pkg])
        for i, sha in enumerate(shas):
            lines.append(f"    --hash=sha256:{sha}" + (" \\" if i < len(shas) - 1 else ""))
        lines += [f"    #   {file}  sha256:{sha}"
                  for sha, file in sorted(files[pkg].items(), key=lambda kv: kv[1])]
    return "\n".join(lines) + "\n"


def marker_for(targets: set[tuple[str, str]], pythons: tuple[str, ...]) -> str:
    """An environment marker true on exactly these (sys_platform, python) targets."""
    parts = []
    for sys_platform in sorted({sp for sp, _ in targets}):
        pys = sorted(p for sp, p in targets if sp == sys_platform)
        clause = f'sys_platform == "{sys_platform}"'
        if len(pys) < len(pythons):
            clause = f"({clause} and ({' or '.join(f'python_version == {p!r}' for p in pys)}))"
        parts.append(clause)
    Marker(" or ".join(parts))  # raises if malformed
    return " or ".join(parts).replace("'", '"')


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("locks", nargs="*", metavar="|".join(LOCKS), help="default: all")
    ap.add_argument("--check", action="store_true", help="write nothing; fail if a lock would change")
    ap.add_argument("--fresh", action="store_true", help="ignore the versions already locked")
    args = ap.parse_args(argv)
    if unknown := set(args.locks) - set(LOCKS):
        ap.error(f"unknown lock {sorted(unknown)}; expected {', '.join(LOCKS)}")
    stale = []
    for name in args.locks or list(LOCKS):
        text = lock_text(name, args.fresh)
        path = LOCKS[name].path
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.relative_to(ROOT).as_posix())
            continue
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}: {len(PIN_RE.findall(text))} packages")
    if stale:
        print(f"out of date: {', '.join(stale)} (run tools/lock_deps.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
