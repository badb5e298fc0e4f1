#!/usr/bin/env python3
"""Makes the chat fixtures under Tests/Fixtures/chat/: tokenizer families with the `tokenizers` library's own ids
and decoded text for hard inputs, and real chat templates rendered by transformers' own `apply_chat_template`, so
that Flexpert's tokenizer and Jinja interpreter are checked byte for byte against the reference libraries. Nothing
in the outputs is written by hand: every id, token, decoded string and rendering comes from the libraries.

Usage:
    python3 Scripts/make-chat-fixtures.py [--out Tests/Fixtures/chat] [--tf4 .build/fixtures-venv/tf4]
                                          [--llama-cpp-sdist llama_cpp_python-0.3.36.tar.gz]

Needs (versions used are recorded in the vectors files):
  * a Python with `transformers` (5.x; renders the templates), `tokenizers`, `sentencepiece`, `protobuf`, `jinja2`,
    `tiktoken` (for transformers' TikTokenConverter) and `mistral_common` (it ships Mistral's v1 SentencePiece model,
    `mistral_common/data/tokenizer.model.v1`, the 32000-piece Mistral-7B/Mixtral-8x7B tokenizer), e.g.
        python3 -m venv .build/fixtures-venv
        .build/fixtures-venv/bin/pip install transformers tokenizers sentencepiece protobuf jinja2 tiktoken mistral_common
  * transformers 4.x in a separate folder, for the SentencePiece conversion only (transformers 5 builds Llama
    tokenizers with Metaspace whatever `legacy` says, and its SpmConverter path is broken), e.g.
        .build/fixtures-venv/bin/pip install --no-deps --target .build/fixtures-venv/tf4 \
            "transformers>=4.57,<5" "huggingface-hub<1.0" "tokenizers==0.22.2"
    The script runs itself under that folder (`--spm-convert`) to write the SentencePiece families.
  * the chat templates. They are real templates, kept verbatim in OUT/templates/*.jinja and pinned by sha256 in
    OUT/templates/SOURCES.json (TEMPLATES below says where each comes from); the script refuses to render a template whose bytes changed. With --llama-cpp-sdist (the
    llama-cpp-python 0.3.36 sdist from PyPI, which vendors llama.cpp's models/templates, copied from the Hugging
    Face repos with llama.cpp's scripts/get_chat_template.py) it re-extracts the templates that come from there.
    The vLLM example templates come from the vLLM repository (no package ships them); see TEMPLATES for each source.

Writes:
  OUT/tokenizers/<family>/tokenizer.json (+ variants), tokenizer_config.json, vectors.json
      families: mixtral (Mistral v1 SentencePiece, legacy conversion), llama-metaspace (the same vocabulary,
      legacy=False, plus tokenizer-always.json), deepseek-v3 (small BPE with DeepSeek-V3's pipeline, plus
      tokenizer-digits.json), gpt-oss (small BPE through transformers' TikTokenConverter with the o200k_harmony
      pattern and harmony special tokens), qwen3 (small BPE with Qwen2's pattern, NFC and Qwen3's added tokens).
      vectors.json: {"tokenizers_version", "encode": [{file, text, add_special_tokens, ids, tokens}],
                     "decode": [{file, ids, skip_special_tokens, text, note?}], "source"}
  OUT/templates/SOURCES.json: each template's sha256 and where it comes from (checked on every run).
  OUT/templates/<name>.jinja and OUT/templates/vectors.json:
      {"transformers_version", "jinja2_version", "strftime_now", "cases": [{template, name, messages, tools,
       add_generation_prompt, continue_final_message, kwargs, special_tokens, rendered, error, error_type,
       tokenizer, ids}]}
      Rendered with transformers' apply_chat_template(tokenize=False) on a PreTrainedTokenizerFast of the family;
      ids = apply_chat_template(tokenize=True) (transformers tokenizes the rendering with add_special_tokens=False).
      The template variables are special_tokens plus kwargs, messages, tools, add_generation_prompt (and
      transformers' globals raise_exception, strftime_now, namespace, dict). strftime_now reads a pinned clock
      ("strftime_now" in the file). transformers 5 first drops message keys whose value is None and copies a
      message's reasoning to both "reasoning_content" and "thinking"; the messages recorded are the inputs.
"""
import argparse
import ast
import base64
import copy
import datetime as _datetime
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# --------------------------------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------------------------------

LLAMA_CPP_SDIST = "llama_cpp_python-0.3.36"  # PyPI sdist, sha256 832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
VENDORED = LLAMA_CPP_SDIST + "/vendor/llama.cpp/"

