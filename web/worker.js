// The worker that owns Python and the GPU. The page (main.js) never blocks on either.
//
// Boot: config.json -> Pyodide core -> numpy + pybridge wheels -> import -> ready.
// Every fetch is counted per asset, checked against config.json's sha256 where it lists one,
// and reported to the page; a failed asset is named.
// Messages to the page: {type: "config" | "asset" | "stage" | "span" | "snapshot-stored" |
// "packages-stored" | "ready" | "error" | "result"}, and "model-progress" | "model-recovering" from pybridge.demo.
// Messages from the page: {type: "run", id, code}: run Python (async), answer with "result".

import * as bridge from "./bridge.js";
import { callPython, toPlain } from "./call.js";
import { Sha256 } from "./sha256.js";
import { cacheStorageStore, sha256Hex, startPython } from "./snapshot.js";

const post = (msg) => self.postMessage(msg);

// Python can load a JS module of this origin: `await js.importModule("/path/mod.mjs")`. The
// page's Content-Security-Policy forbids eval, so this is how extra JS reaches the worker.
self.importModule = (url) => import(new URL(url, self.location.href).href);
const t0 = performance.now();
const failedAssets = [];

class AssetError extends Error {
  constructor(name, url, why) {
    super(`Could not load ${name} (${why}) from ${url}`);
    this.asset = name;
  }
}

// Pyodide swallows some load failures (a failed pyodide.asm.wasm leaves loadPyodide pending
// forever), so boot races every stage against the first failed asset.
let failBoot;
const assetFailure = new Promise((_, reject) => (failBoot = reject));
assetFailure.catch(() => {}); // handled by the race in boot(); quiet once boot is over
const orFailedAsset = (promise) => Promise.race([promise, assetFailure]);

// Every fetch (Pyodide's own included) is counted, so the page shows per-asset progress, and
// checked: a file config.json lists passes through as it streams, its chunks kept, and is
// hashed at its end by the platform's SHA-256 (crypto.subtle: ~7x the hand-written JS one
// here, but whole-buffer only; these files are at most 10 MB); a truncated or corrupted copy
// errors the stream at its end, named, instead of failing somewhere later (or not at all). A
// fetch `integrity` would hold the whole body back until it is checked: no progress, no
// streaming wasm compile. Where the caller asks for that integrity anyway (loadPackage's wheel
// fetches) or the file is wasm (below), the browser checks it and the file is reported done
// at once, its size from Content-Length.
const realFetch = self.fetch.bind(self);
const siteRoot = new URL("./", self.location.href);
let integrity = {}; // path below the site root -> "sha256-<base64>" (from config.json)
const sri = (hex) => "sha256-" + btoa(String.fromCharCode(...hex.match(/../g).map((h) => parseInt(h, 16))));
self.fetch = async (input, init) => {
  const url = new URL(input instanceof Request ? input.url : String(input), self.location.href);
  const name = url.pathname.split("/").pop();
  const whole = !new Headers(init?.headers || (input instanceof Request ? input.headers : {})).has("Range");
  const expected = whole && url.origin === siteRoot.origin &&
    url.pathname.startsWith(siteRoot.pathname)
    ? integrity[url.pathname.slice(siteRoot.pathname.length)] : undefined;
  seenByFetch.add(name);
  assetErrors.delete(url.pathname); // a reason is this fetch's own, never an earlier one's
  post({ type: "asset", name, state: "loading", loaded: 0 });
  // WebAssembly goes to the browser's compiler as the browser's own Response, checked by the
  // fetch's `integrity`: the compiled code of a Response from the HTTP cache is cached too
  // (V8's wasm code cache), and a wrapped stream would lose that (measured, cached loads of
  // this page: Python ready 3.8-4.3 s wrapped, 2.5-3.4 s and falling over reloads as is).
  // A fetch that asks for the same `integrity` itself (loadPackage's of a wheel) is checked by
  // the browser before its Response resolves: hashing it again cost 50-60 ms of a cached load
  // here (numpy's wheel).
  const checked = !!expected && (name.endsWith(".wasm") || init?.integrity === expected);
  const options = checked ? { ...init, integrity: expected } : init;
  let resp;
  try {
    resp = await realFetch(input, options);
  } catch (err) {
    throw assetFailed(name, url, await whyFetchFailed(url, options, err));
  }
  if (!resp.ok) {
    throw Object.assign(assetFailed(name, url, `HTTP ${resp.status}`), { status: resp.status });
  }
  if (checked) {
    post({ type: "asset", name, state: "done", loaded: Number(resp.headers.get("Content-Length")) || 0 });
    return resp;
  }
  if (!resp.body) {
    post({ type: "asset", name, state: "done", loaded: 0 });
    return resp;
  }
  let loaded = 0;
  let lastPost = 0;
  // hashed at the end by the platform's SHA-256 (whole-buffer only); where a page has no
  // WebCrypto (plain http from a LAN address: no secure context), chunk by chunk in JS
  const chunks = expected && crypto.subtle ? [] : null;
  const hash = expected && !chunks ? new Sha256() : null;
  const counter = new TransformStream({
    transform(chunk, ctl) {
      if (chunks) chunks.push(chunk); // the stream's own chunks, never written again
      if (hash) hash.update(chunk);
      loaded += chunk.byteLength;
      const now = performance.now();
      if (now - lastPost > 50) {
        lastPost = now;
        post({ type: "asset", name, state: "loading", loaded });
      }
      ctl.enqueue(chunk);
    },
    async flush(ctl) {
      const got = chunks ? await sha256Hex(await new Blob(chunks).arrayBuffer()) : hash?.hex();
      if (expected && sri(got) !== expected) {
        ctl.error(assetFailed(name, url, `truncated or corrupted: ${loaded} bytes whose sha256 ` +
          "does not match the one config.json lists"));
        return;
      }
      assetErrors.delete(url.pathname);
      post({ type: "asset", name, state: "done", loaded });
    },
  });
  return new Response(resp.body.pipeThrough(counter), {
    status: resp.status,
    statusText: resp.statusText,
    headers: resp.headers,
  });
};

