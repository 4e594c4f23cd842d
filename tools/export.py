"""Export the whole site to a folder that any static host serves: the pages, Pyodide, the
wheels, the kernels and the model, as the dev server serves them.

    python3 tools/dev.py export DIR [--force]

The folder holds every file the dev server answers (tools/server.py default_mounts, first
root wins), the precompressed `.gz` siblings beside them (nginx `gzip_static`, Caddy
`precompressed`), and the headers the dev server sends, written for the usual servers:
    _headers                Netlify and Cloudflare Pages read it from the site's root
    _serving/nginx.conf     a `location` block to include in a server block
    _serving/Caddyfile      a site block
All three are made here from tools/server.py's SECURITY_HEADERS and MIME_TYPES, so they
cannot drift from the dev server. (The dev server also marks /pyodide/<version>/ immutable,
the lock file aside; a host's default caching is fine.)

What the page needs from a host: the right MIME types (`.mjs`/`.js` as JavaScript, `.wasm`
as application/wasm: most hosts do both), a secure context (https://, or http://localhost)
for WebGPU and the Python snapshot, and nothing else. Cross-origin isolation (COOP/COEP)
only sharpens the timers the benchmarks read; without it the page works the same. Range
requests are optional (a dropped download starts over instead of resuming). `/selftest` is
`/selftest.html` on a host that does not drop the extension.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.server import MIME_TYPES, PAGES, SECURITY_HEADERS, default_mounts  # noqa: E402

SERVING = "_serving"


def site_files(root: Path = ROOT) -> dict[str, Path]:
    """URL path -> file, for every file the dev server answers (first mount wins)."""
    out: dict[str, Path] = {}
    for mount in default_mounts(root):
        if not mount.directory.is_dir():
            raise SystemExit(f"export: {mount.directory} is missing: run `python3 tools/dev.py "
                             "setup --demo` first")
        for path in sorted(mount.directory.rglob("*")):
            rel = path.relative_to(mount.directory).as_posix()
            if path.is_file() and not any(part.startswith(".") for part in rel.split("/")):
                out.setdefault(mount.prefix + rel, path)
    return out


def netlify_headers() -> str:
    lines = ["/*"] + [f"  {k}: {v}" for k, v in SECURITY_HEADERS.items()]
    for ext in (".wasm", ".mjs", ".wgsl"):
        lines += [f"/*{ext}", f"  Content-Type: {MIME_TYPES[ext]}"]
    return "\n".join(lines) + "\n"


def nginx_conf() -> str:
    adds = "".join(f'    add_header {k} "{v}" always;\n' for k, v in SECURITY_HEADERS.items())
    types = "".join(f"        {mime.split(';')[0]} {ext[1:]};\n"
                    for ext, mime in MIME_TYPES.items())
    return ("# inside a `server { ... }` block\n"
            "location / {\n"
            "    root /path/to/export;  # the exported folder\n"
            "    gzip_static on;  # the .gz files beside the assets\n"
            "    types {\n" + types + "    }\n" + adds + "}\n")


def caddyfile() -> str:
    headers = "".join(f'\t\t{k} "{v}"\n' for k, v in SECURITY_HEADERS.items())
    return ("example.com {\n"
            "\troot * /path/to/export\n"
            "\tfile_server {\n\t\tprecompressed gzip\n\t}\n"
            "\theader {\n" + headers + "\t}\n"
            "\t@wgsl path *.wgsl\n"
            f'\theader @wgsl Content-Type "{MIME_TYPES[".wgsl"]}"\n'
            "}\n")


def export(dest: Path, force: bool = False, root: Path = ROOT) -> dict[str, int]:
    """Write the site to `dest`; returns {files, bytes}. Refused: the checkout, a folder above
    it, one inside or above a folder the site is read from, and a folder that is not empty
    unless `force` and it is an earlier export (it has _serving/), which is then emptied."""
    dest = dest.resolve()
    files = site_files(root)
    checkout = root.resolve()
    for folder in [checkout] + [m.directory.resolve() for m in default_mounts(root)]:
        if dest == folder or folder in dest.parents or dest in folder.parents:
            raise SystemExit(f"export: {dest} is, holds or is inside {folder}, which the site "
                             "is read from")
    if dest.exists() and any(dest.iterdir()):
        if not force:
            raise SystemExit(f"export: {dest} is not empty (--force empties an earlier export)")
        if not (dest / SERVING).is_dir():
            raise SystemExit(f"export: {dest} is not empty and not an earlier export (no "
                             f"{SERVING}/ in it): not emptied")
        shutil.rmtree(dest)
    dest.mkdir(parents=True, exist_ok=True)
    total = 0
    for i, (url, path) in enumerate(files.items(), 1):
        target = dest / url.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)  # a copy, not a link: editing the export leaves build/ alone
        total += path.stat().st_size
        if i % 50 == 0 or i == len(files):
            print(f"\r[export] {i}/{len(files)} files, {total / 1e6:.1f} MB", end="", flush=True)
    print()
    (dest / "_headers").write_text(netlify_headers())
    (dest / SERVING).mkdir()
    (dest / SERVING / "nginx.conf").write_text(nginx_conf())
    (dest / SERVING / "Caddyfile").write_text(caddyfile())
    for page, file in PAGES.items():
        print(f"[export] {page} is {file} on a static host")
    print(f"[export] wrote {dest}: {len(files)} files, {total / 1e6:.1f} MB; the headers for "
          f"Netlify/Cloudflare Pages in _headers, for nginx and Caddy in {SERVING}/")
    return {"files": len(files), "bytes": total}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dest", type=Path, help="the folder to write (made if missing)")
    ap.add_argument("--force", action="store_true",
                    help="empty the folder first if it holds an earlier export")
    args = ap.parse_args(argv)
    export(args.dest, args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
