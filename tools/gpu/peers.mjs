// The "peer" rows of the real-GPU benchmark: ONNX Runtime's WebGPU execution provider running
// all-MiniLM-L6-v2 (float32, the ONNX export of tools/race.py: mean pooling + L2 norm
// included) on the same GPU, token ids and weights layout as pybridge (tools/bench_gpu.py).
//
//   node tools/gpu/peers.mjs --node-modules DIR --model DIR/model.onnx [--data FILE]
//        [--webgpu DIR/index.js] [--rows node,web] [--shapes 1x12,8x12,...]
//        [--warmup 3] [--reps 20] [--ids ids.json] [--meta meta.json] [--out peers.json]
//        [--ep-node webgpu|cpu] [--ep-web webgpu|wasm] [--dawn-flag FLAG ...]
//
// Rows (each in a child process of its own, so a crash in one leaves the other):
//   node  onnxruntime-node 1.30 (`executionProviders: [{name: "webgpu"}]`: Dawn linked into
//         libonnxruntime.so.1); the model by path, its external data file beside it.
//   web   onnxruntime-web 1.30's `onnxruntime-web/webgpu` bundle (the same C++ kernels in
//         wasm, asyncify build) on dawn.node (npm `webgpu`) as navigator.gpu; one wasm thread,
//         the wasm binary, the model and its external data passed as bytes; dawn.node's
//         GPUQueue.writeBuffer given a plain copy of views of a SharedArrayBuffer (it rejects
//         them; ORT's wasm heap is shared).
// Timed per shape (batch x tokens, [CLS] and [SEP] included): `session.run` with int64 ids and
// mask tensors made once per shape, output read to the CPU (ORT's default output location),
// no tokenizing; median and min of --reps runs after --warmup. The last output of each shape is
// checked: finite, every row of unit norm (the export normalizes). Prints a table (both rows
// side by side, web/node ratio, cosine of their first rows) and writes --out.
// --ep-node cpu / --ep-web wasm run the same script on the CPU (a check where no GPU is).

import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const OPTIONS = {
  "node-modules": { type: "string" },
  model: { type: "string" },
  data: { type: "string" }, // the external data file (default: beside the model, per the graph)
  webgpu: { type: "string" }, // the npm `webgpu` package's index.js (row web)
  rows: { type: "string", default: "node,web" },
  shapes: { type: "string", default: "1x12,8x12,32x12,1x128,8x128,32x128" },
  warmup: { type: "string", default: "3" },
  reps: { type: "string", default: "20" },
  ids: { type: "string" }, // JSON {"BxT": [[id, ...], ...]} (tools/gpu/peers_pack.py writes it)
  meta: { type: "string" }, // JSON merged into the output's "meta" (weights, pins, ...)
  out: { type: "string" },
  "ep-node": { type: "string", default: "webgpu" },
  "ep-web": { type: "string", default: "webgpu" },
  "dawn-flag": { type: "string", multiple: true, default: [] },
  "row-timeout": { type: "string", default: "400" }, // seconds per row
  label: { type: "string", default: "" }, // which graph (shown in the table)
  placement: { type: "boolean", default: false }, // row node: make a session, verbose log, exit
  child: { type: "string" }, // internal: run this row, write its JSON to --child-out
  "child-out": { type: "string" },
};
const { values: opt } = parseArgs({ options: OPTIONS });
const HERE = fileURLToPath(import.meta.url);
const say = (msg) => process.stderr.write(`[peers] ${msg}\n`);

function need(name) {
  if (!opt[name]) throw new Error(`--${name} is required`);
  return resolve(opt[name]);
}

function parseShapes(text) {
  return text.split(",").map((s) => {
    const [b, t] = s.toLowerCase().split("x").map(Number);
    if (!(b > 0 && t >= 3)) throw new Error(`shape ${s}: batch x tokens, tokens >= 3`);
    return [b, t];
  });
}

