// The pages' side of worker.js, shared by the demo page (main.js) and the self-test
// (selftest.js): the WebGPU check made before anything downloads (whyNoGpu), the backend
// chosen before the first kernel (chooseBackend), the status line and the notice and error
// panels, and the worker that owns Python, asked for things by message:
//   run(code)                          run Python source text; resolves with its last value
//   call(module, name, args, kwargs)   module.name(*args, **kwargs), arguments as values

export const fmtBytes = (n) =>
  n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : n >= 1e3 ? `${(n / 1e3).toFixed(0)} kB` : `${n} B`;
export const fmtMs = (ms) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`);

export const NO_WEBGPU_HELP =
  "Use Chrome or Edge 113+ (macOS, Windows, ChromeOS; on Linux start it with " +
  "--enable-unsafe-webgpu or turn on chrome://flags/#enable-unsafe-webgpu), Safari 26+ " +
  "on macOS or iOS, or Firefox 141+ on Windows. The page must be served over https:// or " +
  "from http://localhost.";

// Why this browser cannot run WebGPU here, or null (whyNoGpu asks).
async function checkWebGPU() {
  if (!("gpu" in navigator) || !navigator.gpu) {
    return `This browser has no WebGPU (navigator.gpu is missing). ${NO_WEBGPU_HELP}`;
  }
  try {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) {
      return `WebGPU is present but found no usable GPU adapter (it may be blocklisted or disabled). ${NO_WEBGPU_HELP}`;
    }
  } catch (err) {
    return `WebGPU failed to start: ${err.message}. ${NO_WEBGPU_HELP}`;
  }
  return null;
}

// Where the kernels will run: null for WebGPU, or why not (?gpu=none, or no usable WebGPU:
// then every kernel runs on numpy in the worker, pybridge.cpu).
export async function whyNoGpu(params) {
  return params.get("gpu") === "none" ? "WebGPU is switched off by ?gpu=none." : await checkWebGPU();
}

// Before the first kernel, through `call` (pythonWorker's): the CPU backend where the page saw
// no GPU, else ?limits=safari|default for the GPU device (pybridge.device.set_limits_profile)
// and the worker's own device (pybridge.backend.gpu_or_cpu). Resolves with null (the GPU) or
// why the kernels run on numpy after all: the worker can fail to get a device the page's
// check saw (no navigator.gpu in workers, requestDevice refused), and then falls back to the
// CPU backend itself. A bad ?limits= rejects with an Error whose `title` names the address.
export async function chooseBackend(call, noWebGPU, params) {
  if (noWebGPU) {
    await call("pybridge", "set_default_device", ["cpu", noWebGPU]);
    return noWebGPU;
  }
  if (params.has("limits")) {
    try {
      await call("pybridge.device", "set_limits_profile", [params.get("limits")]);
    } catch (err) {
      throw Object.assign(new Error(err.message), { title: "Bad ?limits= in the address" });
    }
  }
  return await call("pybridge.backend", "gpu_or_cpu");
}

// The status line: body[data-state] (the style's dot) and #state's text; `app.state` for tests.
export function setState(app, state, text) {
  app.state = state;
  document.body.dataset.state = state;
  document.querySelector("#state").textContent = text;
}

// A panel of the page (#notice: the page goes on; #error: it stopped) with its title and
// message, shown.
export function showPanel(id, title, message) {
  document.querySelector(`#${id}-title`).textContent = title;
  document.querySelector(`#${id}-message`).textContent = message;
  document.querySelector(`#${id}`).hidden = false;
}

// A worker and its pending answers: Python's (worker.js; the race's ONNX Runtime Web,
// race-worker.js, answers the same way), `label` naming it in errors. `state()` names the
// page's state for the error a call made before start() gets. start(url, onMessage) passes
// every message but the answers to onMessage, and returns the Worker (for its onerror). An error that escapes the worker (it
// failed to load, or something outside worker.js's own error handling threw) ends it: it is
// terminated, every pending call is rejected with the error and later ones at once (they
// never hang), and stopped() says why.
export function pythonWorker(state = () => "not started", label = "Python's worker") {
  let worker = null;
  let stopped = null; // why the worker can no longer answer
  let nextId = 1;
  const pending = new Map();

  function stop(why) {
    stopped = stopped || why;
    worker.terminate(); // whatever Python was doing there, nobody can ask for it any more
    for (const p of pending.values()) p.reject(new Error(stopped));
    pending.clear();
  }

  function send(message) {
    if (!worker) return Promise.reject(new Error(`${label} is not running (state: ${state()})`));
    if (stopped) return Promise.reject(new Error(stopped));
    const id = nextId++;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      worker.postMessage({ ...message, id });
    });
  }

  function settle(msg) {
    const p = pending.get(msg.id);
    pending.delete(msg.id);
    if (p) msg.ok ? p.resolve(msg.value) : p.reject(new Error(msg.error));
  }

  return {
    start(url, onMessage) {
      worker = new Worker(url, { type: "module" });
      worker.onmessage = (ev) => (ev.data.type === "result" ? settle(ev.data) : onMessage(ev));
      worker.addEventListener("error", (ev) =>
        stop(`${label} failed: ${ev.message || `${url} could not be loaded`}`));
      worker.addEventListener("messageerror", () =>
        stop(`${label} sent a message the page could not read`));
      return worker;
    },
    // why the worker stopped answering (its error), or null
    stopped: () => stopped,
    // end it: pending and later calls are rejected with `why`
    stop: (why) => worker && stop(why),
    // any message the worker answers with {type: "result", id, ok, value | error}
    send,
    // Python source text (tests, the DevTools console)
    run: (code) => send({ type: "run", code }),
    // module.name(*args, **kwargs) with the arguments passed as values, never as source text
    call: (module, name, args = [], kwargs = {}) =>
      send({ type: "call", module, name, args, kwargs }),
  };
}
