"""The page's Python, run under Node with Dawn as navigator.gpu: tools/gpu/runner.mjs driven
from CPython. `NodeApp` answers `py(code)` and `load_module(name, path)` like the browser's
`tools.harness.App`, so the in-page halves of the benchmarks (tools/bench_*_page.py) run
unchanged in both; `js(fn)` calls a JS function where Pyodide lives, as Playwright's
`worker.evaluate(fn)` does in the page's worker (tools/bench_soak.py reads the same counters
both ways); `calls(...)` calls Python functions through the page's own call path (web/call.js,
what web/worker.js does for each `call` message of the page).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tools.harness import App

RUNNER = Path(__file__).resolve().parent / "runner.mjs"
MARK = "@@pybridge "


class NoAdapter(RuntimeError):
    """Dawn found no WebGPU adapter (no GPU, or no Vulkan driver for it)."""


class NodeApp(App):
    """A booted runner.mjs: Pyodide + the pybridge wheel + web/bridge.js, on Dawn.

    `adapter` is what Dawn's adapter reported ({info, features, limits, flags}); `ready`
    the boot message (versions, boot ms, the loopback origin serving `mounts`)."""

    def __init__(self, node: Path, webgpu: Path, pyodide: Path, web: Path,
                 mounts: dict[str, Path], dawn_flags: tuple[str, ...] = (),
                 log: Path | None = None, gpu: bool = True,
                 env: dict[str, str] | None = None,
                 node_flags: tuple[str, ...] = (), snapshot_dir: Path | None = None,
                 snapshot_timeout_ms: int | None = None) -> None:
        """`node_flags` go to Node itself (e.g. --expose-gc, which makes `gc()` global);
        `snapshot_dir`: Python restored from (or, the first time, making) a memory snapshot
        kept there, as the page's worker starts it (web/snapshot.js)."""
        cmd = [str(node), "--experimental-detect-module", *node_flags, str(RUNNER),
               "--webgpu", str(webgpu), "--pyodide", str(pyodide), "--web", str(web)]
        for prefix, folder in mounts.items():
            cmd += ["--mount", f"{prefix}={folder}"]
        for flag in dawn_flags:
            cmd += ["--dawn-flag", flag]
        if not gpu:
            cmd.append("--no-gpu")
        if snapshot_dir is not None:
            cmd += ["--snapshot-dir", str(snapshot_dir)]
        if snapshot_timeout_ms is not None:  # how long a restore may take (web/snapshot.js)
            cmd += ["--snapshot-timeout-ms", str(snapshot_timeout_ms)]
        self.log = log
        self._log_file = log.open("a") if log else None
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log_file or None, text=True, bufsize=1,
                                     env=env)
        self._next_id = 0
        self.adapter: dict[str, Any] | None = None
        try:
            if gpu:
                first = self._message()
                if first["type"] == "no-adapter":
                    raise NoAdapter(first["message"])
                self.adapter = first
            self.ready = self._message()
        except BaseException:
            self.close()
            raise
        self.origin: str = self.ready["origin"]

    def _log_tail(self, lines: int = 30) -> str:
        if not self.log or not self.log.exists():
            return ""
        tail = self.log.read_text(errors="replace").splitlines()[-lines:]
        return f"\n  last lines of {self.log}:\n    " + "\n    ".join(tail)

    def _message(self) -> dict[str, Any]:
        """The next protocol message; other stdout lines pass through to our stderr."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.startswith(MARK):
                sys.stderr.write(line)
                continue
            msg = json.loads(line[len(MARK):])
            if msg["type"] == "fatal":
                raise RuntimeError(f"runner.mjs failed: {msg['message']}{self._log_tail()}")
            return msg
        code = self.proc.wait()
        raise RuntimeError(f"runner.mjs exited ({code}) before answering{self._log_tail()}")

    def py(self, code: str) -> Any:
        """Run Python (async allowed) in the runner's Pyodide; the last expression's value,
        JSON-converted. A Python error raises RuntimeError with its traceback."""
        return self._request({"code": code}, "Python")

    def js(self, fn: str) -> Any:
        """Call the JS function whose source is `fn` (no arguments; async allowed) in the
        runner's global scope, where `self.pyodide` is; its JSON-able value."""
        return self._request({"js": fn}, "JS")

    def calls(self, calls: list[dict[str, Any]], seconds: float | None = None) -> list[dict]:
        """Each of `calls` ({"module", "name", "args", "kwargs"}) made as web/worker.js makes
        the page's: web/call.js callPython, the result converted by toPlain (toJs with
        dict_converter Object.fromEntries, then destroy), one after another, in one request;
        after `seconds` (when given) no further call starts. One {"ms", "value"} or
        {"ms", "error"} ("Type: message", as the page gets it) per call made."""
        return self._request({"calls": calls, "seconds": seconds}, "calls")

    def _request(self, request: dict[str, Any], what: str) -> Any:
        assert self.proc.stdin is not None
        self._next_id += 1
        self.proc.stdin.write(json.dumps({"id": self._next_id, **request}) + "\n")
        self.proc.stdin.flush()
        msg = self._message()
        if msg.get("id") != self._next_id:
            raise RuntimeError(f"runner.mjs answered {msg!r} to request {self._next_id}")
        if not msg["ok"]:
            raise RuntimeError(f"{what} in runner.mjs failed:\n{msg['error']}")
        return msg["value"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (subprocess.TimeoutExpired, BrokenPipeError):
                self.proc.kill()
                self.proc.wait()
        if self._log_file:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> "NodeApp":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