// Token ids: from --ids (pybridge's own sentences, tokenized), else a fixed pseudo-random
// draw of ordinary word ids between [CLS] (101) and [SEP] (102).
function tokenIds(B, T, table) {
  const key = `${B}x${T}`;
  if (table && table[key]) {
    const rows = table[key];
    if (rows.length !== B || rows.some((r) => r.length !== T)) {
      throw new Error(`ids for ${key}: not ${B} rows of ${T}`);
    }
    return { ids: rows.flat(), source: table.source || "ids file" };
  }
  let s = (B * 7919 + T) >>> 0;
  const ids = [];
  for (let b = 0; b < B; b++) {
    ids.push(101);
    for (let t = 1; t < T - 1; t++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      ids.push(2000 + (s % 20000));
    }
    ids.push(102);
  }
  return { ids, source: "pseudo-random word ids" };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

// finite, and each row's L2 norm within 1e-3 of 1
function check(data, B) {
  const C = data.length / B;
  let finite = true, worst = 0;
  for (let b = 0; b < B; b++) {
    let n = 0;
    for (let c = 0; c < C; c++) {
      const v = data[b * C + c];
      if (!Number.isFinite(v)) finite = false;
      n += v * v;
    }
    worst = Math.max(worst, Math.abs(Math.sqrt(n) - 1));
  }
  return { finite, max_norm_error: worst, ok: finite && worst < 1e-3, dim: C };
}

async function timeShapes(ort, session, shapes, warmup, reps, idTable) {
  const rows = [];
  const outName = session.outputNames[0];
  for (const [B, T] of shapes) {
    const { ids, source } = tokenIds(B, T, idTable);
    const feeds = {
      input_ids: new ort.Tensor("int64", BigInt64Array.from(ids, BigInt), [B, T]),
      attention_mask: new ort.Tensor("int64", new BigInt64Array(B * T).fill(1n), [B, T]),
    };
    let t0 = performance.now();
    let out = await session.run(feeds);
    const firstMs = performance.now() - t0;
    for (let i = 1; i < warmup; i++) await session.run(feeds);
    const ms = [];
    for (let i = 0; i < reps; i++) {
      t0 = performance.now();
      out = await session.run(feeds);
      const data = out[outName].data; // on the CPU (default output location)
      ms.push(performance.now() - t0);
      if (data.length !== B * 384) throw new Error(`output of ${data.length} values`);
    }
    const data = out[outName].data;
    const c = check(data, B);
    rows.push({
      batch: B, tokens: T, median_ms: median(ms), min_ms: Math.min(...ms), first_run_ms: firstMs,
      reps, warmup, ids: source, check: c, first_row: Array.from(data.subarray(0, c.dim)),
    });
    say(`${B}x${T}: median ${median(ms).toFixed(2)} ms, min ${Math.min(...ms).toFixed(2)} ms` +
        `${c.ok ? "" : `  CHECK FAILED ${JSON.stringify(c)}`}`);
  }
  return rows;
}

// ---- row node: onnxruntime-node ------------------------------------------------------------
async function rowNode(ctx) {
  const require = createRequire(join(ctx.nm, "noop.js"));
  const ort = require("onnxruntime-node");
  const pkg = JSON.parse(readFileSync(join(ctx.nm, "onnxruntime-node", "package.json"), "utf8"));
  const ep = opt["ep-node"];
  const options = {
    executionProviders: [ep === "webgpu" ? { name: "webgpu" } : ep],
    graphOptimizationLevel: "all",
    logSeverityLevel: 3,
  };
  if (ctx.data && resolve(ctx.data) !== resolve(dirname(ctx.model), ctx.location)) {
    throw new Error(`row node reads the external data beside the model: ` +
                    `${join(dirname(ctx.model), ctx.location)} (not ${ctx.data})`);
  }
  if (opt.placement) { // ORT logs where each node runs at session creation (verbose)
    const s = await ort.InferenceSession.create(ctx.model, { ...options, logSeverityLevel: 0,
                                                             logVerbosityLevel: 0 });
    await s.release();
    return { runtime: `onnxruntime-node ${pkg.version}`, ep, placement_logged: true, rows: [] };
  }
  const t0 = performance.now();
  const session = await ort.InferenceSession.create(ctx.model, options);
  const loadMs = performance.now() - t0;
  say(`onnxruntime-node ${pkg.version}, EP ${ep}: session in ${loadMs.toFixed(0)} ms`);
  const rows = await timeShapes(ort, session, ctx.shapes, ctx.warmup, ctx.reps, ctx.idTable);
  await session.release();
  return { runtime: `onnxruntime-node ${pkg.version}`, ep, load_ms: loadMs, rows };
}

// ---- row web: onnxruntime-web's webgpu bundle on dawn.node --------------------------------
function attributes(obj) {
  const out = {};
  for (let o = obj; o && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
    for (const n of Object.getOwnPropertyNames(o)) {
      if (n === "constructor" || n in out) continue;
      try {
        const v = obj[n];
        if (typeof v === "string" || typeof v === "number") out[n] = v;
      } catch { /* not an attribute */ }
    }
  }
  return out;
}

async function rowWeb(ctx) {
  const ep = opt["ep-web"];
  const about = {};
  if (ep === "webgpu") {
    const webgpu = need("webgpu");
    const { create, globals } = await import(pathToFileURL(webgpu).href);
    Object.assign(globalThis, globals);
    const gpu = create(opt["dawn-flag"]);
    if (typeof globalThis.navigator === "undefined") globalThis.navigator = {};
    Object.defineProperty(globalThis.navigator, "gpu", { value: gpu, configurable: true });
    const adapter = await gpu.requestAdapter();
    if (!adapter) throw new Error("dawn.node: no WebGPU adapter (no GPU, or Vulkan not set up)");
    about.adapter = attributes(adapter.info);
    const device = await adapter.requestDevice();
    // dawn.node 0.6.2 rejects views of a SharedArrayBuffer in writeBuffer: give it a copy
    const proto = Object.getPrototypeOf(device.queue);
    const write = proto.writeBuffer;
    let copied = 0;
    proto.writeBuffer = function (buffer, offset, data, dataOffset, size) {
      const shared = typeof SharedArrayBuffer !== "undefined" &&
        (data instanceof SharedArrayBuffer ||
         (ArrayBuffer.isView(data) && data.buffer instanceof SharedArrayBuffer));
      if (shared) { // copy only the range written; offsets are in elements of a typed array
        copied++;
        const view = data instanceof SharedArrayBuffer ? new Uint8Array(data)
          : data instanceof DataView ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
          : data;
        const from = dataOffset ?? 0;
        data = view.slice(from, size === undefined ? undefined : from + size);
        return write.call(this, buffer, offset, data);
      }
      return write.call(this, buffer, offset, data, dataOffset, size);
    };
    device.destroy();
    about.write_buffer_copies = () => copied;
    say(`dawn.node adapter: ${about.adapter.vendor} / ${about.adapter.architecture} / ` +
        `${about.adapter.description}`);
  }
  const dist = join(ctx.nm, "onnxruntime-web", "dist");
  const pkg = JSON.parse(readFileSync(join(ctx.nm, "onnxruntime-web", "package.json"), "utf8"));
  const ort = await import(pathToFileURL(join(dist, "ort.webgpu.bundle.min.mjs")).href);
  ort.env.logLevel = "error";
  ort.env.wasm.numThreads = 1; // more threads: workers that `fetch` file: URLs
  ort.env.wasm.proxy = false;
  const wasm = readFileSync(join(dist, "ort-wasm-simd-threaded.asyncify.wasm"));
  ort.env.wasm.wasmBinary = wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.length);
  const t0 = performance.now();
  const model = readFileSync(ctx.model);
  const data = readFileSync(ctx.data || join(dirname(ctx.model), ctx.location));
  const session = await ort.InferenceSession.create(new Uint8Array(model), {
    executionProviders: [ep],
    graphOptimizationLevel: "all",
    externalData: [{ path: ctx.location, data: new Uint8Array(data.buffer, data.byteOffset,
                                                              data.length) }],
  });
  const loadMs = performance.now() - t0;
  say(`onnxruntime-web ${pkg.version} (webgpu bundle), EP ${ep}: session in ` +
      `${loadMs.toFixed(0)} ms`);
  const rows = await timeShapes(ort, session, ctx.shapes, ctx.warmup, ctx.reps, ctx.idTable);
  await session.release();
  const copies = about.write_buffer_copies ? about.write_buffer_copies() : 0;
  delete about.write_buffer_copies;
  return { runtime: `onnxruntime-web ${pkg.version} webgpu bundle`, ep, load_ms: loadMs,
           ...about, write_buffer_shared_copies: copies, rows };
}

