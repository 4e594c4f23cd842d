// ONNX Runtime Web running all-MiniLM-L6-v2's ONNX export (tools/race.py: float32, mean pooling
// and L2 norm included) on WebGPU, in one place for the page's race (web/race-worker.js) and
// `bench compare` (tools/compare/ort.mjs).

// A session on ONNX Runtime Web's WebGPU provider; `model`: the .onnx file's bytes or URL.
export async function createSession(ort, model) {
  return await ort.InferenceSession.create(model, { executionProviders: ["webgpu"] });
}

// One forward pass. ids: B*T token ids, row-major, padded with 0; lengths: each row's real
// tokens (the attention mask). Returns {ms, data}: data the (B, 384) embeddings, row-major, in
// a Float32Array of its own; ms from the input tensors made to the embeddings read back.
export async function embedIds(ort, session, ids, lengths, B, T) {
  const t0 = performance.now();
  const input = new BigInt64Array(B * T);
  const mask = new BigInt64Array(B * T);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      input[b * T + t] = BigInt(ids[b * T + t]);
      mask[b * T + t] = t < lengths[b] ? 1n : 0n;
    }
  }
  const out = await session.run({
    input_ids: new ort.Tensor("int64", input, [B, T]),
    attention_mask: new ort.Tensor("int64", mask, [B, T]),
  });
  const data = new Float32Array(out.embeddings.data); // its own buffer: it may be transferred
  const ms = performance.now() - t0;
  for (const tensor of Object.values(out)) tensor.dispose?.();
  return { ms, data };
}
