#!/usr/bin/env python3
"""Trains the small byte-level BPE tokenizer that the test fixtures and the embedded model use, and
records the `tokenizers` library's own ids and decoded text for a set of hard inputs, so that
Flexpert's tokenizer is checked against the reference on every pre-tokenizer pattern it supports.

Usage: python3 Scripts/make-tokenizer.py OUT_DIR   (needs `pip install tokenizers`)
Writes OUT_DIR/tokenizer.json, tokenizer_config.json and OUT_DIR/tokenizer-vectors.json.
"""
import glob
import json
import os
import sys

import tokenizers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

PATTERNS = {
    "gpt2": r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
    "qwen2": r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
    "llama3": r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
}
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

MULTILINGUAL = [
    "The quick brown fox jumps over the lazy dog. It's what we'll do, isn't it? They've said I'd go.",
    "Mixture-of-Experts models route each token to a few experts; expert parallelism spreads them over GPUs.",
    "日本語のテキストも少し含めます。東京は日本の首都です。中文文本：专家混合模型。",
    "Ünïcödé façade naïve coöperate résumé — “quotes” ‘single’ … ½ ∑ ∫ √ ∞ ≠ ≤ ≥ 😀 🚀 👩‍💻",
    "def forward(self, x):\n    return self.mlp(self.norm(x)) + x\n\n\tindented\r\nwindows line\r\n",
    "Numbers: 1234567890, 3.14159, 2026-11-23, $1,000,000.00, 0x7fff, 1e-4.",
    "Русский текст и ελληνικά γράμματα, עברית, العربية, हिन्दी, 한국어 문장.",
]

HARD_INPUTS = [
    "",
    "Hello world",
    "Hello  world   with    runs of spaces   ",
    "It's I'M you'RE we'Ve THEY'LL she'D it'S",
    "line one\nline two\r\nline three\r\n\r\n\n\n  indented\n\ttab\n",
    "    leading spaces and trailing spaces    ",
    "日本語の文章です。中文：你好，世界！",
    "emoji 😀🚀👩‍💻👍🏽 flags 🇫🇷🇯🇵 and ZWJ sequences",
    "combining: e\u0301 a\u0308 n\u0303 o\u0302\u0323 and precomposed é ä ñ",
    "decomposed then NFC: Cafe\u0301 Zu\u0308rich",
    "digits 1 12 123 1234 12345 123456 3.14 1,000,000 ٣٤٥ ²³",
    "punctuation!!! ??? ... --- *** ((( ))) {{{ }}} <<< >>> \"\"\" '''",
    "special <|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><|endoftext|>text<|endoftext|> spaced <|endoftext|>",
    "mixed\u00a0non-breaking\u2003em-space\u3000ideographic space",
    "a\u200bzero\u200cwidth\u200djoiners\ufeffbom",
    "code: for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
    "URLs https://example.com/path?query=1&b=2#frag and emails a.b@c.de",
    "Ελληνικά, Русский, עברית, العربية, हिन्दी, 한국어, ไทย",
    "\u0000control\u0001chars\u007f\u0085next-line",
    "'s's't 're've 'm'll'd '' ' s",
    "   \n   \n\n   x",
    "x" * 300,
    "A\r\rB\n\rC",
]


def corpus_lines():
    files = sorted(glob.glob(os.path.join(sys.prefix, "lib", "python3*", "*.py")))[:120]
    for path in files:
        with open(path, encoding="utf-8", errors="ignore") as handle:
            yield handle.read()
    for _ in range(200):
        yield from MULTILINGUAL


def build(pattern_name, vocab_size=2000):
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PATTERNS[pattern_name]), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus_lines(), trainer=trainer)
    return tokenizer


def with_pre_tokenizer(base_json, pattern_name):
    """The same vocabulary and merges under another pattern (GPT-2 style uses ByteLevel's own regex)."""
    spec = json.loads(base_json)
    if pattern_name == "gpt2-bytelevel":
        spec["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    else:
        spec["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {"Regex": PATTERNS[pattern_name]}
    return Tokenizer.from_str(json.dumps(spec))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    base = build("qwen2")
    base.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as handle:
        json.dump({
            "tokenizer_class": "Qwen2Tokenizer",
            "bos_token": None,
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
            "chat_template": CHAT_TEMPLATE,
            "model_max_length": 4096,
        }, handle, indent=2)

    vectors = {"tokenizers_version": tokenizers.__version__, "cases": []}
    base_json = base.to_str()
    variants = {"qwen2": base}
    for name in ["gpt2", "llama3", "gpt2-bytelevel"]:
        variants[name] = with_pre_tokenizer(base_json, name)
    for name, tokenizer in variants.items():
        if name != "qwen2":
            with open(os.path.join(out, f"tokenizer-{name}.json"), "w") as handle:
                handle.write(tokenizer.to_str())
        for text in HARD_INPUTS + MULTILINGUAL:
            ids = tokenizer.encode(text).ids
            vectors["cases"].append({
                "pre_tokenizer": name,
                "text": text,
                "ids": ids,
                "decoded": tokenizer.decode(ids, skip_special_tokens=False),
            })
    with open(os.path.join(out, "tokenizer-vectors.json"), "w") as handle:
        json.dump(vectors, handle, ensure_ascii=False, indent=0)


if __name__ == "__main__":
    main()
