"""The dtype table: numpy dtype <-> WGSL storage type <-> JS TypedArray <-> alignment.

One row per dtype the data path moves. Element types narrower than 4 bytes (float16, uint8)
are stored packed in `array<u32>` and unpacked in WGSL (`unpack2x16float`, byte shifts), so
they need no optional feature; `shader-f16` allows `array<f16>` where the adapter has it.
Buffer sizes are padded to 4 bytes (WebGPU copies move whole 4-byte words).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DType:
    name: str  # numpy name
    numpy: np.dtype
    wgsl: str  # element type as WGSL sees the buffer
    typed_array: str  # JS TypedArray over the same bytes
    itemsize: int
    packed: bool  # stored several to a u32 word, unpacked in WGSL
    align: int = 4  # WGSL alignment of the storage element (packed types live in u32 words)


_ROWS = [
    DType("float32", np.dtype(np.float32), "f32", "Float32Array", 4, False),
    DType("float16", np.dtype(np.float16), "u32 (2 x f16, unpack2x16float)", "Uint16Array", 2, True),
    DType("int32", np.dtype(np.int32), "i32", "Int32Array", 4, False),
    DType("uint32", np.dtype(np.uint32), "u32", "Uint32Array", 4, False),
    DType("uint8", np.dtype(np.uint8), "u32 (4 x u8, shifts)", "Uint8Array", 1, True),
]
DTYPES: dict[str, DType] = {row.name: row for row in _ROWS}
ACCEPTED = ", ".join(DTYPES)

# safetensors dtype names -> ours
SAFETENSORS_DTYPES = {"F32": "float32", "F16": "float16", "I32": "int32", "U32": "uint32",
                      "U8": "uint8"}


def lookup(dtype) -> DType:
    """The table row for a numpy dtype (or its name); TypeError lists what is accepted."""
    try:
        key = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"unsupported dtype {dtype!r}; accepted: {ACCEPTED}") from e
    if key.byteorder == ">":
        raise TypeError(f"big-endian dtype {key.str} is not supported; accepted (little-endian): "
                        f"{ACCEPTED}")
    row = DTYPES.get(key.name)
    if row is None:
        raise TypeError(f"unsupported dtype {key.name}; accepted: {ACCEPTED}")
    return row


def padded(nbytes: int) -> int:
    """Bytes rounded up to a multiple of 4 (at least 4: WebGPU has no empty bindings)."""
    return max(4, (nbytes + 3) & ~3)
