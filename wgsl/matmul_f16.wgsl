// matmul_f16: C = act(A @ B.T + bias) with float16 weights read natively (the shader-f16
// feature: Safari, most real GPUs; not SwiftShader). Same tiling as wgsl/matmul.wgsl, whose
// B_F16 path unpacks the same bytes with unpack2x16float where the feature is absent.
// Accumulates in f32. Needs K % 4 == 0. pybridge.dispatch.matmul_plan picks it.
// numpy reference: act(a @ b.astype(f16).T + bias). Tolerance: rtol 1e-4, atol 1e-4.
//
// bindings (group 0)
// | binding | name   | access     | type                                                    |
// | ------- | ------ | ---------- | ------------------------------------------------------- |
// | 0       | a      | read       | storage, array<vec4<f32>>, M x K row-major              |
// | 1       | b      | read       | storage, array<vec4<f16>>, N x K row-major              |
// | 2       | bias   | read       | storage, array<f32>, N                                  |
// | 3       | params | read       | uniform, Params {M, N, K}                               |
// | 4       | c      | read_write | storage, array<f32>, M x N row-major                    |
//
// override: GELU. workgroup 16 x 16, 128 x 128 tile, 8 x 8 per invocation.
// dispatch (ceil(N / 128), ceil(M / 128), 1).

enable f16;

override GELU: bool = false;

struct Params {
  M: u32,
  N: u32,
  K: u32,
}

@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

var<workgroup> a_tile: array<array<vec4<f32>, 32>, 8>;  // [k][row / 4]
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
  let row0 = wg.y * 128u;
  let col0 = wg.x * 128u;
  var acc0l = vec4<f32>(0.0);
  var acc0h = vec4<f32>(0.0);
  var acc1l = vec4<f32>(0.0);
  var acc1h = vec4<f32>(0.0);
  var acc2l = vec4<f32>(0.0);
  var acc2h = vec4<f32>(0.0);
  var acc3l = vec4<f32>(0.0);
  var acc3h = vec4<f32>(0.0);
  var acc4l = vec4<f32>(0.0);
  var acc4h = vec4<f32>(0.0);
  var acc5l = vec4<f32>(0.0);
  var acc5h = vec4<f32>(0.0);
  var acc6l = vec4<f32>(0.0);
  var acc6h = vec4<f32>(0.0);
  var acc7l = vec4<f32>(0.0);
  var acc7h = vec4<f32>(0.0);

  let lr = tid / 2u;          // the tile row (of A) / column (of C, a row of B) staged here
  let lq = tid % 2u;          // which 4 of the slice's 8 k
  let ar = min(row0 + lr, M - 1u);
  let bn = min(col0 + lr, N - 1u);

  for (var k4 = 0u; k4 < K4; k4 += 2u) {
    let kq = k4 + lq;
    let av = select(vec4<f32>(0.0), a[ar * K4 + min(kq, K4 - 1u)], kq < K4);
    var bv = vec4<f32>(b[bn * K4 + min(kq, K4 - 1u)]);
    bv = select(vec4<f32>(0.0), bv, kq < K4);
    let slot = lr / 4u;
    let comp = lr % 4u;
    a_tile[lq * 4u + 0u][slot][comp] = av.x;
    a_tile[lq * 4u + 1u][slot][comp] = av.y;
    a_tile[lq * 4u + 2u][slot][comp] = av.z;
    a_tile[lq * 4u + 3u][slot][comp] = av.w;
    b_tile[lq * 4u + 0u][slot][comp] = bv.x;
    b_tile[lq * 4u + 1u][slot][comp] = bv.y;
    b_tile[lq * 4u + 2u][slot][comp] = bv.z;
    b_tile[lq * 4u + 3u][slot][comp] = bv.w;
    workgroupBarrier();
    for (var kk = 0u; kk < 8u; kk++) {
      let a0 = a_tile[kk][lid.y];
      let a1 = a_tile[kk][16u + lid.y];
      let b0 = b_tile[kk][lid.x];
      let b1 = b_tile[kk][16u + lid.x];
      acc0l = fma(vec4<f32>(a0.x), b0, acc0l);
      acc0h = fma(vec4<f32>(a0.x), b1, acc0h);
      acc1l = fma(vec4<f32>(a0.y), b0, acc1l);
      acc1h = fma(vec4<f32>(a0.y), b1, acc1h);
      acc2l = fma(vec4<f32>(a0.z), b0, acc2l);
      acc2h = fma(vec4<f32>(a0.z), b1, acc2h);
      acc3l = fma(vec4<f32>(a0.w), b0, acc3l);
      acc3h = fma(vec4<f32>(a0.w), b1, acc3h);
      acc4l = fma(vec4<f32>(a1.x), b0, acc4l);
      acc4h = fma(vec4<f32>(a1.x), b1, acc4h);
      acc5l = fma(vec4<f32>(a1.y), b0, acc5l);
      acc5h = fma(vec4<f32>(a1.y), b1, acc5h);
      acc6l = fma(vec4<f32>(a1.z), b0, acc6l);
      acc6h = fma(vec4<f32>(a1.z), b1, acc6h);
      acc7l = fma(vec4<f32>(a1.w), b0, acc7l);
      acc7h = fma(vec4<f32>(a1.w), b1, acc7h);
    }
    workgroupBarrier();
  }

  store_row(row0 + 0u + lid.y * 4u + 0u, col0 + lid.x * 4u, acc0l);
  store_row(row0 + 0u + lid.y * 4u + 0u, col0 + 64u + lid.x * 4u, acc0h);
  store_row(row0 + 0u + lid.y * 4u + 1u, col0 + lid.x * 4u, acc1l);
  store_row(row0 + 0u + lid.y * 4u + 1u, col0 + 64u + lid.x * 4u, acc1h);
  store_row(row0 + 0u + lid.y * 4u + 2u, col0 + lid.x * 4u, acc2l);
  store_row(row0 + 0u + lid.y * 4u + 2u, col0 + 64u + lid.x * 4u, acc2h);
  store_row(row0 + 0u + lid.y * 4u + 3u, col0 + lid.x * 4u, acc3l);
  store_row(row0 + 0u + lid.y * 4u + 3u, col0 + 64u + lid.x * 4u, acc3h);
  store_row(row0 + 64u + lid.y * 4u + 0u, col0 + lid.x * 4u, acc4l);
  store_row(row0 + 64u + lid.y * 4u + 0u, col0 + 64u + lid.x * 4u, acc4h);
  store_row(row0 + 64u + lid.y * 4u + 1u, col0 + lid.x * 4u, acc5l);
  store_row(row0 + 64u + lid.y * 4u + 1u, col0 + 64u + lid.x * 4u, acc5h);
  store_row(row0 + 64u + lid.y * 4u + 2u, col0 + lid.x * 4u, acc6l);
  store_row(row0 + 64u + lid.y * 4u + 2u, col0 + 64u + lid.x * 4u, acc6h);
  store_row(row0 + 64u + lid.y * 4u + 3u, col0 + lid.x * 4u, acc7l);
  store_row(row0 + 64u + lid.y * 4u + 3u, col0 + 64u + lid.x * 4u, acc7h);
}
