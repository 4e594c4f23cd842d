"""Python from a memory snapshot (web/worker.js startPython): a first load makes one and goes
on from it restored, the next load restores it, ?snapshot=off starts without; all three give
the same answers. A snapshot is never restored for other files, and a damaged one is refused
and replaced, the boot going on normally. The same for numpy and pybridge as installed, kept
beside it with their bytecode (web/snapshot.js packagesCache): a first load unpacks the wheels
and keeps them with what its imports compiled, the next writes them back instead of unpacking."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import zipfile

import numpy as np
import pytest

from tests.e2e.conftest import new_page
from tools.harness import BOOT_TIMEOUT_MS, ROOT, new_context, start_server, wait_final

CACHE = "pybridge-python-snapshot"

# The same work on every boot path: a kernel on the GPU, numpy's compiled parts (linalg, fft:
# their libraries load after the restore), the tokenizer, and the random module's state.
PROBE = """
import base64, hashlib, random, numpy as np
from pybridge.backend import default_backend
from pybridge.demo import axpy
from pybridge.tokenizer import WordPiece
rng = np.random.default_rng(7)
x, y = rng.standard_normal((2, 4099)).astype(np.float32)
out = await axpy(await default_backend(), -1.75, x, y)
m = rng.standard_normal((6, 6))
{"axpy": base64.b64encode(out.tobytes()).decode(),
 "numpy": hashlib.sha256(np.linalg.inv(m).tobytes() + np.fft.rfft(m).tobytes()).hexdigest(),
 "random": random.random()}
"""

# The stdlib modules loaded now that the snapshot did not hold (imported from the zip after
# the restore: the boot's own imports should all be in the snapshot).
STDLIB_AFTER = """
import sys
def stdlib(name):
    f = getattr(sys.modules[name], "__file__", None) or ""
    return f.startswith("/lib/python3") and "site-packages" not in f
sorted(m for m in list(sys.modules) if stdlib(m) and m not in set(held))
"""


def load(page, url: str, model: bool = False) -> dict:
    page.goto(url)
    assert wait_final(page) == "ready", page.evaluate("pybridge.error")
    if model:
        page.wait_for_function("pybridge.lastSearch || pybridge.model === 'error'",
                               timeout=BOOT_TIMEOUT_MS)
        assert page.evaluate("pybridge.model") == "ready", page.evaluate("pybridge.error")
    return page.evaluate("pybridge.boot")


def stored(page, packages: bool = True) -> dict:
    """The Cache Storage entries (url -> size), once a snapshot made on this load is stored
    and, with `packages`, the packages this load installed."""
    page.wait_for_function("pybridge.boot.stored !== undefined", timeout=60_000)
    assert isinstance(page.evaluate("pybridge.boot.stored"), int), page.evaluate("pybridge.boot")
    if packages:
        page.wait_for_function("pybridge.boot.packagesStored !== undefined", timeout=60_000)
        assert isinstance(page.evaluate("pybridge.boot.packagesStored"), int), page.evaluate("pybridge.boot")
    return page.evaluate(f"""async () => {{
        const cache = await caches.open({CACHE!r});
        const out = {{}};
        for (const req of await cache.keys()) out[req.url] = (await (await cache.match(req)).arrayBuffer()).byteLength;
        return out;
    }}""")


# numpy's bytecode as installed: for each pyc, whether it is a checked hash-based one (PEP 552
# flags 0b11) and whether its hash is that of the source beside it (Python's own
# importlib.util.source_hash, not the bundle's code)
PYCS = """
import os, numpy, importlib.util as u
root = os.path.dirname(numpy.__file__)
def check(path):
    with open(path, "rb") as f:
        head = f.read(16)
    with open(u.source_from_cache(path), "rb") as f:
        source = f.read()
    return [os.path.relpath(path, root), head[:4] == u.MAGIC_NUMBER,
            head[4:8] == bytes([3, 0, 0, 0]), head[8:16] == u.source_hash(source)]
[check(os.path.join(folder, name)) for folder, _, names in sorted(os.walk(root))
 if folder.endswith("__pycache__") for name in sorted(names)]