// The external data location the graph names (one file for all tensors): read from the
// protobuf without an ONNX library, by finding the "location" key's value.
function externalLocation(modelPath) {
  const bytes = readFileSync(modelPath);
  const key = Buffer.from("location");
  const at = bytes.indexOf(key);
  if (at < 0) return null;
  // StringStringEntryProto: field 1 "location", then field 2 (0x12) length-prefixed value
  let p = at + key.length;
  if (bytes[p] !== 0x12) return null;
  p++;
  let len = 0, shift = 0;
  for (;;) {
    const b = bytes[p++];
    len |= (b & 0x7f) << shift;
    if (!(b & 0x80)) break;
    shift += 7;
  }
  return bytes.subarray(p, p + len).toString("utf8");
}

async function child(row) {
  const ctx = {
    nm: need("node-modules"), model: need("model"), data: opt.data ? resolve(opt.data) : null,
    shapes: parseShapes(opt.shapes), warmup: Math.max(1, Number(opt.warmup)),
    reps: Number(opt.reps),
    idTable: opt.ids ? JSON.parse(readFileSync(opt.ids, "utf8")) : null,
  };
  ctx.location = externalLocation(ctx.model);
  if (!ctx.location) throw new Error(`${ctx.model}: no external data location in the graph`);
  const result = row === "node" ? await rowNode(ctx) : await rowWeb(ctx);
  writeFileSync(opt["child-out"], JSON.stringify(result));
}

