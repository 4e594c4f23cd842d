"""The exceptions pybridge raises; each message names the operation and what was wrong."""

from __future__ import annotations


class PybridgeError(RuntimeError):
    """Base class of pybridge's runtime errors (bad arguments raise TypeError/ValueError)."""


class WebGPUUnavailable(PybridgeError):
    """The browser exposes no WebGPU, or no adapter; the message says what is needed."""


class GpuError(PybridgeError):
    """A WebGPU error caught by an error scope (or reported as uncaptured), naming the op."""

    def __init__(self, op: str, kind: str, message: str) -> None:
        super().__init__(f"{op}: GPU {kind} error: {message}")
        self.op, self.kind, self.gpu_message = op, kind, message


class GpuValidationError(GpuError):
    pass


class GpuOutOfMemory(GpuError):
    pass


class DeviceLost(PybridgeError):
    """The GPU device was lost (driver reset, destroy(), ...). Tensors on it are gone; a new
    device is created by `await backend.recover()` (default_backend() does it by itself)."""

    def __init__(self, op: str, reason: str, message: str) -> None:
        super().__init__(
            f"{op}: the GPU device was lost ({reason}: {message or 'no message'}); "
            "its tensors are gone. Call `await backend.recover()` (or get a fresh "
            "`await pybridge.default_backend()`) and upload again."
        )
        self.op, self.reason = op, reason


class UseAfterFree(PybridgeError):
    """An operation used a GpuTensor after `.free()`."""


class IntegrityError(PybridgeError):
    """Downloaded bytes did not match the expected sha256; nothing was kept on the GPU."""


class DownloadError(PybridgeError):
    """A file could not be downloaded, even after resuming it with Range requests; the
    message names the file and how far it got. Nothing made for it stays on the GPU."""
