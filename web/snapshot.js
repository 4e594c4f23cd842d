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

// What every restored Python runs first: the random module's state is the snapshot's (the same
// on every load) until reseeded from the OS. Its value: the modules the snapshot holds.
const AFTER_RESTORE = "import random, sys; random.seed(); ' '.join(sorted(sys.modules))";

export const sha256Hex = async (bytes) =>
  Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)),
    (b) => b.toString(16).padStart(2, "0")).join("");

// The key of a snapshot made from `files` (any JSON value naming the exact files: hashes).
export const snapshotKey = (files) =>
  sha256Hex(new TextEncoder().encode(JSON.stringify([files, SNAPSHOT_IMPORTS])));

// A store: get(key) -> {bytes, sha256} or null; put(key, bytes, sha256) (dropping every other
// key: one snapshot is kept); drop(key).
// The browser's: Cache Storage, entries named `${root}python-snapshot/${key}`.
export function cacheStorageStore(root, name = "pybridge-python-snapshot") {
  const url = (key) => new URL(`python-snapshot/${key}`, root).href;
  const open = () => caches.open(name);
  return {
    async get(key) {
      const hit = await (await open()).match(url(key));
      if (!hit) return null;
      return { bytes: new Uint8Array(await hit.arrayBuffer()), sha256: hit.headers.get("X-Snapshot-Sha256") };
    },
    async put(key, bytes, sha256) {
      const cache = await open();
      for (const req of await cache.keys()) if (req.url !== url(key)) await cache.delete(req);
      await cache.put(url(key), new Response(bytes, {
        headers: { "Content-Type": "application/octet-stream", "X-Snapshot-Sha256": sha256 } }));
    },
    async drop(key) {
      await (await open()).delete(url(key));
    },
  };
}

// Start Python: restored from the store's snapshot for `files`, else started normally to make
// one (used only for that: a Python started to make a snapshot reaches JS globals through a
// recording proxy, and calling a browser method through it throws "Illegal invocation"), which
// is restored at once, so a first load runs the same Python as every later one, and stored in
// the background. `store` null: a normal start (`off` says why). `fatal(err)`: errors that must
// fail the boot rather than fall back (a file that did not load). `onStored({bytes} | {error})`
// when a made snapshot is stored. Resolves with {pyodide, start: {how: "snapshot" (restored) |
// "made" (made now, then restored) | "normal" (without one), why (not restored: the reason),
// bytes (the snapshot's size), modules (what it holds)}}.
export async function startPython(loadPyodide, options, { files, store, off, fatal = () => false,
  onStored = () => {} }) {
  if (!store) return { pyodide: await loadPyodide(options), start: { how: "normal", why: off } };
  let key, why;
  try {
    key = await snapshotKey(files);
    const hit = await store.get(key);
    if (hit) {
      try {
        if (await sha256Hex(hit.bytes) !== hit.sha256) {
          throw new Error(`its ${hit.bytes.byteLength} bytes do not match the sha256 stored with it`);
        }
        const pyodide = await loadPyodide({ ...options, _loadSnapshot: hit.bytes });
        const modules = pyodide.runPython(AFTER_RESTORE).split(" ");
        return { pyodide, start: { how: "snapshot", bytes: hit.bytes.byteLength, modules } };
      } catch (err) {
        if (fatal(err)) throw err;
        why = `the stored snapshot was refused (${String(err.message || err).split("\n")[0]})`;
        await store.drop(key);
      }
    } else {
      why = "no snapshot stored yet for these files";
    }
  } catch (err) {
    if (fatal(err)) throw err;
    const reason = `the snapshot store failed (${String(err.message || err).split("\n")[0]})`;
    return { pyodide: await loadPyodide(options), start: { how: "normal", why: reason } };
  }
  let snapshot;
  try {
    const maker = await loadPyodide({ ...options, _makeSnapshot: true });
    maker.runPython(SNAPSHOT_IMPORTS);
    snapshot = maker.makeMemorySnapshot();
    const pyodide = await loadPyodide({ ...options, _loadSnapshot: snapshot });
    const modules = pyodide.runPython(AFTER_RESTORE).split(" ");
    sha256Hex(snapshot).then((sha) => store.put(key, snapshot, sha))
      .then(() => onStored({ bytes: snapshot.byteLength }), (err) => onStored({ error: err.message }));
    return { pyodide, start: { how: "made", why, bytes: snapshot.byteLength, modules } };
  } catch (err) {
    if (fatal(err)) throw err;
    why = `a snapshot could not be ${snapshot ? "restored" : "made"} ` +
      `(${String(err.message || err).split("\n")[0]})`;
    return { pyodide: await loadPyodide(options), start: { how: "normal", why } };
  }
}
