// Counts the bytes every copy primitive of the worker moves, independently of pybridge's own
// accounting (tests/e2e/test_copies.py compares the two). Served from /test-data/ and loaded
// in the worker by Python: `probe = await js.importModule("/test-data/copy_probe.mjs")`, then
// `probe.install()`, `probe.start()`, ..., `probe.take()`, `probe.restore()`.
//
// What it wraps, and what one call counts (bytes):
//   GPUQueue.writeBuffer           the bytes written; the source is "heap" (a view of the wasm
//                                  memory, i.e. numpy's own bytes), "mapped" or "js" (a buffer
//                                  made in JS: a copy was made before). The browser's GPU
//                                  process copies them again, outside the worker: not counted.
//   %TypedArray%.prototype.set     source length x element size, with where from and to
//                                  (Pyodide's `to_bytes`, `to_py`, `assign_to` use HEAPU8.set)
//   %TypedArray%.prototype.slice   the new array (Pyodide's `to_js` of bytes uses HEAP8.slice)
//   %TypedArray%.prototype.copyWithin, ArrayBuffer.prototype.slice, %TypedArray%.from and
//   new <TypedArray>(typed array)  the bytes of the new or overwritten range
//   Response/Request/Blob .arrayBuffer and .bytes   the body gathered into one buffer
//   structuredClone                the bytes of a buffer or view passed to it
//   GPUBuffer.getMappedRange       not a copy: remembers the ranges, so copies name "mapped"
// A typed array filled from a plain JS array of numbers (`Uint32Array.from([...])`, a plan's
// grids) converts values rather than copying bytes: listed as "conversions", apart.
// Not seen: memcpy inside wasm (numpy's own copies: test_copies.py watches those from Python),
// TextEncoder/TextDecoder (strings), postMessage (leaves the worker).

const TYPED = ["Int8Array", "Uint8Array", "Uint8ClampedArray", "Int16Array", "Uint16Array",
  "Int32Array", "Uint32Array", "Float32Array", "Float64Array", "BigInt64Array", "BigUint64Array"];
const TypedArray = Object.getPrototypeOf(Uint8Array);

let active = false;
let busy = false; // the probe's own work is never counted
let copies = new Map(); // "op|src|dst|where" -> {op, src, dst, where, calls, bytes}
let conversions = new Map();
const mapped = new WeakSet(); // ArrayBuffers returned by getMappedRange
const undo = [];

const heap = () => self.pyodide._module.HEAPU8.buffer;
const kindOf = (buffer) => (buffer === heap() ? "heap" : mapped.has(buffer) ? "mapped" : "js");
const bufferOf = (x) => (ArrayBuffer.isView(x) ? x.buffer : x);
const isBinary = (x) => ArrayBuffer.isView(x) || x instanceof ArrayBuffer ||
  (typeof SharedArrayBuffer !== "undefined" && x instanceof SharedArrayBuffer);

// The first caller outside this module, as "file:function".
function where() {
  for (const line of String(new Error().stack).split("\n").slice(1)) {
    if (line.includes("copy_probe")) continue;
    const m = /at (?:(.+?) \()?(.*?):\d+:\d+\)?$/.exec(line.trim());
    if (m) return `${m[2].split("/").pop().split("?")[0]}:${m[1] || "(anonymous)"}`;
  }
  return "?";
}

function note(table, op, bytes, src, dst, caller = null) {
  if (!active || busy) return;
  busy = true;
  try {
    const at = caller || where();
    const key = `${op}|${src}|${dst}|${at}`;
    const row = table.get(key) || { op, src, dst, where: at, calls: 0, bytes: 0 };
    row.calls += 1;
    row.bytes += bytes;
    table.set(key, row);
  } finally {
    busy = false;
  }
}

function wrap(owner, name, make) {
  const original = owner[name];
  if (typeof original !== "function") return;
  owner[name] = make(original);
  undo.push(() => (owner[name] = original));
}

