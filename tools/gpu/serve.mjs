// Loopback HTTP for the Node runner: files under a few folders, with Range requests.
//
// Node's fetch does not read file: URLs, and pybridge reads a safetensors header with Range
// requests before streaming the body (pybridge/weights.py), so the runner serves the model the
// way tools/server.py serves it to the browser: GET and HEAD, one byte range per request
// (206 + Content-Range; 416 when out of the file), no caching. Used by tools/gpu/runner.mjs and
// tests/unit/test_bench_gpu.py.
//
//   const { origin, close } = await serve({ "/models/": "/path/to/models" });

import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { createServer } from "node:http";
import { resolve, sep } from "node:path";
import { pathToFileURL } from "node:url";

const TYPES = { ".json": "application/json", ".txt": "text/plain; charset=utf-8" };

// "bytes=a-b" | "bytes=a-" | "bytes=-n" -> [start, end] (inclusive), null when absent or
// not a single range (the whole file is sent), "unsatisfiable" when outside the file.
export function parseRange(header, size) {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header || "");
  if (!m || (m[1] === "" && m[2] === "")) return null;
  let start;
  let end;
  if (m[1] === "") {
    start = Math.max(0, size - Number(m[2]));
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || start > end) return "unsatisfiable";
  return [start, end];
}

// The file a URL path names under one of the mounts ({"/prefix/": folder}), or null.
function locate(mounts, pathname) {
  const prefixes = Object.keys(mounts).sort((a, b) => b.length - a.length);
  for (const prefix of prefixes) {
    if (!pathname.startsWith(prefix)) continue;
    const root = resolve(mounts[prefix]);
    const file = resolve(root, "." + sep + decodeURIComponent(pathname.slice(prefix.length)));
    return file.startsWith(root + sep) ? file : null;
  }
  return null;
}

async function handle(mounts, req, res) {
  const { pathname } = new URL(req.url, "http://127.0.0.1");
  const file = locate(mounts, pathname);
  let info = null;
  if (file) info = await stat(file).catch(() => null);
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { Allow: "GET, HEAD" }).end();
    return;
  }
  if (!info || !info.isFile()) {
    res.writeHead(404, { "Content-Type": "text/plain" }).end(`not found: ${pathname}\n`);
    return;
  }
  const size = info.size;
  const ext = file.slice(file.lastIndexOf("."));
  const headers = {
    "Accept-Ranges": "bytes",
    "Cache-Control": "no-store",
    "Content-Type": TYPES[ext] || "application/octet-stream",
  };
  const range = parseRange(req.headers.range, size);
  if (range === "unsatisfiable") {
    res.writeHead(416, { ...headers, "Content-Range": `bytes */${size}` }).end();
    return;
  }
  const [start, end] = range || [0, size - 1];
  const status = range ? 206 : 200;
  if (range) headers["Content-Range"] = `bytes ${start}-${end}/${size}`;
  headers["Content-Length"] = String(size === 0 ? 0 : end - start + 1);
  res.writeHead(status, headers);
  if (req.method === "HEAD" || size === 0) {
    res.end();
    return;
  }
  createReadStream(file, { start, end, highWaterMark: 1 << 20 })
    .on("error", (err) => res.destroy(err))
    .pipe(res);
}

// Serve `mounts` on 127.0.0.1 (a free port unless given); resolves to {origin, close}.
export function serve(mounts, port = 0) {
  const server = createServer((req, res) => {
    handle(mounts, req, res).catch((err) => {
      if (!res.headersSent) res.writeHead(500, { "Content-Type": "text/plain" });
      res.end(String(err && err.message));
    });
  });
  return new Promise((ok, fail) => {
    server.once("error", fail);
    server.listen(port, "127.0.0.1", () => {
      const origin = `http://127.0.0.1:${server.address().port}`;
      ok({ origin, close: () => new Promise((done) => server.close(done)) });
    });
  });
}

// `node serve.mjs /prefix/=folder ...`: serve, print the origin, run until killed (the tests).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const mounts = Object.fromEntries(process.argv.slice(2).map((a) => a.split(/=(.*)/s, 2)));
  const { origin } = await serve(mounts);
  console.log(origin);
}
