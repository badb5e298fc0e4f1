#!/usr/bin/env python3
"""Added tokens with every flag the `tokenizers` library has (`single_word`, `lstrip`, `rstrip`,
`normalized`, `special`), some overlapping, on a small byte-level BPE, with the ids the library
gives for strings that test where each flag applies.

Usage: python3 Scripts/make-added-token-cases.py OUT.json   (needs `pip install tokenizers`)
"""
import json
import sys

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

TRAINING = ["the cat sat on the mat", "tool calls and answers", "Hello world, hello again", "snake_case and CamelCase"] * 20

ADDED = [
    AddedToken("cat", single_word=True, normalized=False),
    AddedToken("<tool>", special=True, normalized=False),
    AddedToken("<tool>call", single_word=True, normalized=False),
    AddedToken("[L]", lstrip=True, normalized=False),
    AddedToken("[R]", rstrip=True, normalized=False),
    AddedToken("[LR]", lstrip=True, rstrip=True, special=True, normalized=False),
    AddedToken("HELLO", normalized=True),
    AddedToken("word", single_word=True, normalized=True),
]

INPUTS = [
    "cat", "a cat sat", "concat", "cats", "cat_", "(cat)", "catcat", "über cat", "écat",
    "<tool>call", "<tool>calls", "x<tool>call", "<tool>call <tool>", "<tool>callcat",
    "a   [L]b", "a\n\t[L]b", "a[R]   b", "a [R]\nb", "x  [LR]  y", "[LR]", "  [LR]",
    "hello HELLO Hello", "say hello!", "word", "a word.", "words", "sword word_ word",
]


def main():
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(TRAINING, trainer)
    for token in ADDED:
        (tokenizer.add_special_tokens if token.special else tokenizer.add_tokens)([token])
    cases = [{"text": text, "ids": tokenizer.encode(text, add_special_tokens=False).ids} for text in INPUTS]
    import tokenizers
    with open(sys.argv[1], "w") as handle:
        json.dump({"tokenizers_version": tokenizers.__version__, "tokenizer": json.loads(tokenizer.to_str()), "cases": cases},
                  handle, ensure_ascii=False)


if __name__ == "__main__":
    main()
