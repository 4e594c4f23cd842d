// Thin JS helpers that Python calls (registered in Pyodide as the module `pybridge_js`).
//
// Each helper borrows a numpy array's bytes through `getBuffer('u8')` — a Uint8Array over
// the wasm heap, no copy — uses it and releases it within one synchronous call. Views are
// never kept: wasm memory growth detaches them. Python passes arrays as temporary PyProxies,
// which Pyodide destroys when the call returns.

function borrow(pyArray) {
  const view = pyArray.getBuffer("u8");
  if (!view.c_contiguous) {
    view.release();
    throw new TypeError("pybridge: array is not C-contiguous");
  }
  return view;
}

// Upload: numpy -> GPU buffer. Copies the data once (inside writeBuffer).
export function writeBuffer(queue, gpuBuffer, offset, pyArray) {
  const view = borrow(pyArray);
  try {
    queue.writeBuffer(gpuBuffer, offset, view.data, 0, view.data.byteLength);
  } finally {
    view.release();
  }
}

// Readback: a mapped range (ArrayBuffer) -> numpy. Copies the data once.
export function copyMappedInto(mapped, pyArray) {
  const view = borrow(pyArray);
  try {
    const n = view.data.byteLength;
    if (mapped.byteLength < n) {
      throw new RangeError(`pybridge: mapped range has ${mapped.byteLength} bytes, array needs ${n}`);
    }
    view.data.set(new Uint8Array(mapped, 0, n));
  } finally {
    view.release();
  }
}

// Proof hooks for the zero-copy claim (tests and the page's self-check).
export function viewInfo(pyArray) {
  const view = borrow(pyArray);
  try {
    const heap = self.pyodide._module.HEAPU8.buffer;
    return {
      byteOffset: view.data.byteOffset,
      byteLength: view.data.byteLength,
      isWasmHeap: view.data.buffer === heap,
    };
  } finally {
    view.release();
  }
}

export function writeByte(pyArray, index, value) {
  const view = borrow(pyArray);
  try {
    if (index < 0 || index >= view.data.byteLength) {
      throw new RangeError(`pybridge: byte ${index} outside 0..${view.data.byteLength - 1}`);
    }
    view.data[index] = value;
  } finally {
    view.release();
  }
}
