// axpy: out = alpha * x + y, elementwise, float32.
// numpy reference: alpha * x + y   (tolerance: rtol 1e-6, atol 1e-6)
//
// bindings (group 0)
// | binding | name   | access     | type                        |
// | ------- | ------ | ---------- | --------------------------- |
// | 0       | x      | read       | storage, array<f32>, n      |
// | 1       | y      | read       | storage, array<f32>, n      |
// | 2       | params | read       | uniform, Params             |
// | 3       | out    | read_write | storage, array<f32>, n      |
//
// workgroup size 256; dispatch (min(ceil(n/256), 65535), ceil(ceil(n/256) / 65535), 1):
// the y dimension carries rows of 65535 workgroups so n may exceed 65535 * 256.

struct Params {
  n: u32,
  alpha: f32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i < params.n) {
    out[i] = params.alpha * x[i] + y[i];
  }
}
