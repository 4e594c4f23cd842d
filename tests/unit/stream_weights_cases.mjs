// web/bridge.js streamWeights under Node, against a scripted fetch: drops, bodies that end
// early, servers that ignore Range or whose file changed, HTTP errors. Prints one JSON object
// per case; tests/unit/test_stream_weights.py checks them against hashlib and the file bytes.
// Cases named "blocks: ..." ask for per-block SHA-256 digests (WebCrypto) of BLOCK bytes each.
//
//   node tests/unit/stream_weights_cases.mjs FILE

import { readFileSync } from "node:fs";
import { streamWeights } from "../../web/bridge.js";

const file = new Uint8Array(readFileSync(process.argv[2]));
const total = file.byteLength;
const CHUNK = 4096;
const BLOCK = 65536; // blocks: 4 whole and a short last one of the test's 300000-byte file

// "tensors": 3 ranges of the file, one buffer each (a gap before the first, as a header is)
const cuts = [64, Math.floor(total / 3), Math.floor((2 * total) / 3), total];

function makePlan() {
  return cuts.slice(0, -1).map((begin, i) => {
    const mem = new ArrayBuffer(cuts[i + 1] - begin);
    return { buffer: { getMappedRange: () => mem }, begin, end: cuts[i + 1], mem };
  });
}

// One scripted answer: {status, from, upto, etag, fail: "error" | "end" | null, contentRange}
function respond(a) {
  const source = a.extraBytes ? Buffer.concat([file, new Uint8Array(100)]) : file;
  const body = source.subarray(a.from ?? 0, a.upto ?? source.byteLength);
  let sent = 0;
  const stream = new ReadableStream({
    pull(ctl) {
      if (a.cutAfter !== undefined && sent >= a.cutAfter) {
        if (a.fail === "error") return ctl.error(new TypeError("network error"));
        return ctl.close(); // the body ends early, cleanly
      }
      if (sent >= body.byteLength) return ctl.close();
      const n = Math.min(CHUNK, body.byteLength - sent);
      ctl.enqueue(body.slice(sent, sent + n));
      sent += n;
    },
  });
  const headers = a.etag === null ? {} : { ETag: a.etag ?? '"v1"' };
  if (a.status === 206) {
    headers["Content-Range"] = a.contentRange ?? `bytes ${a.from}-${(a.upto ?? total) - 1}/${total}`;
  }
  return new Response(a.status === 404 ? "not found" : stream, { status: a.status, headers });
}

// script(request index, range start or null) -> answer
async function run(name, script, retries = 4,
  { onProgress = null, detach = false, thrower = false, hash = true, noWebCrypto = false,
    digestFails = false } = {}) {
  const requests = [];
  const plan = makePlan();
  globalThis.fetch = async (url, init = {}) => {
    const range = init.headers?.Range ?? null;
    const start = range ? +/bytes=(\d+)-/.exec(range)[1] : null;
    requests.push({ range, ifRange: init.headers?.["If-Range"] ?? null });
    const answer = script(requests.length - 1, start);
    // the page's worker: its fetch throws an HTTP error, tagged with the status
    if (thrower && answer.status >= 400) throw Object.assign(new Error("x"), { status: answer.status });
    if (detach) structuredClone(plan[0].mem, { transfer: [plan[0].mem] }); // after the views
    return respond(answer);
  };
  let out;
  // a page from a plain-http origin (not a secure context) has no crypto.subtle
  const crypto = Object.getOwnPropertyDescriptor(globalThis, "crypto");
  if (noWebCrypto) {
    Object.defineProperty(globalThis, "crypto", { value: undefined, configurable: true });
  }
  // WebCrypto refusing a block (e.g. out of memory): from the second block on
  const subtle = globalThis.crypto?.subtle;
  if (digestFails) {
    let calls = 0;
    const digest = subtle.digest;
    subtle.digest = (...args) => (++calls >= 2
      ? Promise.reject(new DOMException("digest failed", "OperationError"))
      : digest.apply(subtle, args));
  }
  try {
    const r = await streamWeights("/models/x/weights.safetensors", plan, total, hash, onProgress,
      retries);
    out = { ok: true, sha256: r.sha256, blocks: r.blocks, blockHash: r.blockHash, bytes: r.bytes,
      resumes: r.resumes };
  } catch (err) {
    out = { ok: false, name: err.name, message: err.message };
  } finally {
    Object.defineProperty(globalThis, "crypto", crypto);
    if (digestFails) delete subtle.digest; // the prototype's again
  }
  out.case = name;
  out.requests = requests;
  out.data = detach ? [] : plan.map((p) => Buffer.from(p.mem).toString("base64"));
  console.log(JSON.stringify(out));
}

