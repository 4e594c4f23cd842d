// Python from a memory snapshot: how the page's worker (web/worker.js) and the page's stack
// under Node on a real GPU (tools/gpu/runner.mjs) start Python.
//
// A normal start (wasm instantiated, the interpreter initialised, the stdlib imported from its
// zip) takes seconds; restoring the wasm memory of one that already did it takes a fraction.
// Pyodide 0.27.7's API for it is experimental (`loadPyodide({_makeSnapshot: true})`, then
// `makeMemorySnapshot()`; `loadPyodide({_loadSnapshot})`), and it restores no dynamically
// loaded library: a snapshot with numpy in it crashes on first use ("table index is out of
// bounds"), and `makeMemorySnapshot` refuses after `loadPackage` (the JS references it leaves).
// So the snapshot is taken before any compiled extension loads: it holds Python and the stdlib
// modules that numpy, pybridge and Pyodide's package loader import at boot (the boot test checks
// that list), nothing else. The wheels are unpacked and imported after the restore.
//
// A snapshot is stored under a key: the sha256 of the exact files it was made from (the
// caller's list: the page passes every file config.json lists) and SNAPSHOT_IMPORTS, so a
// changed wheel, Pyodide or list never restores an old one; Pyodide itself refuses a snapshot
// of another build (its BUILD_ID). The snapshot's own sha256 is stored with it: one damaged in
// storage is refused and made again. A missing, stale or refused snapshot never stops a boot:
// Python then starts normally and `start.why` says why.
//
// The boot's packages, installed, are kept beside the snapshot under the same key (the
// "packages" part). Every load unpacked numpy's wheel in Python (zipfile into MEMFS: 0.3-0.5 s
// here) and, as the wheel ships sources only and Pyodide sets sys.dont_write_bytecode,
// compiled the ~100 modules numpy and pybridge import (0.6 s of a 0.9 s import). A load with
// none stored unpacks as usual and lets its imports write their bytecode (to MEMFS);
// `packages.save` then keeps the installed files and that bytecode, as checked hash-based pycs
// (PEP 552: Python compares the source's hash, not its time, which unpacking changes). The
// next load writes them back before loadPackage (`packages.load`), which then loads
// those wheels' dynamic libraries without unpacking them again.

import { within } from "./call.js";
import { toHex } from "./sha256.js";

export const SNAPSHOT_IMPORTS = `import __future__, abc, ast, asyncio, base64, bisect, bz2, calendar, codecs, collections
import collections.abc, concurrent.futures, contextlib, contextvars, copy, copyreg, csv, ctypes
import dataclasses, datetime, dis, email, email.charset, email.encoders, email.errors
import email.header, email.iterators, email.message, email.utils, encodings, encodings.cp437
import encodings.utf_32_le, enum, fnmatch, json
import functools, hashlib, heapq, hmac, importlib, importlib.abc, importlib.machinery
import importlib.metadata, importlib.resources, importlib.util, inspect, io, ipaddress, keyword
import linecache, locale, logging, numbers, opcode, operator, os, pathlib, pickle, platform
import quopri, random, re, reprlib, secrets, selectors, shutil, signal, socket, stat, string
import struct, subprocess, tarfile, tempfile, textwrap, threading, token, tokenize, traceback
import types, typing, urllib, urllib.parse, warnings, weakref, zipfile, zipimport
import pyodide._package_loader, pyodide.code, pyodide.ffi, pyodide.webloop`;

// Bump when how a snapshot is made changes (not its import list, nor the Python that keeps
// the packages: they are in the key itself).
export const SNAPSHOT_VERSION = 3;

// What every restored Python runs first, for the state a snapshot would otherwise carry from
// the moment it was made: the random module's state (reseeded from the OS), logging's start
// time, and sys.path's '' (Pyodide inserts it again after a restore). What it cannot reset is
// in the key instead (the language and time zone, read at Python's start: os.environ's LANG,
// time.tzname), or stays: str hashes use the snapshot's hash seed on every load of it (hash
// randomization defends a server against crafted keys; this Python serves one page). Its
// value: the modules the snapshot holds.
const AFTER_RESTORE = `import logging, random, sys, time
random.seed()
logging._startTime = time.time()
if sys.path[:2] == ["", ""]:
    del sys.path[0]
" ".join(sorted(sys.modules))`;

