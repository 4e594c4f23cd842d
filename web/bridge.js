// Thin JS helpers that Python calls (registered in Pyodide as the module `pybridge_js`).
//
// Each helper borrows a numpy array's bytes through `getBuffer('u8')` — a Uint8Array over
// the wasm heap, no copy — uses it and releases it within one synchronous call. Views are
// never kept: wasm memory growth detaches them. Python passes arrays as temporary PyProxies,
// which Pyodide destroys when the call returns.

import { Sha256, toHex } from "./sha256.js";

const padded = (n) => Math.max(4, (n + 3) & ~3);

function borrow(pyArray) {
  const view = pyArray.getBuffer("u8");
  if (!view.c_contiguous) {
    view.release();
    throw new TypeError("pybridge: array is not C-contiguous");
  }
  return view;
}

// bytes [src, src+size) of a view -> GPU buffer at `offset`: the whole 4-byte words straight
// from the view (1 copy, inside writeBuffer). WebGPU writes whole words only, so 1-3 trailing
// bytes are copied into a zeroed word first, which writeBuffer copies with its zeros: the
// "pad" copies of pybridge.accounting (4 bytes beyond the view's one copy).
function writeWords(queue, gpuBuffer, offset, bytes, src, size) {
  const whole = size & ~3;
  if (whole) queue.writeBuffer(gpuBuffer, offset, bytes, src, whole);
  if (size !== whole) {
    const tail = new Uint8Array(4);
    tail.set(bytes.subarray(src + whole, src + size));
    queue.writeBuffer(gpuBuffer, offset + whole, tail);
  }
}

// Upload, "view" path: bytes [src, src+size) of the array -> GPU buffer at `offset`.
// Copies the data once (inside writeBuffer); a length that is not whole 4-byte words also
// copies its padded last word (writeWords).
export function writeBuffer(queue, gpuBuffer, offset, pyArray, src, size) {
  const view = borrow(pyArray);
  try {
    writeWords(queue, gpuBuffer, offset, view.data, src, size);
  } finally {
    view.release();
  }
}

// Upload, "staging" path (and uniforms): bytes [src, src+n) of the array -> the start of a
// buffer mapped for writing. Copies the data once.
export function fillMapped(gpuBuffer, pyArray, src, n) {
  const view = borrow(pyArray);
  try {
    const mapped = new Uint8Array(gpuBuffer.getMappedRange(0, padded(n)), 0, n);
    mapped.set(view.data.subarray(src, src + n));
  } finally {
    view.release();
  }
}

// Readback: the first n bytes of a mapped range -> the array at byte `dst`. Copies once.
export function copyMappedInto(mapped, pyArray, dst, n) {
  const view = borrow(pyArray);
  try {
    if (dst + n > view.data.byteLength) {
      throw new RangeError(`pybridge: ${n} bytes at ${dst} do not fit an array of ${view.data.byteLength}`);
    }
    view.data.set(new Uint8Array(mapped, 0, n), dst);
  } finally {
    view.release();
  }
}

// Plans (pybridge.backend.Plan): a whole forward pass resolved once in Python, then run with
// ONE call per batch. makePlan keeps the pipelines, bind groups and grids (3 per dispatch);
// `inputs` lists [buffer, offset, nbytes] written from numpy each run, `outputs` lists
// [buffer, offset, size, at]: copied to byte `at` of the run's MAP_READ buffer.
export function makePlan(pipelines, bindGroups, grids, inputs, outputs, readBytes) {
  return { pipelines, bindGroups, grids: Uint32Array.from(grids), inputs, outputs, readBytes };
}

