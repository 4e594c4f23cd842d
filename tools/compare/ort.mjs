// ONNX Runtime Web, vendored by tools/race.py and served at /ort/, running the same
// all-MiniLM-L6-v2 (exported to ONNX with mean pooling and L2 norm) on WebGPU, through the
// page's own code for it (web/ort-session.js, served at the site's root).
import * as ort from "/ort/ort.webgpu.min.mjs";
import { createSession, embedIds } from "/ort-session.js";

ort.env.wasm.wasmPaths = "/ort/";
let session = null;

window.loadOrt = async (url) => {
  const t0 = performance.now();
  session = await createSession(ort, url);
  return performance.now() - t0;
};

// ids: array of B arrays of T token ids (padded with 0); lengths: real tokens per row.
window.runOrt = async (ids, lengths) => {
  const { ms, data } = await embedIds(ort, session, ids.flat(), lengths, ids.length, ids[0].length);
  return { ms, first: Array.from(data.slice(0, 384)) };
};
document.getElementById("state").textContent = "ready";
