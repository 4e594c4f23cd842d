// The page's own stack without a browser: Pyodide + the pybridge wheel + web/bridge.js, with
// Dawn (the npm package `webgpu`, Chrome's WebGPU engine) as navigator.gpu. Driven over
// stdin/stdout by tools/gpu/node_app.py (CPython), the way tools/harness.py drives the page.
//
//   node runner.mjs --webgpu DIR/index.js --pyodide DIR --web DIR [--mount /prefix/=DIR ...]
//                   [--dawn-flag FLAG ...] [--no-gpu] [--snapshot-dir DIR [--snapshot-timeout-ms MS]]
//
// --snapshot-dir: Python starts as the page's worker starts it (web/snapshot.js), restored from
// a memory snapshot kept in DIR (a file instead of the browser's Cache Storage), keyed by the
// sha256 of every file in the Pyodide folder (the wheels included); without it, normally.
//
// Start-up: ask Dawn for an adapter while Python starts (none: one "no-adapter" message, exit
// 3; else the "adapter" message comes before "ready"); serve the mounts on loopback (Node's
// fetch does not read file: URLs), boot Pyodide from the page's files and register
// web/bridge.js as `pybridge_js` as web/worker.js does.
// Protocol: every message to the driver is one stdout line "@@pybridge <json>" (other output
// goes to stderr): {type: "adapter" | "no-adapter" | "ready" | "result" | "fatal", ...}.
// Requests are stdin lines {"id", "code"}: run Python (async); the last expression is the
// result, converted as worker.js converts it (web/call.js toPlain). Or {"id", "js"}: call the
// JS function whose source that is (tools/bench_soak.py's counters, as Playwright's
// worker.evaluate calls them in the page); its value is the result. Or {"id", "calls":
// [{module, name, args, kwargs}, ...], "seconds"}: each call made as worker.js makes the page's
// (web/call.js: callPython, then toPlain), one after another until `seconds` (if given) have
// passed since the first; the result is one {ms, value} or {ms, error} per call made, `ms`
// timing the call and its conversion. End of stdin ends the process.
//
// GPU buffers are counted at the API (tools/gpu/buffers.mjs): `self.gpuBufferCounts` is
// {created, destroyed, collected} (absent with --no-gpu).

import { createHash, randomUUID } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

import { countBuffers } from "./buffers.mjs";
import { serve } from "./serve.mjs";

const MARK = "@@pybridge ";
const send = (msg) => process.stdout.write(MARK + JSON.stringify(msg) + "\n");
const t0 = performance.now();

const { values: opt } = parseArgs({
  options: {
    webgpu: { type: "string" },
    pyodide: { type: "string" },
    web: { type: "string" },
    mount: { type: "string", multiple: true, default: [] },
    "dawn-flag": { type: "string", multiple: true, default: [] },
    "no-gpu": { type: "boolean", default: false },
    "snapshot-dir": { type: "string" },
    "snapshot-timeout-ms": { type: "string" },
  },
});

function fatal(err) {
  send({ type: "fatal", message: String((err && err.stack) || err) });
  process.exit(1);
}
process.on("uncaughtException", fatal);
process.on("unhandledRejection", fatal);

// Every numeric or string attribute of a WebGPU info object (GPUAdapterInfo,
// GPUSupportedLimits): dawn.node defines them as getters on the prototype.
function attributes(obj) {
  const out = {};
  if (!obj) return out;
  const names = new Set();
  for (let o = obj; o && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
    for (const n of Object.getOwnPropertyNames(o)) names.add(n);
  }
  for (const n of [...names].sort()) {
    if (n === "constructor") continue;
    let v;
    try {
      v = obj[n];
    } catch {
      continue;
    }
    if (["number", "string", "boolean"].includes(typeof v)) out[n] = v;
  }
  return out;
}

// --- navigator.gpu from Dawn ----------------------------------------------------------------
const userAgent = globalThis.navigator?.userAgent ?? `Node.js/${process.versions.node}`;
const navigatorObject = { userAgent }; // Pyodide reads navigator.userAgent at start-up
Object.defineProperty(globalThis, "navigator", {
  value: navigatorObject, configurable: true, writable: true, enumerable: true,
});
// Dawn starts while Python starts, as the page checks WebGPU while its worker boots; Python
// asks for navigator.gpu only once it is ready (the "adapter" message comes first).
const adapterReady = opt["no-gpu"] ? Promise.resolve() : (async () => {
  const { create, globals } = await import(pathToFileURL(resolve(opt.webgpu)).href);
  const gpu = create(opt["dawn-flag"]);
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) {
    send({
      type: "no-adapter",
      message: `Dawn (${opt.webgpu}) found no WebGPU adapter on this machine ` +
        "(it needs a GPU with a Vulkan driver; CPU-only Vulkan is not offered)",
    });
    process.exit(3);
  }
  send({
    type: "adapter",
    info: attributes(adapter.info),
    features: [...adapter.features].sort(),
    limits: attributes(adapter.limits),
    flags: opt["dawn-flag"],
    ms: performance.now() - t0,
  });
  navigatorObject.gpu = gpu;
  Object.assign(globalThis, globals); // GPUBufferUsage, GPUMapMode, ... as in a browser
  globalThis.gpuBufferCounts = countBuffers(globals);
})();

// --- the model and benchmark files over loopback HTTP -------------------------------------
const mounts = Object.fromEntries(opt.mount.map((m) => m.split(/=(.*)/s, 2)));
const server = await serve(mounts);

