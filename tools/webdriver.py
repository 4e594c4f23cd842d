"""Driving WebKit from CPython through the W3C WebDriver protocol: WebKitGTK's MiniBrowser under
Xvfb on Linux (Debian's webkit2gtk-driver), Safari through safaridriver on a Mac. One
protocol, one client: the two differ only in the driver's command line and the capabilities
(`BROWSERS`). Used by tests/webkit/.

    with Driver.start("webkit") as driver:     # Xvfb + WebKitWebDriver on a free port
        session = driver.new_session()        # MiniBrowser --automation: about 1 s
        session.navigate(server.url)          # returns once the page has loaded
        session.evaluate("(x) => x + 1", 41)  # a function of one argument, awaited: 42
        session.console()                     # the page's console calls and uncaught errors

Standard library only: the protocol is HTTP + JSON, and the tests need a handful of its
endpoints (status, new session, timeouts, navigate, execute async script, new/close window,
delete session); package-notes.md says why not selenium. Cleanup is unconditional: sessions
are deleted and the driver's whole process group (driver, browser, WebKit's child processes)
and Xvfb are killed on `stop()`, on leaving the `with` block (a failed test, Ctrl-C), at
interpreter exit and on SIGTERM; on Linux a killed pytest takes them with it (PDEATHSIG).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

# Debian 12's libwebkit2gtk-4.1-0 ships MiniBrowser here; --automation lets WebKitWebDriver
# drive it. JavaScriptCore hides SharedArrayBuffer unless this is set (Safari exposes it to
# cross-origin isolated pages, which the dev server makes every page).
MINIBROWSER = Path(os.environ.get(
    "PYBRIDGE_MINIBROWSER", "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser"))
WEBKIT_ENV = {"JSC_useSharedArrayBuffer": "1"}
# Which browser tests/webkit/ drives: "webkit" (here) or "safari" (a Mac);
# `python3 tools/dev.py test --browser safari` sets it.
BROWSER = os.environ.get("PYBRIDGE_WEBKIT_BROWSER", "webkit")


@dataclass(frozen=True)
class BrowserSpec:
    """What differs between WebKitGTK and Safari: the driver and the capabilities."""

    name: str
    driver: str  # executable, found on PATH or absolute
    port_args: tuple[str, ...]  # formatted with {port}
    capabilities: dict
    needs_display: bool  # a headless X server (Xvfb) for the browser's window
    env: dict = field(default_factory=dict)

    def missing(self) -> str | None:
        """Why this browser cannot run here, or None."""
        if shutil.which(self.driver) is None:
            return f"{self.driver} not found ({INSTALL_HINT[self.name]})"
        if self.name == "webkit" and not MINIBROWSER.exists():
            return f"MiniBrowser not found at {MINIBROWSER} ({INSTALL_HINT[self.name]})"
        if self.needs_display and shutil.which("Xvfb") is None:
            return f"Xvfb not found ({INSTALL_HINT[self.name]})"
        return None


BROWSERS = {
    "webkit": BrowserSpec(
        name="webkit",
        driver=os.environ.get("PYBRIDGE_WEBKITDRIVER", "WebKitWebDriver"),
        port_args=("--port={port}",),
        capabilities={"webkitgtk:browserOptions": {
            "binary": str(MINIBROWSER),
            "args": ["--automation"],
        }},
        needs_display=True,
        env=WEBKIT_ENV,
    ),
    "safari": BrowserSpec(
        name="safari",
        driver="/usr/bin/safaridriver",
        port_args=("--port", "{port}"),
        capabilities={"browserName": "safari"},
        needs_display=False,
    ),
}


def missing(browser: str) -> str | None:
    """Why `browser` ("webkit", "safari") cannot be driven here, or None."""
    if browser not in BROWSERS:
        return (f"unknown browser {browser!r} (PYBRIDGE_WEBKIT_BROWSER): "
                f"expected {', '.join(BROWSERS)}")
    return BROWSERS[browser].missing()


INSTALL_HINT = {
    "webkit": "python3 tools/dev.py test installs webkit2gtk-driver and xvfb",
    "safari": "macOS only; enable it once with `safaridriver --enable` and Safari's "
              "Develop > Allow Remote Automation",
}


class WebDriverError(RuntimeError):
    """An error answer from the driver: `error` is the protocol's code ("javascript error",
    "script timeout", "session not created", ...)."""

    def __init__(self, error: str, message: str):
        super().__init__(f"{error}: {message}")
        self.error = error


class JsError(RuntimeError):
    """A script's promise rejected (or it threw): the message is the JS error's."""


def _die_with_parent() -> None:
    """In the child before exec (Linux): be killed when the process that started it dies, so
    a killed pytest leaves no driver or Xvfb behind (MiniBrowser exits with its X server)."""
    if sys.platform == "linux":
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)  # unwinds through `with`/finally, then atexit: cleanup runs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_group(proc: subprocess.Popen | None, grace_s: float = 3.0) -> None:
    """SIGTERM the process group proc leads (started with start_new_session), SIGKILL what is
    left after grace_s; then reap proc."""
    if proc is None or (proc.poll() is not None and not _group_alive(proc.pid)):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _group_alive(proc.pid):
            proc.poll()  # reap the leader, so the group can empty
            time.sleep(0.05)
        if not _group_alive(proc.pid):
            break
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Driver:
    """A WebDriver server process (and the Xvfb it draws into); `new_session()` opens browsers.
    Every child runs in its own process group, so stop() reaches the browser and WebKit's
    processes that the driver started, and a Ctrl-C in the terminal reaches only pytest, whose
    cleanup then stops them in order."""

    def __init__(self, spec: BrowserSpec):
        self.spec = spec
        self.port = 0
        self.xvfb: subprocess.Popen | None = None
        self.proc: subprocess.Popen | None = None
        self.sessions: list[Session] = []
        self.output: list[str] = []  # the driver's and browser's stdout/stderr, for errors
        self._lock = threading.Lock()

    @classmethod
    def start(cls, browser: str = "webkit", timeout_s: float = 20.0) -> Driver:
        why = missing(browser)
        if why:
            raise FileNotFoundError(why)
        driver = cls(BROWSERS[browser])
        atexit.register(driver.stop)
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            driver._start(timeout_s)
        except BaseException:
            driver.stop()
            raise
        return driver

    def _start(self, timeout_s: float) -> None:
        env = {**os.environ, **self.spec.env}
        if self.spec.needs_display:
            env["DISPLAY"] = self._start_xvfb(timeout_s)
        self.port = _free_port()
        cmd = [self.spec.driver, *(a.format(port=self.port) for a in self.spec.port_args)]
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     errors="replace", start_new_session=True,
                                     preexec_fn=_die_with_parent)
        threading.Thread(target=self._keep_output, args=(self.proc.stdout,), daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while True:  # the driver answers /status once it listens
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.spec.driver} exited ({self.proc.returncode}): "
                                   + "".join(self.output[-20:]))
            try:
                self.request("GET", "/status", timeout_s=1)
                return
            except (OSError, WebDriverError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.spec.driver} did not answer on port {self.port}")
                time.sleep(0.05)

    def _start_xvfb(self, timeout_s: float) -> str:
        """An Xvfb of our own on a free display (-displayfd: it picks and tells the number)."""
        read_fd, write_fd = os.pipe()
        self.xvfb = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x1024x24", "-nolisten",
             "tcp"],
            pass_fds=(write_fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
        os.close(write_fd)
        with os.fdopen(read_fd) as r:
            ready = [None]
            t = threading.Thread(target=lambda: ready.__setitem__(0, r.readline()), daemon=True)
            t.start()
            t.join(timeout_s)
        if not ready[0]:
            raise RuntimeError("Xvfb did not start")
        return f":{ready[0].strip()}"

    def _keep_output(self, stream) -> None:
        for line in stream:
            with self._lock:
                self.output.append(line)

    def request(self, method: str, path: str, body: dict | None = None,
                timeout_s: float = 60.0):
        """One protocol call; returns the answer's `value` or raises WebDriverError."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data,
                                     method=method,
                                     headers={"Content-Type": "application/json; charset=utf-8"})
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                answer = json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            try:
                value = json.loads(e.read()).get("value", {})
            except ValueError:
                value = {}
            raise WebDriverError(value.get("error", f"HTTP {e.code}"),
                                 value.get("message", str(e))) from None
        return answer.get("value")

    def new_session(self, timeout_s: float = 30.0) -> Session:
        caps = {"capabilities": {"alwaysMatch": self.spec.capabilities}}
        value = self.request("POST", "/session", caps, timeout_s=timeout_s)
        session = Session(self, value["sessionId"], value.get("capabilities", {}))
        self.sessions.append(session)
        return session

    def stop(self) -> None:
        """Delete every session, then kill the driver's process group and Xvfb. Idempotent."""
        for session in list(self.sessions):
            session.delete()
        _kill_group(self.proc)
        _kill_group(self.xvfb)
        self.proc = self.xvfb = None
        atexit.unregister(self.stop)

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# Records the page's console and uncaught errors (read back by Session.console()).
_CAPTURE = """() => {
  if (window.__webdriverConsole) return;
  const seen = (window.__webdriverConsole = []);
  const text = (args) =>
    args.map((a) => (a instanceof Error ? `${a.name}: ${a.message}` : String(a))).join(" ");
  for (const level of ["log", "info", "warn", "error", "debug"]) {
    const real = console[level].bind(console);
    console[level] = (...args) => { seen.push({level, text: text(args)}); real(...args); };
  }
  addEventListener("error", (e) =>
    seen.push({level: "uncaught", text: e.error ? text([e.error]) : e.message}));
  addEventListener("unhandledrejection", (e) =>
    seen.push({level: "uncaught", text: "unhandled rejection: " + text([e.reason])}));
}"""

