"""Step 3, dispatch: WGSL kernels from wgsl/ (one per file), compiled once per device.

Shader text comes from one place: the `wgsl/` folder, shipped inside the wheel as the
`pybridge.wgsl` package data. Python never builds shader text.
"""

from __future__ import annotations

import importlib.resources
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from pybridge._env import require_browser

WORKGROUP = 256
MAX_WORKGROUPS_PER_DIM = 65535


@lru_cache(maxsize=None)
def shader_source(op: str) -> str:
    """The text of wgsl/<op>.wgsl. In a wheel it is package data (pybridge/wgsl/); in a
    source checkout, the top-level wgsl/ folder that setuptools maps there."""
    name = f"{op}.wgsl"
    try:
        return (importlib.resources.files("pybridge.wgsl") / name).read_text(encoding="utf-8")
    except ModuleNotFoundError:
        path = Path(__file__).resolve().parent.parent / "wgsl" / name
    if not path.is_file():
        raise FileNotFoundError(f"no kernel named {op!r}: {path} does not exist")
    return path.read_text(encoding="utf-8")


def grid_1d(n: int, workgroup: int = WORKGROUP) -> tuple[int, int, int]:
    """Workgroup counts covering n items, folding into y past the 65535-per-dimension limit."""
    groups = max(1, -(-n // workgroup))
    x = min(groups, MAX_WORKGROUPS_PER_DIM)
    return (x, -(-groups // x), 1)


class Kernel:
    """One compute pipeline ('auto' layout, entry point `main`) for one device."""

    def __init__(self, device: Any, op: str) -> None:
        require_browser("Kernel")
        import js
        from pyodide.ffi import to_js

        self.op = op
        self.device = device
        module = device.createShaderModule(
            to_js({"code": shader_source(op), "label": op}, dict_converter=js.Object.fromEntries)
        )
        self.pipeline = device.createComputePipeline(
            to_js(
                {"layout": "auto", "label": op, "compute": {"module": module, "entryPoint": "main"}},
                dict_converter=js.Object.fromEntries,
            )
        )

    def bind(self, buffers: Sequence[Any]) -> Any:
        """A bind group with buffers at bindings 0..n-1 (inputs first, outputs last)."""
        import js
        from pyodide.ffi import to_js

        entries = [{"binding": i, "resource": {"buffer": b}} for i, b in enumerate(buffers)]
        return self.device.createBindGroup(
            to_js(
                {"layout": self.pipeline.getBindGroupLayout(0), "entries": entries},
                dict_converter=js.Object.fromEntries,
            )
        )

    def encode(self, encoder: Any, bind_group: Any, grid: tuple[int, int, int]) -> None:
        """Record one dispatch of this kernel into `encoder`."""
        pass_ = encoder.beginComputePass()
        pass_.setPipeline(self.pipeline)
        pass_.setBindGroup(0, bind_group)
        pass_.dispatchWorkgroups(*grid)
        pass_.end()



def kernel(gpu: Any, op: str) -> Kernel:
    """The compiled kernel `op` for `gpu` (a device.Gpu), compiled on first use, cached on it."""
    if op not in gpu.kernels:
        gpu.kernels[op] = Kernel(gpu.device, op)
    return gpu.kernels[op]
