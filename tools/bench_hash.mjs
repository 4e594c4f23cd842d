// How fast the page can check the weights: web/bridge.js streamWeights over a real weights
// file served from memory (64 KiB chunks, as a browser's body reader gives them), without a
// hash, with the whole-file JS SHA-256 (web/sha256.js) and with per-block WebCrypto digests
// (the manifest's "blocks"); and each hash alone. Prints MB/s, best of `reps` runs.
//
//   node tools/bench_hash.mjs [FILE] [reps]
//   (default FILE: build/site/models/all-MiniLM-L6-v2/model-f32.safetensors)

import { readFileSync } from "node:fs";
import { streamWeights } from "../web/bridge.js";
import { Sha256 } from "../web/sha256.js";

const path = process.argv[2] ?? "build/site/models/all-MiniLM-L6-v2/model-f32.safetensors";
const reps = +(process.argv[3] ?? 3);
const file = new Uint8Array(readFileSync(path));
const CHUNK = 64 << 10;
const BLOCK = 4 << 20; // tools/convert_model.py HASH_BLOCK_BYTES

globalThis.fetch = async () => new Response(new ReadableStream({
  start() { this.sent = 0; },
  pull(ctl) {
    if (this.sent >= file.byteLength) return ctl.close();
    ctl.enqueue(file.subarray(this.sent, Math.min(this.sent + CHUNK, file.byteLength)));
    this.sent += CHUNK;
  },
}), { status: 200, headers: { ETag: '"x"' } });

const mem = new ArrayBuffer(file.byteLength); // one "mapped buffer" holding the whole file
const plan = [{ buffer: { getMappedRange: () => mem }, begin: 0, end: file.byteLength }];

async function best(what, run) {
  let ms = Infinity;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    await run();
    ms = Math.min(ms, performance.now() - t0);
  }
  console.log(`${what.padEnd(46)} ${(file.byteLength / 1e3 / ms).toFixed(0).padStart(6)} MB/s  ` +
    `(${ms.toFixed(0)} ms for ${(file.byteLength / 1e6).toFixed(1)} MB)`);
}

console.log(`${path}, node ${process.version}, best of ${reps}`);
await best("sha256.js alone, 64 KiB chunks", () => {
  const h = new Sha256();
  for (let i = 0; i < file.byteLength; i += CHUNK) h.update(file.subarray(i, i + CHUNK));
  h.hex();
});
await best("crypto.subtle.digest alone, 4 MiB blocks", async () => {
  const all = [];
  for (let i = 0; i < file.byteLength; i += BLOCK) {
    all.push(crypto.subtle.digest("SHA-256", file.subarray(i, i + BLOCK)));
  }
  await Promise.all(all);
});
await best("streamWeights, no hash", () => streamWeights("w", plan, file.byteLength, false));
await best("streamWeights, whole-file sha256.js (before)",
  () => streamWeights("w", plan, file.byteLength, true));
await best("streamWeights, 4 MiB blocks, WebCrypto (after)",
  () => streamWeights("w", plan, file.byteLength, BLOCK));
