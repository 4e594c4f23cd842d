"""pybridge: GPU inference from Python in the browser (Pyodide + numpy + WebGPU).

Modules, in the order data flows through them:

    _env        where we run: Pyodide in a browser worker, or plain CPython
    dtypes      the dtype table: numpy <-> WGSL <-> TypedArray <-> alignment
    accounting  copy accounting: every CPU copy counted by direction and path
    errors      the exceptions, each naming the operation
    device      adapter and device: features, limits, a clear error without WebGPU
    backend     the interface (allocate, upload, dispatch, readback, free), GpuTensor, and
                plans: dispatches resolved once, run as one submission
    view        step 1, view: numpy's wasm-heap bytes borrowed by JS, no copy
    dispatch    step 3, dispatch: kernels from wgsl/ (shipped as pybridge.wgsl), grids
    browser     steps 2-5 in the browser: upload (view | staging | naive), dispatch,
                readback (MAP_READ ring -> numpy out=, one copy)
    native      the same interface over wgpu-py in CPython (lavapipe, Metal, Vulkan)
    cpu         the same interface with every kernel run by numpy (no WebGPU, ?gpu=none)
    weights     safetensors streamed from the server into mapped GPU buffers
    _unicode_data  Unicode tables the tokenizer needs, frozen at HF's versions (generated)
    tokenizer   BERT WordPiece in pure Python (the same ids as Hugging Face tokenizers)
    minilm      all-MiniLM-L6-v2: load, then embed (one JS call and one readback per batch,
                a plan per batch shape)
    corpus      a corpus embedded once by MiniLM, its vectors kept in the browser (OPFS),
                searched by cosine
    demo        what the page runs: a kernel self-check, semantic search with MiniLM, the
                corpus, the GPU timeline, the editor's Python
    checks      the self-test (/selftest): kernel cases, float64 references, the data path's
                copies, the model against stored embeddings; the tests use the same cases

In plain CPython the package imports (browser-only parts raise a clear error when called),
so its logic is unit-tested without a browser and its kernels run on the native backend.
"""

from pybridge._env import IN_PYODIDE
from pybridge.backend import GpuTensor, default_backend, set_default_device, set_default_paths
from pybridge.accounting import count_copies, reset_stats, stats

__all__ = ["IN_PYODIDE", "GpuTensor", "count_copies", "default_backend", "reset_stats",
           "set_default_device", "set_default_paths", "stats"]
__version__ = "0.1.0"