// ---- the parent: each row in a child process, then the table -------------------------------
function cosine(a, b) {
  let ab = 0, aa = 0, bb = 0, diff = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i]; aa += a[i] * a[i]; bb += b[i] * b[i];
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
  }
  return { cosine: ab / Math.sqrt(aa * bb), max_abs_diff: diff };
}

function parent() {
  const rows = opt.rows.split(",").filter(Boolean);
  for (const r of rows) if (r !== "node" && r !== "web") throw new Error(`row ${r}: node or web`);
  const shapes = parseShapes(opt.shapes);
  const meta = opt.meta ? JSON.parse(readFileSync(opt.meta, "utf8")) : {};
  const result = {
    date: new Date().toISOString(), node: process.version, platform: `${process.platform} ` +
    `${process.arch}`, model: opt.model, graph: opt.label, shapes, warmup: Number(opt.warmup),
    reps: Number(opt.reps), meta, rows: {}, failed: {},
  };
  const tmp = mkdtempSync(join(tmpdir(), "peers-"));
  const forward = [];
  for (const [k, v] of Object.entries(opt)) {
    if (["rows", "out", "child", "child-out", "meta", "label"].includes(k)) continue;
    if (typeof v === "boolean") { if (v) forward.push(`--${k}`); continue; }
    for (const x of Array.isArray(v) ? v : [v]) forward.push(`--${k}=${x}`);
  }
  for (const row of rows) {
    const out = join(tmp, `${row}.json`);
    say(`row ${row}: starting`);
    const proc = spawnSync(process.execPath, [HERE, ...forward, `--child=${row}`,
                                              `--child-out=${out}`],
                           { stdio: ["ignore", "inherit", "inherit"],
                             timeout: Number(opt["row-timeout"]) * 1000 });
    if (existsSync(out)) {
      result.rows[row] = JSON.parse(readFileSync(out, "utf8"));
    } else {
      const why = proc.error ? String(proc.error) :
        `exit status ${proc.status}${proc.signal ? `, signal ${proc.signal}` : ""}`;
      result.failed[row] = why;
      say(`row ${row}: FAILED (${why})`);
    }
  }
  rmSync(tmp, { recursive: true, force: true });
  table(result, shapes);
  if (opt.out) {
    writeFileSync(opt.out, JSON.stringify(result, null, 1) + "\n");
    console.log(`  wrote ${opt.out}`);
  }
  const bad = Object.keys(result.failed).length ||
    Object.values(result.rows).some((r) => r.rows.some((x) => !x.check.ok));
  process.exitCode = bad ? 1 : 0;
}