// One run: each input written from its numpy array's wasm-heap view (1 copy, in writeBuffer),
// every dispatch in one compute pass, the outputs copied to `readBuffer`, one submit, then
// mapAsync. The error scopes are pushed and popped inside this call, so no other work can
// interleave with them. Resolves to null, or to {validation, oom, thrown, mapError}.
export function runPlan(device, plan, readBuffer, ...arrays) {
  device.pushErrorScope("out-of-memory");
  device.pushErrorScope("validation");
  let thrown = null;
  try {
    const queue = device.queue;
    // no arrays: the dispatches alone (the baseline paths move the data themselves)
    if (arrays.length) plan.inputs.forEach(([buffer, offset, nbytes], i) => {
      const view = borrow(arrays[i]);
      try {
        writeWords(queue, buffer, offset, view.data, 0, nbytes); // 1-3 trailing bytes: padded
      } finally {
        view.release();
      }
    });
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    const { pipelines, bindGroups, grids } = plan;
    for (let i = 0; i < pipelines.length; i++) {
      pass.setPipeline(pipelines[i]);
      pass.setBindGroup(0, bindGroups[i]);
      pass.dispatchWorkgroups(grids[3 * i], grids[3 * i + 1], grids[3 * i + 2]);
    }
    pass.end();
    if (readBuffer) {
      for (const [buffer, offset, size, at] of plan.outputs) {
        encoder.copyBufferToBuffer(buffer, offset, readBuffer, at, size);
      }
    }
    queue.submit([encoder.finish()]);
  } catch (err) {
    thrown = String((err && err.message) || err);
  }
  // mapAsync inside the scopes: its validation errors belong to this run, not the next op
  const mapped =
    thrown || !readBuffer
      ? Promise.resolve(null)
      : readBuffer.mapAsync(GPUMapMode.READ, 0, plan.readBytes).then(
          () => null,
          (err) => String((err && err.message) || err),
        );
  const validation = device.popErrorScope();
  const oom = device.popErrorScope();
  return Promise.all([validation, oom, mapped]).then(([v, o, mapError]) =>
    v || o || thrown || mapError
      ? { validation: v && v.message, oom: o && o.message, thrown, mapError }
      : null,
  );
}

