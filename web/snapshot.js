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
// Bytecode is kept beside the snapshot, under the same key. numpy's wheel ships Python
// sources only and Pyodide sets sys.dont_write_bytecode, so every load compiled the ~100
// modules numpy and pybridge import at boot (0.6 s of a 0.9 s import here). A load with none
// stored lets Python write its bytecode while it imports (to memory: MEMFS); `bytecode.save`
// then keeps it, for the packages the boot loaded only, as unchecked hash-based pycs (PEP 552:
// Python loads them without reading the source, which the key pins), and `bytecode.install`
// writes them back on the next load, before its imports.

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

// Bump when how a snapshot is made changes (not its import list: that is in the key itself).
export const SNAPSHOT_VERSION = 2;

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
  JSON.stringify([SNAPSHOT_VERSION, files, SNAPSHOT_IMPORTS, options,
    globalThis.navigator?.languages?.[0] ?? null, Intl.DateTimeFormat().resolvedOptions().timeZone,
    new Date(2026, 0, 1).getTimezoneOffset(), new Date(2026, 6, 1).getTimezoneOffset()])));

// A store keeps the parts of one key: "snapshot" and "bytecode". get(key, part) ->
// {bytes, sha256} or null; put(key, part, bytes, sha256) (dropping every other key's parts:
// one key is kept); drop(key, part).
// The browser's: Cache Storage, entries named `${root}python-snapshot/${key}` (the snapshot)
// and `${root}python-snapshot/${key}.${part}`.
export function cacheStorageStore(root, name = "pybridge-python-snapshot") {
  const url = (key, part = "snapshot") =>
    new URL(`python-snapshot/${key}${part === "snapshot" ? "" : `.${part}`}`, root).href;
  const mine = url(""); // another site root on this origin keeps its own
  const open = () => caches.open(name);
  return {
    async get(key, part) {
      const hit = await (await open()).match(url(key, part));
      if (!hit) return null;
      return { bytes: new Uint8Array(await hit.arrayBuffer()), sha256: hit.headers.get("X-Snapshot-Sha256") };
    },
    async put(key, part, bytes, sha256) {
      const cache = await open();
      for (const req of await cache.keys()) {
        if (req.url.startsWith(mine) && !req.url.startsWith(url(key))) await cache.delete(req);
      }
      await cache.put(url(key, part), new Response(bytes, {
        headers: { "Content-Type": "application/octet-stream", "X-Snapshot-Sha256": sha256 } }));
    },
    async drop(key, part) {
      await (await open()).delete(url(key, part));
    },
  };
}

// The bytecode the imports wrote for the boot's packages (by name), as one bundle: a
// little-endian u32 n, n bytes of JSON [[path, size], ...], then the files, each an unchecked
// hash-based pyc of a source that is there.
const BYTECODE_BUNDLE = `def _bytecode_bundle(names):
    import json, os, sys
    from importlib.util import MAGIC_NUMBER, source_from_cache, source_hash
    listed, blobs = [], []
    for name in names:
        for folder, _, files in os.walk(os.path.dirname(sys.modules[name].__file__)):
            if os.path.basename(folder) != "__pycache__":
                continue
            for file in sorted(files):
                path = os.path.join(folder, file)
                try:
                    with open(source_from_cache(path), "rb") as f:
                        digest = source_hash(f.read())
                except (OSError, ValueError):  # not the pyc of a source here
                    continue
                with open(path, "rb") as f:
                    pyc = f.read()
                if pyc[:4] == MAGIC_NUMBER and len(pyc) > 16:
                    blobs.append(MAGIC_NUMBER + (1).to_bytes(4, "little") + digest + pyc[16:])
                    listed.append([path, len(blobs[-1])])
    head = json.dumps(listed).encode()
    return len(head).to_bytes(4, "little") + head + b"".join(blobs)
_bytecode_bundle`;

// Where a bundle's files may go: pycs in site-packages, nowhere else.
const BYTECODE_PATH = /^\/lib\/python3\.\d+\/site-packages\/([\w.-]+\/)*__pycache__\/[\w.-]+\.pyc$/;

// Write a bundle's files (all checked first); returns how many.
function writeBundle(FS, bytes) {
  const n = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0, true);
  const listed = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + n)));
  let end = 4 + n;
  for (const [path, size] of listed) {
    if (!BYTECODE_PATH.test(path) || !(size > 16) || end + size > bytes.byteLength) {
      throw new Error(`not a bytecode bundle: its entry ${JSON.stringify([path, size])}`);
    }
    end += size;
  }
  if (end !== bytes.byteLength) throw new Error(`not a bytecode bundle: ${bytes.byteLength - end} bytes left over`);
  let offset = 4 + n;
  for (const [path, size] of listed) {
    FS.mkdirTree(path.slice(0, path.lastIndexOf("/")));
    FS.writeFile(path, bytes.subarray(offset, offset + size));
    offset += size;
  }
  return listed.length;
}

