// pool: out[b] = normalize(mean over t < length[b] of x[b, t]), masked mean pooling + L2.
// numpy reference: m = x[b, :len].mean(0); m / max(norm(m), 1e-12). Tolerance: rtol 1e-5,
// atol 1e-6.
//
// bindings (group 0)
// | binding | name    | access     | type                                  |
// | ------- | ------- | ---------- | ------------------------------------- |
// | 0       | x       | read       | storage, array<f32>, B x T x C        |
// | 1       | lengths | read       | storage, array<i32>, B (>= 1)         |
// | 2       | params  | read       | uniform, Params {T, C}                |
// | 3       | out     | read_write | storage, array<f32>, B x C            |
//
// workgroup 128: one workgroup per batch row, each invocation C / 128 columns (C <= 1024).
// dispatch grid_1d(B, 1): (min(B, 65535), ceil(B / 65535), 1), folded past the per-dimension
// limit; workgroups past the last row return at once.

struct Params {
  T: u32,
  C: u32,
}

const WG: u32 = 128u;
const PER: u32 = 8u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> lengths: array<i32>;
@group(0) @binding(2) var<uniform> params: Params;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, 128>;

@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let b = wg.x + wg.y * groups.x;  // the folded grid's row
  if (b >= arrayLength(&lengths)) {  // uniform per workgroup: before any barrier
    return;
  }
  let C = params.C;
  let n = min(u32(max(lengths[b], 1)), params.T);  // within 1..T: never the next row's tokens
  var m: array<f32, 8>;
  var sq = 0.0;
  for (var i = 0u; i < PER; i++) {
    let col = tid + i * WG;
    if (col < C) {
      var s = 0.0;
      for (var t = 0u; t < n; t++) {
        s += x[(b * params.T + t) * C + col];
      }
      m[i] = s / f32(n);
      sq += m[i] * m[i];
    }
  }
  partial[tid] = sq;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (tid < s) {
      partial[tid] += partial[tid + s];
    }
    workgroupBarrier();
  }
  let norm = sqrt(partial[0]);
  // max() may drop a NaN (WGSL 15.7.2): test the bits, which no finite-math rule folds away,
  // so that a sentence with a NaN comes out NaN, as numpy's reference gives it
  let is_nan = (bitcast<u32>(norm) & 0x7fffffffu) > 0x7f800000u;
  let scale = select(1.0 / max(norm, 1e-12), norm, is_nan);
  for (var i = 0u; i < PER; i++) {
    let col = tid + i * WG;
    if (col < C) {
      out[b * C + col] = m[i] * scale;
    }
  }
}