"""


# numpy as installed in the page: the sha256 of each file of its package and .dist-info (not
# the bytecode), what importlib.metadata and Pyodide say of it, and whether Pyodide's
# unpack_buffer is its own again after the boot
INSTALLED = """
import hashlib, os, numpy, importlib.metadata as md, pyodide_js
import pyodide._package_loader as loader
site = os.path.dirname(os.path.dirname(numpy.__file__))
files = {}
for top in ("numpy", "numpy-2.0.2.dist-info"):
    for folder, _, names in os.walk(os.path.join(site, top)):
        if not folder.endswith("__pycache__"):
            for name in names:
                with open(os.path.join(folder, name), "rb") as f:
                    files[os.path.relpath(os.path.join(folder, name), site)] = hashlib.sha256(f.read()).hexdigest()
{"files": files, "version": md.version("numpy"), "installer": md.distribution("numpy").read_text("INSTALLER"),
 "loaded": pyodide_js.loadedPackages.numpy, "unpack": loader.unpack_buffer.__qualname__}
"""


# Whether Python loads a module's code from the kept pyc (no compile), and compiles its source
# again once the source changes (a checked pyc: micropip or an edit may change a source)
PYC_USED = """
import importlib.machinery as m, pybridge._env
path = pybridge._env.__file__
with open(path, "rb") as f:
    source = f.read()
compiled = []
original = m.SourceFileLoader.source_to_code
def counting(self, data, path, **kwargs):
    compiled.append(path)
    return original(self, data, path, **kwargs)
m.SourceFileLoader.source_to_code = counting
try:
    m.SourceFileLoader("probe", path).get_code("probe")
    from_pyc = compiled == []
    with open(path, "a") as f:
        f.write("\\nPROBE = 7\\n")
    space = {"__name__": "probe"}
    exec(m.SourceFileLoader("probe", path).get_code("probe"), space)
    again = compiled == [path] and space.get("PROBE") == 7
finally:
    del m.SourceFileLoader.source_to_code  # SourceLoader's again
    with open(path, "wb") as f:
        f.write(source)