// A restore that cannot instantiate its memory (Pyodide logs "wasm instantiation failed!")
// never settles: it is given this long, then refused.
export const RESTORE_TIMEOUT_MS = 30_000;

export const sha256Hex = async (bytes) => toHex(await crypto.subtle.digest("SHA-256", bytes));

// The key of a snapshot made from `files` (any JSON value naming the exact files: hashes)
// with loadPyodide `options`, in this place's language and time zone (Python reads them at
// its start).
export const snapshotKey = (files, options = {}) => sha256Hex(new TextEncoder().encode(
  JSON.stringify([SNAPSHOT_VERSION, files, SNAPSHOT_IMPORTS, PACKAGES_PY, options,
    globalThis.navigator?.languages?.[0] ?? null, Intl.DateTimeFormat().resolvedOptions().timeZone,
    new Date(2026, 0, 1).getTimezoneOffset(), new Date(2026, 6, 1).getTimezoneOffset()])));

// A store keeps the parts of one key: "snapshot" and "packages". get(key, part) -> null or
// {sha256, bytes: a promise of the Uint8Array, read while the caller goes on}; put(key, part,
// bytes, sha256) (dropping every other key's parts: one key is kept); drop(key, part, sha256):
// the part read with that sha256 (not one another tab stored since).
// The browser's: Cache Storage, entries named `${root}python-snapshot/${key}` (the snapshot)
// and `${root}python-snapshot/${key}.${part}`, each with its sha256 in a header. drop checks
// that header, then deletes: another tab's put landing between the two is still lost (one more
// make, nothing worse). The origin private file system was tried instead and made cached loads
// no faster (README, "Boot": tried and left out).
export function cacheStorageStore(root, name = "pybridge-python-snapshot") {
  const url = (key, part = "snapshot") =>
    new URL(`python-snapshot/${key}${part === "snapshot" ? "" : `.${part}`}`, root).href;
  const mine = url(""); // another site root on this origin keeps its own
  const open = () => caches.open(name);
  return {
    async get(key, part) {
      const hit = await (await open()).match(url(key, part));
      return hit && { sha256: hit.headers.get("X-Snapshot-Sha256"),
        bytes: hit.arrayBuffer().then((buffer) => new Uint8Array(buffer)) };
    },
    async put(key, part, bytes, sha256) {
      const cache = await open();
      for (const req of await cache.keys()) {
        if (req.url.startsWith(mine) && !req.url.startsWith(url(key))) await cache.delete(req);
      }
      await cache.put(url(key, part), new Response(bytes, {
        headers: { "Content-Type": "application/octet-stream", "X-Snapshot-Sha256": sha256 } }));
    },
    async drop(key, part, sha256) {
      const cache = await open();
      const hit = await cache.match(url(key, part));
      if (hit?.headers.get("X-Snapshot-Sha256") === sha256) await cache.delete(url(key, part));
    },
  };
}

// The first line of an error's message; of a Python exception, its last line (the first is
// "Traceback (most recent call last):").
const brief = (err) => {
  if (err?.errno !== undefined && !err.message) return `${err.name} ${err.errno}`; // Emscripten's FS
  const lines = String(err?.message || err).split("\n").filter((line) => line.trim());
  const line = (err?.type ? lines.at(-1) : lines[0]) ?? String(err);
  // a storage error's message alone ("An attempt was made to modify an object ...") names no kind
  if (!(globalThis.DOMException && err instanceof DOMException)) return line;
  return err.message ? `${err.name}: ${line}` : err.name;
};

// Drop the part `hit` was read from (not one another tab stored since); a store that fails
// to drop it only costs the next load a refusal, so its error is not the boot's.
const dropRead = (store, key, part, hit) =>
  (async () => store.drop(key, part, hit.sha256))().catch(() => {});