export function install() {
  if (undo.length) return;
  wrap(GPUQueue.prototype, "writeBuffer", (original) => function (buf, at, data, dataOffset, size) {
    if (active && !busy) {
      const elem = ArrayBuffer.isView(data) ? data.BYTES_PER_ELEMENT || 1 : 1;
      const length = data.byteLength / elem; // in elements (bytes for an ArrayBuffer)
      const n = (size ?? length - (dataOffset ?? 0)) * elem;
      note(copies, "writeBuffer", n, kindOf(bufferOf(data)), "gpu");
    }
    return original.apply(this, arguments);
  });
  wrap(GPUBuffer.prototype, "getMappedRange", (original) => function () {
    const range = original.apply(this, arguments);
    mapped.add(range);
    return range;
  });
  wrap(TypedArray.prototype, "set", (original) => function (source) {
    if (active && !busy) {
      const n = (source && source.length) || 0;
      if (ArrayBuffer.isView(source)) {
        note(copies, "set", n * this.BYTES_PER_ELEMENT, kindOf(source.buffer), kindOf(this.buffer));
      } else {
        const bytes = n * this.BYTES_PER_ELEMENT;
        note(conversions, "set from values", bytes, "values", kindOf(this.buffer));
      }
    }
    return original.apply(this, arguments);
  });
  wrap(TypedArray.prototype, "slice", (original) => function () {
    const out = original.apply(this, arguments);
    note(copies, "slice", out.byteLength, kindOf(this.buffer), "js");
    return out;
  });
  wrap(TypedArray.prototype, "copyWithin", (original) => function (target, start, end) {
    const len = this.length;
    const at = (x, d) => (x === undefined ? d : x < 0 ? Math.max(len + x, 0) : Math.min(x, len));
    const n = Math.max(0, Math.min(at(end, len) - at(start, 0), len - at(target, 0)));
    const kind = kindOf(this.buffer);
    note(copies, "copyWithin", n * this.BYTES_PER_ELEMENT, kind, kind);
    return original.apply(this, arguments);
  });
  wrap(ArrayBuffer.prototype, "slice", (original) => function () {
    const out = original.apply(this, arguments);
    note(copies, "ArrayBuffer.slice", out.byteLength, kindOf(this), "js");
    return out;
  });
  wrap(TypedArray, "from", (original) => function (source) {
    const out = original.apply(this, arguments);
    if (ArrayBuffer.isView(source)) {
      note(copies, "from", out.byteLength, kindOf(source.buffer), "js");
    }
    else note(conversions, "from values", out.byteLength, "values", "js");
    return out;
  });
  for (const name of TYPED) {
    const Original = self[name];
    self[name] = new Proxy(Original, {
      construct(target, args, newTarget) {
        const out = Reflect.construct(target, args, newTarget);
        const src = args[0];
        if (src !== null && typeof src === "object" && !isBinary(src)) {
          note(conversions, `new ${name}(values)`, out.byteLength, "values", "js");
        } else if (ArrayBuffer.isView(src)) {
          note(copies, `new ${name}(array)`, out.byteLength, kindOf(src.buffer), "js");
        }
        return out;
      },
    });
    undo.push(() => (self[name] = Original));
  }
  const bodies = [self.Response, self.Request, self.Blob].filter(Boolean);
  for (const cls of bodies) {
    for (const method of ["arrayBuffer", "bytes"]) {
      if (!Object.prototype.hasOwnProperty.call(cls.prototype, method)) continue;
      wrap(cls.prototype, method, (original) => function () {
        const caller = active ? where() : null; // the promise settles with no caller left
        return original.apply(this, arguments).then((out) => {
          note(copies, `${cls.name}.${method}`, out.byteLength, "body", "js", caller);
          return out;
        });
      });
    }
  }
  wrap(self, "structuredClone", (original) => function (value) {
    if (isBinary(value)) {
      note(copies, "structuredClone", value.byteLength, kindOf(bufferOf(value)), "js");
    }
    return original.apply(this, arguments);
  });
}

export function restore() {
  active = false;
  while (undo.length) undo.pop()();
}

export function start() {
  copies = new Map();
  conversions = new Map();
  active = true;
}

// Stop counting; {copies: [rows], conversions: [rows]}, each row {op, src, dst, where, calls,
// bytes}, as JSON text (one crossing into Python).
export function take() {
  active = false;
  return JSON.stringify({ copies: [...copies.values()], conversions: [...conversions.values()] });
}
