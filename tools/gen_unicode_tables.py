"""Generate pybridge/_unicode_data.py: the Unicode tables the tokenizer needs, frozen at the
Unicode versions Hugging Face `tokenizers` (0.23.x) was built with, so that tokenization does
not depend on the Unicode tables of the Python that runs it (CPython 3.11 has 14.0, Pyodide's
3.12 has 15.0).

    python3 tools/gen_unicode_tables.py          # rewrite pybridge/_unicode_data.py
    python3 tools/gen_unicode_tables.py --check  # exit 1 if the file is not what this makes

What HF's BERT normalizer and pre-tokenizer use, and so what each table holds:

| table           | what HF uses there (Rust)                     | Unicode | taken from       |
| --------------- | --------------------------------------------- | ------- | ---------------- |
| OTHER           | unicode_categories 0.1.1 is_other: Cc Cf Co    | 8.0     | unicodedata, Age |
| NONSPACING_MARK | unicode_categories 0.1.1 is_mark_nonspacing    | 8.0     | unicodedata, Age |
| PUNCTUATION     | unicode_categories 0.1.1 is_punctuation: P*    | 8.0     | unicodedata, Age |
| DECOMPOSITION   | unicode-normalization-alignments 0.1.12 (NFD) | 9.0     | unicodedata, Age |
| COMBINING_CLASS | unicode-normalization-alignments 0.1.12 (NFD) | 9.0     | unicodedata, Age |
| LOWERCASE       | Rust std char::to_lowercase                    | 17.0    | str.lower + list |
| WHITE_SPACE     | Rust std char::is_whitespace                   | 17.0    | perl White_Space |

Sources, all present on a Debian machine with the project's CPython 3.11, none of them HF:
- CPython 3.11's `unicodedata` (Unicode 14.0.0): categories, decompositions, combining classes,
  lowercase mappings (`str.lower` of one character: the full mapping, no context, like Rust);
- perl's Unicode::UCD (its bundled UCD; the script checks it is also 14.0.0): the Age property,
  which says whether a code point was assigned in 8.0 / 9.0, and White_Space;
- the Unicode Standard's own change history for what 14.0 cannot say: the categories that changed
  between 8.0 and 14.0 (CATEGORY_8_0 below) and the lowercase pairs added in 15.0 to 17.0
  (LOWERCASE_SINCE_14_0 below). Where Node.js is installed (ICU with Unicode 17.0), the script
  checks the lowercase and White_Space tables against it.

A code point that a version did not assign is category Cn there (not Other, not a mark, not
punctuation), has no decomposition, combining class 0 and no lowercase: HF keeps such a
character and WordPiece makes it [UNK].
"""

from __future__ import annotations

import argparse
import bisect
import json
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "pybridge" / "_unicode_data.py"

BASE_VERSION = "14.0.0"  # CPython 3.11's unicodedata and perl 5.36's UCD
CATEGORY_VERSION = (8, 0)  # unicode_categories 0.1.1 (2016)
NFD_VERSION = (9, 0)  # unicode-normalization-alignments 0.1.12 (its UNICODE_VERSION)
LOWERCASE_VERSION = (17, 0)  # the Rust std of the tokenizers 0.23.3 wheel

# General categories that changed between Unicode 8.0 and 14.0, for code points whose category
# group matters here (Other / nonspacing mark / punctuation): their 8.0 value. From the Unicode
# release notes (DerivedGeneralCategory diffs); CPython 3.6 (9.0), 3.7 (11.0) and 3.8 (12.1)
# show the same steps.
CATEGORY_8_0 = {
    0x1885: "Lo",  # MONGOLIAN LETTER ALI GALI BALUDA: Lo -> Mn in 9.0
    0x1886: "Lo",  # MONGOLIAN LETTER ALI GALI THREE BALUDA: Lo -> Mn in 9.0
    0x111C9: "Po",  # SHARADA SANDHI MARK: Po -> Mn in 11.0
    0x166D: "Po",  # CANADIAN SYLLABICS CHI SIGN: Po -> So in 12.0
    0xA9BD: "Mc",  # JAVANESE CONSONANT SIGN KERET: Mc -> Mn in 12.0
    0x1734: "Mn",  # HANUNOO SIGN PAMUDPOD: Mn -> Mc in 14.0
}

