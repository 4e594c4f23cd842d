"""Copy accounting: every CPU copy our data path makes in the worker is counted here.

    pybridge.stats()                  -> {"upload": {"view": {"copies": 2, "bytes": 8192}, ...}, ...}
    with pybridge.count_copies() as c:  -> c.copies("upload"), c.bytes("readback", "naive")
        ...

A copy is bytes moved from one buffer to another by the worker: by writeBuffer (out of its
source), by JS (`set`, `slice`, a response gathered into one ArrayBuffer), by Pyodide's
conversions (`to_js`, `to_bytes`) or by numpy (`tobytes`, `copy`, `copyto`). "bytes" is what
those copies moved: `copies` copies of `nbytes` each. The browser's GPU process copies
writeBuffer's data again, and reads mapped ranges handed to it by unmap, outside the worker:
those are not counted here. tests/e2e/test_copies.py checks these numbers against probes of
the worker's copy primitives and of numpy's copying calls, which know nothing of this module.

Directions: "upload" (numpy -> GPU), "readback" (GPU -> numpy), "weights" (file -> GPU),
"dispatch" (kernel parameters), and "contiguous" (the extra copy made when a non-contiguous
array must be made contiguous).
Paths:
  "view", "staging", "ring"  the zero-copy paths: 1 copy of each byte
  "pad"           what writing whole 4-byte words costs beyond that, for a length that is
                  not a multiple of 4: "view" and plan runs copy the 1-3 trailing bytes into
                  a zeroed word that writeBuffer copies whole (1 copy of 4 bytes: the trailing
                  bytes once more, and the zeros); "naive" pads its first copy with zeros,
                  which to_js and writeBuffer carry (2 copies of the zeros)
  "uniform"       upload: a kernel's numpy parameters copied into a new UNIFORM buffer
  "uniform key"   dispatch: the same bytes copied to find the buffer that holds them (each
                  dispatch, and each step of a plan when it is built)
  "naive"         the labelled baseline
  "stream"        weights: each network chunk copied once into mapped GPU memory
  "hash"          weights checked by blocks (pybridge.weights): each byte copied once more,
                  into the block WebCrypto digests (which copies the block again, unseen)
  "header"        weights: the safetensors header, from the response into one ArrayBuffer and
                  from there into Python bytes (2 copies)
  "numpy"         "contiguous": np.ascontiguousarray
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

_counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
# the counts of `count_copies(task=True)` blocks open in this task (and the tasks it started)
_task_counts: ContextVar[tuple[dict, ...]] = ContextVar("pybridge_task_counts", default=())


def record(direction: str, path: str, copies: int, nbytes: int) -> None:
    """Count `copies` CPU copies of `nbytes` bytes each."""
    for counts in (_counts, *_task_counts.get()):
        c = counts[(direction, path)]
        c[0] += copies
        c[1] += copies * nbytes


def stats() -> dict[str, dict[str, dict[str, int]]]:
    """A snapshot of the copies in the worker so far: direction -> path -> {"copies", "bytes"}."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for (direction, path), (copies, nbytes) in sorted(_counts.items()):
        out.setdefault(direction, {})[path] = {"copies": copies, "bytes": nbytes}
    return out


def reset_stats() -> None:
    _counts.clear()


class CopyCounter:
    """What happened between entering and leaving `count_copies()`."""

    def __init__(self, counts: dict[tuple[str, str], list[int]] | None = None) -> None:
        self._counts = _counts if counts is None else counts  # the worker's, or a task's own
        self._start = {k: tuple(v) for k, v in self._counts.items()}
        self._end: dict[tuple[str, str], tuple[int, int]] | None = None

    def _delta(self) -> dict[tuple[str, str], tuple[int, int]]:
        end = self._end if self._end is not None else {k: tuple(v) for k, v in self._counts.items()}
        out = {}
        for k, (c, b) in end.items():
            c0, b0 = self._start.get(k, (0, 0))
            if (c - c0, b - b0) != (0, 0):
                out[k] = (c - c0, b - b0)
        return out

    def copies(self, direction: str, path: str | None = None) -> int:
        return sum(c for (d, p), (c, _) in self._delta().items()
                   if d == direction and (path is None or p == path))

    def bytes(self, direction: str, path: str | None = None) -> int:
        return sum(b for (d, p), (_, b) in self._delta().items()
                   if d == direction and (path is None or p == path))

    def as_dict(self) -> dict[str, dict[str, dict[str, int]]]:
        out: dict[str, dict[str, dict[str, int]]] = {}
        for (d, p), (c, b) in sorted(self._delta().items()):
            out.setdefault(d, {})[p] = {"copies": c, "bytes": b}
        return out


@contextmanager
def count_copies(task: bool = False) -> Iterator[CopyCounter]:
    """Measure the copies made inside a block: every copy in the worker meanwhile, or with
    `task` only this task's (and those of the tasks it starts inside the block), whatever
    other tasks copy at the same time."""
    own = None
    token = None
    if task:
        own = defaultdict(lambda: [0, 0])
        token = _task_counts.set((*_task_counts.get(), own))
    counter = CopyCounter(own)
    try:
        yield counter
    finally:
        counter._end = {k: tuple(v) for k, v in counter._counts.items()}
        if token is not None:
            _task_counts.reset(token)