function table(result, shapes) {
  const A = result.rows.node, B = result.rows.web;
  const m = result.meta || {};
  console.log(`\nall-MiniLM-L6-v2 float32 (ONNX export, external data), ORT peers` +
              `${result.graph ? `, graph ${result.graph} (${basename(result.model)})` : ""}; ` +
              `weights: ${m.weights || "?"}; ids: ${(A || B)?.rows[0]?.ids || "?"}`);
  if (m.gpu) console.log(`  GPU: ${m.gpu}`);
  if (B && B.adapter) {
    console.log(`  dawn.node adapter: ${B.adapter.vendor} / ${B.adapter.architecture} / ` +
                `${B.adapter.description}`);
  }
  for (const [name, r] of Object.entries(result.rows)) {
    console.log(`  ${name}: ${r.runtime}, EP ${r.ep}, session ${r.load_ms.toFixed(0)} ms`);
  }
  for (const [name, why] of Object.entries(result.failed)) console.log(`  ${name}: FAILED ${why}`);
  console.log(`  ms per session.run (ids in, embeddings on the CPU), median / min of ` +
              `${result.reps} after ${result.warmup} warm-up; Node ${result.node}`);
  console.log(`  ${"shape".padStart(7)} ${"node med".padStart(9)} ${"min".padStart(7)} ` +
              `${"web med".padStart(9)} ${"min".padStart(7)} ${"web/node".padStart(9)} ` +
              `${"cos(n,w)".padStart(9)}  checks`);
  const f = (x, w = 9) => (x == null ? "-" : x.toFixed(2)).padStart(w);
  result.compare = [];
  for (const [b, t] of shapes) {
    const a = A?.rows.find((r) => r.batch === b && r.tokens === t);
    const w = B?.rows.find((r) => r.batch === b && r.tokens === t);
    const cmp = a && w ? cosine(a.first_row, w.first_row) : null;
    result.compare.push({ batch: b, tokens: t, ...(cmp || {}),
                          web_over_node: a && w ? w.median_ms / a.median_ms : null });
    const checks = [a, w].filter(Boolean).map((r) => r.check.ok ? "ok" :
      `BAD(finite ${r.check.finite}, norm err ${r.check.max_norm_error.toExponential(1)})`);
    console.log(`  ${`${b}x${t}`.padStart(7)} ${f(a?.median_ms)} ${f(a?.min_ms, 7)} ` +
                `${f(w?.median_ms)} ${f(w?.min_ms, 7)} ` +
                `${(a && w ? (w.median_ms / a.median_ms).toFixed(2) : "-").padStart(9)} ` +
                `${(cmp ? cmp.cosine.toFixed(5) : "-").padStart(9)}  ${checks.join(" ")}`);
  }
}

try {
  if (opt.child) await child(opt.child);
  else parent();
} catch (e) {
  say(`FAILED: ${(e && e.stack) || e}`);
  process.exit(2);
}