# name -> (where it comes from, how to extract it from the sdist or None). Their sha256 are pinned in
# templates/SOURCES.json, which the script writes on the first run and checks on every later one.
TEMPLATES = {
    "mixtral-8x7b-instruct.jinja": (
        "mistralai 'v1' template (Mistral-7B-Instruct-v0.1/v0.2 and, as far as could be checked, the current "
        "Mixtral-8x7B-Instruct-v0.1 tokenizer_config chat_template); text from llama.cpp tests/test-chat-template.cpp "
        "('mistralai/Mistral-7B-Instruct-v0.2 (mistralai 'v1' template with a system prompt)') in " + LLAMA_CPP_SDIST,
        ("cpp-test", "mistralai/Mistral-7B-Instruct-v0.2 (mistralai 'v1' template with a system prompt)")),
    "mixtral-8x7b-instruct-2023.jinja": (
        "mistralai/Mixtral-8x7B-Instruct-v0.1 tokenizer_config chat_template as first published (Dec 2023); "
        "llama-cpp-python llama_cpp/llama_chat_format.py MIXTRAL_INSTRUCT_CHAT_TEMPLATE in " + LLAMA_CPP_SDIST,
        ("py-const", "MIXTRAL_INSTRUCT_CHAT_TEMPLATE")),
    "qwen3.jinja": (
        "Qwen/Qwen3-0.6B tokenizer_config chat_template (the Qwen3 hybrid-thinking template); llama.cpp "
        "models/templates/Qwen-Qwen3-0.6B.jinja in " + LLAMA_CPP_SDIST,
        ("file", "models/templates/Qwen-Qwen3-0.6B.jinja")),
    "gpt-oss.jinja": (
        "openai/gpt-oss chat_template.jinja (harmony); llama.cpp models/templates/openai-gpt-oss-120b.jinja in "
        + LLAMA_CPP_SDIST + " (gpt-oss-20b ships the same template)",
        ("file", "models/templates/openai-gpt-oss-120b.jinja")),
    "deepseek-v3.1.jinja": (
        "deepseek-ai/DeepSeek-V3.1 tokenizer_config chat_template; llama.cpp "
        "models/templates/deepseek-ai-DeepSeek-V3.1.jinja in " + LLAMA_CPP_SDIST,
        ("file", "models/templates/deepseek-ai-DeepSeek-V3.1.jinja")),
    "deepseek-r1-distill-qwen.jinja": (
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B tokenizer_config chat_template (DeepSeek-R1's template family); "
        "llama.cpp models/templates/deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja in " + LLAMA_CPP_SDIST,
        ("file", "models/templates/deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja")),
    "tool_chat_template_hermes.jinja": (
        "vllm-project/vllm examples/tool_chat_template_hermes.jinja @ f73e0891897f33af3c09ef402f998c3b2e0f7e07",
        None),
    "tool_chat_template_mistral.jinja": (
        "vllm-project/vllm examples/tool_chat_template_mistral.jinja @ a204e405566a165ee59ad776f788e6a829d9138c",
        None),
    "tool_chat_template_llama3.1_json.jinja": (
        "vllm-project/vllm examples/tool_chat_template_llama3.1_json.jinja @ 8a8be3dcc35e02e60c940f7aff3aef8cc7524259",
        None),
    "tool_chat_template_deepseekv3.jinja": (
        "vllm-project/vllm examples/tool_chat_template_deepseekv3.jinja @ c6991a3bffc217a79a1c2413da13be7ce923dbf0 "
        "(stored there with CRLF line ends, kept here with LF: the same text as "
        "examples/templates/tool_chat_template_deepseekv3.jinja @ 8ad9ddd9b2659da49f27dd4d2b5dafe0cf2ba20b; Jinja2 "
        "reads both the same)",
        None),
}
PINS_FILE = "templates/SOURCES.json"

STRFTIME_NOW = _datetime.datetime(2025, 8, 5, 12, 0, 0)  # the clock the templates see (gpt-oss prints the date)

# --------------------------------------------------------------------------------------------------------------------
# Training corpus for the small trained families (fixed text, so that the vocabularies do not depend on the machine)
# --------------------------------------------------------------------------------------------------------------------

MULTILINGUAL = [
    "The quick brown fox jumps over the lazy dog. It's what we'll do, isn't it? They've said I'd go.",
    "Mixture-of-Experts models route each token to a few experts; expert parallelism spreads them over GPUs.",
    "Serving engines batch requests, page the key-value cache and stream tokens back as they are sampled.",
    "日本語のテキストも少し含めます。東京は日本の首都です。カタカナのテキスト、ひらがなのぶん。",
    "中文文本：专家混合模型。我们今天去北京，天气很好。你好，世界！模型推理服务。",
    "Ünïcödé façade naïve coöperate résumé — “quotes” ‘single’ … ½ ∑ ∫ √ ∞ ≠ ≤ ≥ 😀 🚀 👩‍💻",
    "Русский текст и ελληνικά γράμματα, עברית, العربية, हिन्दी, 한국어 문장, ไทย ภาษา.",
    "Numbers: 1234567890, 3.14159, 2026-11-23, $1,000,000.00, 0x7fff, 1e-4, ٠١٢٣٤٥٦٧٨٩.",
    "Le modèle répond en français, auf Deutsch, en español y em português também.",
    "Weather in Paris: 21°C, partly cloudy; wind 12 km/h from the north-west.",
    "The user asked for the weather, so the assistant called get_weather with the city and the unit.",
]
CODE = [
    "def forward(self, x):\n    return self.mlp(self.norm(x)) + x\n\n\tindented\r\nwindows line\r\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }\n",
    "import json\nprint(json.dumps({\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}))\n",
    "func encode(_ text: String) -> [Int] {\n    guard !text.isEmpty else { return [] }\n    return model.encode(text)\n}\n",
    "const url = 'https://example.com/api/v1/chat?model=gpt&stream=true#top';\n",
    "SELECT id, name FROM users WHERE created_at > '2024-01-01' ORDER BY id DESC LIMIT 10;\n",
    "{\"type\": \"function\", \"function\": {\"name\": \"search\", \"parameters\": {\"type\": \"object\", "
    "\"properties\": {\"query\": {\"type\": \"string\"}}, \"required\": [\"query\"]}}}\n",
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Tokyo\"}}\n</tool_call>\n",
    "<|start|>assistant<|channel|>analysis<|message|>Let me think.<|end|><|start|>assistant<|channel|>final"
    "<|message|>Done.<|return|>\n",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
]


def corpus(templates_dir):
    texts = []
    for name in sorted(TEMPLATES):
        path = os.path.join(templates_dir, name)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                texts.append(handle.read())
    for _ in range(40):
        texts.extend(MULTILINGUAL)
        texts.extend(CODE)
    return texts


# --------------------------------------------------------------------------------------------------------------------
# Hard inputs
# --------------------------------------------------------------------------------------------------------------------

HARD = [
    "",
    " ",
    "Hello world",
    "Hello  world   with    runs of spaces   ",
    "    leading spaces and trailing spaces    ",
    "line one\nline two\r\nline three\r\n\r\n\n\n  indented\n\ttab\n",
    "\ttabs\t\tand\t",
    "\n",
    "\n\n\n",
    "   \n   \n\n   x",
    "A\r\rB\n\rC",
    "It's I'M you'RE we'Ve THEY'LL she'D it'S",
    "日本語の文章です。中文：你好，世界！",
    "ひらがな カタカナ ｶﾀｶﾅ 漢字かな交じり文",
    "emoji 😀🚀👩‍💻👍🏽 flags 🇫🇷🇯🇵 family 👨‍👩‍👧‍👦 keycap 1️⃣",
    "combining: e\u0301 a\u0308 n\u0303 o\u0302\u0323 and precomposed é ä ñ",
    "decomposed then NFC: Cafe\u0301 Zu\u0308rich \u212b \u2126",
    "rare: 𠀀𪚥龘 \U0001F9EC \u0000 null \uE000\uF8FF private \uFFFD replacement \uFFFF",
    "digits 1 12 123 1234 12345 123456 1234567 3.14 1,000,000 ٣٤٥ ۱۲۳ ²³",
    "punctuation!!! ??? ... --- *** ((( ))) {{{ }}} <<< >>> \"\"\" ''' ,,, ;;; ::",
    "code: for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
    "def f(x):\n    return {'a': [1, 2, 3], \"b\": None}  # comment\n",
    "URLs https://example.com/path?query=1&b=2#frag and emails a.b@c.de",
    "Ελληνικά, Русский, עברית, العربية, हिन्दी, 한국어, ไทย",
    "\u0000control\u0001chars\u007f\u0085next-line",
    "mixed\u00a0non-breaking\u2003em-space\u3000ideographic space",
    "a\u200bzero\u200cwidth\u200djoiners\ufeffbom",
    "'s's't 're've 'm'll'd '' ' s",
    "x" * 120,
    "▁already▁has▁metaspace ▁",
    "<0x41> <unk> [INST] [/INST] <<SYS>>",
]


def special_inputs(specials):
    """Inputs with the family's special tokens inside text: at start, middle, end, adjacent, spaced."""
    a = specials[0]
    b = specials[1] if len(specials) > 1 else specials[0]
    c = specials[2] if len(specials) > 2 else b
    return [
        a,
        f"{a}Hello",
        f"Hello {a} world",
        f"Hello{a}world",
        f"{b}{b}",
        f" {a}x",
        f"x {b} ",
        f"{a} {b}  {c}",
        f"{a}{b}{c}",
        f"text right after{b}more text",
        f"{a}\n{b}\n",
        f"  {c}  ",
    ] + [f"{token}" for token in specials[3:]]


# --------------------------------------------------------------------------------------------------------------------
# SentencePiece families (run under transformers 4.x)
# --------------------------------------------------------------------------------------------------------------------

def spm_model_path():
    import mistral_common
    return os.path.join(os.path.dirname(mistral_common.__file__), "data", "tokenizer.model.v1")


def spm_convert(out):
    """Runs under transformers 4.x: LlamaTokenizerFast(from_slow=True) is the converter that wrote Mixtral's
    tokenizer.json. Writes mixtral/tokenizer.json, llama-metaspace/tokenizer.json and tokenizer-always.json."""
    import transformers
    from transformers import LlamaTokenizerFast
    from transformers.convert_slow_tokenizer import LlamaConverter, SpmConverter
    from tokenizers import Tokenizer

    model = spm_model_path()
    info = {"transformers_version": transformers.__version__, "spm_model": model,
            "spm_model_sha256": sha256_file(model)}
    for family, legacy in (("mixtral", True), ("llama-metaspace", False)):
        fast = LlamaTokenizerFast(vocab_file=model, legacy=legacy, from_slow=True, add_prefix_space=True)
        os.makedirs(os.path.join(out, family), exist_ok=True)
        fast.backend_tokenizer.save(os.path.join(out, family, "tokenizer.json"), pretty=False)
        info[family] = {"special_tokens_map": fast.special_tokens_map, "add_bos_token": fast.add_bos_token,
                        "legacy": fast.legacy}
        if not legacy:
            # The generic SentencePiece converter's pre-tokenizer: Metaspace(prepend_scheme "always") with the split
            # flag left at tokenizers' default. Everything else stays as LlamaConverter made it.
            converter = LlamaConverter(transformers.LlamaTokenizer(vocab_file=model, legacy=True, add_prefix_space=True))
            always = Tokenizer.from_str(fast.backend_tokenizer.to_str())
            always.pre_tokenizer = SpmConverter.pre_tokenizer(converter, "▁", True)
            always.save(os.path.join(out, family, "tokenizer-always.json"), pretty=False)
    with open(os.path.join(out, "spm-convert.json"), "w") as handle:
        json.dump(info, handle, indent=1)


# --------------------------------------------------------------------------------------------------------------------
# Trained families (run under the main Python, tokenizers + transformers 5)
# --------------------------------------------------------------------------------------------------------------------

DS_BOS, DS_EOS, DS_PAD = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"
# DeepSeek-V3's pre-tokenizer, as its tokenizer.json has it (deepseek-ai/DeepSeek-V3; the same three Split steps
# are in llama.cpp's LLAMA_VOCAB_PRE_TYPE_DEEPSEEK3_LLM).
DS_SPLITS = [
    r"\p{N}{1,3}",
    "[一-龥\u3040-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+"
    "[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
]
# Added tokens after the vocabulary, in DeepSeek's id order (V3: 128800..128814; <think>/</think> as R1 and V3.1 have
# them at 128798/128799), with their flags: special only for <|EOT|>.
DS_ADDED = ["<think>", "</think>", "<｜fim▁hole｜>", "<｜fim▁begin｜>", "<｜fim▁end｜>", "<｜User｜>", "<｜Assistant｜>",
            "<|EOT|>", "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>",
            "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>",
            "<｜tool▁sep｜>"]
DS_SPECIAL = {"<|EOT|>"}

QWEN2_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"""
                 r"""\s+(?!\S)|\s+""")
# Qwen3's added tokens in id order (151643..151668) and whether each is special.
QWEN3_ADDED = [
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True), ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True), ("<|box_start|>", True), ("<|box_end|>", True), ("<|quad_start|>", True),
    ("<|quad_end|>", True), ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
    ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False), ("</tool_call>", False),
    ("<|fim_prefix|>", False), ("<|fim_middle|>", False), ("<|fim_suffix|>", False), ("<|fim_pad|>", False),
    ("<|repo_name|>", False), ("<|file_sep|>", False), ("<tool_response>", False), ("</tool_response>", False),
    ("<think>", False), ("</think>", False),
]
# o200k_harmony's special tokens in id order (199998..200018), all special.
HARMONY_ADDED = ["<|startoftext|>", "<|endoftext|>", "<|reserved_200000|>", "<|reserved_200001|>", "<|return|>",
                 "<|constrain|>", "<|reserved_200004|>", "<|channel|>", "<|start|>", "<|end|>", "<|message|>",
                 "<|reserved_200009|>", "<|reserved_200010|>", "<|reserved_200011|>", "<|call|>",
                 "<|reserved_200013|>", "<|reserved_200014|>", "<|reserved_200015|>", "<|reserved_200016|>",
                 "<|reserved_200017|>", "<|endofprompt|>"]


def o200k_pattern():
    import tiktoken_ext.openai_public as public
    # o200k_harmony takes its pat_str from o200k_base; read it without downloading the ranks
    source = open(public.__file__, encoding="utf-8").read()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "o200k_base":
            for stmt in node.body:
                if isinstance(stmt, ast.Assign) and getattr(stmt.targets[0], "id", "") == "pat_str":
                    call = stmt.value  # "|".join([...])
                    return "|".join(ast.literal_eval(call.args[0]))
    raise SystemExit("o200k_base pat_str not found in tiktoken_ext/openai_public.py")


def train_bpe(pre_tokenizer, normalizer, texts, vocab_size, special_tokens=()):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tokenizer = Tokenizer(models.BPE())
    if normalizer is not None:
        tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special_tokens),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def build_deepseek(out, texts):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    pre = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(p), behavior="isolated", invert=False) for p in DS_SPLITS]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    specials = [AddedToken(t, special=True, normalized=True) for t in (DS_BOS, DS_EOS, DS_PAD)]
    tokenizer = train_bpe(pre, normalizers.Sequence([]), texts, 3000, specials)
    for content in DS_ADDED:
        token = AddedToken(content, special=content in DS_SPECIAL, normalized=True)
        (tokenizer.add_special_tokens if token.special else tokenizer.add_tokens)([token])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{DS_BOS}:0 $A:0", pair=f"{DS_BOS}:0 $A:0 {DS_BOS}:1 $B:1",
        special_tokens=[(DS_BOS, tokenizer.token_to_id(DS_BOS))])
    folder = os.path.join(out, "deepseek-v3")
    os.makedirs(folder, exist_ok=True)
    tokenizer.save(os.path.join(folder, "tokenizer.json"), pretty=False)
    digits = Tokenizer.from_str(tokenizer.to_str())
    digits.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    digits.save(os.path.join(folder, "tokenizer-digits.json"), pretty=False)


def build_qwen3(out, texts):
    from tokenizers import AddedToken, Regex, Tokenizer, normalizers, pre_tokenizers, processors
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tokenizer = train_bpe(pre, normalizers.NFC(), texts, 3000)
    for content, special in QWEN3_ADDED:
        token = AddedToken(content, special=special, normalized=False)
        (tokenizer.add_special_tokens if special else tokenizer.add_tokens)([token])
    tokenizer.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    # tokenizers' Python ByteLevel decoder takes no options; Qwen's file has them all false (they do not change
    # decoding), so set them in the serialized form and let tokenizers read it back.
    spec = json.loads(tokenizer.to_str())
    spec["decoder"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    tokenizer = Tokenizer.from_str(json.dumps(spec))
    folder = os.path.join(out, "qwen3")
    os.makedirs(folder, exist_ok=True)
    tokenizer.save(os.path.join(folder, "tokenizer.json"), pretty=False)


def build_gpt_oss(out, texts, work):
    """Trains a small byte-level BPE under the o200k pattern, writes it as a tiktoken ranks file and converts that
    with transformers' own TikTokenConverter, the way gpt-oss's tokenizer.json was made from o200k_harmony."""
    from tokenizers import Regex, pre_tokenizers
    from transformers.convert_slow_tokenizer import TikTokenConverter, bytes_to_unicode
    pattern = o200k_pattern()
    pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
                                   pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    trained = train_bpe(pre, None, texts, 3000)
    byte_decoder = {char: byte for byte, char in bytes_to_unicode().items()}
    vocab = sorted(trained.get_vocab().items(), key=lambda item: item[1])
    ranks_path = os.path.join(work, "gpt-oss-small.tiktoken")
    with open(ranks_path, "w") as handle:
        for token, rank in vocab:
            raw = bytes(byte_decoder[char] for char in token)
            handle.write(f"{base64.b64encode(raw).decode()} {rank}\n")
    tokenizer = TikTokenConverter(vocab_file=ranks_path, pattern=pattern,
                                  extra_special_tokens=HARMONY_ADDED).converted()
    folder = os.path.join(out, "gpt-oss")
    os.makedirs(folder, exist_ok=True)
    tokenizer.save(os.path.join(folder, "tokenizer.json"), pretty=False)
    return pattern


FAMILIES = {
    # family: (bos, eos, unk, pad, family chat template, special tokens for the inputs, config extras)
    "mixtral": ("<s>", "</s>", "<unk>", None, "mixtral-8x7b-instruct.jinja", ["<s>", "</s>", "<unk>"],
                {"tokenizer_class": "LlamaTokenizer", "legacy": True, "add_bos_token": True, "add_eos_token": False}),
    "llama-metaspace": ("<s>", "</s>", "<unk>", None, "mixtral-8x7b-instruct.jinja", ["<s>", "</s>", "<unk>"],
                        {"tokenizer_class": "LlamaTokenizer", "legacy": False, "add_bos_token": True,
                         "add_eos_token": False}),
    "deepseek-v3": (DS_BOS, DS_EOS, None, DS_EOS, "deepseek-v3.1.jinja",
                    [DS_BOS, DS_EOS, "<｜User｜>", "<｜Assistant｜>", "<think>", "</think>", "<｜tool▁calls▁begin｜>",
                     "<｜tool▁sep｜>", DS_PAD, "<|EOT|>"],
                    {"tokenizer_class": "LlamaTokenizerFast", "legacy": True, "add_bos_token": True,
                     "add_eos_token": False}),
    "gpt-oss": ("<|startoftext|>", "<|return|>", None, "<|endoftext|>", "gpt-oss.jinja",
                ["<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|constrain|>", "<|return|>", "<|call|>",
                 "<|endoftext|>", "<|startoftext|>"],
                {"tokenizer_class": "PreTrainedTokenizerFast"}),
    "qwen3": (None, "<|im_end|>", None, "<|endoftext|>", "qwen3.jinja",
              ["<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
               "<tool_response>", "</tool_response>", "<|endoftext|>"],
              {"tokenizer_class": "Qwen2Tokenizer"}),
}


def write_config(out, family, templates_dir):
    bos, eos, unk, pad, template, _, extras = FAMILIES[family]
    with open(os.path.join(templates_dir, template), encoding="utf-8") as handle:
        chat_template = handle.read()
    config = dict(extras)
    config.update({"bos_token": bos, "eos_token": eos, "unk_token": unk, "pad_token": pad,
                   "clean_up_tokenization_spaces": False, "chat_template": chat_template,
                   "chat_template_file": "../../templates/" + template})
    with open(os.path.join(out, family, "tokenizer_config.json"), "w", encoding="utf-8") as handle:
        json.dump(config, handle, ensure_ascii=False, indent=1)


def hf_tokenizer(out, family, file="tokenizer.json"):
    from transformers import PreTrainedTokenizerFast
    bos, eos, unk, pad, template, _, _ = FAMILIES[family]
    kwargs = {k: v for k, v in (("bos_token", bos), ("eos_token", eos), ("unk_token", unk), ("pad_token", pad)) if v}
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=os.path.join(out, family, file), **kwargs)
    return tokenizer


# --------------------------------------------------------------------------------------------------------------------
# Tokenizer vectors
# --------------------------------------------------------------------------------------------------------------------

def family_vectors(out, family, files, extra_texts):
    import tokenizers
    from tokenizers import Tokenizer
    specials = FAMILIES[family][5]
    texts = HARD + special_inputs(specials) + extra_texts
    vectors = {"tokenizers_version": tokenizers.__version__, "encode": [], "decode": []}
    for file in files:
        tokenizer = Tokenizer.from_file(os.path.join(out, family, file))
        seen = set()

        def decode(ids, note=None):
            key = tuple(ids)
            if key in seen:
                return
            seen.add(key)
            for skip in (False, True):
                case = {"file": file, "ids": list(ids), "skip_special_tokens": skip,
                        "text": tokenizer.decode(list(ids), skip_special_tokens=skip)}
                if note:
                    case["note"] = note
                vectors["decode"].append(case)

        for text in texts:
            for add in (True, False):
                encoding = tokenizer.encode(text, add_special_tokens=add)
                vectors["encode"].append({"file": file, "text": text, "add_special_tokens": add,
                                          "ids": encoding.ids, "tokens": encoding.tokens})
                decode(encoding.ids)
        for ids, note in decode_probes(tokenizer, specials):
            decode(ids, note)
    return vectors


def decode_probes(tokenizer, specials):
    """Id sequences that are not the encoding of any text: single tokens of each kind, split multi-byte chars."""
    vocab = tokenizer.get_vocab()
    probes = []
    byte_pieces = {f"<0x{b:02X}>": b for b in range(256)}
    if all(p in vocab for p in byte_pieces):  # SentencePiece byte fallback
        def byte_ids(data):
            return [vocab[f"<0x{b:02X}>"] for b in data]
        emoji = "😀".encode()
        han = "中".encode()
        probes += [
            (byte_ids(emoji), "four byte-fallback pieces that make one emoji"),
            (byte_ids(emoji[:2]), "the first two bytes of an emoji alone (invalid UTF-8)"),
            (byte_ids(emoji[2:]), "the last two bytes of an emoji alone (invalid UTF-8)"),
            (byte_ids(han[:1]) + [vocab["▁a"]] + byte_ids(han[1:]), "a CJK char split by a normal piece"),
            (byte_ids(b"\x41"), "<0x41> alone (valid ASCII byte)"),
            (byte_ids(b"\xe4"), "a lead byte alone"),
            (byte_ids(b"\x80\x80"), "two continuation bytes"),
            (byte_ids(b"\xff"), "0xFF, never valid UTF-8"),
            ([vocab["▁Hello"]], "a ▁-prefixed piece first (Strip removes its space)"),
            ([vocab["▁Hello"], vocab["▁world"]], "two ▁-prefixed pieces"),
            ([vocab["▁"], vocab["▁"], vocab["▁Hello"]], "lone ▁ pieces first"),
            ([vocab["Hello"]] if "Hello" in vocab else [vocab["ello"]], "a piece without ▁"),
            ([vocab["▁▁"], vocab["x"]], "a piece of two ▁ first"),
            (byte_ids(b"\x20") + [vocab["▁Hello"]], "a byte-fallback space first"),
        ]
    else:  # byte-level
        from transformers.convert_slow_tokenizer import bytes_to_unicode
        enc = bytes_to_unicode()

        def byte_token_ids(data):
            return [vocab[enc[b]] for b in data]
        emoji = "😀".encode()
        probes += [
            (byte_token_ids(emoji), "four single-byte tokens that make one emoji"),
            (byte_token_ids(emoji[:2]), "the first two bytes of an emoji alone (invalid UTF-8)"),
            (byte_token_ids("é".encode()[:1]), "a lead byte alone"),
            (byte_token_ids(b"\x80"), "a continuation byte alone"),
            (byte_token_ids(b"\xff"), "0xFF, never valid UTF-8"),
            (byte_token_ids(b" ") + byte_token_ids(b"x"), "a leading space token"),
            (byte_token_ids("中".encode()[:2]) + byte_token_ids(b"a") + byte_token_ids("中".encode()[2:]),
             "a CJK char split by an ASCII token"),
        ]
    for token in specials:
        if token in vocab:
            probes.append(([vocab[token]], f"{token} alone"))
    ids = [vocab[t] for t in specials if t in vocab]
    if len(ids) >= 2:
        probes.append((ids[:2] + ids[:1], "special tokens together"))
    return probes


# --------------------------------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------------------------------

def sha256_text(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def extract_from_sdist(sdist, how):
    kind, what = how
    with tarfile.open(sdist) as tar:
        if kind == "file":
            return tar.extractfile(VENDORED + what).read().decode("utf-8")
        if kind == "cpp-test":
            source = tar.extractfile(VENDORED + "tests/test-chat-template.cpp").read().decode("utf-8")
            start = source.index('"' + what.replace('"', '\\"') + '"')
            match = re.compile(r'/\* \.template_str= \*/ ("(?:[^"\\]|\\.)*")').search(source, start)
            literal = match.group(1)
            if set(re.findall(r"\\(.)", literal)) - {"n", "\\", '"'}:
                raise SystemExit("unexpected escape in the C string literal")
            return json.loads(literal)  # \n, \\ and \" read the same in C and JSON
        if kind == "py-const":
            source = tar.extractfile(LLAMA_CPP_SDIST + "/llama_cpp/llama_chat_format.py").read().decode("utf-8")
            for node in ast.parse(source).body:
                if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == what:
                    return ast.literal_eval(node.value)
    raise SystemExit(f"cannot extract {how}")


def prepare_templates(templates_dir, sdist):
    os.makedirs(templates_dir, exist_ok=True)
    pins_path = os.path.join(os.path.dirname(templates_dir), PINS_FILE)
    pins = {}
    if os.path.exists(pins_path):
        with open(pins_path, encoding="utf-8") as handle:
            pins = {k: v["sha256"] for k, v in json.load(handle).items()}
    for name, (source, how) in TEMPLATES.items():
        path = os.path.join(templates_dir, name)
        if sdist and how:
            text = extract_from_sdist(sdist, how)
            with open(path, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
        if not os.path.exists(path):
            raise SystemExit(f"{path} is missing (source: {source})")
        with open(path, encoding="utf-8", newline="") as handle:
            text = handle.read()
        if name in pins and pins[name] != sha256_text(text):
            raise SystemExit(f"{name} differs from its pinned sha256 in {PINS_FILE}; a template must stay verbatim")
        pins[name] = sha256_text(text)
    with open(pins_path, "w", encoding="utf-8") as handle:
        json.dump({name: {"sha256": pins[name], "source": TEMPLATES[name][0]} for name in TEMPLATES}, handle,
                  ensure_ascii=False, indent=1)


WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "parameters": {"type": "object", "properties": {
        "location": {"type": "string", "description": "City and country, e.g. 'Paris, France'"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "The temperature unit"},
    }, "required": ["location"]}}}
NESTED_TOOL = {"type": "function", "function": {
    "name": "book_trip",
    "description": "Book a trip with flights, hotel and options.",
    "parameters": {"type": "object", "properties": {
        "traveler": {"type": "object", "description": "Who travels", "properties": {
            "name": {"type": "string", "description": "Full name"},
            "age": {"type": "integer", "description": "Age in years", "minimum": 0},
            "frequent_flyer": {"type": ["string", "null"], "description": "Card number", "default": None},
        }, "required": ["name"]},
        "legs": {"type": "array", "description": "Flight legs in order", "items": {"type": "object", "properties": {
            "from": {"type": "string"}, "to": {"type": "string"},
            "date": {"type": "string", "format": "date"}}}},
        "budget": {"type": "number", "description": "Budget in EUR", "default": 1.5, "maximum": 10},
        "cabin": {"type": "string", "enum": ["economy", "premium", "business"], "default": "economy",
                  "description": "Cabin class"},
        "refundable": {"type": "boolean", "description": "Only refundable fares", "default": False},
        "tags": {"type": "object", "description": "Free-form labels", "additionalProperties": {"type": "string"}},
    }, "required": ["traveler", "legs"]}}}
SEARCH_TOOL = {"type": "function", "function": {
    "name": "search",
    "description": "Search the web for a query. Returns \"snippets\" with \\ backslashes.",
    "parameters": {"type": "object", "properties": {
        "query": {"type": "string", "description": "  What to search for, in any language: 日本語 OK  "},
        "limit": {"type": "integer", "description": "How many results", "default": 10},
    }, "required": ["query"]}}}

UNICODE_TEXT = "Unicode: 日本語 中文 한국어 😀👩‍💻🇫🇷 \"quotes\" 'single' \\backslash\\ tab\there\nnew line\r\nCRLF é e\u0301"


def tool_call(call_id, name, arguments):
    # vLLM parses function.arguments (a JSON string in the OpenAI API) into a dict before rendering
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def conversation_with_tools(one_call=True, content=""):
    calls = [tool_call("call_9f8e7d6c5b", "get_weather", {"location": "Paris, France", "unit": "celsius"})]
    if not one_call:
        calls.append(tool_call("call_1a2b3c4d5e", "get_weather", {"location": "東京", "unit": "fahrenheit"}))
    messages = [
        {"role": "user", "content": "What's the weather in Paris" + ("?" if one_call else " and in Tokyo?")},
        {"role": "assistant", "content": content, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_9f8e7d6c5b", "content": "{\"temperature\": 21, \"sky\": \"cloudy\"}"},
    ]
    if not one_call:
        messages.append({"role": "tool", "tool_call_id": "call_1a2b3c4d5e",
                         "content": "{\"temperature\": 88.5, \"sky\": \"clear\"}"})
    return messages


def unicode_tool_conversation():
    return [
        {"role": "user", "content": UNICODE_TEXT},
        {"role": "assistant", "content": "", "tool_calls": [tool_call("call_0123456789", "search", {
            "query": "naïve café \"quoted\" \\ back\\slash\nnewline 😀 日本", "limit": 3, "exact": True,
            "ratio": 1.5, "none": None, "nested": {"list": [1, 2.25, "x", False]}})]},
        {"role": "tool", "tool_call_id": "call_0123456789", "content": "Résultats: « 1 » — ✓ done\n"},
    ]


BASIC = [{"role": "user", "content": "Hello! How are you?"}]
MULTI = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "4."},
    {"role": "user", "content": "And times 3?"},
]
MULTI_NO_SYSTEM = MULTI[1:]
PARTIAL = [{"role": "user", "content": "Write a haiku about the sea."},
           {"role": "assistant", "content": "Waves fold into foam,"}]
WHITESPACE = [{"role": "system", "content": "  \n  Spaces around the system prompt.  \n "},
              {"role": "user", "content": "\n\t  leading and trailing whitespace  \t\n"},
              {"role": "assistant", "content": "  answer with spaces  "},
              {"role": "user", "content": " again "}]
UNICODE = [{"role": "user", "content": UNICODE_TEXT}, {"role": "assistant", "content": "✓ 好的 — 👍🏽 \\n literal"},
           {"role": "user", "content": "¿Y ahora? <b>html</b> & {{ not jinja }} {% raw %}"}]


def case(name, messages, tools=None, generation=False, cont=False, **kwargs):
    return {"name": name, "messages": messages, "tools": tools, "add_generation_prompt": generation,
            "continue_final_message": cont, "kwargs": kwargs}


def common_cases():
    return [
        case("single user turn, generation prompt", BASIC, generation=True),
        case("single user turn, no generation prompt", BASIC),
        case("system and multi-turn, generation prompt", MULTI, generation=True),
        case("multi-turn without system, no generation prompt", MULTI_NO_SYSTEM),
        case("continue a partial assistant message", PARTIAL, cont=True),
        case("unicode, quotes, backslashes and newlines in content", UNICODE, generation=True),
        case("leading and trailing whitespace in content", WHITESPACE, generation=True),
    ]


def tool_cases():
    return [
        case("tools with nested parameter schemas", BASIC, tools=[WEATHER_TOOL, NESTED_TOOL, SEARCH_TOOL],
             generation=True),
        case("one tool call then its result", conversation_with_tools(True), tools=[WEATHER_TOOL], generation=True),
        case("two tool calls then their results", conversation_with_tools(False), tools=[WEATHER_TOOL],
             generation=True),
        case("tool call with unicode arguments", unicode_tool_conversation(), tools=[SEARCH_TOOL], generation=True),
    ]


def template_cases():
    cases = {}
    mixtral = common_cases() + [
        case("refused: two user turns in a row", [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]),
        case("refused: assistant first", [{"role": "assistant", "content": "Hi"}, {"role": "user", "content": "x"}]),
        case("refused: tool role", conversation_with_tools(True)),
        case("refused: system message not first", [{"role": "user", "content": "a"},
                                                   {"role": "system", "content": "late"}]),
        case("system with a single user turn", [MULTI[0], BASIC[0]]),
    ]
    cases["mixtral-8x7b-instruct.jinja"] = ("mixtral", mixtral)
    cases["mixtral-8x7b-instruct-2023.jinja"] = ("mixtral", common_cases()[:5] + [
        case("refused: system message (not allowed in this version)", MULTI),
        case("refused: two user turns in a row", [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]),
    ])
    qwen_reasoning = [
        {"role": "user", "content": "Is 17 prime?"},
        {"role": "assistant", "content": "Yes, 17 is prime.", "reasoning_content": "17 has no divisors but 1 and 17."},
        {"role": "user", "content": "And 21?"},
        {"role": "assistant", "content": "No: 21 = 3 × 7.", "reasoning_content": "\nCheck 3: 21 / 3 = 7.\n"},
    ]
    qwen_think_inline = [
        {"role": "user", "content": "Say hi."},
        {"role": "assistant", "content": "<think>\nThe user wants a greeting.\n</think>\n\nHi!"},
        {"role": "user", "content": "Again."},
    ]
    qwen_tool_loop = conversation_with_tools(False, content="Let me check both cities.") + [
        {"role": "assistant", "content": "Paris is 21°C and cloudy; Tokyo is 88.5°F and clear.",
         "reasoning_content": "Both results came back."}]
    cases["qwen3.jinja"] = ("qwen3", common_cases() + tool_cases() + [
        case("enable_thinking false", BASIC, generation=True, enable_thinking=False),
        case("enable_thinking true", BASIC, generation=True, enable_thinking=True),
        case("assistant messages with reasoning_content", qwen_reasoning, generation=True),
        case("assistant message with reasoning_content, last turn", qwen_reasoning[:2]),
        case("reasoning inline in content (<think> split)", qwen_think_inline, generation=True),
        case("tool loop with reasoning after the last query", qwen_tool_loop, tools=[WEATHER_TOOL]),
        case("tool calls with system prompt and tools", [MULTI[0]] + conversation_with_tools(True),
             tools=[WEATHER_TOOL, SEARCH_TOOL], generation=True, enable_thinking=False),
        case("content is None on a tool-call message (transformers drops None keys)",
             [BASIC[0], {"role": "assistant", "content": None, "tool_calls": [
                 tool_call("call_abcdefghij", "get_weather", {"location": "Oslo"})]},
              {"role": "tool", "tool_call_id": "call_abcdefghij", "content": "cold"}], tools=[WEATHER_TOOL],
             generation=True),
    ])
    gpt_thinking = [
        {"role": "user", "content": "What is 7 * 6?"},
        {"role": "assistant", "content": "42.", "thinking": "7 times 6 is 42."},
        {"role": "user", "content": "Thanks!"},
    ]
    gpt_tool = [
        {"role": "system", "content": "Always use tools for weather."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "thinking": "I should call get_weather.", "tool_calls": [
            tool_call("call_9f8e7d6c5b", "get_weather", {"location": "Paris, France"})]},
        {"role": "tool", "tool_call_id": "call_9f8e7d6c5b", "name": "get_weather", "content": "{\"temperature\": 21}"},
    ]
    cases["gpt-oss.jinja"] = ("gpt-oss", common_cases() + tool_cases() + [
        case("reasoning_effort low", BASIC, generation=True, reasoning_effort="low"),
        case("reasoning_effort high with a system message", MULTI, generation=True, reasoning_effort="high"),
        case("developer message", [{"role": "developer", "content": "Answer in French."}, BASIC[0]],
             generation=True),
        case("assistant message with thinking", gpt_thinking, generation=True),
        case("assistant message with reasoning_content (transformers aliases it to thinking)",
             [gpt_thinking[0], {"role": "assistant", "content": "42.", "reasoning_content": "6 * 7."}]),
        case("tool call with thinking, then the result", gpt_tool, tools=[WEATHER_TOOL], generation=True),
        case("builtin tools and model identity", BASIC, generation=True, builtin_tools=["browser", "python"],
             model_identity="You are a test model."),
        case("refused: <|channel|> in content", [BASIC[0], {"role": "assistant",
                                                           "content": "<|channel|>final<|message|>x"}]),
        case("continue a partial final answer that has thinking", [gpt_thinking[0], {
            "role": "assistant", "content": "The answer is", "thinking": "7 * 6 = 42."}], cont=True),
    ])
    v31_prefix = [BASIC[0], {"role": "assistant", "content": "Sure, ", "prefix": True}]
    cases["deepseek-v3.1.jinja"] = ("deepseek-v3", common_cases() + tool_cases() + [
        case("thinking true", BASIC, generation=True, thinking=True),
        case("thinking false", BASIC, generation=True, thinking=False),
        case("history with </think> in assistant content", [
            BASIC[0], {"role": "assistant", "content": "<think>hmm</think>I am fine."},
            {"role": "user", "content": "Good."}], generation=True, thinking=True),
        case("assistant prefix with thinking", v31_prefix, thinking=True),
        case("two system messages", [{"role": "system", "content": "A."}, {"role": "system", "content": "B."},
                                     BASIC[0]], generation=True),
    ])
    cases["deepseek-r1-distill-qwen.jinja"] = ("deepseek-v3", common_cases() + tool_cases()[1:3] + [
        case("assistant content with </think> in history", [
            BASIC[0], {"role": "assistant", "content": "<think>\nreasoning\n</think>\n\nFine."},
            {"role": "user", "content": "Good."}], generation=True),
    ])
    cases["tool_chat_template_hermes.jinja"] = ("qwen3", common_cases() + tool_cases() + [
        case("tool results without a name", conversation_with_tools(True), generation=True),
    ])
    mistral_tool = conversation_with_tools(True)
    cases["tool_chat_template_mistral.jinja"] = ("mixtral", common_cases() + tool_cases() + [
        case("system message with tools", [MULTI[0]] + BASIC, tools=[WEATHER_TOOL], generation=True),
        case("refused: tool call id shorter than 9", [BASIC[0], {"role": "assistant", "content": "", "tool_calls": [
            tool_call("c1", "get_weather", {"location": "Rome"})]}, {"role": "tool", "tool_call_id": "c1",
                                                                      "content": "hot"}], tools=[WEATHER_TOOL]),
        case("refused: roles do not alternate", [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]),
        case("tool result then user follow-up", mistral_tool + [
            {"role": "assistant", "content": "It is 21°C."}, {"role": "user", "content": "Thanks"}],
             tools=[WEATHER_TOOL]),
    ])
    cases["tool_chat_template_llama3.1_json.jinja"] = (None, common_cases() + tool_cases() + [
        case("date_string given", BASIC, generation=True, date_string="05 Aug 2025"),
        case("tools in the system prompt", [MULTI[0]] + BASIC, tools=[WEATHER_TOOL], generation=True,
             tools_in_user_message=False, date_string="05 Aug 2025"),
        case("refused: tools with no user message", [MULTI[0]], tools=[WEATHER_TOOL], generation=True),
    ])
    cases["tool_chat_template_deepseekv3.jinja"] = ("deepseek-v3", common_cases() + tool_cases() + [
        case("two system messages", [{"role": "system", "content": "A."}, {"role": "system", "content": "B."},
                                     BASIC[0]], generation=True),
        case("assistant reply after tool output", conversation_with_tools(True) + [
            {"role": "assistant", "content": "It is 21°C."}], tools=[WEATHER_TOOL]),
        case("tool-call message with content None (transformers drops None keys)",
             [BASIC[0], {"role": "assistant", "content": None, "tool_calls": [
                 tool_call("call_abcdefghij", "get_weather", {"location": "Oslo"})]},
              {"role": "tool", "tool_call_id": "call_abcdefghij", "content": "cold"}], tools=[WEATHER_TOOL],
             generation=True),
    ])
    return cases


class _FrozenDatetime(_datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return STRFTIME_NOW if tz is None else STRFTIME_NOW.replace(tzinfo=tz)


def render_cases(out, templates_dir):
    import jinja2
    import transformers
    from transformers.utils import chat_template_utils
    chat_template_utils.datetime = _FrozenDatetime  # the `strftime_now` global reads this module's datetime.now()
    tokenizers_by_family = {}
    results = []
    for template, (family, cases) in template_cases().items():
        with open(os.path.join(templates_dir, template), encoding="utf-8", newline="") as handle:
            chat_template = handle.read()
        if family is None:
            from transformers import PreTrainedTokenizerFast
            from tokenizers import Tokenizer, models
            hf = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()), bos_token="<|begin_of_text|>",
                                         eos_token="<|eot_id|>")
        else:
            if family not in tokenizers_by_family:
                tokenizers_by_family[family] = hf_tokenizer(out, family)
            hf = tokenizers_by_family[family]
        hf.chat_template = chat_template
        for item in cases:
            record = {"template": template, "name": item["name"], "messages": item["messages"],
                      "tools": item["tools"], "add_generation_prompt": item["add_generation_prompt"],
                      "continue_final_message": item["continue_final_message"], "kwargs": item["kwargs"],
                      "special_tokens": dict(hf.special_tokens_map), "rendered": None, "error": None,
                      "error_type": None, "tokenizer": family, "ids": None}
            arguments = dict(tools=copy.deepcopy(item["tools"]), add_generation_prompt=item["add_generation_prompt"],
                             continue_final_message=item["continue_final_message"], **copy.deepcopy(item["kwargs"]))
            try:
                record["rendered"] = hf.apply_chat_template(copy.deepcopy(item["messages"]), tokenize=False,
                                                            **arguments)
                if family is not None:
                    ids = hf.apply_chat_template(copy.deepcopy(item["messages"]), tokenize=True, return_dict=False,
                                                 **arguments)
                    record["ids"] = [int(i) for i in ids]
            except Exception as error:  # the template's raise_exception, or transformers refusing the input
                record["error"] = str(error)
                record["error_type"] = type(error).__name__
                record["tokenizer"] = None if record["ids"] is None else family
            if record["ids"] is None:
                record["tokenizer"] = None
            results.append(record)
    return {"transformers_version": transformers.__version__, "jinja2_version": jinja2.__version__,
            "strftime_now": STRFTIME_NOW.isoformat(), "cases": results}


# --------------------------------------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(ROOT, "Tests", "Fixtures", "chat"))
    parser.add_argument("--tf4", default=os.path.join(ROOT, ".build", "fixtures-venv", "tf4"),
                        help="folder with transformers 4.x (pip install --target), for the SentencePiece conversion")
    parser.add_argument("--llama-cpp-sdist", help="llama_cpp_python-0.3.36.tar.gz, to re-extract the templates")
    parser.add_argument("--spm-convert", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.spm_convert:
        spm_convert(args.spm_convert)
        return

    out = args.out
    tokenizers_dir = os.path.join(out, "tokenizers")
    templates_dir = os.path.join(out, "templates")
    prepare_templates(templates_dir, args.llama_cpp_sdist)

    # SentencePiece families, converted by transformers 4.x in a child process
    env = dict(os.environ, PYTHONPATH=args.tf4 + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, os.path.abspath(__file__), "--spm-convert", tokenizers_dir], env=env, check=True)
    with open(os.path.join(tokenizers_dir, "spm-convert.json")) as handle:
        spm_info = json.load(handle)
    os.remove(os.path.join(tokenizers_dir, "spm-convert.json"))

    texts = corpus(templates_dir)
    build_deepseek(tokenizers_dir, texts)
    build_qwen3(tokenizers_dir, texts)
    with tempfile.TemporaryDirectory() as work:
        build_gpt_oss(tokenizers_dir, texts, work)

    files = {"mixtral": ["tokenizer.json"], "llama-metaspace": ["tokenizer.json", "tokenizer-always.json"],
             "deepseek-v3": ["tokenizer.json", "tokenizer-digits.json"], "gpt-oss": ["tokenizer.json"],
             "qwen3": ["tokenizer.json"]}
    rendered = render_cases(tokenizers_dir, templates_dir)
    for family in FAMILIES:
        write_config(tokenizers_dir, family, templates_dir)
        template = FAMILIES[family][4]
        chat_texts = sorted({c["rendered"] for c in rendered["cases"]
                             if c["template"] == template and c["rendered"] is not None}, key=lambda t: (len(t), t))[:4]
        vectors = family_vectors(tokenizers_dir, family, files[family], chat_texts)
        vectors["source"] = source_note(family, spm_info)
        with open(os.path.join(tokenizers_dir, family, "vectors.json"), "w", encoding="utf-8") as handle:
            json.dump(vectors, handle, ensure_ascii=False, indent=0)
    with open(os.path.join(templates_dir, "vectors.json"), "w", encoding="utf-8") as handle:
        json.dump(rendered, handle, ensure_ascii=False, indent=0)


def source_note(family, spm_info):
    import tiktoken
    import transformers
    if family in ("mixtral", "llama-metaspace"):
        return {"spm_model": "mistral_common package data/tokenizer.model.v1",
                "spm_model_sha256": spm_info["spm_model_sha256"],
                "converted_by": "transformers " + spm_info["transformers_version"] +
                                " LlamaTokenizerFast(vocab_file, legacy=%s, from_slow=True, add_prefix_space=True)"
                                % ("True" if family == "mixtral" else "False"),
                "tokenizer-always.json": "llama-metaspace with the pre_tokenizer of transformers' generic "
                                         "SpmConverter.pre_tokenizer (legacy, add_prefix_space=True)"}
    if family == "gpt-oss":
        return {"trained_by": "tokenizers BpeTrainer (3000) under the o200k pattern, then transformers " +
                              transformers.__version__ + " TikTokenConverter", "pattern_from": "tiktoken " +
                              tiktoken.__version__ + " tiktoken_ext/openai_public.py o200k_base pat_str"}
    return {"trained_by": "tokenizers BpeTrainer (3000) on the fixed corpus in Scripts/make-chat-fixtures.py"}


if __name__ == "__main__":
    main()