# Runs a function of one argument in the page and hands the driver its awaited result (or the
# error's message). The function's text is part of the script the driver compiles, so nothing
# is eval'd in the page: the page's Content-Security-Policy (no 'unsafe-eval') holds. The
# result travels as JSON text: WebKitWebDriver's own serialization reorders object keys.
_EVALUATE = """const done = arguments[arguments.length - 1];
(async () => {{
  const f = ({fn});
  return typeof f === "function" ? await f(arguments[0]) : await f;
}})()
  .then((value) => value === undefined ? "null" : JSON.stringify(value))  // throws on a BigInt
  .then((json) => done({{ok: true, json}}),
        (err) => done({{ok: false, error: String(err && err.message || err)}}));"""


class Session:
    """One browser window under automation (W3C WebDriver session)."""

    def __init__(self, driver: Driver, session_id: str, capabilities: dict):
        self.driver = driver
        self.id = session_id
        self.capabilities = capabilities
        self.script_timeout_s = 0.0

    def _call(self, method: str, what: str, body: dict | None = None, timeout_s: float = 60.0):
        return self.driver.request(method, f"/session/{self.id}{what}", body, timeout_s)

    def navigate(self, url: str, timeout_s: float = 60.0) -> None:
        """Load url; returns once the page's load event fired (pageLoadStrategy "normal")."""
        self._call("POST", "/timeouts", {"pageLoad": int(timeout_s * 1000)})
        self._call("POST", "/url", {"url": url}, timeout_s=timeout_s + 10)
        self.evaluate(_CAPTURE)

    def console(self) -> list[dict]:
        """The page's console calls and uncaught errors since navigate() returned, each
        {"level": "log" | "warn" | "error" | ... | "uncaught", "text": ...}. Classic WebDriver
        has no log endpoint and WebKitWebDriver 2.50 no BiDi, so navigate() installs hooks in
        the page once it has loaded: what ran before that, and a worker's own console, are
        not seen (the page reports a worker's failure in pybridge.error)."""
        return self.evaluate("() => window.__webdriverConsole || []")

    def errors(self) -> list[str]:
        """Uncaught errors and unhandled rejections in the page (see console())."""
        return [e["text"] for e in self.console() if e["level"] == "uncaught"]

    def evaluate(self, fn: str, arg=None, timeout_s: float = 180.0):
        """Like Playwright's page.evaluate: `fn` is a JS function of one argument (or an
        expression); its result, awaited, comes back as JSON. A rejection raises JsError."""
        if timeout_s != self.script_timeout_s:
            self._call("POST", "/timeouts", {"script": int(timeout_s * 1000)})
            self.script_timeout_s = timeout_s
        answer = self._call("POST", "/execute/async",
                            {"script": _EVALUATE.format(fn=fn), "args": [arg]},
                            timeout_s=timeout_s + 10)
        if not answer["ok"]:
            raise JsError(answer["error"])
        return json.loads(answer["json"])

    def new_window(self) -> str:
        """Open a new top-level window (a tab) in this session and switch to it; returns the
        handle of the window that was current. Safari allows one session at a time, so a test
        that needs its own page opens a window, not a session."""
        previous = self._call("GET", "/window")
        handle = self._call("POST", "/window/new", {"type": "tab"})["handle"]
        self._call("POST", "/window", {"handle": handle})
        return previous

    def close_window(self, switch_to: str) -> None:
        """Close the current window and make `switch_to` current again."""
        self._call("DELETE", "/window")
        self._call("POST", "/window", {"handle": switch_to})

    def delete(self) -> None:
        """Close the window and end the session; a dead driver is not an error here."""
        if self in self.driver.sessions:
            self.driver.sessions.remove(self)
        try:
            self._call("DELETE", "", timeout_s=3)  # stop() kills the browser after this anyway
        except (OSError, WebDriverError) as e:
            print(f"[webdriver] deleting session {self.id}: {e}", file=sys.stderr)