[from_pyc, again]
"""

# The boot's loadPackage left the stdlib zip's directory as the snapshot held it: every zip
# importer shares the one dict it was read into (each importlib.invalidate_caches() reads it
# again, once per importer: 150-200 ms of a cached boot here); its invalidate_caches is the
# zipimporter's own again, and a later importlib.invalidate_caches() does read them again.
ZIPS = """
import importlib, sys, zipimport
zips = [f for f in sys.path_importer_cache.values() if isinstance(f, zipimport.zipimporter)]
read_once = len({id(f._files) for f in zips}) == 1
own = zipimport.zipimporter.invalidate_caches.__qualname__ == "zipimporter.invalidate_caches"
importlib.invalidate_caches()
[len(zips), read_once, own, len({id(f._files) for f in zips}) == len(zips)]
"""


def check_installed(page) -> None:
    """numpy's files in the page are exactly its wheel's (read here by CPython's zipfile), plus
    the two Pyodide adds; Pyodide counts it loaded and its unpack_buffer is its own again."""
    got = page.evaluate("(code) => pybridge.run(code)", INSTALLED)
    wheel = next((ROOT / "build" / "site").rglob("numpy-2.0.2-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        want = {n: hashlib.sha256(z.read(n)).hexdigest() for n in z.namelist() if not n.endswith("/")}
    info = "numpy-2.0.2.dist-info/"
    assert set(got["files"]) == set(want) | {info + "INSTALLER", info + "PYODIDE_SOURCE"}
    assert {n: got["files"][n] for n in want} == want
    assert got["version"] == "2.0.2" and got["installer"] == "pyodide.loadPackage"
    assert got["loaded"] == "default channel" and got["unpack"] == "unpack_buffer"


def probe(page) -> dict:
    return page.evaluate("(code) => pybridge.run(code)", PROBE)


@pytest.fixture
def page(browser, server, guard):
    page = new_page(browser, server, guard)  # a new context: no snapshot stored
    yield page
    page.context.close()


def test_first_load_makes_a_snapshot_the_next_restores_it_and_both_match_a_normal_start(page, server):
    made = load(page, server.url + "?model=none")
    assert made["how"] == "made" and made["why"] == "no snapshot stored yet for these files"
    assert made["packages"] == {"how": "none", "why": "none stored yet for these files"}
    entries = stored(page)
    snapshot = next(url for url in entries if not url.endswith(".packages"))
    assert entries == {snapshot: made["bytes"], snapshot + ".packages": page.evaluate("pybridge.boot.packagesStored")}
    assert made["bytes"] > 10_000_000 and entries[snapshot + ".packages"] > 10_000_000
    text = page.locator("#stages").inner_text()
    assert "snapshot made for the next load" in text and "unpacked and compiled: none stored yet" in text
    check_installed(page)
    first = probe(page)

    restored = load(page, server.url, model=True)
    assert restored["how"] == "snapshot" and restored["bytes"] == made["bytes"]
    assert restored["packages"]["how"] == "installed", restored["packages"]
    assert restored["packages"]["bytes"] == entries[snapshot + ".packages"]
    assert "packagesStored" not in restored  # none kept again
    text = page.locator("#stages").inner_text()
    assert "restored from a snapshot" in text and "installed as on the last load" in text
    pycs = page.evaluate("(code) => pybridge.run(code)", PYCS)
    assert "__pycache__/__init__.cpython-312.pyc" in [name for name, *_ in pycs], pycs
    assert len(pycs) >= 50 and all(all(ok) for _, *ok in pycs), pycs
    # every stdlib module the boot imported came with the snapshot (worker.js SNAPSHOT_IMPORTS)
    extra = page.evaluate("(code) => pybridge.run(code)", f"held = {restored['modules']!r}\n"
                          + STDLIB_AFTER)
    assert extra == [], f"imported at boot, not in the snapshot: {extra}"
    check_installed(page)  # written from the bundle, not unpacked: the same files
    zips = page.evaluate("(code) => pybridge.run(code)", ZIPS)
    assert zips[0] >= 10 and zips[1:] == [True, True, True], zips
    assert page.evaluate("(code) => pybridge.run(code)", PYC_USED) == [True, True]
    second = probe(page)
    search_restored = page.evaluate("pybridge.lastSearch.ranked")

    normal = load(page, server.url + "?snapshot=off", model=True)
    assert normal["how"] == "normal" and "?snapshot=off" in normal["why"]
    assert normal["packages"]["how"] == "none" and "?snapshot=off" in normal["packages"]["why"]
    assert page.evaluate("(code) => pybridge.run(code)", PYCS) == []  # nothing installed, none written
    assert page.evaluate("(code) => pybridge.run(code)", ZIPS)[1:] == [True, True, True]
    assert "started without a snapshot" in page.locator("#stages").inner_text()
    third = probe(page)
    search_normal = page.evaluate("pybridge.lastSearch.ranked")

    # the same bits on every path
    assert first["axpy"] == second["axpy"] == third["axpy"]
    assert first["numpy"] == second["numpy"] == third["numpy"]
    assert search_restored == search_normal
    # the restored Pythons reseeded: not the snapshot's random state twice
    assert len({first["random"], second["random"], third["random"]}) == 3
    # and right, not only equal: the kernel's answer against numpy here
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((2, 4099)).astype(np.float32)
    np.testing.assert_allclose(np.frombuffer(base64.b64decode(first["axpy"]), np.float32),
                               -1.75 * x + y, rtol=1e-6, atol=1e-6)
    assert page.errors == []


def test_a_snapshot_is_never_restored_for_other_files(page, server):
    made = load(page, server.url + "?model=none")
    assert made["how"] == "made"
    before = stored(page)
    # the same page with one listed file changed (here the model's manifest, not fetched by
    # this boot; a wheel or Pyodide's own files are listed the same way)
    config = json.loads(page.evaluate("fetch('/config.json').then(r => r.text())"))
    wheel = [p for p in config["integrity"] if p.endswith(".whl") and "pybridge-" in p]
    assert wheel, "the pybridge wheel is listed in config.json's integrity (part of the key)"
    manifest = next(p for p in config["integrity"] if p.endswith("manifest.json"))
    config["integrity"][manifest] = "sha256-" + "A" * 43 + "="

    def changed(route):
        route.fulfill(status=200, content_type="application/json", body=json.dumps(config))

    page.route("**/config.json", changed)
    other = load(page, server.url + "?model=none")
    assert other["how"] == "made" and other["why"] == "no snapshot stored yet for these files"
    assert other["packages"]["how"] == "none"  # nor the packages
    after = stored(page)
    assert len(after) == 2 and not set(after) & set(before)  # the old key's entries are gone
    page.unroute("**/config.json")
    again = load(page, server.url + "?model=none")  # the original files: made once more
    assert again["how"] == "made" and again["packages"]["how"] == "none"


def test_the_store_keeps_one_key_per_site_root_and_drops_only_what_was_read(page, server):
    """The snapshot store (web/snapshot.js cacheStorageStore) against its contract, on the
    page's main thread: a part read back with its sha256; another key's put drops the older
    key's parts; a put replaces the part; another site root on the origin keeps its own. And,
    found in review (helper-43), failing before: a tab that read a part and then refuses it
    drops what it read, not the part another tab stored since (drop used to remove whatever
    was there, so a tab that lost that race threw away the other tab's good snapshot)."""
    page.goto(server.url + "?gpu=none&model=none&snapshot=off")
    assert wait_final(page) == "ready", page.evaluate("pybridge.error")
    got = page.evaluate("""async () => {
        const { cacheStorageStore } = await import("/snapshot.js");
        const a = cacheStorageStore(location.origin + "/a/", "store-test");
        const b = cacheStorageStore(location.origin + "/b/", "store-test");
        const read = async (store, key, part) => {
            const hit = await store.get(key, part);
            return hit && [hit.sha256, Array.from(await hit.bytes)];
        };
        const r = {};
        await a.put("k1", "snapshot", new Uint8Array([1, 2, 3]), "aa");
        await a.put("k1", "packages", new Uint8Array([4, 5]), "bb");
        await b.put("k1", "snapshot", new Uint8Array([6]), "cc");
        r.first = [await read(a, "k1", "snapshot"), await read(a, "k1", "packages"),
                   await read(b, "k1", "snapshot"), await read(a, "k9", "snapshot")];
        await a.put("k2", "snapshot", new Uint8Array([7, 8]), "dd");
        r.otherKey = [await read(a, "k1", "snapshot"), await read(a, "k1", "packages"),
                      await read(a, "k2", "snapshot"), await read(b, "k1", "snapshot")];
        const before = await a.get("k2", "snapshot");  // this tab reads "dd"...
        await a.put("k2", "snapshot", new Uint8Array([9]), "ee");  // ...another stores "ee"
        await a.drop("k2", "snapshot", before.sha256);  // this one refuses what it read
        r.keptForTheOther = await read(a, "k2", "snapshot");
        await a.drop("k2", "snapshot", "ee");
        r.dropped = await read(a, "k2", "snapshot");
        return r;
    }""")
    assert got == {
        "first": [["aa", [1, 2, 3]], ["bb", [4, 5]], ["cc", [6]], None],
        "otherKey": [None, None, ["dd", [7, 8]], ["cc", [6]]],
        "keptForTheOther": ["ee", [9]],
        "dropped": None,
    }, got


def test_two_tabs_booting_at_once_share_one_store(browser, server, guard):
    """Two tabs of one browser booting at once, with nothing stored: each makes a snapshot and
    stores it; one of them stays (one entry a part), and the next two tabs, again at once,
    both restore it."""
    context = new_context(browser)
    guard.attach(context)
    try:
        pages = [context.new_page() for _ in range(2)]
        for p in pages:
            p.goto(server.url + "?model=none", wait_until="commit")
        for p in pages:
            assert wait_final(p) == "ready", p.evaluate("pybridge.error")
            assert p.evaluate("pybridge.boot.how") == "made", p.evaluate("pybridge.boot")
        for p in pages:  # each tab's own store done
            stored(p)
        entries = stored(pages[0])
        assert len(entries) == 2 and sum(url.endswith(".packages") for url in entries) == 1, entries
        for p in pages:
            p.goto(server.url + "?model=none", wait_until="commit")
        for p in pages:
            assert wait_final(p) == "ready", p.evaluate("pybridge.error")
            boot = p.evaluate("pybridge.boot")
            assert boot["how"] == "snapshot" and boot["packages"]["how"] == "installed", boot
    finally:
        context.close()


@pytest.mark.parametrize("damage, why", [
    ("garbage", "sha256"), ("one bit", "sha256"),
    # damaged where its stored sha256 still matches: Pyodide's own check refuses it
    ("magic number, sha256 matching", "invalid magic number")])
def test_a_damaged_snapshot_is_refused_and_replaced(page, server, damage, why):
    load(page, server.url + "?model=none")
    stored(page)
    if damage == "garbage":
        rewrite(page, "snapshot", "return new Uint8Array(4096).fill(7);", resign=False)
    elif damage == "one bit":  # in the middle of the heap
        rewrite(page, "snapshot", "bytes[bytes.length >> 1] ^= 1; return bytes;", resign=False)
    else:
        rewrite(page, "snapshot", "bytes[0] ^= 1; return bytes;")
    refused = load(page, server.url + "?model=none")
    assert refused["how"] == "made" and "the stored snapshot was refused" in refused["why"]
    assert why in refused["why"], refused["why"]
    assert "refused" in page.locator("#stages").inner_text()  # the boot panel says so
    assert refused["packages"]["how"] == "installed"  # the packages beside it were not damaged
    stored(page, packages=False)
    assert load(page, server.url + "?model=none")["how"] == "snapshot"
    assert page.errors == []


@pytest.mark.parametrize("damage, why", [
    ("one bit", "do not match the sha256 stored with it"),
    # damaged where its stored sha256 still matches: a file outside site-packages, a file listed
    # twice, a library that is not in it; and a bundle made for another list of packages
    ("a path elsewhere, sha256 matching", "not a packages bundle: its entry"),
    ("a path twice, sha256 matching", "not a packages bundle: its entry"),
    ("a file and a folder, sha256 matching", "is a file and a folder"),
    ("a library not in it, sha256 matching", "not a packages bundle: numpy-2.0.2"),
    ("other packages, sha256 matching", "they are numpy; this boot loads numpy, pybridge")])
def test_damaged_packages_are_refused_and_replaced(page, server, damage, why):
    load(page, server.url + "?model=none")
    stored(page)
    if damage == "one bit":
        rewrite(page, "packages", "bytes[bytes.length >> 1] ^= 1; return bytes;", resign=False)
    else:
        rewrite(page, "packages", """
            const json = head.json();
            if (arg.startsWith("a path elsewhere")) json.files[0][0] = "/lib/python3.12/site-packages/../../../home/x.py";
            else if (arg.startsWith("a path twice")) json.files[1][0] = json.files[0][0];
            else if (arg.startsWith("a file and")) json.files[1][0] = json.files[0][0] + "/x.py";
            else if (arg.startsWith("a library")) json.wheels[Object.keys(json.wheels).find((w) => w.startsWith("numpy"))][0] = "/lib/python3.12/site-packages/numpy/x.so";
            else json.names = ["numpy"];
            return head.then(json);""", damage)
    refused = load(page, server.url + "?model=none")
    assert refused["how"] == "snapshot" and refused["packages"]["how"] == "none"
    assert "the stored packages were refused" in refused["packages"]["why"], refused["packages"]
    assert why in refused["packages"]["why"], refused["packages"]
    assert "unpacked and compiled: the stored packages were refused" in page.locator("#stages").inner_text()
    check_installed(page)  # unpacked from the wheel instead
    # nothing of it was written (every entry is checked first): the pycs there are the
    # timestamp-based ones this load's imports wrote, for the packages it keeps instead
    pycs = page.evaluate("(code) => pybridge.run(code)", PYCS)
    assert pycs and not any(hashed for _, _, hashed, _ in pycs), pycs
    page.wait_for_function("pybridge.boot.packagesStored !== undefined", timeout=60_000)
    assert isinstance(page.evaluate("pybridge.boot.packagesStored"), int)
    assert load(page, server.url + "?model=none")["packages"]["how"] == "installed"
    assert page.errors == []


def test_kept_packages_that_break_the_boot_are_dropped_and_the_next_load_unpacks(page, server):
    """A bundle that passes every check (its sha256 matches) but whose numpy does not import:
    that boot fails naming it, and drops the bundle, so the next load unpacks the wheels and
    boots (not the same failure on every load from then on)."""
    load(page, server.url + "?model=none")
    stored(page)
    rewrite(page, "packages", """
        let offset = head.offset;
        for (const [path, size] of head.json().files) {
            if (path.endsWith("/site-packages/numpy/__init__.py")) {
                bytes.fill(0x23, offset, offset + size);  // '#': comments
                bytes.set(new TextEncoder().encode(arg), offset);
                break;
            }
            offset += size;
        }
        return bytes;""", "raise ImportError('damaged in storage')\n")
    page.goto(server.url + "?model=none")
    assert wait_final(page) == "error"
    assert "damaged in storage" in page.evaluate("pybridge.error"), page.evaluate("pybridge.error")
    page.wait_for_function(f"""caches.open({CACHE!r}).then((c) => c.keys()).then((keys) =>
        !keys.some((r) => r.url.endsWith(".packages")))""", timeout=30_000)
    again = load(page, server.url + "?model=none")
    assert again["how"] == "snapshot" and again["packages"] == {
        "how": "none", "why": "none stored yet for these files"}
    check_installed(page)


def rewrite(page, part: str, change: str, arg=None, resign: bool = True) -> None:
    """Replace the stored `part` ("snapshot" or "packages") with what `change` makes of it: the
    body of a JS function of `bytes` (a Uint8Array), `arg` and `head` (for "packages": its head
    as {json, then(json) -> new bytes}) returning the new bytes. With `resign` the new bytes'
    sha256 is stored beside them: damage the stored hash still matches."""
    page.evaluate(f"""async ([packages, arg, resign]) => {{
        const cache = await caches.open({CACHE!r});
        const req = (await cache.keys()).find((r) => r.url.endsWith(".packages") === packages);
        const hit = await cache.match(req);
        const read = new Uint8Array(await hit.arrayBuffer());
        const n = new DataView(read.buffer).getUint32(0, true);
        const head = {{
            json: () => JSON.parse(new TextDecoder().decode(read.subarray(4, 4 + n))),
            then: (json) => {{  // the bundle with this head instead
                const moved = new TextEncoder().encode(JSON.stringify(json));
                const out = new Uint8Array(read.length - n + moved.length);
                new DataView(out.buffer).setUint32(0, moved.length, true);
                out.set(moved, 4);
                out.set(read.subarray(4 + n), 4 + moved.length);
                return out;
            }},
            offset: 4 + n,
        }};
        const bytes = ((bytes, arg, head) => {{ {change} }})(read, arg, head);
        const headers = new Headers(hit.headers);
        if (resign) {{
            const sha = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
            headers.set("X-Snapshot-Sha256", Array.from(sha, (b) => b.toString(16).padStart(2, "0")).join(""));
        }}
        await cache.put(req, new Response(bytes, {{headers}}));
    }}""", [part == "packages", arg, resign])


def lan_address() -> str | None:
    """This machine's address on its network (no packet is sent), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("198.51.100.1", 9))  # TEST-NET-2: only picks the outgoing interface
        except OSError:
            return None
        address = s.getsockname()[0]
    return None if address.startswith("127.") else address


def test_over_plain_http_from_a_lan_address_the_page_boots_without_webcrypto(browser):
    """Found in review: the worker's check of config.json's files used WebCrypto, which a page
    served over plain http from a LAN address (`demo --host 0.0.0.0`) does not have: the boot
    failed with "Failed to fetch". There the files are checked in JS, Python starts without a
    snapshot (no Cache Storage either) and says why, and a flipped file is still named."""
    address = lan_address()
    if address is None:
        pytest.fail("this machine has no network address besides loopback")
    server = start_server(host="0.0.0.0")
    context = new_context(browser)
    try:
        page = context.new_page()
        url = f"http://{address}:{server.url.rsplit(':', 1)[1]}"
        page.goto(url + "?gpu=none&model=none")
        assert wait_final(page) == "ready", page.evaluate("pybridge.error")
        assert page.evaluate("isSecureContext") is False
        boot = page.evaluate("pybridge.boot")
        assert boot["how"] == "normal" and "not a secure context" in boot["why"], boot
        assert page.evaluate("pybridge.result.ok") is True
        page.route(re.compile(r"python_stdlib\.zip$"), lambda route: route.fulfill(
            status=200, body=b"PK" + bytes(100), content_type="application/zip"))
        page.goto(url + "?gpu=none&model=none")
        assert wait_final(page) == "error"
        assert "python_stdlib.zip" in page.locator("#error").inner_text()
        assert "sha256" in page.locator("#error").inner_text()
    finally:
        context.close()
        server.stop()