// The bytes of a store's hit, once they match the sha256 stored with them.
const verified = (hit) => hit.bytes.then(async (bytes) => {
  if (await sha256Hex(bytes) !== hit.sha256) {
    throw new Error(`its ${bytes.byteLength} bytes do not match the sha256 stored with it`);
  }
  return bytes;
});

// The boot's packages as the last load installed them: Python run once per start (install()
// below). It wraps Pyodide's unpack_buffer, which loadPackage calls with each wheel: a wheel
// whose files were written from the bundle is not unpacked again (its dynamic libraries are
// named, and loadPackage loads them as usual); any other is unpacked and remembered.
// describe() puts the original back, then names what this load unpacked: for each wheel, the
// files its RECORD lists and its .dist-info holds (a wheel with files beyond site-packages is
// skipped: writing it back would not redo them), and the bytecode the imports wrote beside its
// sources, with the hash of each source (importlib's). save() packs them from MEMFS in JS (no
// copy through the wasm heap), each pyc made checked hash-based (PEP 552 flags 0b11: Python
// checks it against the source on import, so a source changed later, by micropip or by hand,
// is compiled again). The bundle: a little-endian u32 n, n bytes of JSON {"names": the
// packages the boot loads, "wheels": {file name: [dynamic library, ...]}, "files": [[path,
// size], ...]}, then the files.
const PACKAGES_PY = `def _pybridge_packages():
    import json, os
    from importlib.metadata import distribution
    from importlib.util import MAGIC_NUMBER, cache_from_source, source_hash
    import pyodide._package_loader as loader
    from pyodide.ffi import to_js
    original = loader.unpack_buffer
    written, unpacked = {}, {}  # wheel file name -> its dynamic libraries

    def unpack_buffer(buffer, *, filename="", calculate_dynlibs=False, **kwargs):
        name = filename.rpartition("/")[-1]
        if not name.endswith(".whl"):
            return original(buffer, filename=filename, calculate_dynlibs=calculate_dynlibs, **kwargs)
        if name in written:
            return to_js(written.pop(name)) if calculate_dynlibs else None
        dynlibs = original(buffer, filename=filename, calculate_dynlibs=True, **kwargs)
        unpacked[name] = [str(path) for path in dynlibs]
        return dynlibs if calculate_dynlibs else None

    def expect(wheels):
        written.update(json.loads(wheels))

    def describe():
        loader.unpack_buffer = original
        site = os.path.realpath(loader.SITE_PACKAGES) + "/"
        wheels, files, pycs, skipped = {}, [], [], []
        for wheel, dynlibs in unpacked.items():
            listed = distribution(loader.parse_wheel_name(wheel)[0]).files or []
            record = next((f for f in listed if f.name == "RECORD"), None)
            paths = {os.path.realpath(f.locate()) for f in listed}
            if record is None or any(not path.startswith(site) for path in paths):
                skipped.append(wheel)
                continue
            info = os.path.realpath(record.locate().parent)
            paths |= {os.path.join(info, name) for name in os.listdir(info)}
            wheels[wheel] = dynlibs
            for path in sorted(path for path in paths if os.path.isfile(path)):
                files.append(path)
                pyc = cache_from_source(path) if path.endswith(".py") else None
                if pyc and os.path.isfile(pyc):
                    with open(path, "rb") as f:
                        pycs.append([pyc, source_hash(f.read()).hex()])
        return json.dumps({"magic": MAGIC_NUMBER.hex(), "wheels": wheels, "files": files,
                           "pycs": pycs, "skipped": skipped})

    loader.unpack_buffer = unpack_buffer
    return expect, describe
_pybridge_packages()`;

// loadPackage ends with importlib.invalidate_caches(), on which CPython 3.12's zipimporter
// reads its archive's whole directory again, in Python: once for each package of the stdlib
// zip imported by then (18 after a restore), 150-200 ms of a cached load here (profiled with
// cProfile). loadPackage writes wheels to site-packages and changes no zip, so while it runs
// the zip importers keep the directories they read. Its value: a function that puts their
// invalidate_caches back.
const KEEP_ZIP_DIRECTORIES = `def _pybridge_keep_zips():
    import zipimport
    original = zipimport.zipimporter.invalidate_caches
    zipimport.zipimporter.invalidate_caches = lambda self: None
    def put_back():
        zipimport.zipimporter.invalidate_caches = original
    return put_back
_pybridge_keep_zips()`;

