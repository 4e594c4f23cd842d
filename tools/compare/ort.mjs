// ONNX Runtime Web, vendored by tools/bench_compare.py and served at /ort/, running the
// same all-MiniLM-L6-v2 (exported to ONNX with mean pooling and L2 norm) on WebGPU.
import * as ort from "/ort/ort.webgpu.min.mjs";

ort.env.wasm.wasmPaths = "/ort/";
let session = null;

window.loadOrt = async (url) => {
  const t0 = performance.now();
  session = await ort.InferenceSession.create(url, { executionProviders: ["webgpu"] });
  return performance.now() - t0;
};

// ids: array of B arrays of T token ids (padded with 0); lengths: real tokens per row.
window.runOrt = async (ids, lengths) => {
  const B = ids.length, T = ids[0].length;
  const flat = new BigInt64Array(B * T), mask = new BigInt64Array(B * T);
  ids.forEach((row, b) => row.forEach((id, t) => {
    flat[b * T + t] = BigInt(id);
    mask[b * T + t] = t < lengths[b] ? 1n : 0n;
  }));
  const t0 = performance.now();
  const out = await session.run({
    input_ids: new ort.Tensor("int64", flat, [B, T]),
    attention_mask: new ort.Tensor("int64", mask, [B, T]),
  });
  const ms = performance.now() - t0;
  const e = out.embeddings.data;
  return { ms, first: Array.from(e.slice(0, 384)) };
};
document.getElementById("state").textContent = "ready";
