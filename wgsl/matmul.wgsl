// matmul: C = act(A @ B.T + bias), the Linear layer of a transformer, for K % 4 == 0
// (K % 8 == 0 with float16 weights); wgsl/matmul_generic.wgsl takes any K.
// numpy reference: act(a @ b.T + bias); act = identity, or exact GELU 0.5*x*(1+erf(x/sqrt(2)))
// (erf by Abramowitz-Stegun 7.1.26, |error| < 1.5e-7). Tolerance: rtol 1e-4, atol 1e-4 (f16
// weights are compared with the f16-rounded weights).
//
// One source, four kernels. pybridge.dispatch.VARIANTS names each variant (the op name given
// to backend.dispatch) and the values it gives the `const` lines marked VARIANT below;
// shader_source(op) sets exactly those values and names the variant in a first comment line.
// tests/unit/test_native_kernels.py and tests/e2e/test_kernels.py run every variant off its
// tiles.
//   op           TILE_M  RM  TILE_K  PREFETCH  DIRECT  workgroup  matmul_plan picks it for
//   matmul        128     8    8     false     false   16 x 16    128-row tiles make >= 512
//                                                                 workgroups (GPU)
//   matmul_cpu    128     8    8     false     true    16 x 16    past 32 rows on a CPU device
//   matmul_m64     64     4   16     true      false   16 x 16    other shapes past 512 rows (GPU)
//   matmul_rows    32     4   16     true      false   16 x 8     up to 32 rows on a CPU device
// DIRECT stages each global load straight into workgroup memory; otherwise loads go through
// register arrays first (where PREFETCH needs them). On SwiftShader the register arrays cost
// MiniLM 1x128 and 8x12 4-10% end to end (float16, matmul kernels swapped in one page, five
// alternating runs); through Dawn on an H200 the straight staging ran 4096^3 at 27.6 and 25.1
// TFLOP/s against 29.9 and 28.9 with the registers (two passes of one run, tools/bench_kernels.py).
// On a GPU, up to 512 rows go to wgsl/matmul_splitk.wgsl instead (K split across a workgroup;
// these tiles walk all of K in one workgroup and were latency-bound there).
// These are `const`s, not `override`s: they size workgroup arrays (Safari fails silently on
// override-sized ones) and the compilers unroll by them.
// Measured on an H200, driver 580 (tools/bench_kernels.py; TFLOP/s through Dawn / wgpu-py,
// torch float32 without TF32 in the same run): 4096^3 matmul 29.7 / 25.3, torch 50.8;
// M=4096 N=1152 K=384 matmul_m64 27.3 (float16 weights) / 18.6, torch 36.6. The 128-row tile
// with PREFETCH and TILE_K 16 ran 33.4 through Dawn but 13.4 through wgpu-py (Naga) at 4096^3:
// the shipped one is fast through both.
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
// overrides: GELU (apply GELU), B_F16 (b holds float16, unpacked with unpack2x16float: core
// WGSL, no `shader-f16`; reading vec4<f16> natively measured within 4% through Dawn and up to
// 2.6x slower through wgpu-py, so no variant does).
// workgroup (16, TILE_M / RM): a TILE_M x 128 tile of C, each invocation RM x 8 outputs in
// vec4 registers (rows y*4.. and, where RM == 8, TILE_M/2 + y*4..; columns x*4.. and
// 64 + x*4..). K goes in slices of TILE_K staged transposed in workgroup memory
// (TILE_K * (TILE_M + 128) * 4 bytes: 8 to 12 KiB, within WebGPU's default 16 KiB); with
// PREFETCH the next slice's loads are issued before the current slice's arithmetic.
// dispatch (ceil(N / 128), ceil(M / TILE_M), 1).

override GELU: bool = false;
override B_F16: bool = false;