# Simple lowercase mappings of letters added in Unicode 15.0 to 17.0 (none in 15.0 and 15.1):
# (first, last, first lowercase). The pairs are consecutive code points.
LOWERCASE_SINCE_14_0 = [
    (0x1C89, 0x1C89, 0x1C8A),  # 16.0 CYRILLIC CAPITAL LETTER TJE
    (0xA7CB, 0xA7CB, 0x0264),  # 16.0 LATIN CAPITAL LETTER RAMS HORN
    (0xA7CC, 0xA7CC, 0xA7CD),  # 16.0 LATIN CAPITAL LETTER S WITH DIAGONAL STROKE
    (0xA7DA, 0xA7DA, 0xA7DB),  # 16.0 LATIN CAPITAL LETTER LAMBDA
    (0xA7DC, 0xA7DC, 0x019B),  # 16.0 LATIN CAPITAL LETTER LAMBDA WITH STROKE
    (0x10D50, 0x10D65, 0x10D70),  # 16.0 GARAY CAPITAL LETTER A .. OLD NA
    (0xA7CE, 0xA7CE, 0xA7CF),  # 17.0 LATIN CAPITAL LETTER PHARYNGEAL VOICED FRICATIVE
    (0xA7D2, 0xA7D2, 0xA7D3),  # 17.0 LATIN CAPITAL LETTER DOUBLE THORN
    (0xA7D4, 0xA7D4, 0xA7D5),  # 17.0 LATIN CAPITAL LETTER DOUBLE WYNN
    (0x16EA0, 0x16EB8, 0x16EBB),  # 17.0 BERIA ERFE CAPITAL LETTER ARKAB .. (25 letters)
]

CODE_POINTS = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]  # no surrogates


