// matmul_generic: C = act(A @ B.T + bias) for any K (wgsl/matmul.wgsl, the fast one, needs
// K % 4 == 0, or K % 8 == 0 with float16 weights; pybridge.dispatch.matmul_plan picks).
// numpy reference: act(a @ b.T + bias); act = identity, or exact GELU 0.5*x*(1+erf(x/sqrt(2)))
// (erf by Abramowitz-Stegun 7.1.26, |error| < 1.5e-7). Tolerance: rtol 1e-4, atol 1e-4 (f32
// weights); f16 weights are compared with the f16-rounded weights, same tolerance.
//
// bindings (group 0)
// | binding | name   | access     | type                                                    |
// | ------- | ------ | ---------- | ------------------------------------------------------- |
// | 0       | a      | read       | storage, array<f32>, M x K row-major                    |
// | 1       | b      | read       | storage, array<u32>, N x K row-major: f32 bits, or two  |
// |         |        |            | f16 per word (B_F16), K even                            |
// | 2       | bias   | read       | storage, array<f32>, N                                  |
// | 3       | params | read       | uniform, Params {M, N, K}                               |
// | 4       | c      | read_write | storage, array<f32>, M x N row-major                    |
//
// overrides: GELU (apply GELU), B_F16 (b holds float16 pairs, unpacked with unpack2x16float).
// workgroup 16 x 16; each invocation computes a 4 x 4 block of a 64 x 64 tile of C, stepping
// through K in slices of 16 staged in workgroup memory.
// dispatch (ceil(N / 64), ceil(M / 64), 1).

override GELU: bool = false;
override B_F16: bool = false;

struct Params {
  M: u32,
  N: u32,
  K: u32,
}

const TILE: u32 = 64u;
const SLICE: u32 = 16u;

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<u32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

var<workgroup> a_tile: array<array<f32, 64>, 16>;  // [k][m]
var<workgroup> b_tile: array<array<f32, 64>, 16>;  // [k][n]

fn b_at(n: u32, k: u32) -> f32 {
  let e = n * params.K + k;
  if (B_F16) {
    let pair = unpack2x16float(b[e >> 1u]);
    return select(pair.x, pair.y, (e & 1u) == 1u);
  }
  return bitcast<f32>(b[e]);
}

fn erf(x: f32) -> f32 {
  let s = sign(x);
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.3275911 * z);
  let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027
             + t * 1.061405429))));
  return s * (1.0 - poly * exp(-z * z));
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let M = params.M;
  let N = params.N;
  let K = params.K;
  let row0 = wg.y * TILE;
  let col0 = wg.x * TILE;
  var acc: array<array<f32, 4>, 4>;

  // each invocation stages 4 elements of each 64 x 16 tile: row tid / 4, k (tid % 4) * 4 + i
  let load_r = tid / 4u;
  let load_k = (tid % 4u) * 4u;

  for (var k0 = 0u; k0 < K; k0 += SLICE) {
    for (var i = 0u; i < 4u; i++) {
      let k = k0 + load_k + i;
      let ar = row0 + load_r;
      let bn = col0 + load_r;
      a_tile[load_k + i][load_r] = select(0.0, a[min(ar, M - 1u) * K + min(k, K - 1u)],
                                          ar < M && k < K);
      b_tile[load_k + i][load_r] = select(0.0, b_at(min(bn, N - 1u), min(k, K - 1u)),
                                          bn < N && k < K);
    }
    workgroupBarrier();
    for (var kk = 0u; kk < SLICE; kk++) {
      var av: array<f32, 4>;
      var bv: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) {
        av[i] = a_tile[kk][lid.y * 4u + i];
        bv[i] = b_tile[kk][lid.x * 4u + i];
      }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
          acc[i][j] = fma(av[i], bv[j], acc[i][j]);
        }
      }
    }
    workgroupBarrier();
  }

  for (var i = 0u; i < 4u; i++) {
    let r = row0 + lid.y * 4u + i;
    for (var j = 0u; j < 4u; j++) {
      let col = col0 + lid.x * 4u + j;
      if (r < M && col < N) {
        var v = acc[i][j] + bias[col];
        if (GELU) {
          v = 0.5 * v * (1.0 + erf(v * 0.70710678118654752));
        }
        c[r * N + col] = v;
      }
    }
  }
}
