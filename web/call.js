// How JS calls Python and takes its answer, in one place: web/worker.js answers the page's
// "call" and "run" messages with these, and tools/gpu/runner.mjs (the page's stack under Node
// on a real GPU) runs its soak's searches through the same code. Also `within`, the one
// deadline on such an answer (a Python restore, ONNX Runtime Web's answers).
//
// callPython: a function of a module with arguments (strings, numbers, arrays, plain
// objects), converted to Python values (lists, dicts) and passed as values: nothing the user
// typed becomes source text. toPlain: a PyProxy result converted (dicts to objects) and
// destroyed; any other value as it is.

export const PY_NAME = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;
// A failed call's error is "Type: message" (what the page shows); the traceback goes to the
// console.
export const CALL = `import importlib, inspect
try:
    __result = getattr(importlib.import_module(__module), __name)(*__args, **__kwargs)
    __result = await __result if inspect.isawaitable(__result) else __result
except Exception as e:
    __error = f"{type(e).__name__}: {e}"
    raise
__result`;

// `promise`, or a rejection with `message` once `ms` have passed (the timer then cleared):
// the one deadline for a Python restore (snapshot.js) and ONNX Runtime Web's answers (race.js).
export function within(promise, ms, message) {
  let timer;
  const late = new Promise((_, reject) => {
    // a delay past setTimeout's 2^31 - 1 ms (or Infinity, "never") would fire at once
    timer = setTimeout(() => reject(new Error(message)), Math.min(ms, 2 ** 31 - 1));
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

export async function callPython(pyodide, { module, name, args = [], kwargs = {} }) {
  if (typeof module !== "string" || typeof name !== "string" || !PY_NAME.test(module) ||
      !PY_NAME.test(name) || name.includes(".")) {
    throw new Error(`not a Python module and function name: ${module}.${name}`);
  }
  const globals = pyodide.toPy({ __module: module, __name: name, __args: args, __kwargs: kwargs });
  try {
    return await pyodide.runPythonAsync(CALL, { globals });
  } catch (err) {
    const short = globals.get("__error");
    if (typeof short !== "string") throw err;
    console.error(err.message);
    throw new Error(short);
  } finally {
    globals.destroy();
  }
}

export function toPlain(value) {
  if (value && typeof value.toJs === "function") {
    const proxy = value;
    value = proxy.toJs({ dict_converter: Object.fromEntries, create_pyproxies: false });
    proxy.destroy();
  }
  return value;
}
