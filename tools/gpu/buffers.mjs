// Counts GPU buffers at the WebGPU API, apart from any count the code under test keeps:
// GPUDevice.prototype.createBuffer and GPUBuffer.prototype.destroy are wrapped (dawn.node
// defines both on its classes' prototypes, so every device and buffer is seen, the weights
// bridge.js creates included). `created - destroyed` is the buffers created and not yet
// destroyed; a buffer that is dropped without destroy() stays in it, and `collected` counts
// those the JS garbage collector has since freed. A second destroy() of a buffer counts once.
// GPUDevice.destroy() frees a device's buffers without their destroy(): they stay counted.

export function countBuffers({ GPUDevice, GPUBuffer }) {
  const counts = { created: 0, destroyed: 0, collected: 0 };
  const alive = new WeakSet();
  const finalized = new FinalizationRegistry(() => counts.collected++);
  const { createBuffer } = GPUDevice.prototype;
  const { destroy } = GPUBuffer.prototype;
  GPUDevice.prototype.createBuffer = function (...args) {
    const buffer = createBuffer.apply(this, args);
    counts.created++;
    alive.add(buffer);
    finalized.register(buffer, null, buffer);
    return buffer;
  };
  GPUBuffer.prototype.destroy = function (...args) {
    if (alive.delete(this)) {
      counts.destroyed++;
      finalized.unregister(this);
    }
    return destroy.apply(this, args);
  };
  return counts;
}
