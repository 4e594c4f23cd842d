// layernorm: out = LayerNorm(x + residual) * gamma + beta, per row (the residual add fused).
// numpy reference: y = x + r; (y - mean) / sqrt(var + eps) * g + b over the last axis (biased
// variance). Tolerance: rtol 1e-4, atol 1e-4.
//
// bindings (group 0)
// | binding | name     | access     | type                                  |
// | ------- | -------- | ---------- | ------------------------------------- |
// | 0       | x        | read       | storage, array<f32>, R x C            |
// | 1       | residual | read       | storage, array<f32>, R x C            |
// | 2       | gamma    | read       | storage, array<f32>, C                |
// | 3       | beta     | read       | storage, array<f32>, C                |
// | 4       | params   | read       | uniform, Params {R, C, eps}           |
// | 5       | out      | read_write | storage, array<f32>, R x C            |
//
// workgroup 128: one workgroup per row, each invocation C / 128 columns (C <= 1024).
// dispatch grid_1d(R, 1): (min(R, 65535), ceil(R / 65535), 1), folded past the per-dimension
// limit; workgroups past the last row return at once.

struct Params {
  R: u32,
  C: u32,
  eps: f32,
}

const WG: u32 = 128u;
const PER: u32 = 8u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> residual: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, 128>;

fn workgroup_sum(v: f32, tid: u32) -> f32 {
  partial[tid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (tid < s) {
      partial[tid] += partial[tid + s];
    }
    workgroupBarrier();
  }
  let total = partial[0];
  workgroupBarrier();
  return total;
}

@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let row = wg.x + wg.y * groups.x;  // the folded grid's row
  if (row >= params.R) {  // uniform per workgroup: before any barrier
    return;
  }
  let C = params.C;
  var v: array<f32, 8>;
  var sum = 0.0;
  for (var i = 0u; i < PER; i++) {
    let col = tid + i * WG;
    if (col < C) {
      v[i] = x[row * C + col] + residual[row * C + col];
      sum += v[i];
    }
  }
  let mean = workgroup_sum(sum, tid) / f32(C);
  var sq = 0.0;
  for (var i = 0u; i < PER; i++) {
    let col = tid + i * WG;
    if (col < C) {
      let d = v[i] - mean;
      sq += d * d;
    }
  }
  let inv = inverseSqrt(workgroup_sum(sq, tid) / f32(C) + params.eps);
  for (var i = 0u; i < PER; i++) {
    let col = tid + i * WG;
    if (col < C) {
      out[row * C + col] = (v[i] - mean) * inv * gamma[col] + beta[col];
    }
  }
}
