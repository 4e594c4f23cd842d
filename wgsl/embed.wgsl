// embed: out = LayerNorm(word[ids] + position[t] + token_type[0]) * gamma + beta, per token.
// numpy reference: x = word[ids] + pos[arange(T)] + type[0]; (x - mean) / sqrt(var + eps) * g + b
// with mean/var over the last axis (biased variance). Tolerance: rtol 1e-4, atol 1e-4.
//
// bindings (group 0)
// | binding | name     | access     | type                                                  |
// | ------- | -------- | ---------- | ----------------------------------------------------- |
// | 0       | ids      | read       | storage, array<i32>, B x T token ids                  |
// | 1       | word     | read       | storage, array<u32>, V x C table (f32 bits, or f16    |
// |         |          |            | pairs when TABLE_F16)                                 |
// | 2       | position | read       | storage, array<u32>, P x C table, same encoding       |
// | 3       | type     | read       | storage, array<u32>, 2 x C table, same encoding       |
// | 4       | gamma    | read       | storage, array<f32>, C                                |
// | 5       | beta     | read       | storage, array<f32>, C                                |
// | 6       | params   | read       | uniform, Params {T, C, eps}                           |
// | 7       | out      | read_write | storage, array<f32>, B x T x C                        |
//
// override: TABLE_F16. workgroup 128: one workgroup per token, each invocation C / 128 columns
// (C <= 1024). dispatch grid_1d(B * T, 1): (min(B*T, 65535), ceil(B*T / 65535), 1), the grid
// folded into y past the per-dimension limit; workgroups past the last token return at once.

override TABLE_F16: bool = false;

struct Params {
  T: u32,
  C: u32,
  eps: f32,
}

const WG: u32 = 128u;
const PER: u32 = 8u;  // columns per invocation at most: C <= WG * PER

@group(0) @binding(0) var<storage, read> ids: array<i32>;
@group(0) @binding(1) var<storage, read> word: array<u32>;
@group(0) @binding(2) var<storage, read> position: array<u32>;
@group(0) @binding(3) var<storage, read> token_type: array<u32>;
@group(0) @binding(4) var<storage, read> gamma: array<f32>;
@group(0) @binding(5) var<storage, read> beta: array<f32>;
@group(0) @binding(6) var<uniform> params: Params;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, 128>;

fn table_word(e: u32) -> f32 {
  if (TABLE_F16) {
    let pair = unpack2x16float(word[e >> 1u]);
    return select(pair.x, pair.y, (e & 1u) == 1u);
  }
  return bitcast<f32>(word[e]);
}

fn table_position(e: u32) -> f32 {
  if (TABLE_F16) {
    let pair = unpack2x16float(position[e >> 1u]);
    return select(pair.x, pair.y, (e & 1u) == 1u);
  }
  return bitcast<f32>(position[e]);
}

fn table_type(e: u32) -> f32 {
  if (TABLE_F16) {
    let pair = unpack2x16float(token_type[e >> 1u]);
    return select(pair.x, pair.y, (e & 1u) == 1u);
  }
  return bitcast<f32>(token_type[e]);
}

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
  let token = wg.x + wg.y * groups.x;  // the folded grid's row
  if (token >= arrayLength(&ids)) {  // uniform per workgroup: before any barrier
    return;
  }
  let C = params.C;
  let t = token % params.T;
  let id = u32(ids[token]);
  var x: array<f32, 8>;
  var sum = 0.0;
  for (var i = 0u; i < PER; i++) {
    let col = tid + i * WG;
    if (col < C) {
      x[i] = table_word(id * C + col) + table_position(t * C + col) + table_type(col);
      sum += x[i];
    }
  }
  let mean = workgroup_sum(sum, tid) / f32(C);
  var sq = 0.0;
  for (var i = 0u; i < PER; i++) {
    let col = tid + i * WG;
    if (col < C) {
      let d = x[i] - mean;
      sq += d * d;
    }
  }
  let inv = inverseSqrt(workgroup_sum(sq, tid) / f32(C) + params.eps);
  for (var i = 0u; i < PER; i++) {
    let col = tid + i * WG;
    if (col < C) {
      out[token * C + col] = (x[i] - mean) * inv * gamma[col] + beta[col];
    }
  }
}