const TILE_M: u32 = 128u;         // VARIANT rows of C per workgroup
const RM: u32 = 8u;               // VARIANT rows of C per invocation: 8 or 4
const TILE_K: u32 = 8u;           // VARIANT K per slice in workgroup memory
const PREFETCH: bool = false;     // VARIANT load slice s + 1 while computing slice s
const DIRECT: bool = false;       // VARIANT loads go straight to workgroup memory (no PREFETCH)

const TILE_N = 128u;
const WG_X = 16u;
const WG_Y = TILE_M / RM;
const THREADS = WG_X * WG_Y;
const KQ = TILE_K / 4u;          // k quads in a slice: vec4s of A, of float32 B
const KO = TILE_K / 8u;          // k octets in a slice: vec4<u32>s of float16 B
const A_LOADS = TILE_M * KQ / THREADS;    // vec4s of A each invocation stages per slice
const B_LOADS = TILE_N * KQ / THREADS;    // quads of B each invocation stages per slice
// float16 B: whole octets (one vec4<u32>) per invocation where there are enough, else quads
// (half a vec4<u32>: two invocations read the same one, each stages its half)
const OCTETS = TILE_N * KO >= THREADS;
const B16_LOADS = select(B_LOADS, TILE_N * KO / THREADS, OCTETS);
const_assert RM == 8u || RM == 4u;
const_assert !(DIRECT && PREFETCH);
const_assert TILE_M % (RM * 2u) == 0u && THREADS <= 256u && TILE_K % 8u == 0u;
const_assert A_LOADS >= 1u && A_LOADS * THREADS == TILE_M * KQ && B_LOADS * THREADS == TILE_N * KQ;

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

var<workgroup> a_tile: array<array<vec4<f32>, TILE_M / 4u>, TILE_K>;  // [k][row / 4]
var<workgroup> b_tile: array<array<vec4<f32>, TILE_N / 4u>, TILE_K>;  // [k][col / 4]

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

// Global loads of slice s. Load i of invocation tid: the k quad tid % KQ of tile row (of A) or
// column (row of B) tid / KQ + i * THREADS / KQ; float16 octets: the k octet tid % KO of column
// tid / KO + i * THREADS / KO. Rows and columns past M, N read the last one (their results
// are never stored); k past K reads zeros.
fn load_a(s: u32, i: u32, row0: u32, tid: u32) -> vec4<f32> {
  let K4 = params.K / 4u;
  let kq = s * KQ + tid % KQ;
  let r = min(row0 + tid / KQ + i * (THREADS / KQ), params.M - 1u);
  return select(vec4<f32>(0.0), a[r * K4 + min(kq, K4 - 1u)], kq < K4);
}

fn load_b(s: u32, i: u32, col0: u32, tid: u32) -> vec4<u32> {
  if (B_F16 && OCTETS) {
    let K8 = params.K / 8u;
    let ko = s * KO + tid % KO;
    let n = min(col0 + tid / KO + i * (THREADS / KO), params.N - 1u);
    return select(vec4<u32>(0u), b[n * K8 + min(ko, K8 - 1u)], ko < K8);
  }
  let K4 = params.K / 4u;
  let kq = s * KQ + tid % KQ;
  let q = min(col0 + tid / KQ + i * (THREADS / KQ), params.N - 1u) * K4 + min(kq, K4 - 1u);
  // float32: quad q; float16: the vec4<u32> holding quad q
  return select(vec4<u32>(0u), b[select(q, q / 2u, B_F16)], kq < K4);
}

// Slice s's loads into registers (pa, pb), where they wait for stage_a / stage_b.
fn load_slice(s: u32, row0: u32, col0: u32, tid: u32, pa: ptr<function, array<vec4<f32>, A_LOADS>>,
              pb: ptr<function, array<vec4<u32>, B_LOADS>>) {
  for (var i = 0u; i < A_LOADS; i++) {
    (*pa)[i] = load_a(s, i, row0, tid);
  }
  for (var i = 0u; i < select(B_LOADS, B16_LOADS, B_F16 && OCTETS); i++) {
    (*pb)[i] = load_b(s, i, col0, tid);
  }
}