// --- boot, as web/worker.js does --------------------------------------------------------------
const pyodideDir = resolve(opt.pyodide);
const { loadPyodide } = await import(pathToFileURL(join(pyodideDir, "pyodide.mjs")).href);
const toStderr = (line) => process.stderr.write(line + "\n");
const { startPython } = await import(pathToFileURL(join(resolve(opt.web), "snapshot.js")).href);

// The snapshot store of web/snapshot.js in a folder: KEY.PART and KEY.PART.sha256 (PART:
// snapshot, packages), one key kept.
function fileStore(dir) {
  const file = (key, part) => join(dir, `${key}.${part}`);
  return {
    async get(key, part) {
      let sha256;
      try {
        sha256 = (await readFile(file(key, `${part}.sha256`), "utf8")).trim();
      } catch (err) {
        if (err.code === "ENOENT") return null;
        throw err;
      }
      return { sha256, bytes: readFile(file(key, part)).then((bytes) =>
        new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)) };
    },
    async put(key, part, bytes, sha256) {
      await mkdir(dir, { recursive: true });
      for (const name of await readdir(dir)) {
        if (!name.startsWith(key)) await rm(join(dir, name), { force: true });
      }
      for (const [name, data] of [[part, bytes], [`${part}.sha256`, sha256]]) {
        const temporary = `${file(key, name)}.${randomUUID()}.tmp`;
        await writeFile(temporary, data);
        await rename(temporary, file(key, name)); // whole, or not there
      }
    },
    async drop(key, part, sha256) { // the part read with that sha256, not one stored since
      const stored = await readFile(file(key, `${part}.sha256`), "utf8").catch(() => null);
      if (stored !== null && stored.trim() !== sha256) return;
      await rm(file(key, part), { force: true });
      await rm(file(key, `${part}.sha256`), { force: true });
    },
  };
}

const files = {};
for (const entry of await readdir(pyodideDir, { withFileTypes: true })) {
  if (!entry.isFile() || entry.name.endsWith(".gz")) continue;
  files[entry.name] = createHash("sha256").update(await readFile(join(pyodideDir, entry.name)))
    .digest("hex");
}
const { pyodide, start, stored, packages } = await startPython(loadPyodide,
  { indexURL: pyodideDir + "/", fullStdLib: false, stdout: toStderr, stderr: toStderr }, {
    files,
    store: opt["snapshot-dir"] ? fileStore(resolve(opt["snapshot-dir"])) : null,
    off: "no --snapshot-dir",
    ...(opt["snapshot-timeout-ms"] ? { restoreTimeoutMs: Number(opt["snapshot-timeout-ms"]) } : {}),
  });
const pythonMs = performance.now() - t0;
globalThis.self = globalThis; // bridge.js and pybridge.browser read self.pyodide
// pybridge.demo.load_model posts its progress to the page with the worker's postMessage; Node
// has no page to post to, so the messages are dropped.
globalThis.postMessage = () => {};
self.pyodide = pyodide;
const PACKAGES = ["numpy", "pybridge"];
// the last start's files written first, as the worker does
const { installed, loadErrors } = await packages.load(pyodide, PACKAGES);
// a wheel that did not load fails the start, even where the last start's files would import
if (loadErrors.length) throw new Error(`Python packages did not load. ${loadErrors.join(" ")}`);
await adapterReady;
const bridge = await import(pathToFileURL(join(resolve(opt.web), "bridge.js")).href);
const { callPython, toPlain } = await import(pathToFileURL(join(resolve(opt.web), "call.js")).href);
pyodide.registerJsModule("pybridge_js", bridge);
try {
  await pyodide.runPythonAsync("import numpy, pybridge");
} catch (err) {
  if (installed.how === "installed") await packages.forget(); // the next start unpacks them
  throw new Error(`Python packages did not load. ${loadErrors.join(" ")} ${err.message}`);
}
const versions = pyodide.runPython(
  "import sys, numpy, pybridge; f'{sys.version.split()[0]} {numpy.__version__} {pybridge.__version__}'",
).split(" ");
// where none was installed: keep the packages as installed, and their bytecode, for the next start
const keptPackages = packages.save(pyodide);
send({
  type: "ready", origin: server.origin, ms: performance.now() - t0, node: process.version,
  start: { how: start.how, why: start.why, bytes: start.bytes, ms: pythonMs, packages: installed },
  python: versions[0], numpy: versions[1], pybridge: versions[2], pyodide: pyodide.version,
});

// Calls made as the page's worker makes them; a failed one is answered with its error, as
// the worker answers the page ("Type: message").
async function calls(list, seconds) {
  const out = [];
  const start = performance.now();
  for (const call of list) {
    if (out.length && seconds != null && performance.now() - start > seconds * 1e3) break;
    const t0 = performance.now();
    try {
      const value = toPlain(await callPython(pyodide, call));
      out.push({ ms: performance.now() - t0, value: value === undefined ? null : value });
    } catch (err) {
      out.push({ ms: performance.now() - t0, error: String(err.message || err) });
    }
  }
  return out;
}

// --- requests: run Python or JS, or make calls; answer with the result ----------------------
for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const { id, code, js, calls: list, seconds } = JSON.parse(line);
  try {
    const value = list !== undefined ? await calls(list, seconds)
      : toPlain(js !== undefined ? await (0, eval)(`(${js})`)() : await pyodide.runPythonAsync(code));
    send({ type: "result", id, ok: true, value: value === undefined ? null : value });
  } catch (err) {
    send({ type: "result", id, ok: false, error: err.message });
  }
}
await server.close();
await stored; // a snapshot (and packages) kept by this start are written before the process ends
await keptPackages;
process.exit(0);