def perl_ucd() -> tuple[list[int], list[tuple[int, int] | None], list[int]]:
    """The Age property as (range starts, versions) and White_Space's code points, from perl."""
    script = (
        'use Unicode::UCD qw(prop_invmap prop_invlist);'
        'my ($r, $m) = prop_invmap("Age"); my @w = prop_invlist("White_Space");'
        'print "$_\\n" for (Unicode::UCD::UnicodeVersion(),'
        ' join(",", @$r), join(",", @$m), join(",", @w));'
    )
    try:
        out = subprocess.run(["perl", "-e", script], check=True, capture_output=True,
                             text=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(f"perl with Unicode::UCD is needed for the Age property: {e}")
    if out[0] != BASE_VERSION:
        sys.exit(f"perl's UCD is Unicode {out[0]}, this script needs {BASE_VERSION}")
    starts = [int(x) for x in out[1].split(",")]
    versions = [None if v == "Unassigned" else tuple(int(p) for p in v.split("."))
                for v in out[2].split(",")]
    white = out[3].split(",")  # inversion list: [start, end) pairs
    spaces = [cp for a, b in zip(white[::2], white[1::2]) for cp in range(int(a), int(b))]
    return starts, versions, spaces


def ranges(cps: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for cp in sorted(cps):
        if out and out[-1][1] == cp - 1:
            out[-1] = (out[-1][0], cp)
        else:
            out.append((cp, cp))
    return out


def fmt_range(lo: int, hi: int) -> str:
    return f"{lo:04x}" if lo == hi else f"{lo:04x}-{hi:04x}"


def wrap(name: str, comment: str, items: list[str]) -> str:
    lines, line = [], ""
    for item in items:
        if line and len(line) + len(item) + 1 > 90:
            lines.append(line)
            line = ""
        line += item + " "
    lines.append(line)
    body = "\n".join(f'    "{x}"' for x in lines)
    return f"# {comment}\n{name} = (\n{body}\n)\n"


def build() -> str:
    if unicodedata.unidata_version != BASE_VERSION:
        sys.exit(f"run this with CPython 3.11 (unicodedata {BASE_VERSION}), "
                 f"not {unicodedata.unidata_version}")
    starts, versions, white_space = perl_ucd()

    def age(cp: int) -> tuple[int, int] | None:
        return versions[bisect.bisect_right(starts, cp) - 1]

    def assigned_in(cp: int, version: tuple[int, int]) -> bool:
        a = age(cp)
        return a is not None and a <= version

    def category_8_0(cp: int) -> str:
        if not assigned_in(cp, CATEGORY_VERSION):
            return "Cn"
        return CATEGORY_8_0.get(cp, unicodedata.category(chr(cp)))

    cat = {cp: category_8_0(cp) for cp in CODE_POINTS}
    other = [cp for cp, c in cat.items() if c in ("Cc", "Cf", "Co")]
    mn = [cp for cp, c in cat.items() if c == "Mn"]
    punct = [cp for cp, c in cat.items() if c.startswith("P")]

    decomposition, ccc = [], []
    for cp in CODE_POINTS:
        if not assigned_in(cp, NFD_VERSION):
            continue
        d = unicodedata.decomposition(chr(cp))
        if d and not d.startswith("<"):  # canonical only; Hangul syllables are algorithmic
            # In full and in canonical order: the NFD of the character on its own. Its parts are
            # as old as it is, and decompositions and combining classes of assigned characters
            # never change (Unicode's stability policy), so 14.0's NFD is 9.0's here.
            nfd = unicodedata.normalize("NFD", chr(cp))
            decomposition.append(f"{cp:04x}:{','.join(f'{ord(c):04x}' for c in nfd)}")
        if unicodedata.combining(chr(cp)):
            ccc.append((cp, unicodedata.combining(chr(cp))))

    lower = {cp: chr(cp).lower() for cp in CODE_POINTS if chr(cp).lower() != chr(cp)}
    for first, last, to in LOWERCASE_SINCE_14_0:
        for cp in range(first, last + 1):
            assert cp not in lower and not assigned_in(cp, (14, 0)), hex(cp)
            lower[cp] = chr(to + cp - first)
    check_with_node(lower, white_space)

    ccc_ranges: list[list[int]] = []  # [lo, hi, class]
    for cp, c in ccc:
        if ccc_ranges and ccc_ranges[-1][1] == cp - 1 and ccc_ranges[-1][2] == c:
            ccc_ranges[-1][1] = cp
        else:
            ccc_ranges.append([cp, cp, c])

    header = f'''"""Unicode tables for pybridge.tokenizer, frozen at the versions Hugging Face
`tokenizers` uses (see the tokenizer's docstring). Generated by tools/gen_unicode_tables.py
from CPython's unicodedata and perl's Unicode::UCD ({BASE_VERSION}) plus the Unicode change
history it lists: do not edit.

Format: space-separated hex code points; "a-b" is a range (both ends included); "k:v" maps a
code point (or range) to a value: code points joined by "," or a combining class.
"""

CATEGORY_VERSION = "8.0.0"  # OTHER, NONSPACING_MARK, PUNCTUATION (crate unicode_categories)
NFD_VERSION = "9.0.0"  # DECOMPOSITION, COMBINING_CLASS (unicode-normalization-alignments)
LOWERCASE_VERSION = "17.0.0"  # LOWERCASE, WHITE_SPACE (Rust std of the tokenizers wheel)

'''
    parts = [
        header,
        wrap("OTHER", "General_Category Cc, Cf or Co in 8.0.0 (no Cn, no Cs)",
             [fmt_range(*r) for r in ranges(other)]),
        wrap("NONSPACING_MARK", "General_Category Mn in 8.0.0",
             [fmt_range(*r) for r in ranges(mn)]),
        wrap("PUNCTUATION", "General_Category Pc, Pd, Ps, Pe, Pi, Pf or Po in 8.0.0",
             [fmt_range(*r) for r in ranges(punct)]),
        wrap("WHITE_SPACE", "the White_Space property",
             [fmt_range(*r) for r in ranges(white_space)]),
        wrap("COMBINING_CLASS", "Canonical_Combining_Class other than 0 in 9.0.0: range:class",
             [f"{fmt_range(lo, hi)}:{c}" for lo, hi, c in ccc_ranges]),
        wrap("DECOMPOSITION", "NFD of each character with a canonical decomposition in 9.0.0 "
             "(Hangul syllables: by algorithm)", decomposition),
        wrap("LOWERCASE", "full lowercase mapping of one character (no context) in 17.0.0",
             [f"{cp:04x}:{','.join(f'{ord(c):04x}' for c in low)}"
              for cp, low in sorted(lower.items())]),
    ]
    return "\n".join(parts)


def check_with_node(lower: dict[int, str], white_space: list[int]) -> None:
    """Compare lowercase and White_Space with Node's ICU when it has Unicode 17.0."""
    node = shutil.which("node")
    if node is None:
        print("node not found: lowercase and White_Space not cross-checked", file=sys.stderr)
        return
    script = r"""
const v = process.versions.unicode; const low = {}; const ws = [];
for (let cp = 0; cp < 0x110000; cp++) {
  if (cp >= 0xD800 && cp <= 0xDFFF) continue;
  const c = String.fromCodePoint(cp); const l = c.toLowerCase();
  if (l !== c) low[cp] = Array.from(l).map(x => x.codePointAt(0));
  if (/^\p{White_Space}$/u.test(c)) ws.push(cp);
}
process.stdout.write(JSON.stringify({v, low, ws}));
"""
    got = json.loads(subprocess.run([node, "-e", script], check=True, capture_output=True,
                                    text=True).stdout)
    if not got["v"].startswith("17.0"):
        print(f"node has Unicode {got['v']}: lowercase not cross-checked", file=sys.stderr)
        return
    theirs = {int(k): "".join(map(chr, v)) for k, v in got["low"].items()}
    if theirs != lower:
        diff = sorted(set(theirs.items()) ^ set(lower.items()))
        sys.exit(f"lowercase differs from Node's ICU (Unicode 17.0): {diff[:10]}")
    if got["ws"] != white_space:
        sys.exit(f"White_Space differs from Node's ICU: {got['ws']} vs {white_space}")
    print("lowercase and White_Space agree with Node's ICU (Unicode 17.0)", file=sys.stderr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the file, write nothing")
    args = ap.parse_args()
    text = build()
    if args.check:
        if OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT.relative_to(ROOT)} is stale: run tools/gen_unicode_tables.py",
                  file=sys.stderr)
            return 1
        print(f"{OUT.relative_to(ROOT)} is up to date")
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)} ({len(text) / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
