"""Adapter and device: request them, report features and limits, fail with a clear message.

Optional features are detected, never assumed: `shader-f16` (Safari and most real GPUs have
it, SwiftShader does not), `subgroups`, `timestamp-query`. Which limits the device asks for is
a profile (`set_limits_profile`, the page's `?limits=`), chosen before the first device:

  "adapter"  (the default) the limits that matter for inference (buffer sizes, workgroup
             storage) raised to what the adapter allows
  "safari"   only what Safari 26 gives on the smallest Apple Silicon GPU (SAFARI_LIMITS), each
             no better than the adapter's, and no `subgroups` (Safari 26.x has none)
  "default"  WebGPU's default limits: nothing raised (16 KiB workgroup storage, 256
             invocations, 8 storage buffers per stage, 128 MiB bindings)

Every kernel fits the "default" profile (tests/unit/test_wgsl_rules.py), so a device that gives
less than another still runs them all; the profiles let CI prove it on SwiftShader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

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

# Safari 26 on the smallest Apple Silicon GPU (Metal family Apple7: M1, A14). WebKit
# Source/WebGPU/WebGPU/HardwareCapabilities.mm at commit 02cba9a8abd78987686050966b765f4cf47a6905
# (github.com/WebKit/WebKit): apple7() gives 32 KiB workgroup storage, 1024 invocations and
# workgroup size x, maxBindGroups (11) x tier2LimitForBuffersAndTextures (4) = 44 storage
# buffers per stage, storage offset alignment 32, 65535 (USHRT_MAX) workgroups per dimension;
# rawHardwareCapabilities() sets both binding sizes to maxBufferSize(device), which on iOS is
# max(defaultMaxBufferSize = 268435456, min(INT_MAX, maxBufferLength / 10)), on a Mac at least
# 1 GiB: the smallest (a phone's floor) is 256 MiB. Later trunk (maxBufferLength / 3, capped at
# 1 GiB on iOS) keeps the same floor and the same compute limits.
SAFARI_LIMITS = {
    "maxBufferSize": 268_435_456,
    "maxStorageBufferBindingSize": 268_435_456,
    "maxUniformBufferBindingSize": 268_435_456,
    "maxComputeWorkgroupStorageSize": 32_768,
    "maxComputeInvocationsPerWorkgroup": 1024,
    "maxComputeWorkgroupSizeX": 1024,
    "maxStorageBuffersPerShaderStage": 44,
    "maxComputeWorkgroupsPerDimension": 65535,
    "minStorageBufferOffsetAlignment": 32,
}
# WebGPU's defaults for the reported limits (gpuweb spec, "limit-default"): what a device
# requested with no limits has, and what every kernel must fit
DEFAULT_LIMITS = {
    "maxBufferSize": 268_435_456,
    "maxStorageBufferBindingSize": 134_217_728,
    "maxUniformBufferBindingSize": 65536,
    "maxComputeWorkgroupStorageSize": 16384,
    "maxComputeInvocationsPerWorkgroup": 256,
    "maxComputeWorkgroupSizeX": 256,
    "maxStorageBuffersPerShaderStage": 8,
    "maxComputeWorkgroupsPerDimension": 65535,
    "minStorageBufferOffsetAlignment": 256,
}
LIMITS_PROFILES = ("adapter", "safari", "default")
# features a profile leaves out even where the adapter has them
PROFILE_WITHOUT = {"adapter": frozenset(), "safari": frozenset({"subgroups"}),
                   "default": frozenset()}
_profile = ["adapter"]


def set_limits_profile(name: str) -> None:
    """Which limits the next device asks for: "adapter" (the default: raised to the adapter's
    maximum), "safari" (Safari 26 on the smallest Apple Silicon GPU, no `subgroups`) or
    "default" (WebGPU's defaults). Call it before the first `default_backend()`: a device
    already made keeps its limits."""
    if name not in LIMITS_PROFILES:
        raise ValueError(f"limits profile must be one of {', '.join(LIMITS_PROFILES)}; "
                         f"got {name!r}")
    _profile[0] = name


def limits_profile() -> str:
    """The profile the next device asks for (set_limits_profile)."""
    return _profile[0]


def required_limits(profile: str, adapter_limit: Callable[[str], int]) -> dict[str, int]:
    """The limits to request from an adapter (`adapter_limit(camelName)` gives its value) under
    `profile`: "adapter" raises RAISED_LIMITS to the adapter's; "safari" asks each of
    SAFARI_LIMITS no better than the adapter's (min of the two for a maximum, max for an
    alignment); "default" asks DEFAULT_LIMITS by name (a browser gives them for a request of
    nothing, but wgpu-py fills what is not asked with the adapter's own)."""
    if profile not in LIMITS_PROFILES:
        raise ValueError(f"limits profile must be one of {', '.join(LIMITS_PROFILES)}; "
                         f"got {profile!r}")
    if profile == "adapter":
        return {name: int(adapter_limit(name)) for name in RAISED_LIMITS}
    if profile == "default":
        return dict(DEFAULT_LIMITS)
    return {name: (max if name.startswith("min") else min)(value, int(adapter_limit(name)))
            for name, value in SAFARI_LIMITS.items()}


def profile_features(profile: str, available: Iterable[str]) -> list[str]:
    """The optional features to request under `profile`, of those the adapter has."""
    have = set(available)
    return [f for f in OPTIONAL_FEATURES if f in have and f not in PROFILE_WITHOUT[profile]]


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
    limits_profile: str = "adapter"  # what the device asked for: see LIMITS_PROFILES

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
            "limits_profile": self.limits_profile,
        }


async def request_gpu(power_preference: str = "high-performance",
                      profile: str | None = None) -> Gpu:
    """Request an adapter and a device with the optional features the adapter has and the
    limits of `profile` (None: the one set_limits_profile chose)."""
    profile = profile or limits_profile()
    require_browser("request_gpu")
    import js
    from pyodide.ffi import JsException, to_js

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
    wanted = profile_features(profile, (str(f) for f in adapter.features))
    limits = required_limits(profile, lambda name: getattr(adapter.limits, name))
    try:
        device = await adapter.requestDevice(
            to_js(
                {"requiredFeatures": wanted, "requiredLimits": limits, "label": "pybridge"},
                dict_converter=js.Object.fromEntries,
            )
        )
    except JsException as e:  # a raw OperationError/TypeError before
        raise WebGPUUnavailable(f"WebGPU gave an adapter but no device ({e.message}; limits "
                                f"profile {profile!r}). {NO_WEBGPU_HELP}") from None
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
        limits_profile=profile,
    )