// Where a bundle's files may go: site-packages, no `.` or `..` step.
const PACKAGE_PATH = /^\/lib\/python3\.\d+\/site-packages(\/(?!\.\.?(\/|$))[^/]+)+$/;

const hexBytes = (hex) => Uint8Array.from(hex.match(/../g), (h) => parseInt(h, 16));

// A bundle's head and files, every entry checked: paths in site-packages, none twice, none
// both a file and a folder; sizes that add up; each wheel's libraries among its files.
function readBundle(bytes) {
  const n = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0, true);
  const head = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + n)));
  const { names, wheels, files } = head;
  if (!Array.isArray(names) || !wheels || typeof wheels !== "object" || !Array.isArray(files)) {
    throw new Error("not a packages bundle");
  }
  const paths = new Set();
  let end = 4 + n;
  for (const [path, size] of files) {
    if (typeof path !== "string" || !PACKAGE_PATH.test(path) || paths.has(path) ||
        !Number.isSafeInteger(size) || size < 0 || end + size > bytes.byteLength) {
      throw new Error(`not a packages bundle: its entry ${JSON.stringify([path, size])}`);
    }
    paths.add(path);
    end += size;
  }
  if (end !== bytes.byteLength) throw new Error(`not a packages bundle: ${bytes.byteLength - end} bytes left over`);
  for (const path of paths) {
    for (let i = path.indexOf("/", 1); i > 0; i = path.indexOf("/", i + 1)) {
      if (paths.has(path.slice(0, i))) throw new Error(`not a packages bundle: ${path.slice(0, i)} is a file and a folder`);
    }
  }
  for (const [wheel, dynlibs] of Object.entries(wheels)) {
    const missing = Array.isArray(dynlibs) ? dynlibs.find((path) => !paths.has(path)) : wheel;
    if (missing !== undefined) throw new Error(`not a packages bundle: ${wheel} names ${JSON.stringify(missing)}`);
  }
  return { names, wheels, files, offset: 4 + n };
}

// Write a checked bundle's files; if one fails, remove those written and throw. Each file
// views its bytes in the bundle (canOwn: MEMFS copies them only when the file grows or is
// truncated; a write within it changes the bundle, which nothing reads after this): 463 files,
// 15 MB, in about 50 ms here against 100 ms copied, each folder made once.
function writeFiles(FS, bytes, { files, offset }) {
  const written = [], folders = new Set();
  try {
    for (const [path, size] of files) {
      const folder = path.slice(0, path.lastIndexOf("/"));
      if (!folders.has(folder)) FS.mkdirTree(folder);
      folders.add(folder);
      written.push(path); // before the write: one that fails halfway is removed too
      FS.writeFile(path, bytes.subarray(offset, offset + size), { canOwn: true });
      offset += size;
    }
  } catch (err) {
    removeFiles(FS, written);
    throw err;
  }
  return written;
}

function removeFiles(FS, paths) {
  for (const path of paths) {
    try {
      FS.unlink(path);
    } catch {
      // gone already
    }
  }
}

