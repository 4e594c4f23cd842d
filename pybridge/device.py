"""Adapter and device: request them, report features and limits, fail with a clear message.

Optional features are detected, never assumed: `shader-f16` (Safari and most real GPUs have
it, SwiftShader does not), `subgroups`, `timestamp-query`. Limits that matter for inference
(buffer sizes, workgroup storage) are raised to what the adapter allows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pybridge._env import require_browser
from pybridge.errors import WebGPUUnavailable

OPTIONAL_FEATURES = ("shader-f16", "subgroups", "timestamp-query")

# Limits reported to the page and raised to the adapter's maximum when requesting the device.
RAISED_LIMITS = (
    "maxBufferSize",
    "maxStorageBufferBindingSize",
    "maxComputeWorkgroupStorageSize",
    "maxComputeInvocationsPerWorkgroup",
    "maxComputeWorkgroupSizeX",
    "maxStorageBuffersPerShaderStage",
)
REPORTED_LIMITS = RAISED_LIMITS + (
    "maxComputeWorkgroupsPerDimension",
    "minStorageBufferOffsetAlignment",
    "maxUniformBufferBindingSize",
)

NO_WEBGPU_HELP = (
    "WebGPU is needed: Chrome or Edge 113+ (macOS, Windows, ChromeOS; on Linux start it with "
    "--enable-unsafe-webgpu or enable chrome://flags/#enable-unsafe-webgpu), Safari 26+ on macOS "
    "or iOS, or Firefox 141+ on Windows. The page must come from https:// or http://localhost."
)


@dataclass
class Gpu:
    """A WebGPU device with what was detected about it."""

    adapter: Any  # JsProxy(GPUAdapter)
    device: Any  # JsProxy(GPUDevice)
    features: frozenset[str]
    limits: dict[str, int]
    info: dict[str, str] = field(default_factory=dict)

    @property
    def is_cpu(self) -> bool:
        """A software adapter (Chrome's SwiftShader fallback), not a GPU."""
        return self.info.get("isFallbackAdapter") == "True" or \
            self.info.get("architecture", "").lower() == "swiftshader"

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for the page and the tests."""
        return {
            "adapter": self.info,
            "features": sorted(self.features),
            "limits": self.limits,
        }


async def request_gpu(power_preference: str = "high-performance") -> Gpu:
    """Request an adapter and a device with the optional features the adapter has."""
    require_browser("request_gpu")
    import js
    from pyodide.ffi import to_js

    gpu = getattr(js.navigator, "gpu", None)
    if gpu is None:
        raise WebGPUUnavailable(f"This browser has no WebGPU (navigator.gpu is missing). {NO_WEBGPU_HELP}")
    adapter = await gpu.requestAdapter(
        to_js({"powerPreference": power_preference}, dict_converter=js.Object.fromEntries)
    )
    if adapter is None:
        raise WebGPUUnavailable(
            f"WebGPU is present but gave no adapter (GPU blocklisted or disabled). {NO_WEBGPU_HELP}"
        )
    available = {str(f) for f in adapter.features}
    wanted = [f for f in OPTIONAL_FEATURES if f in available]
    required_limits = {name: int(getattr(adapter.limits, name)) for name in RAISED_LIMITS}
    device = await adapter.requestDevice(
        to_js(
            {"requiredFeatures": wanted, "requiredLimits": required_limits,
             "label": "pybridge"},
            dict_converter=js.Object.fromEntries,
        )
    )
    info_obj = getattr(adapter, "info", None)
    info = {}
    if info_obj is not None:
        for key in ("vendor", "architecture", "device", "description", "isFallbackAdapter"):
            value = getattr(info_obj, key, "")
            info[key] = str(value) if value is not None else ""
    return Gpu(
        adapter=adapter,
        device=device,
        features=frozenset(str(f) for f in device.features),
        limits={name: int(getattr(device.limits, name)) for name in REPORTED_LIMITS},
        info=info,
    )

