// ONNX Runtime Web's side of the page's race (web/race.js), in a worker of its own: its wasm,
// its model and its session's start never block the page or Python's worker. Loaded only when
// the race is first run. Messages (answered {type: "result", id, ok, value | error}):
//   {type: "load", module, model, integrity}   ONNX Runtime Web (the module config.json's race
//                                              names) and the model, fetched with the sha256
//                                              config.json lists -> {ms}
//   {type: "run", ids, lengths, shape: [B, T]} one lap -> {ms, data: Float32Array (B*384)}
import { createSession, embedIds } from "./ort-session.js";

let ort = null;
let session = null;

async function load({ module, model, integrity }) {
  const t0 = performance.now();
  const moduleURL = new URL(module, self.location.href);
  ort = await import(moduleURL.href);
  ort.env.wasm.wasmPaths = new URL(".", moduleURL).href; // its wasm lies beside it
  ort.env.logLevel = "error"; // not its warnings about the few shape ops it keeps on the CPU
  let response;
  try {
    response = await fetch(new URL(model, self.location.href), { integrity });
  } catch (err) { // a sha256 that does not match rejects as a network error
    throw new Error(`${model} could not be read (${err.message}); if its sha256 does not ` +
      "match config.json's, run `python3 tools/dev.py setup --race` again");
  }
  if (!response.ok) throw new Error(`${model}: HTTP ${response.status} ${response.statusText}`);
  session = await createSession(ort, new Uint8Array(await response.arrayBuffer()));
  return { ms: performance.now() - t0 };
}

async function answer(msg) {
  if (msg.type === "load") return [await load(msg), []];
  if (msg.type === "run") {
    if (!session) throw new Error("ONNX Runtime Web is not loaded yet");
    const r = await embedIds(ort, session, msg.ids, msg.lengths, msg.shape[0], msg.shape[1]);
    return [r, [r.data.buffer]];
  }
  throw new Error(`race-worker.js: unknown message ${JSON.stringify(msg.type)}`);
}

self.onmessage = async ({ data: msg }) => {
  try {
    const [value, transfer] = await answer(msg);
    self.postMessage({ type: "result", id: msg.id, ok: true, value }, transfer);
  } catch (err) {
    self.postMessage({ type: "result", id: msg.id, ok: false, error: err?.message ?? String(err) });
  }
};