// The bundle of what describe() names (its JSON), read from MEMFS, or null if it names no wheel.
function makeBundle(FS, described, names) {
  const { magic, wheels, files, pycs } = JSON.parse(described);
  if (!Object.keys(wheels).length) return null;
  const parts = [], listed = [], seen = new Set();
  for (const path of files) {
    if (seen.has(path)) continue; // a file two wheels list
    seen.add(path);
    const data = FS.readFile(path);
    parts.push(data);
    listed.push([path, data.byteLength]);
  }
  const want = hexBytes(magic);
  for (const [path, hash] of pycs) {
    if (seen.has(path)) continue; // a pyc a wheel ships is kept as shipped
    seen.add(path);
    const pyc = FS.readFile(path);
    if (pyc.byteLength <= 16 || want.some((b, i) => pyc[i] !== b)) continue;
    pyc.set([3, 0, 0, 0], 4); // hash-based, checked against the source (readFile made a copy)
    pyc.set(hexBytes(hash), 8);
    parts.push(pyc);
    listed.push([path, pyc.byteLength]);
  }
  const head = new TextEncoder().encode(JSON.stringify({ names, wheels, files: listed }));
  const out = new Uint8Array(4 + head.byteLength + parts.reduce((sum, p) => sum + p.byteLength, 0));
  new DataView(out.buffer).setUint32(0, head.byteLength, true);
  out.set(head, 4);
  let offset = 4 + head.byteLength;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

// The "packages" part of `key` in `store`, read and checked from now on, while Python starts.
// load(pyodide, names): the boot's loadPackage(names), the last load's files written first ->
// {installed: {how: "installed", files, bytes} (written: loadPackage loads their libraries
// only) | {how: "none", why} (loadPackage unpacks; the imports write their bytecode),
// loadErrors: loadPackage's error messages (it does not raise)}. save(pyodide): after the
// imports -> {bytes} | {error} where none was installed and this load unpacked wheels, else
// null. forget(): drop them (they broke the boot). Without a store, load only loads.
function packagesCache(store, key, off) {
  const found = store && key ? store.get(key, "packages") : null;
  const reading = found?.then((hit) => hit && verified(hit));
  reading?.catch(() => {}); // install() reports its error
  const drop = () => found.then((hit) => hit && dropRead(store, key, "packages", hit), () => {});
  let saving = false, describe = null, names = [];
  return {
    async load(pyodide, packages) {
      const installed = await this.install(pyodide, packages);
      const loadErrors = [];
      const putBack = pyodide.runPython(KEEP_ZIP_DIRECTORIES);
      try {
        await pyodide.loadPackage(packages, {
          messageCallback: () => {},
          errorCallback: (msg) => loadErrors.push(msg),
        });
      } finally {
        putBack();
        putBack.destroy();
      }
      return { installed, loadErrors };
    },
    async install(pyodide, packages) {
      names = [...packages];
      if (!reading) return { how: "none", why: off ?? "no snapshot store" };
      let why, expect;
      const pair = pyodide.runPython(PACKAGES_PY);
      [expect, describe] = pair;
      pair.destroy();
      try {
        const bytes = await reading;
        if (bytes) {
          const bundle = readBundle(bytes);
          if (JSON.stringify(bundle.names) !== JSON.stringify(names)) {
            throw new Error(`they are ${bundle.names.join(", ")}; this boot loads ${names.join(", ")}`);
          }
          const written = writeFiles(pyodide.FS, bytes, bundle);
          try {
            expect(JSON.stringify(bundle.wheels));
          } catch (err) {
            removeFiles(pyodide.FS, written);
            throw err;
          }
          return { how: "installed", files: written.length, bytes: bytes.byteLength };
        }
        why = "none stored yet for these files";
      } catch (err) {
        why = `the stored packages were refused (${brief(err)})`;
        await drop();
      } finally {
        expect.destroy();
      }
      saving = true;
      pyodide.runPython("import sys; sys.dont_write_bytecode = False");
      return { how: "none", why };
    },
    async save(pyodide) {
      const describing = describe;
      describe = null; // once
      if (!describing) return null;
      try {
        const described = describing(); // puts unpack_buffer back, always
        if (!saving) return null;
        const { skipped } = JSON.parse(described);
        const bytes = makeBundle(pyodide.FS, described, names);
        if (bytes) await store.put(key, "packages", bytes, await sha256Hex(bytes));
        if (skipped.length) return { error: `not kept (files beyond site-packages): ${skipped.join(", ")}` };
        return bytes && { bytes: bytes.byteLength };
      } catch (err) {
        return saving ? { error: brief(err) } : null;
      } finally {
        describing.destroy();
        if (saving) pyodide.runPython("import sys; sys.dont_write_bytecode = True");
      }
    },
    // The stored packages broke this boot (its imports failed): never install them again.
    async forget() {
      if (found) await drop();
    },
  };
}

// Start Python: restored from the store's snapshot for `files`, else started normally to make
// one (used only for that: a Python started to make a snapshot reaches JS globals through a
// recording proxy, and calling a browser method through it throws "Illegal invocation"), which
// is restored at once, so a first load runs the same Python as every later one, and stored in
// the background. `store` null: a normal start (`off` says why). `fatal(err)`: errors that must
// fail the boot rather than fall back (a file that did not load). Resolves with {pyodide,
// start: {how: "snapshot" (restored) | "made" (made now, then restored) | "normal" (without
// one), why (not restored: the reason), bytes (the snapshot's size), modules (what it holds)},
// stored: a made snapshot's storing (a promise of {bytes} or {error}), else null, packages:
// the packages part of the same key (packagesCache above)}. `loadPyodide` may be a promise of
// it (Pyodide's module, still loading): the stored snapshot is read meanwhile. A stored
// snapshot's sha256 is checked while Pyodide restores it, and its Python runs nothing of ours
// until the check passed. `mark(name)`: called as a stored snapshot's bytes are read
// ("snapshot read") and checked ("snapshot checked"), for the boot's timeline.
export async function startPython(loadPyodide, options, { files, store, off, fatal = () => false,
  restoreTimeoutMs = RESTORE_TIMEOUT_MS, mark = () => {} }) {
  let key, packages;
  const load = async (opts) => (await loadPyodide)(opts);
  const normal = async (why) => ({ pyodide: await load(options), start: { how: "normal", why },
    stored: null, packages: packages ?? packagesCache(store, key, why) });
  // bytes: a promise, read while Pyodide's script loads; checked: a promise that rejects if
  // they are not what was stored
  const restore = async (bytes, checked = null) => {
    // bytes that fail their check end the restore at once, whatever Pyodide is doing
    const loading = load({ ...options, _loadSnapshot: bytes });
    const pyodide = await within(checked ? Promise.race([loading, checked.then(() => loading)])
      : loading, restoreTimeoutMs, `not restored in ${restoreTimeoutMs / 1000} s`);
    if (checked) await checked;
    return { pyodide, modules: pyodide.runPython(AFTER_RESTORE).split(" ") };
  };
  if (!store) return normal(off);
  let why;
  try {
    key = await snapshotKey(files, options);
    const hit = await store.get(key, "snapshot");
    packages = packagesCache(store, key); // read while Python starts (looked up after the snapshot)
    if (hit) {
      hit.bytes.then(() => mark("snapshot read"), () => {});
      const checked = verified(hit);
      checked.then(() => mark("snapshot checked"), () => {}); // the restore fails with its error
      const bytes = hit.bytes;
      try {
        const { pyodide, modules } = await restore(bytes, checked);
        return { pyodide, start: { how: "snapshot", bytes: (await bytes).byteLength, modules },
          stored: null, packages };
      } catch (err) {
        if (fatal(err)) throw err;
        const damaged = await checked.then(() => null, (e) => e); // its check says more
        why = `the stored snapshot was refused (${brief(damaged ?? err)})`;
        await dropRead(store, key, "snapshot", hit);
      }
    } else {
      why = "no snapshot stored yet for these files";
    }
  } catch (err) {
    if (fatal(err)) throw err;
    return normal(`the snapshot store failed (${brief(err)})`);
  }
  let snapshot;
  try {
    const maker = await load({ ...options, _makeSnapshot: true });
    maker.runPython(SNAPSHOT_IMPORTS);
    snapshot = maker.makeMemorySnapshot();
    const { pyodide, modules } = await restore(snapshot);
    const stored = sha256Hex(snapshot).then((sha) => store.put(key, "snapshot", snapshot, sha))
      .then(() => ({ bytes: snapshot.byteLength }), (err) => ({ error: brief(err) }));
    return { pyodide, start: { how: "made", why, bytes: snapshot.byteLength, modules }, stored,
      packages };
  } catch (err) {
    if (fatal(err)) throw err;
    return normal(`a snapshot could not be ${snapshot ? "restored" : "made"} (${brief(err)})`);
  }
}