// Profiling a plan (timestamp-query): each dispatch in a compute pass of its own with
// timestamps at its start and end, then the whole plan in one pass, timed the same way.
// Resolves to [ns of dispatch 0, ..., ns of dispatch n-1, ns of the whole single pass].
// Everything it creates is destroyed before it resolves.
export async function profilePlan(device, plan, ...arrays) {
  const n = plan.pipelines.length;
  const count = 2 * n + 2;
  const querySet = device.createQuerySet({ type: "timestamp", count });
  const resolved = device.createBuffer({
    size: 8 * count,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  const read = device.createBuffer({
    size: 8 * count,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  try {
    plan.inputs.forEach(([buffer, offset, nbytes], i) => {
      if (nbytes % 4) throw new RangeError("profilePlan: inputs must be whole 4-byte words");
      const view = borrow(arrays[i]);
      try {
        device.queue.writeBuffer(buffer, offset, view.data, 0, nbytes);
      } finally {
        view.release();
      }
    });
    const { pipelines, bindGroups, grids } = plan;
    const encoder = device.createCommandEncoder();
    const record = (pass, i) => {
      pass.setPipeline(pipelines[i]);
      pass.setBindGroup(0, bindGroups[i]);
      pass.dispatchWorkgroups(grids[3 * i], grids[3 * i + 1], grids[3 * i + 2]);
    };
    for (let i = 0; i < n; i++) {
      const pass = encoder.beginComputePass({
        timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 },
      });
      record(pass, i);
      pass.end();
    }
    const whole = encoder.beginComputePass({
      timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * n, endOfPassWriteIndex: 2 * n + 1 },
    });
    for (let i = 0; i < n; i++) record(whole, i);
    whole.end();
    encoder.resolveQuerySet(querySet, 0, count, resolved, 0);
    encoder.copyBufferToBuffer(resolved, 0, read, 0, 8 * count);
    device.queue.submit([encoder.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(read.getMappedRange());
    const ns = [];
    for (let i = 0; i <= n; i++) ns.push(Number(t[2 * i + 1] - t[2 * i]));
    read.unmap();
    return ns;
  } finally {
    querySet.destroy();
    resolved.destroy();
    read.destroy();
  }
}

// After a run: bytes [at, at+n) of the mapped read buffer -> each numpy array (one copy
// each), then unmap. `targets` is a flat list of (pyArray, at, n).
export function readMapped(buffer, size, ...targets) {
  try {
    const mapped = buffer.getMappedRange(0, size);
    for (let i = 0; i < targets.length; i += 3) {
      const view = borrow(targets[i]);
      try {
        view.data.set(new Uint8Array(mapped, targets[i + 1], targets[i + 2]));
      } finally {
        view.release();
      }
    }
  } finally {
    buffer.unmap();
  }
}

export function unmapIfMapped(buffer) {
  if (buffer.mapState === "mapped") buffer.unmap();
}

// A run abandoned while its map was pending: destroy its read buffer once the map settles.
export function destroyWhenSettled(promise, buffer) {
  promise.finally(() => buffer.destroy());
}

// Proof hooks for the zero-copy claim (tests and the page's self-check).
export function viewInfo(pyArray) {
  const view = borrow(pyArray);
  try {
    return {
      byteOffset: view.data.byteOffset,
      byteLength: view.data.byteLength,
      isWasmHeap: view.data.buffer === self.pyodide._module.HEAPU8.buffer,
    };
  } finally {
    view.release();
  }
}

export function writeByte(pyArray, index, value) {
  const view = borrow(pyArray);
  try {
    if (index < 0 || index >= view.data.byteLength) {
      throw new RangeError(`pybridge: byte ${index} outside 0..${view.data.byteLength - 1}`);
    }
    view.data[index] = value;
  } finally {
    view.release();
  }
}

// Live PyProxies, for leak checks: tracing is switched on at the first call (it records a
// stack per proxy, so it stays off unless a test asks).
export function liveProxies() {
  const module = self.pyodide._module;
  if (!module.pyproxy_alloc_map.tracing) {
    module.enable_pyproxy_allocation_tracing();
    module.pyproxy_alloc_map.tracing = true;
  }
  return module.pyproxy_alloc_map.size;
}

// The wasm heap's current size, for the leak and weights-streaming checks.
export function wasmHeapBytes() {
  return self.pyodide._module.HEAPU8.buffer.byteLength;
}

// Weights without a GPU (pybridge.cpu): a stand-in for a buffer created mappedAtCreation,
// which streamWeights fills like one; Python then copies `bytes` into numpy memory.
export function hostBuffer(n) {
  const bytes = new Uint8Array(n);
  return { bytes, getMappedRange: () => bytes.buffer };
}

// Per-block SHA-256 of a stream, for streamWeights: each `blockBytes` bytes of the file (the
// last block shorter) get their own digest, in file order. WebCrypto's crypto.subtle.digest
// is native code (~7x sha256.js) but has no incremental API: each chunk is copied into one
// reusable block-sized scratch array, and each block filled is digested while the next one
// fills. Peak extra memory: the scratch block, plus WebCrypto's copies of the blocks still
// being digested (MAX_PENDING_DIGESTS; one more makes the stream wait for the oldest): with
// 4 MiB blocks, 16 MiB at most.
// WebCrypto exists in secure contexts only (https, localhost): elsewhere (a plain-http LAN
// page, which has no WebGPU either and loads into the CPU backend) each block is fed straight
// to sha256.js instead, no scratch: the same digests, at its speed.
const MAX_PENDING_DIGESTS = 2;

class BlockDigests {
  // `fail(why)`: the download's named error (a digest WebCrypto refuses becomes one)
  constructor(blockBytes, totalBytes, fail) {
    this.blockBytes = blockBytes;
    this.fail = fail;
    this.subtle = globalThis.crypto?.subtle ?? null;
    this.via = this.subtle ? "WebCrypto" : "sha256.js";
    // no block is longer than the file: a manifest's huge block size allocates no more
    this.scratch = this.subtle ? new Uint8Array(Math.min(blockBytes, totalBytes)) : null;
    this.waitMs = 0; // waiting on WebCrypto: to bound the blocks in flight, and at the end
    this.reset();
  }

  // the download starts over from byte 0: drop the digests and the partial block
  reset() {
    this.fill = 0; // bytes of the current block seen
    this.done = []; // hex digest of each block finished, in order
    this.pending = []; // WebCrypto digests in flight, oldest first
    this.js = this.subtle ? null : new Sha256();
  }

  // the next bytes of the file; a block filled is digested
  async update(bytes) {
    for (let off = 0; off < bytes.byteLength;) {
      const n = Math.min(this.blockBytes - this.fill, bytes.byteLength - off);
      const part = bytes.subarray(off, off + n);
      if (this.js) this.js.update(part);
      else this.scratch.set(part, this.fill); // the one extra copy ("hash" in pybridge.stats)
      this.fill += n;
      off += n;
      if (this.fill === this.blockBytes) await this.digestBlock();
    }
  }

  // the file's end: the last (shorter) block, then every digest still running; the hex list
  async finish() {
    if (this.fill) await this.digestBlock();
    const t0 = performance.now();
    for (const p of this.pending) this.done.push(toHex(await p));
    this.pending = [];
    this.waitMs += performance.now() - t0;
    return this.done;
  }

  async digestBlock() {
    if (this.js) {
      this.done.push(this.js.hex());
      this.js = new Sha256();
      this.fill = 0;
      return;
    }
    // digest() copies its input before it returns (WebCrypto spec, SubtleCrypto.digest: "Let
    // data be the result of getting a copy of the bytes held by the data parameter", then
    // "Return promise and perform the remaining steps in parallel"), so the scratch block is
    // refilled at once while the digest runs.
    const block = this.done.length + this.pending.length + 1;
    const p = this.subtle.digest("SHA-256", this.scratch.subarray(0, this.fill)).catch((err) => {
      throw this.fail(`WebCrypto could not hash block ${block} (${err.message || err})`);
    });
    p.catch(() => {}); // awaited below or in finish(), or dropped by reset(): never unhandled
    this.pending.push(p);
    this.fill = 0;
    if (this.pending.length > MAX_PENDING_DIGESTS) { // hashing lags the network: wait for it
      const t0 = performance.now();
      this.done.push(toHex(await this.pending.shift()));
      this.waitMs += performance.now() - t0;
    }
  }
}

// Weights: stream `url` into buffers created mappedAtCreation. `plan` lists {buffer, begin,
// end} in file order (file offsets); each network chunk is copied once into the mapped ranges
// it overlaps, then hashed. Nothing passes through the wasm heap. Buffers are left mapped:
// Python checks the hash, then unmaps them (or destroys them all).
//
// `hash` says how the file is checked (pybridge/weights.py compares the result):
// - a number B: the SHA-256 of each B bytes (BlockDigests above), returned as `blocks` (hex)
//   with `blockHash` (how: "WebCrypto" or "sha256.js") and `hashWaitMs`. Peak extra memory:
//   one block, plus the copies of those WebCrypto is still digesting.
// - true: one incremental SHA-256 (sha256.js) over the whole file, returned as `sha256`: for
//   a file without a block list. No chunk is kept: peak extra memory is one chunk.
// - false: no hash.
//
// A dropped connection (or a body that ends early) is resumed where it stopped with a Range
// request (If-Range: the first response's ETag, when strong), `retries` times in a row
// without progress (waiting 0.25, 0.5, 1 s ...); the hash goes on from the same state, the
// partial block too. A resumed response must be the same file (same ETag and size) from the
// byte asked for; a whole file (200) instead is read from its start (the hash, the block
// digests and the partial block start over), and anything else makes the download start
// over, once. Only the network's failures are retried. Errors a retry cannot mend (HTTP
// 4xx/5xx, too many bytes) and running out of retries throw an Error named "DownloadError"
// whose message names the file and how far it got. Works in the page's worker and under Node
// (tools/gpu): no `location` is used.
export async function streamWeights(url, plan, totalBytes, hash, onProgress, retries = 4) {
  const name = String(url).split(/[?#]/)[0].split("/").pop(); // no `location` under Node
  const fail = (why) => Object.assign(new Error(`${url}: ${why}`), { name: "DownloadError" });
  // only the network's own failures are retried: a refused write into a buffer (a lost
  // device, a load cancelled from Python) or a progress callback that raises goes up as is
  const network = (p) => p.catch((err) => {
    throw Object.assign(err instanceof Error ? err : new Error(String(err)), { network: true });
  });
  const ranges = plan.map((p) => ({
    begin: p.begin,
    end: p.end,
    bytes: new Uint8Array(p.buffer.getMappedRange(), 0, p.end - p.begin),
  }));
  const blocks = typeof hash === "number" ? new BlockDigests(hash, totalBytes, fail) : null;
  const whole = () => (hash === true ? new Sha256() : null);
  let sha = whole();
  let pos = 0;
  let peakChunk = 0;
  let lastReport = 0;
  let etag = null;
  let modified = null;
  let failures = 0; // in a row, without progress
  let resumes = 0;
  let restarted = false;
  const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;
  while (pos < totalBytes) {
    const startPos = pos;
    let reader = null;
    try {
      const headers = { Range: `bytes=${pos}-` };
      if (etag && !etag.startsWith("W/")) headers["If-Range"] = etag; // strong tags only
      const resp = await network(fetch(url, pos ? { headers, cache: "no-store" } : {}));
      if (!resp.ok) {
        resp.body?.cancel().catch(() => {});
        throw fail(`HTTP ${resp.status}`);
      }
      const range = /^bytes (\d+)-\d+\/(\d+)$/.exec(resp.headers.get("Content-Range") || "");
      // the same version: its ETag, or (a server without one) its Last-Modified; neither: no
      // resume, the download starts over
      const sameFile = etag ? resp.headers.get("ETag") === etag
        : !!modified && resp.headers.get("Last-Modified") === modified;
      if (pos && !(resp.status === 206 && range && +range[1] === pos && +range[2] === totalBytes && sameFile)) {
        // not the rest of the same file: the file changed, or the server ignores Range. A
        // whole file (200) is read from its start, once; anything else is an error
        if (restarted) {
          resp.body?.cancel().catch(() => {});
          throw fail(`the resumed download answered HTTP ${resp.status} ` +
            `${resp.headers.get("Content-Range") || ""}; the file may have changed on the server`);
        }
        restarted = true;
        pos = 0;
        sha = whole();
        blocks?.reset();
        if (resp.status !== 200) { // another version's bytes, or the wrong ones: start over
          resp.body?.cancel().catch(() => {});
          continue;
        }
      }
      if (!pos) {
        etag = resp.headers.get("ETag");
        modified = resp.headers.get("Last-Modified");
      }
      reader = resp.body.getReader();
      let k = 0;
      for (;;) {
        const { done, value } = await network(reader.read());
        if (done) break;
        const end = pos + value.byteLength;
        if (end > totalBytes) throw fail(`more than the ${totalBytes} bytes its header promised`);
        peakChunk = Math.max(peakChunk, value.byteLength);
        while (k < ranges.length && ranges[k].end <= pos) k++;
        for (let j = k; j < ranges.length && ranges[j].begin < end; j++) {
          const r = ranges[j];
          const s = Math.max(r.begin, pos);
          const e = Math.min(r.end, end);
          if (e > s) r.bytes.set(value.subarray(s - pos, e - pos), s - r.begin);
        }
        // after the bytes landed: the hash covers what was written
        if (sha) sha.update(value);
        if (blocks) await blocks.update(value);
        pos = end;
        const now = performance.now();
        if (onProgress && now - lastReport > 50) {
          lastReport = now;
          onProgress(pos, totalBytes);
        }
      }
      if (pos < totalBytes) {
        throw Object.assign(new Error("the body ended early"), { network: true });
      }
    } catch (err) {
      reader?.cancel().catch(() => {}); // a connection still open stops downloading
      if (!err.network) throw err;
      if (err.status) throw fail(`HTTP ${err.status}`); // the worker's fetch: an HTTP answer
      if (pos > startPos) failures = 0;
      failures += 1;
      if (failures > retries || resumes >= 100) {
        throw fail(`the download of ${name} stopped at ${mb(pos)} of ${mb(totalBytes)} ` +
          `(${err.message || err}); ${failures - 1} retries resuming from there failed`);
      }
      resumes += 1;
      await new Promise((r) => setTimeout(r, 125 * 2 ** failures));
    }
  }
  const digests = blocks ? await blocks.finish() : null;
  if (onProgress) onProgress(pos, totalBytes);
  return {
    bytes: pos, sha256: sha ? sha.hex() : null, blocks: digests, blockHash: blocks?.via ?? null,
    hashWaitMs: blocks ? blocks.waitMs : 0, peakChunk, resumes,
  };
}

// SHA-256 of an array's bytes fed in chunks of `chunk` bytes (tests the streaming hash).
export function sha256Hex(pyArray, chunk) {
  const view = borrow(pyArray);
  try {
    const h = new Sha256();
    for (let i = 0; i < view.data.byteLength; i += chunk) {
      h.update(view.data.subarray(i, Math.min(i + chunk, view.data.byteLength)));
    }
    return h.hex();
  } finally {
    view.release();
  }
}

// Benchmark floors (tools/bench_datapath.py): the same bytes copied by the browser alone.
// memcpy: `reps` copies of the array's view into a preallocated buffer; returns ms.
export function memcpyMs(pyArray, reps) {
  const view = borrow(pyArray);
  try {
    const dst = new Uint8Array(view.data.byteLength);
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) dst.set(view.data);
    return performance.now() - t0;
  } finally {
    view.release();
  }
}

// A plain fetch of the whole file into one ArrayBuffer (what streaming avoids); returns
// {ms, bytes}.
export async function fetchArrayBufferMs(url) {
  const t0 = performance.now();
  const buf = await (await fetch(url, { cache: "no-store" })).arrayBuffer();
  return { ms: performance.now() - t0, bytes: buf.byteLength };
}

// What any JS code gets from writeBuffer, for the benchmark's yardstick: `reps` writeBuffer
// calls from the array's view, then a wait for the GPU; returns ms.
export async function rawWriteBufferMs(queue, gpuBuffer, pyArray, reps) {
  const view = borrow(pyArray);
  let t0;
  try {
    t0 = performance.now();
    for (let r = 0; r < reps; r++) queue.writeBuffer(gpuBuffer, 0, view.data);
  } finally {
    view.release();
  }
  await queue.onSubmittedWorkDone();
  return performance.now() - t0;
}

// --- Kept files (pybridge.corpus): the browser's origin private file system ----------------
// One folder; the caller names the file. Read into and written from a numpy array's memory
// through a sync access handle (workers only): one copy each way, none through JS arrays.
const KEPT_FOLDER = "pybridge-kept";

// openKept(name, create) -> a sync access handle on the file (the caller closes it), or
// "missing" (create false, no such file) | "unavailable" (no such storage here: Node, a page's
// main thread, a browser without it). With create, the folder's other files go first: one
// file is kept.
export async function openKept(name, create) {
  if (!globalThis.navigator?.storage?.getDirectory ||
      typeof globalThis.FileSystemSyncAccessHandle === "undefined") return "unavailable";
  const folder = await (await navigator.storage.getDirectory())
    .getDirectoryHandle(KEPT_FOLDER, { create: true });
  let file;
  if (create) {
    const others = [];
    for await (const other of folder.keys()) if (other !== name) others.push(other);
    for (const other of others) {
      await folder.removeEntry(other).catch(() => {}); // another tab may hold it: it stays
    }
    file = await folder.getFileHandle(name, { create: true });
  } else {
    try {
      file = await folder.getFileHandle(name);
    } catch (err) {
      if (err.name === "NotFoundError") return "missing";
      throw err;
    }
  }
  // a reader shares the file with other tabs' readers where the browser can ("read-only"
  // handles); elsewhere the option is ignored and the handle is exclusive
  return await file.createSyncAccessHandle(create ? {} : { mode: "read-only" });
}

// The file's first head.byteLength bytes into `head`, the rest into the array -> whether the
// file holds exactly that many bytes (else nothing is read).
export function readKeptInto(access, head, pyArray) {
  const view = borrow(pyArray);
  try {
    if (access.getSize() !== head.byteLength + view.data.byteLength) return false;
    return access.read(head, { at: 0 }) === head.byteLength &&
      access.read(view.data, { at: head.byteLength }) === view.data.byteLength;
  } finally {
    view.release();
  }
}

// The array's bytes after the head, then the head, flushed: a write cut short leaves a head
// of zeros (or a file of the wrong size), which the reader refuses.
export function writeKeptFrom(access, head, pyArray) {
  const view = borrow(pyArray);
  try {
    access.truncate(0);
    access.write(view.data, { at: head.byteLength });
  } finally {
    view.release();
  }
  access.write(head, { at: 0 });
  access.flush();
}