class Page:
    """A Session dressed as the part of Playwright's Page that tools/harness.App uses
    (`evaluate`), so App (py, state, load_module) drives WebKit unchanged."""

    def __init__(self, session: Session):
        self.session = session

    def evaluate(self, fn: str, arg=None):
        return self.session.evaluate(fn, arg)

    def wait_for(self, condition: str, timeout_s: float = 180.0):
        """Wait until the JS expression `condition` is truthy and return its value. It is
        checked again at every change of the page's DOM (a MutationObserver: the page shows
        what it does, so a state worth waiting for changes the DOM), never on a timer."""
        # the condition's text is part of the script (no eval in the page: its CSP forbids it)
        return self.session.evaluate(
            """() => new Promise((resolve) => {
                 const now = () => { try { return (%s); } catch (e) { return undefined; } };
                 const first = now();
                 if (first) return resolve(first);
                 const seen = new MutationObserver(() => {
                   const v = now();
                   if (v) { seen.disconnect(); resolve(v); }
                 });
                 seen.observe(document, {subtree: true, childList: true, attributes: true,
                                         characterData: true});
               })""" % condition, timeout_s=timeout_s)

    def wait_for_state(self, states: list[str], timeout_s: float = 180.0) -> str:
        """Wait until window.pybridge.state is one of `states` (the page sets
        body[data-state] with it)."""
        return self.wait_for(f"window.pybridge && {json.dumps(states)}.includes(pybridge.state)"
                             " && pybridge.state", timeout_s)


if __name__ == "__main__":  # a smoke test: python3 tools/webdriver.py [webkit|safari] URL
    name = sys.argv[1] if len(sys.argv) > 1 else "webkit"
    url = sys.argv[2] if len(sys.argv) > 2 else "about:blank"
    t0 = time.perf_counter()
    with Driver.start(name) as d:
        s = d.new_session()
        t1 = time.perf_counter()
        s.navigate(url)
        print(f"session in {t1 - t0:.2f} s; title {s.evaluate('document.title')!r}; "
              f"userAgent {s.evaluate('navigator.userAgent')!r}")