const whole = { status: 200 };
const rest = (start, extra = {}) => ({ status: 206, from: start, ...extra });

await run("clean", () => whole);
await run("drop once", (i, s) => (i === 0 ? { ...whole, cutAfter: 100_000, fail: "error" } : rest(s)));
await run("ends early", (i, s) => (i === 0 ? { ...whole, cutAfter: 50_000, fail: "end" } : rest(s)));
await run("drops thrice with progress", (i, s) =>
  i < 3 ? (i === 0 ? { ...whole, cutAfter: 40_000 * (i + 1), fail: "error" }
    : rest(s, { cutAfter: 40_000, fail: "error" })) : rest(s));
await run("range ignored", (i) => (i === 0 ? { ...whole, cutAfter: 60_000, fail: "error" } : whole));
await run("file changed", (i, s) =>
  i === 0 ? { ...whole, cutAfter: 60_000, fail: "error" } : rest(s, { etag: '"v2"' }));
await run("wrong offset", (i, s) =>
  i === 0 ? { ...whole, cutAfter: 60_000, fail: "error" }
    : rest(s, { contentRange: `bytes ${s + 8}-${total - 1}/${total}` }));
await run("always drops", (i, s) =>
  i === 0 ? { ...whole, cutAfter: 60_000, fail: "error" } : rest(s, { cutAfter: 0, fail: "error" }), 2);
await run("missing", () => ({ status: 404 }));
await run("too long", () => ({ status: 200, extraBytes: true }));
await run("progress raises", () => whole, 4, { onProgress: () => { throw new Error("callback"); } });
await run("buffer detached", () => whole, 4, { detach: true }); // a lost device, a cancelled load
await run("missing, from the worker's fetch", () => ({ status: 404 }), 4, { thrower: true });
await run("no validator", (i, s) =>
  i === 0 ? { ...whole, etag: null, cutAfter: 60_000, fail: "error" } : rest(s, { etag: null }));

// per-block digests: the partial block goes on across a resume, and is dropped (with the
// digests so far) when the download starts over
const blocks = { hash: BLOCK };
await run("blocks: clean", () => whole, 4, blocks);
await run("blocks: drop once", (i, s) =>
  (i === 0 ? { ...whole, cutAfter: 100_000, fail: "error" } : rest(s)), 4, blocks);
await run("blocks: drop at a block's end", (i, s) =>
  (i === 0 ? { ...whole, cutAfter: BLOCK, fail: "error" } : rest(s)), 4, blocks);
await run("blocks: drops thrice with progress", (i, s) =>
  i < 3 ? (i === 0 ? { ...whole, cutAfter: 40_000, fail: "error" }
    : rest(s, { cutAfter: 40_000, fail: "error" })) : rest(s), 4, blocks);
await run("blocks: range ignored", (i) =>
  (i === 0 ? { ...whole, cutAfter: 140_000, fail: "error" } : whole), 4, blocks);
await run("blocks: file changed", (i, s) =>
  i === 0 ? { ...whole, cutAfter: 140_000, fail: "error" } : rest(s, { etag: '"v2"' }), 4, blocks);
await run("blocks: one block larger than the file", () => whole, 4, { hash: 1 << 22 });
await run("blocks: WebCrypto fails", () => whole, 4, { hash: BLOCK, digestFails: true });
await run("blocks: no WebCrypto, drop once", (i, s) =>
  (i === 0 ? { ...whole, cutAfter: 100_000, fail: "error" } : rest(s)), 4,
{ hash: BLOCK, noWebCrypto: true });