// Module imports (pyodide.mjs, pyodide.asm.js) bypass fetch: report them from resource timing.
const seenByFetch = new Set();
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const name = new URL(e.name).pathname.split("/").pop();
    if (!seenByFetch.has(name)) {
      post({ type: "asset", name, state: "done", loaded: e.decodedBodySize || e.encodedBodySize });
    }
  }
}).observe({ type: "resource", buffered: true });

// A fetch with an `integrity` hash (Pyodide sets one per wheel) rejects without a status;
// ask the server once more, without it, to tell a missing file from a hash mismatch.
async function whyFetchFailed(url, init, err) {
  try {
    const probe = await realFetch(url, { method: "HEAD", cache: "no-store" });
    if (!probe.ok) return `HTTP ${probe.status}`;
    if (init && init.integrity) {
      return "truncated or corrupted: its sha256 does not match the one listed for it (integrity check)";
    }
  } catch {
    /* the server is unreachable: report the original error */
  }
  return String(err.message || err);
}

// Why a file failed, by path: a body that errors reaches its reader only as "Failed to
// fetch", so Python asks here (js.assetError(url)) to name what was wrong.
const assetErrors = new Map();
self.assetError = (url) => assetErrors.get(new URL(url, self.location.href).pathname) ?? null;

function assetFailed(name, url, why) {
  assetErrors.set(url.pathname, why);
  failedAssets.push(name);
  post({ type: "asset", name, state: "failed", error: why });
  const err = new AssetError(name, url.pathname, why);
  failBoot(err);
  return err;
}

// The boot's timeline for the page's waterfall (bench boot): each stage runs from the end of
// the one before; `span` posts work that overlaps them. Times are ms since the epoch (the
// worker's clock and the page's agree on it; each has its own performance.now() origin).
const clock = () => performance.timeOrigin + performance.now();
let stageStart = clock();
function stage(name, extra = {}) {
  const now = clock();
  post({ type: "stage", name, ms: performance.now() - t0, start: stageStart, end: now, ...extra });
  stageStart = now;
}
const span = (name, start, end = clock()) => post({ type: "span", name, start, end });

const PACKAGES = ["numpy", "pybridge"]; // what boot loads (from config.json's indexURL)

