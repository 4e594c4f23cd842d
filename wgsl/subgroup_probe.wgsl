// subgroup_probe: can wgsl/matmul_splitk.wgsl's subgroup variant run here? It pairs invocation
// tid with tid ^ d through subgroupShuffleXor for d < min(subgroup size, 32), which holds only
// where the subgroups of a 1-D workgroup are aligned runs of local_invocation_index in order.
// WGSL leaves that mapping to the implementation, so Backend.subgroups_usable() runs this once
// per device (and a device whose compiler rejects the text fails here, not in a model).
// numpy reference: out[tid] = 1 + 256 * subgroup_size for every tid where the pairing holds;
// bit 0 clear where it does not.
//
// bindings (group 0)
// | binding | name | access     | type                         |
// | ------- | ---- | ---------- | ---------------------------- |
// | 0       | out  | read_write | storage, array<u32>, 256     |
//
// dispatch (1, 1, 1).
enable subgroups;

@group(0) @binding(0) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) tid: u32,
        @builtin(subgroup_size) subgroup_size: u32) {
  var ok = 1u;
  for (var d = 1u; d < min(subgroup_size, 32u); d <<= 1u) {
    ok &= u32(subgroupShuffleXor(tid, d) == (tid ^ d));
  }
  out[tid] = ok | (subgroup_size << 8u);
}
