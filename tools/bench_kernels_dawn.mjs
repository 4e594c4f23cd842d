// Matmul kernels on Dawn (Chrome's WebGPU engine) under Node, without a browser: the
// Dawn column of tools/bench_kernels.py, which writes the job and reads the result.
//
//   node tools/bench_kernels_dawn.mjs JOB.json RESULT.json
//
// JOB.json: {webgpu: folder of the npm package `webgpu` (index.js), flags: create() flags
// (e.g. ["enable-dawn-features=disable_robustness"]), kernels: {op: WGSL text}, points: [{op,
// M, N, K, f16, grid, constants}], budget_s, compile_only}. The kernel texts are those
// pybridge.dispatch.shader_source(op) resolves, variants included: nothing here builds WGSL.
// Each point: inputs from a fixed generator, one warm-up dispatch, then R dispatches recorded
// into one compute pass and one submission, timed from submit to onSubmittedWorkDone (R fills
// budget_s); rows 0, M/2 and M-1 of C are checked against a float64 reference computed here.
// RESULT.json: {adapter, features, points: [{seconds, gflops, rel_err} | {error}]}, rewritten
// after every point.
// compile_only: create the pipelines and stop (with the flag enable-dawn-features=dump_shaders
// Dawn logs the generated SPIR-V: bench_kernels.py keeps stdout and stderr).

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [jobPath, resultPath] = process.argv.slice(2);
const job = JSON.parse(readFileSync(jobPath, 'utf8'));
const { create, globals } = await import(pathToFileURL(join(job.webgpu, 'index.js')).href);
Object.assign(globalThis, globals);

// Weights and activations k/1024, |k| < 1024: exact in float16, so f16 and f32 runs share them.
function fill(n, seed) {
  const out = new Float32Array(n);
  let x = (seed * 2654435761) >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = ((x >>> 21) - 1024) / 1024;
  }
  return out;
}

// float32 -> float16 bits for values exact in float16 (normal or zero), as fill() makes
function toHalves(f) {
  const u = new Uint32Array(f.buffer, f.byteOffset, f.length);
  const h = new Uint16Array(f.length);
  for (let i = 0; i < f.length; i++) {
    const x = u[i];
    const e = ((x >>> 23) & 0xff) - 112;
    h[i] = ((x >>> 16) & 0x8000) | (e > 0 ? (e << 10) | ((x >>> 13) & 0x3ff) : 0);
  }
  return h;
}

