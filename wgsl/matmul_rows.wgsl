// matmul_rows: C = act(A @ B.T + bias) for few rows (M <= 32: one sentence, a short batch).
// wgsl/matmul.wgsl's 128-row tile would compute mostly padding there; this one tiles 32 x 128,
// each invocation 2 x 8 outputs. Same bindings, overrides and math as wgsl/matmul.wgsl
// (K % 4 == 0, K % 8 == 0 with B_F16). pybridge.dispatch.matmul_plan picks it.
// numpy reference: act(a @ b.T + bias). Tolerance: rtol 1e-4, atol 1e-4.
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
// overrides: GELU, B_F16. workgroup 16 x 16: a 32 x 128 tile of C, K in slices of 8.
// dispatch (ceil(N / 128), ceil(M / 32), 1).

override GELU: bool = false;
override B_F16: bool = false;

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

var<workgroup> a_tile: array<array<vec4<f32>, 8>, 8>;  // [k][row / 4], 32 rows
var<workgroup> b_tile: array<array<vec4<f32>, 32>, 8>;  // [k][col / 4]

fn erf(x: f32) -> f32 {
  let s = sign(x);
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.3275911 * z);
  let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027
             + t * 1.061405429))));
  return s * (1.0 - poly * exp(-z * z));
}

fn store_row(r: u32, col: u32, v: vec4<f32>) {
  if (r >= params.M) {
    return;
  }
  for (var j = 0u; j < 4u; j++) {
    let cj = col + j;
    if (cj < params.N) {
      var y = v[j] + bias[cj];
      if (GELU) {
        y = 0.5 * y * (1.0 + erf(y * 0.70710678118654752));
      }
      c[r * params.N + cj] = y;
    }
  }
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let M = params.M;
  let N = params.N;
  let K4 = params.K / 4u;
  let row0 = wg.y * 32u;
  let col0 = wg.x * 128u;
  var acc0l = vec4<f32>(0.0);
  var acc0h = vec4<f32>(0.0);
  var acc1l = vec4<f32>(0.0);
  var acc1h = vec4<f32>(0.0);

  let lr = tid / 2u;          // the tile row (of A) / column (of C, a row of B) staged here
  let lq = tid % 2u;          // which 4 of the slice's 8 k
  let ar = min(row0 + lr, M - 1u);
  let bn = min(col0 + lr, N - 1u);

  for (var k4 = 0u; k4 < K4; k4 += 2u) {
    let kq = k4 + lq;
    let av = select(vec4<f32>(0.0), a[ar * K4 + min(kq, K4 - 1u)], kq < K4);
    var bv: vec4<f32>;
    if (B_F16) {
      let w = b[(bn * K4 + min(kq, K4 - 1u)) / 2u];  // 8 halves: this k quad is half of it
      let lo = select(w.xy, w.zw, ((bn * K4 + kq) & 1u) == 1u);
      bv = vec4<f32>(unpack2x16float(lo.x), unpack2x16float(lo.y));
    } else {
      bv = bitcast<vec4<f32>>(b[bn * K4 + min(kq, K4 - 1u)]);
    }
    bv = select(vec4<f32>(0.0), bv, kq < K4);
    let slot = lr / 4u;
    let comp = lr % 4u;
    if (lr < 32u) {
      a_tile[lq * 4u + 0u][slot][comp] = av.x;
      a_tile[lq * 4u + 1u][slot][comp] = av.y;
      a_tile[lq * 4u + 2u][slot][comp] = av.z;
      a_tile[lq * 4u + 3u][slot][comp] = av.w;
    }
    b_tile[lq * 4u + 0u][slot][comp] = bv.x;
    b_tile[lq * 4u + 1u][slot][comp] = bv.y;
    b_tile[lq * 4u + 2u][slot][comp] = bv.z;
    b_tile[lq * 4u + 3u][slot][comp] = bv.w;
    workgroupBarrier();
    for (var kk = 0u; kk < 8u; kk++) {
      let av4 = a_tile[kk][lid.y / 2u];  // rows lid.y*2 and lid.y*2+1 are two of these four
      let r0 = select(av4.x, av4.z, (lid.y & 1u) == 1u);
      let r1 = select(av4.y, av4.w, (lid.y & 1u) == 1u);
      let b0 = b_tile[kk][lid.x];
      let b1 = b_tile[kk][16u + lid.x];
      acc0l = fma(vec4<f32>(r0), b0, acc0l);
      acc0h = fma(vec4<f32>(r0), b1, acc0h);
      acc1l = fma(vec4<f32>(r1), b0, acc1l);
      acc1h = fma(vec4<f32>(r1), b1, acc1h);
    }
    workgroupBarrier();
  }

  store_row(row0 + lid.y * 2u, col0 + lid.x * 4u, acc0l);
  store_row(row0 + lid.y * 2u, col0 + 64u + lid.x * 4u, acc0h);
  store_row(row0 + lid.y * 2u + 1u, col0 + lid.x * 4u, acc1l);
  store_row(row0 + lid.y * 2u + 1u, col0 + 64u + lid.x * 4u, acc1h);
}
