// matmul_splitk: C = act(A @ B.T + bias) for few rows (a sentence or a short batch: M up to a
// few hundred), where the tiled kernel (wgsl/matmul.wgsl) makes too few workgroups and each one
// walks all of K alone (measured on an H200 through Dawn: 186 µs per 12 x 384 x 1536 product,
// latency-bound on that serial K loop). Here K is split across the invocations of a workgroup
// and summed in workgroup memory: each workgroup computes 8 columns of C for a block of up to
// 32 rows, its 256 invocations as 8 columns x 32 lanes, lane l taking every 32nd k-quad.
// Same bindings, overrides and math as wgsl/matmul.wgsl (K % 4 == 0; K % 8 == 0 with B_F16).
// pybridge.dispatch.matmul_plan picks it.
// numpy reference: act(a @ b.T + bias); act = identity, or exact GELU 0.5*x*(1+erf(x/sqrt(2)))
// (erf by Abramowitz-Stegun 7.1.26, |error| < 1.5e-7). Tolerance: rtol 1e-4, atol 1e-4 (f16
// weights are compared with the f16-rounded weights).
//
// bindings (group 0)
// | binding | name   | access     | type                                                    |
// | ------- | ------ | ---------- | ------------------------------------------------------- |
// | 0       | a      | read       | storage, array<vec4<f32>>, M x K row-major              |
// | 1       | b      | read       | storage, array<vec4<u32>>, N x K row-major: f32 bits,   |
// |         |        |            | or float16 pairs per word (B_F16)                       |
// | 2       | bias   | read       | storage, array<f32>, N                                  |
// | 3       | params | read       | uniform, Params {M, N, K}                               |
// | 4       | c      | read_write | storage, array<f32>, M x N row-major                    |
//
// overrides: GELU (apply GELU), B_F16 (b holds float16, unpacked with unpack2x16float).
// workgroup 256 = 8 columns x 32 lanes; rows in chunks of 8 (8 accumulators an invocation),
// partial sums reduced through 8 KiB of workgroup memory.
// dispatch (ceil(N / 8), ceil(M / 32), 1).
//
// Variant matmul_splitk_sg (pybridge.dispatch.VARIANTS, picked where the device has
// `subgroups`): the lines below written `//subgroups: CODE` are CODE there, comments here, and
// the text starts with `enable subgroups;`. Where a subgroup has at least 8 invocations, each
// group of G = min(subgroup size, 32) lanes first reduce-scatters its 8 rows by
// subgroupShuffleXor (lane l ends with row l % 8: 7 shuffles, then log2(G / 8) more), so 32 / G
// sums per row and column go through workgroup memory instead of 32 (one on NVIDIA and Apple
// GPUs). Smaller subgroups (SwiftShader's 4) take the path above. It relies on invocation tid's
// shuffle partner being tid ^ d (subgroups as aligned runs of invocations in order): WGSL does
// not promise it, so Backend.subgroups_usable() checks it once per device with
// wgsl/subgroup_probe.wgsl before MiniLM picks this variant. Tests: lavapipe runs it with
// subgroups of 8, and tests/unit/test_native_kernels.py runs its text at every subgroup size
// from 4 to 128 with the shuffles emulated. Measured through Dawn on an H200
// (tools/bench_kernels.py, GFLOP/s,
// same run): 12 x 1152 x 384 965 -> 1255, 128 x 1536 x 384 4166 -> 5711, 128 x 384 x 1536
// 3823 -> 4191; MiniLM GPU time per batch 32 x 12 2.11 -> 1.66 ms, 8 x 12 0.92 -> 0.77 ms.
// A butterfly (every lane summing all 8 rows: 40 shuffles) measured slower than workgroup
// memory there.

override GELU: bool = false;
override B_F16: bool = false;

const TILE_N: u32 = 8u;  // columns of C per workgroup
const LANES: u32 = 32u;  // invocations sharing one column's K
const CHUNK: u32 = 8u;  // rows summed at once
const TILE_M: u32 = 32u;  // rows of C per workgroup: TILE_M / CHUNK chunks

struct Params {
  M: u32,
  N: u32,
  K: u32,
}

@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

var<workgroup> partial: array<array<array<f32, LANES>, TILE_N>, CHUNK>;  // [row][col][lane]

fn erf(x: f32) -> f32 {
  let s = sign(x);
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.3275911 * z);
  let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027
             + t * 1.061405429))));
  return s * (1.0 - poly * exp(-z * z));
}