async function boot() {
  const config = await orFailedAsset(fetch("./config.json").then(async (r) => {
    const text = await r.text();
    try {
      return JSON.parse(text);
    } catch (err) {
      throw assetFailed("config.json", new URL("./config.json", self.location.href),
        `truncated or corrupted: ${err.message}`);
    }
  }));
  integrity = config.integrity || {};
  post({ type: "config", config });
  stage("config");

  const indexURL = new URL(config.indexURL, self.location.href).href;
  // Module imports bypass fetch and its integrity check: fetch (and check) the two modules
  // first; the imports then come from the HTTP cache (these files are immutable). A stored
  // snapshot is read meanwhile (startPython takes the promise of loadPyodide).
  const loadPyodide = orFailedAsset(Promise.all(["pyodide.mjs", "pyodide.asm.js"].map(
    (f) => fetch(indexURL + f).then((r) => r.arrayBuffer())))).then(async () => {
    try {
      return (await orFailedAsset(import(indexURL + "pyodide.mjs"))).loadPyodide;
    } catch (err) {
      throw new AssetError("pyodide.mjs", new URL(indexURL).pathname + "pyodide.mjs", err.message);
    }
  });
  loadPyodide.catch(() => {}); // startPython fails with its error
  // The wheels download while Python starts, into the HTTP cache (immutable files), where
  // loadPackage's own fetch finds them: that fetch checks them and names a failure, so this
  // one neither hashes them (once is enough) nor reports.
  const wheels = Object.keys(integrity).filter((path) => path.startsWith(config.indexURL) &&
    PACKAGES.some((name) => path.slice(config.indexURL.length).startsWith(`${name}-`)));
  const fetchStart = clock();
  const prefetched = Promise.all(wheels.map((path) =>
    realFetch(new URL(path, siteRoot)).then((r) => r.arrayBuffer()).catch(() => {})))
    .then(() => span("wheels", fetchStart));
  const pythonStart = clock();
  // Python from a memory snapshot (snapshot.js), kept in Cache Storage for exactly the files
  // config.json lists; ?snapshot=off (the page passes it on) starts without one.
  const off = new URL(self.location.href).searchParams.get("snapshot") === "off"
    ? "snapshots are off (?snapshot=off)"
    : typeof caches === "undefined" || !crypto.subtle
      ? "no Cache Storage or WebCrypto here (not a secure context: https:// or localhost)" : null;
  const { pyodide, start, stored, packages } = await orFailedAsset(startPython(loadPyodide,
    { indexURL, fullStdLib: false }, {
      files: [config.pyodideVersion, config.integrity],
      store: off ? null : cacheStorageStore(siteRoot.href),
      off,
      fatal: (err) => err instanceof AssetError,
      mark: (name) => span(name, pythonStart),
    }));
  stored?.then((result) => post({ type: "snapshot-stored", ...result }));
  span(`python (${start.how})`, pythonStart);
  await orFailedAsset(prefetched);
  self.pyodide = pyodide;
  stage("pyodide", { boot: start });

  // numpy and pybridge as the last load installed them (snapshot.js): loadPackage then loads
  // their libraries without unpacking the wheels again
  const { installed, loadErrors } = await orFailedAsset(packages.load(pyodide, PACKAGES));
  stage("packages", { packages: installed });

  pyodide.registerJsModule("pybridge_js", bridge);
  // loadPackage does not raise on a failed fetch: import, and name what is missing if it fails.
  try {
    await pyodide.runPythonAsync("import numpy, pybridge");
  } catch (err) {
    if (installed.how === "installed") await packages.forget(); // the next load unpacks them
    const names = failedAssets.length ? failedAssets.join(", ") : "(no failed download seen)";
    throw new Error(
      `Python packages did not load. Failed files: ${names}. ${loadErrors.join(" ")} ${err.message}`,
    );
  }
  const versions = pyodide.runPython(
    "import sys, numpy, pybridge; f'{sys.version.split()[0]} {numpy.__version__} {pybridge.__version__}'",
  ).split(" ");
  stage("ready", { python: versions[0], numpy: versions[1], pybridge: versions[2] });
  // where none was installed: keep the packages as installed, and their bytecode, for the next load
  packages.save(pyodide).then((result) => result && post({ type: "packages-stored", ...result }));
  return pyodide;
}

const booted = boot();
booted.then(
  () =>
    post({
      type: "ready",
      ms: performance.now() - t0,
      // what the worker downloaded, for the boot benchmark (transferSize 0 = from cache)
      resources: performance.getEntriesByType("resource").map((e) => ({
        name: e.name,
        transferSize: e.transferSize,
        encodedBodySize: e.encodedBodySize,
        decodedBodySize: e.decodedBodySize,
      })),
    }),
  (err) => post({ type: "error", message: err.message, asset: err.asset || null, stack: err.stack }),
);

// The page calls Python two ways. "call": a function of a module with arguments, passed as
// values (web/call.js callPython). "run": source text, for the tests and the DevTools console;
// its last expression is the result. A PyProxy result is converted (dicts to objects) and
// destroyed (web/call.js toPlain).
self.onmessage = async (ev) => {
  const { type, id, code } = ev.data;
  if (type !== "run" && type !== "call") return;
  try {
    const pyodide = await booted;
    const value = toPlain(type === "call" ? await callPython(pyodide, ev.data)
      : await pyodide.runPythonAsync(code));
    post({ type: "result", id, ok: true, value });
  } catch (err) {
    post({ type: "result", id, ok: false, error: err.message });
  }
};
