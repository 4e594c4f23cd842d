// attention: per (batch, head), softmax(q k^T * scale + mask) v over the first length[b] keys
// (right padding is masked), q/k/v read from one fused projection.
// numpy reference: s = q @ k[:len].T * scale; p = exp(s - s.max(-1)); (p / p.sum(-1)) @ v[:len]
// Tolerance: rtol 1e-4, atol 1e-5.
//
// bindings (group 0)
// | binding | name    | access     | type                                                   |
// | ------- | ------- | ---------- | ------------------------------------------------------ |
// | 0       | qkv     | read       | storage, array<f32>, (B x T) x 3H: [q | k | v], head h  |
// |         |         |            | at columns h*D .. h*D+D of each part                    |
// | 1       | lengths | read       | storage, array<i32>, B                                 |
// | 2       | params  | read       | uniform, Params {T, H, heads, scale}                   |
// | 3       | out     | read_write | storage, array<f32>, (B x T) x H                       |
//
// override: HEAD_DIM (D = H / heads, even, <= 64). workgroup 64: one invocation per query row;
// keys and values staged 32 rows at a time in workgroup memory: 2 x 32 x 64 f32 = 16,384 bytes,
// exactly WebGPU's default maxComputeWorkgroupStorageSize (Apple: 32 KiB), and nothing else
// there (lengths[b] is read by every invocation: a read-only storage load at the workgroup's
// own index is uniform, so the loop around the barriers needs no workgroup copy of it).
// online softmax (running max and sum), so any T works. dispatch (ceil(T / 64), heads, B).

override HEAD_DIM: u32 = 32u;

struct Params {
  T: u32,
  H: u32,
  heads: u32,
  scale: f32,
}

const ROWS: u32 = 64u;  // query rows per workgroup
const KEYS: u32 = 32u;  // key/value rows staged at a time

@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> lengths: array<i32>;
@group(0) @binding(2) var<uniform> params: Params;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> k_tile: array<array<f32, 64>, 32>;  // [key][d]
var<workgroup> v_tile: array<array<f32, 64>, 32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let T = params.T;
  let H = params.H;
  let b = wg.z;
  let h = wg.y;
  let i = wg.x * ROWS + tid;  // this invocation's query row
  // keys 0 .. n-1, n = length[b] within 0..T (a longer one must not read the next sentence);
  // uniform (read-only storage and uniform values, b = workgroup_id.z): barriers below
  let n = min(u32(max(lengths[b], 0)), T);
  let stride = 3u * H;
  let qi = min(i, T - 1u);

  var q: array<f32, 64>;
  for (var d = 0u; d < HEAD_DIM; d++) {
    q[d] = qkv[(b * T + qi) * stride + h * HEAD_DIM + d] * params.scale;
  }
  var acc: array<f32, 64>;
  var run_max = -3.0e38;
  var run_sum = 0.0;

  let half = HEAD_DIM / 2u;
  for (var j0 = 0u; j0 < n; j0 += KEYS) {
    // stage keys/values j0 .. j0+31 of this head: invocation tid loads half a row
    let j = j0 + tid / 2u;
    if (j < n) {
      let base = (b * T + j) * stride + h * HEAD_DIM;
      for (var d = (tid % 2u) * half; d < (tid % 2u + 1u) * half; d++) {
        k_tile[tid / 2u][d] = qkv[base + H + d];
        v_tile[tid / 2u][d] = qkv[base + 2u * H + d];
      }
    }
    workgroupBarrier();
    let count = min(KEYS, n - j0);
    for (var jj = 0u; jj < count; jj++) {
      var s = 0.0;
      for (var d = 0u; d < HEAD_DIM; d++) {
        s = fma(q[d], k_tile[jj][d], s);
      }
      let new_max = max(run_max, s);
      let correction = exp(run_max - new_max);
      let p = exp(s - new_max);
      run_sum = run_sum * correction + p;
      for (var d = 0u; d < HEAD_DIM; d++) {
        acc[d] = fma(acc[d], correction, p * v_tile[jj][d]);
      }
      run_max = new_max;
    }
    workgroupBarrier();
  }

  if (i < T) {
    let inv = 1.0 / max(run_sum, 1e-30);
    for (var d = 0u; d < HEAD_DIM; d++) {
      out[(b * T + i) * H + h * HEAD_DIM + d] = acc[d] * inv;
    }
  }
}