// Four f32 weights from a word quad of f32 bits.
fn f32x4(w: vec4<u32>) -> vec4<f32> {
  return bitcast<vec4<f32>>(w);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32,
//subgroups:        @builtin(subgroup_size) subgroup_size: u32,
) {
  // lanes summed by subgroup shuffles before workgroup memory: 1 without subgroups or where
  // a subgroup has fewer than 8 invocations (the reduce-scatter below needs 8)
  var G = 1u;
//subgroups:  G = select(1u, min(subgroup_size, LANES), subgroup_size >= CHUNK);
  let g_shift = countTrailingZeros(G);  // G is a power of two
  let M = params.M;
  let N = params.N;
  let K4 = params.K / 4u;
  let ci = tid / LANES;  // column of this invocation within the workgroup
  let lane = tid % LANES;
  let col = wg.x * TILE_N + ci;
  let colr = min(col, N - 1u);  // columns past N read the last one; never stored
  let row_base = wg.y * TILE_M;
  for (var chunk = 0u; chunk < TILE_M; chunk += CHUNK) {
    let row0 = row_base + chunk;
    if (row0 >= M) {  // uniform: row0 depends on the workgroup alone
      break;
    }
    var acc: array<f32, 8>;
    for (var r = 0u; r < CHUNK; r++) {
      acc[r] = 0.0;
    }
    // k-quad k4 of a column: its 4 weights are f32 bits, or (B_F16) half of a word quad of
    // 8 halves; every lane takes the same number of quads either way
    for (var k4 = lane; k4 < K4; k4 += LANES) {
      var w: vec4<f32>;
      if (B_F16) {
        let q = b[colr * (K4 / 2u) + (k4 >> 1u)];
        let h = select(q.xy, q.zw, (k4 & 1u) == 1u);
        w = vec4<f32>(unpack2x16float(h.x), unpack2x16float(h.y));
      } else {
        w = f32x4(b[colr * K4 + k4]);
      }
      for (var r = 0u; r < CHUNK; r++) {
        let row = min(row0 + r, M - 1u);
        acc[r] += dot(a[row * K4 + k4], w);
      }
    }
    if (G == 1u) {
      for (var r = 0u; r < CHUNK; r++) {
        partial[r][ci][lane] = acc[r];
      }
    } else {
      // reduce-scatter by subgroup shuffles: each exchange with lane ^ 1, ^ 2, ^ 4 halves the
      // rows a lane holds and sums them in pairs, so lane l ends with row l % 8 summed over
      // its 8-lane group (7 shuffles); exchanges with lane ^ 8, ^ 16 then sum across groups
//subgroups:      let b0 = (lane & 1u) != 0u;
//subgroups:      let evens = vec4<f32>(acc[0], acc[2], acc[4], acc[6]);
//subgroups:      let odds = vec4<f32>(acc[1], acc[3], acc[5], acc[7]);
//subgroups:      let v4 = select(evens, odds, b0)
//subgroups:               + subgroupShuffleXor(select(odds, evens, b0), 1u);
//subgroups:      let b1 = (lane & 2u) != 0u;
//subgroups:      let v2 = select(v4.xz, v4.yw, b1)
//subgroups:               + subgroupShuffleXor(select(v4.yw, v4.xz, b1), 2u);
//subgroups:      let b2 = (lane & 4u) != 0u;
//subgroups:      var v = select(v2.x, v2.y, b2) + subgroupShuffleXor(select(v2.y, v2.x, b2), 4u);
//subgroups:      for (var d = 8u; d < G; d <<= 1u) {
//subgroups:        v += subgroupShuffleXor(v, d);
//subgroups:      }
//subgroups:      if ((lane & (G - 1u)) < CHUNK) {
//subgroups:        partial[lane % CHUNK][ci][lane >> g_shift] = v;
//subgroups:      }
    }
    workgroupBarrier();
    // invocation (ci, lane < CHUNK) sums row `lane` of column ci over the 32 / G lane groups
    if (lane < CHUNK) {
      let row = row0 + lane;
      var y = 0.0;
      for (var l = 0u; l < (LANES >> g_shift); l++) {
        y += partial[lane][ci][l];
      }
      if (row < M && col < N) {
        y += bias[col];
        if (GELU) {
          y = 0.5 * y * (1.0 + erf(y * 0.70710678118654752));
        }
        c[row * N + col] = y;
      }
    }
    workgroupBarrier();
  }
}