// The bytecode part of `key` in `store`. install(pyodide): after loadPackage, before the
// imports -> {how: "installed", files, bytes} | {how: "none", why}. save(pyodide, names):
// after the imports; keeps the bytecode of packages `names` where install found none ->
// {bytes} | {error}, else null. Without a store both do nothing.
function bytecodeCache(store, key, off) {
  let writing = false;
  const first = (err) => String(err?.message || err).split("\n")[0];
  return {
    async install(pyodide) {
      if (!store || !key) return { how: "none", why: off ?? "no snapshot store" };
      let why;
      try {
        const hit = await store.get(key, "bytecode");
        if (!hit) {
          why = "none stored yet for these files";
        } else if (await sha256Hex(hit.bytes) !== hit.sha256) {
          throw new Error(`its ${hit.bytes.byteLength} bytes do not match the sha256 stored with it`);
        } else {
          return { how: "installed", files: writeBundle(pyodide.FS, hit.bytes), bytes: hit.bytes.byteLength };
        }
      } catch (err) {
        why = `the stored bytecode was refused (${first(err)})`;
        await Promise.resolve(store.drop(key, "bytecode")).catch(() => {});
      }
      writing = true;
      pyodide.runPython("import sys; sys.dont_write_bytecode = False");
      return { how: "none", why };
    },
    async save(pyodide, names) {
      if (!writing) return null;
      writing = false;
      let make, bundle;
      try {
        pyodide.runPython("import sys; sys.dont_write_bytecode = True");
        make = pyodide.runPython(BYTECODE_BUNDLE);
        bundle = make(names);
        const bytes = bundle.toJs();
        await store.put(key, "bytecode", bytes, await sha256Hex(bytes));
        return { bytes: bytes.byteLength };
      } catch (err) {
        return { error: first(err) };
      } finally {
        make?.destroy();
        bundle?.destroy();
      }
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
// stored: a made snapshot's storing (a promise of {bytes} or {error}), else null, bytecode:
// the bytecode part of the same key (bytecodeCache above)}.
export async function startPython(loadPyodide, options, { files, store, off, fatal = () => false,
  restoreTimeoutMs = RESTORE_TIMEOUT_MS }) {
  let key;
  const normal = async (why) => ({ pyodide: await loadPyodide(options), start: { how: "normal", why },
    stored: null, bytecode: bytecodeCache(store, key, why) });
  const first = (err) => String(err?.message || err).split("\n")[0];
  const restore = async (bytes) => {
    let timer;
    const late = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`not restored in ${restoreTimeoutMs / 1000} s`)),
        restoreTimeoutMs);
    });
    try {
      const pyodide = await Promise.race([loadPyodide({ ...options, _loadSnapshot: bytes }), late]);
      return { pyodide, modules: pyodide.runPython(AFTER_RESTORE).split(" ") };
    } finally {
      clearTimeout(timer);
    }
  };
  if (!store) return normal(off);
  let why;
  try {
    key = await snapshotKey(files, options);
    const hit = await store.get(key, "snapshot");
    if (hit) {
      try {
        if (await sha256Hex(hit.bytes) !== hit.sha256) {
          throw new Error(`its ${hit.bytes.byteLength} bytes do not match the sha256 stored with it`);
        }
        const { pyodide, modules } = await restore(hit.bytes);
        return { pyodide, start: { how: "snapshot", bytes: hit.bytes.byteLength, modules }, stored: null,
          bytecode: bytecodeCache(store, key) };
      } catch (err) {
        if (fatal(err)) throw err;
        why = `the stored snapshot was refused (${first(err)})`;
        await store.drop(key, "snapshot");
      }
    } else {
      why = "no snapshot stored yet for these files";
    }
  } catch (err) {
    if (fatal(err)) throw err;
    return normal(`the snapshot store failed (${first(err)})`);
  }
  let snapshot;
  try {
    const maker = await loadPyodide({ ...options, _makeSnapshot: true });
    maker.runPython(SNAPSHOT_IMPORTS);
    snapshot = maker.makeMemorySnapshot();
    const { pyodide, modules } = await restore(snapshot);
    const stored = sha256Hex(snapshot).then((sha) => store.put(key, "snapshot", snapshot, sha))
      .then(() => ({ bytes: snapshot.byteLength }), (err) => ({ error: err.message }));
    return { pyodide, start: { how: "made", why, bytes: snapshot.byteLength, modules }, stored,
      bytecode: bytecodeCache(store, key) };
  } catch (err) {
    if (fatal(err)) throw err;
    return normal(`a snapshot could not be ${snapshot ? "restored" : "made"} (${first(err)})`);
  }
}
