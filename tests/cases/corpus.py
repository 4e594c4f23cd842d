"""Texts the tokenizer and model tests share: accents, emoji, CJK, long words, odd
whitespace, control characters, the empty string, special tokens in the text, and characters
whose Unicode properties changed between versions (HF's tables are Unicode 8.0, 9.0 and 17.0;
CPython 3.11 has 14.0, Pyodide's 3.12 has 15.0)."""

TOKENIZER_CORPUS = [
    "",
    "Hello, world!",
    "Café déjà vu — naïve façade",
    "I ❤️ emoji 😀👍🏽 and 🇫🇷 flags",
    "中文分词测试，日本語のテキスト、한국어 문장",
    "supercalifragilisticexpialidocious" * 5,
    "a" * 101,
    "x" * 100,
    "odd\u00a0spaces\u2003and\ttabs\nnewlines\r\n",
    "control\x00chars\x07here\u200bzero\ufeffwidth",
    "don't stop-believing... (really?) [yes] {no} <maybe> $5.00 #hash @at",
    "Ünïcödé ÀÉÎÕÜ ß ẞ İstanbul ǅ ﬁ",
    "The quick brown fox jumps over the lazy dog. " * 60,
    "ŉ Ⅻ ½ ² ℌ ﬀ",
    "\u0085next\u2028line\u2029para\u3000ideo",
    "tab\u000bvt\u000cff",
    "مرحبا بالعالم",
    "Привет мир",
    "🤖🤖🤖robot🤖",
    "e\u0301 combining",
    "123,456.789",
    "unaffable unbelievable",
    "ＦＵＬＬＷＩＤＴＨ",
    "\x1c\x1d\x1e\x1f sep",
    "   leading and trailing   ",
    "Mixed CASE WoRdS",
    "[CLS] ab[SEP]cd [cls] [MASK]. [PAD][UNK] [CLS [unused0]",
    "ΣΑΣ ΟΔΟΣ ὈΔΥΣΣΕΎΣ",
    "\U0002b81f\U0002b820\U0002b91f\U0002b920 \uf900\ufa6e",
    "new letters \ua7cb\ua7dc \U00010d50 \U00016ea0 \u1c89 unassigned \u0378\U0001fbff",
    "changed categories a\u1734b a\u1885\u0301 x\u08d4\U0001e94a \u166d \U000111c9",
    "İstanbul K\u212a \u212b \u2126 ß ẞ",
    "한국어 문장 ᄀ 각",
    "private\ue000use \U000f0000 \ufffd\ufeff",
]

MODEL_SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "Café déjà vu — naïve façade",
    "中文分词测试，日本語のテキスト",
    "I ❤️ emoji 😀👍🏽",
    "",
    "The new movie is awesome, the acting and the soundtrack are wonderful and I would "
    "recommend it to anyone who likes thoughtful science fiction with a good story.",
]