async function main() {
  const gpu = create(job.flags || []);
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('dawn.node found no adapter');
  const wanted = ['shader-f16', 'subgroups', 'timestamp-query'].filter((f) => adapter.features.has(f));
  const limits = {};
  for (const name of ['maxComputeWorkgroupStorageSize', 'maxStorageBufferBindingSize', 'maxBufferSize',
    'maxComputeInvocationsPerWorkgroup']) {
    limits[name] = adapter.limits[name];
  }
  const device = await adapter.requestDevice({ requiredFeatures: wanted, requiredLimits: limits });
  const info = adapter.info || {};
  const result = {
    adapter: { vendor: info.vendor, architecture: info.architecture, device: info.device,
      description: info.description },
    features: [...device.features].sort(), points: [],
  };
  writeFileSync(resultPath, JSON.stringify(result));
  // Errors reach onuncapturederror (error scopes are not used: dawn.node 0.6.2 aborted now and
  // then on the H200 around pipeline creation; bench_kernels.py resumes after a crash).
  const errors = [];
  device.onuncapturederror = (ev) => errors.push(ev.error.message);
  const modules = {};
  const pipelines = {};
  function pipeline(op, constants) {
    const key = op + JSON.stringify(constants);
    if (!pipelines[key]) {
      if (!modules[op]) modules[op] = device.createShaderModule({ code: job.kernels[op], label: op });
      pipelines[key] = device.createComputePipeline({ layout: 'auto', label: op,
        compute: { module: modules[op], entryPoint: 'main', constants } });
    }
    return pipelines[key];
  }
  const S = GPUBufferUsage.STORAGE;
  const D = GPUBufferUsage.COPY_DST;
  function buffer(data, usage) {
    const buf = device.createBuffer({ size: Math.ceil(data.byteLength / 16) * 16, usage: usage | D });
    device.queue.writeBuffer(buf, 0, data.buffer, data.byteOffset, data.byteLength);
    return buf;
  }
  const cache = {};  // inputs of the last shape (host arrays and GPU buffers): points share them
  for (const pt of job.points) {
    const { op, M, N, K, f16, grid } = pt;
    const constants = pt.constants || {};
    try {
      errors.length = 0;
      const p = pipeline(op, constants);
      if (job.compile_only) {
        await device.queue.onSubmittedWorkDone();
        result.points.push(errors.length ? { error: errors.join('; ') } : { compiled: true });
        continue;
      }
      const key = `${M},${N},${K}`;
      if (cache.key !== key) {
        for (const b of Object.values(cache.gpu || {})) b.destroy();
        const A = fill(M * K, 1);
        const B = fill(N * K, 2);
        const bias = fill(N, 3);
        const gpu = {
          a: buffer(A, S), b32: buffer(B, S), b16: buffer(toHalves(B), S), bias: buffer(bias, S),
          params: buffer(new Uint32Array([M, N, K, 0]), GPUBufferUsage.UNIFORM),
          c: device.createBuffer({ size: M * N * 4, usage: S | GPUBufferUsage.COPY_SRC }),
          read: device.createBuffer({ size: M * N * 4, usage: GPUBufferUsage.MAP_READ | D }),
        };
        Object.assign(cache, { key, A, B, bias, gpu });
      }
      const g = cache.gpu;
      const group = device.createBindGroup({ layout: p.getBindGroupLayout(0), entries: [
        g.a, f16 ? g.b16 : g.b32, g.bias, g.params, g.c,
      ].map((buffer, binding) => ({ binding, resource: { buffer } })) });
      const run = async (reps) => {
        const enc = device.createCommandEncoder();
        const pass = enc.beginComputePass();
        pass.setPipeline(p);
        pass.setBindGroup(0, group);
        for (let i = 0; i < reps; i++) pass.dispatchWorkgroups(...grid);
        pass.end();
        const t0 = performance.now();
        device.queue.submit([enc.finish()]);
        await device.queue.onSubmittedWorkDone();
        return (performance.now() - t0) / 1e3;
      };
      await run(1);
      if (errors.length) throw new Error(errors.join('; '));
      const one = await run(1);
      const reps = Math.max(3, Math.min(200, Math.floor(job.budget_s / Math.max(one, 1e-6))));
      const seconds = (await run(reps)) / reps;
      const enc = device.createCommandEncoder();
      enc.copyBufferToBuffer(g.c, 0, g.read, 0, M * N * 4);
      device.queue.submit([enc.finish()]);
      await g.read.mapAsync(GPUMapMode.READ);
      const C = new Float32Array(g.read.getMappedRange().slice(0));
      g.read.unmap();
      if (errors.length) throw new Error(errors.join('; '));
      let maxErr = 0;
      let maxRef = 1;
      for (const r of new Set([0, M >> 1, M - 1])) {
        for (let n = 0; n < N; n++) {
          let s = cache.bias[n];
          for (let k = 0; k < K; k++) s += cache.A[r * K + k] * cache.B[n * K + k];
          maxErr = Math.max(maxErr, Math.abs(C[r * N + n] - s));
          maxRef = Math.max(maxRef, Math.abs(s));
        }
      }
      result.points.push({ seconds, gflops: 2 * M * N * K / seconds / 1e9, rel_err: maxErr / maxRef });
    } catch (e) {
      result.points.push({ error: String(e.message || e).slice(0, 2000) });
    }
    writeFileSync(resultPath, JSON.stringify(result));  // after every point: a crash keeps them
  }
  writeFileSync(resultPath, JSON.stringify(result));
}

await main();
// Exit without tearing Dawn down: on the H200, dawn.node 0.6.2 aborted at exit once
// ("std::system_error: Invalid argument") after its device was destroyed.
process.exit(0);