// A quad of B as 4 f32: float32 bits, or (B_F16) float16 from half `odd` of a vec4<u32>.
fn quad(w: vec4<u32>, odd: bool) -> vec4<f32> {
  if (!B_F16) {
    return bitcast<vec4<f32>>(w);
  }
  let h = select(w.xy, w.zw, odd);
  return vec4<f32>(unpack2x16float(h.x), unpack2x16float(h.y));
}

// Load i of invocation tid into workgroup memory, transposed: [k][row / 4][row % 4].
fn stage_a(i: u32, tid: u32, v: vec4<f32>) {
  let k4 = (tid % KQ) * 4u;
  let r = tid / KQ + i * (THREADS / KQ);
  a_tile[k4 + 0u][r / 4u][r % 4u] = v.x;
  a_tile[k4 + 1u][r / 4u][r % 4u] = v.y;
  a_tile[k4 + 2u][r / 4u][r % 4u] = v.z;
  a_tile[k4 + 3u][r / 4u][r % 4u] = v.w;
}

fn stage_b(i: u32, tid: u32, w: vec4<u32>) {
  if (B_F16 && OCTETS) {
    let k8 = (tid % KO) * 8u;
    let n = tid / KO + i * (THREADS / KO);
    let lo = quad(w, false);
    let hi = quad(w, true);
    b_tile[k8 + 0u][n / 4u][n % 4u] = lo.x;
    b_tile[k8 + 1u][n / 4u][n % 4u] = lo.y;
    b_tile[k8 + 2u][n / 4u][n % 4u] = lo.z;
    b_tile[k8 + 3u][n / 4u][n % 4u] = lo.w;
    b_tile[k8 + 4u][n / 4u][n % 4u] = hi.x;
    b_tile[k8 + 5u][n / 4u][n % 4u] = hi.y;
    b_tile[k8 + 6u][n / 4u][n % 4u] = hi.z;
    b_tile[k8 + 7u][n / 4u][n % 4u] = hi.w;
    return;
  }
  let k4 = (tid % KQ) * 4u;
  let n = tid / KQ + i * (THREADS / KQ);
  let v = quad(w, (tid % KQ) % 2u == 1u);  // float16 quads: which half of the vec4<u32>
  b_tile[k4 + 0u][n / 4u][n % 4u] = v.x;
  b_tile[k4 + 1u][n / 4u][n % 4u] = v.y;
  b_tile[k4 + 2u][n / 4u][n % 4u] = v.z;
  b_tile[k4 + 3u][n / 4u][n % 4u] = v.w;
}

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let row0 = wg.y * TILE_M;
  let col0 = wg.x * TILE_N;
  let slices = (params.K / 4u + KQ - 1u) / KQ;
  var acc0l = vec4<f32>(0.0);
  var acc0h = vec4<f32>(0.0);
  var acc1l = vec4<f32>(0.0);
  var acc1h = vec4<f32>(0.0);
  var acc2l = vec4<f32>(0.0);
  var acc2h = vec4<f32>(0.0);
  var acc3l = vec4<f32>(0.0);
  var acc3h = vec4<f32>(0.0);
  var acc4l = vec4<f32>(0.0);  // acc4* to acc7*: rows TILE_M / 2 + ..., only where RM == 8
  var acc4h = vec4<f32>(0.0);
  var acc5l = vec4<f32>(0.0);
  var acc5h = vec4<f32>(0.0);
  var acc6l = vec4<f32>(0.0);
  var acc6h = vec4<f32>(0.0);
  var acc7l = vec4<f32>(0.0);
  var acc7h = vec4<f32>(0.0);
  var pa: array<vec4<f32>, A_LOADS>;
  var pb: array<vec4<u32>, B_LOADS>;
  let b_loads = select(B_LOADS, B16_LOADS, B_F16 && OCTETS);
  if (PREFETCH) {
    load_slice(0u, row0, col0, tid, &pa, &pb);
  }
  for (var s = 0u; s < slices; s++) {
    if (DIRECT) {
      for (var i = 0u; i < A_LOADS; i++) {
        stage_a(i, tid, load_a(s, i, row0, tid));
      }
      for (var i = 0u; i < b_loads; i++) {
        stage_b(i, tid, load_b(s, i, col0, tid));
      }
    } else {
      if (!PREFETCH) {
        load_slice(s, row0, col0, tid, &pa, &pb);
      }
      for (var i = 0u; i < A_LOADS; i++) {
        stage_a(i, tid, pa[i]);
      }
      for (var i = 0u; i < b_loads; i++) {
        stage_b(i, tid, pb[i]);
      }
    }
    workgroupBarrier();
    if (PREFETCH && s + 1u < slices) {
      load_slice(s + 1u, row0, col0, tid, &pa, &pb);  // in flight during the arithmetic below
    }
    for (var kk = 0u; kk < TILE_K; kk++) {
      let a0 = a_tile[kk][lid.y];
      let b0 = b_tile[kk][lid.x];
      let b1 = b_tile[kk][WG_X + lid.x];
      acc0l = fma(vec4<f32>(a0.x), b0, acc0l);
      acc0h = fma(vec4<f32>(a0.x), b1, acc0h);
      acc1l = fma(vec4<f32>(a0.y), b0, acc1l);
      acc1h = fma(vec4<f32>(a0.y), b1, acc1h);
      acc2l = fma(vec4<f32>(a0.z), b0, acc2l);
      acc2h = fma(vec4<f32>(a0.z), b1, acc2h);
      acc3l = fma(vec4<f32>(a0.w), b0, acc3l);
      acc3h = fma(vec4<f32>(a0.w), b1, acc3h);
      if (RM == 8u) {
        let a1 = a_tile[kk][WG_Y + lid.y];
        acc4l = fma(vec4<f32>(a1.x), b0, acc4l);
        acc4h = fma(vec4<f32>(a1.x), b1, acc4h);
        acc5l = fma(vec4<f32>(a1.y), b0, acc5l);
        acc5h = fma(vec4<f32>(a1.y), b1, acc5h);
        acc6l = fma(vec4<f32>(a1.z), b0, acc6l);
        acc6h = fma(vec4<f32>(a1.z), b1, acc6h);
        acc7l = fma(vec4<f32>(a1.w), b0, acc7l);
        acc7h = fma(vec4<f32>(a1.w), b1, acc7h);
      }
    }
    workgroupBarrier();
  }

  let r0 = row0 + lid.y * 4u;
  let c0 = col0 + lid.x * 4u;
  let c1 = col0 + TILE_N / 2u + lid.x * 4u;
  store_row(r0 + 0u, c0, acc0l);
  store_row(r0 + 0u, c1, acc0h);
  store_row(r0 + 1u, c0, acc1l);
  store_row(r0 + 1u, c1, acc1h);
  store_row(r0 + 2u, c0, acc2l);
  store_row(r0 + 2u, c1, acc2h);
  store_row(r0 + 3u, c0, acc3l);
  store_row(r0 + 3u, c1, acc3h);
  if (RM == 8u) {
    let r1 = row0 + TILE_M / 2u + lid.y * 4u;
    store_row(r1 + 0u, c0, acc4l);
    store_row(r1 + 0u, c1, acc4h);
    store_row(r1 + 1u, c0, acc5l);
    store_row(r1 + 1u, c1, acc5h);
    store_row(r1 + 2u, c0, acc6l);
    store_row(r1 + 2u, c1, acc6h);
    store_row(r1 + 3u, c0, acc7l);
    store_row(r1 + 3u, c1, acc7h);
  }
}
