#!/usr/bin/env python3
"""Makes the tiny random-weight checkpoints in Tests/Fixtures with HF transformers and records
transformers' greedy tokens and per-step logits for a few prompts.

Run where torch and transformers are installed (the GPU machine has them; the CPU is used, in
float32, eager attention): python3 Scripts/make-fixtures.py Tests/Fixtures [name,name,...]
With names, only those fixtures are made (the others stay as they are); a model whose classes the
installed transformers lacks is skipped with a message.
Each model folder gets config.json, model.safetensors (or shards), the tokenizer files,
prompts.json, expected.safetensors (tokens_<i> int32 [steps], logits_<i> float32 [steps, vocab])
and manifest.json.

A dtype of "fp8" stores the model as DeepSeek-V3's FP8 checkpoints are published: its linear
weights e4m3 with a float32 `weight_scale_inv` per block (FP8_BLOCK), `quantization_config` in
config.json; the reference runs the dequantized values (q · scale, in float32), which is what a
loader that dequantizes must reproduce exactly. A dtype of "mxfp4" stores GPT-OSS's experts as its
checkpoints are published: `NAME_blocks` (two e2m1 values a byte, low nibble first) and
`NAME_scales` (e8m0, one per 32 values along the input dimension), the reference again running the
dequantized values.
"""
import json
import os
import shutil
import sys

import torch
import transformers
from safetensors.torch import save_file

OUT = sys.argv[1]
ONLY = set(sys.argv[2].split(",")) if len(sys.argv) > 2 else None
TOKENIZER = os.path.join(OUT, "tokenizer")
STEPS = 8
PROMPTS = [
    "The quick brown fox jumps over the lazy dog.",
    "def forward(self, x):\n    return x",
    "Mixture-of-Experts models route each token to a few experts; expert parallelism spreads them over GPUs.",
]

COMMON = dict(vocab_size=2000, hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=512, rms_norm_eps=1e-6)

def config(name, **fields):
    """The config class `name` of the installed transformers, or None where it has none."""
    return (getattr(transformers, name, None), fields)


# DeepSeek's multi-head latent attention: 4 heads of 16 + 8 (no rope + rope) query dims over a
# 32-wide KV latent, values of 16; YaRN scaling as DeepSeek ships it (mscale on the softmax scale).
MLA = dict(kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16)
# MLA keeps a key per head (the latent is shared, not the heads).
MLA_COMMON = dict(COMMON, num_key_value_heads=4, **MLA)
YARN = dict(rope_type="yarn", factor=4.0, original_max_position_embeddings=128, beta_fast=32, beta_slow=1,
            mscale=1.0, mscale_all_dim=1.0)

MODELS = {
    "qwen3_moe": (transformers.Qwen3MoeConfig, dict(
        COMMON, head_dim=16, intermediate_size=96, moe_intermediate_size=32, num_experts=8, num_experts_per_tok=2,
        norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[1], rope_theta=10000.0,
        tie_word_embeddings=False), torch.float32, None),
    "qwen3_moe_bf16_sharded": (transformers.Qwen3MoeConfig, dict(
        COMMON, head_dim=16, intermediate_size=96, moe_intermediate_size=32, num_experts=8, num_experts_per_tok=2,
        norm_topk_prob=False, rope_theta=1000.0, tie_word_embeddings=True), torch.bfloat16, "2"),
    "mixtral": (transformers.MixtralConfig, dict(
        COMMON, intermediate_size=32, num_local_experts=8, num_experts_per_tok=2, rope_theta=1e6, sliding_window=8,
        tie_word_embeddings=False), torch.float32, None),
    "mixtral_f16": (transformers.MixtralConfig, dict(
        COMMON, intermediate_size=32, num_local_experts=6, num_experts_per_tok=3, rope_theta=1e6, sliding_window=None,
        tie_word_embeddings=True), torch.float16, None),
    "qwen2_moe": (transformers.Qwen2MoeConfig, dict(
        COMMON, intermediate_size=96, moe_intermediate_size=32, shared_expert_intermediate_size=48, num_experts=8,
        num_experts_per_tok=2, norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[], rope_theta=10000.0,
        tie_word_embeddings=False), torch.float32, None),
    "olmoe": (transformers.OlmoeConfig, dict(
        COMMON, intermediate_size=32, num_experts=8, num_experts_per_tok=2, norm_topk_prob=False, clip_qkv=4.0,
        rope_theta=10000.0, tie_word_embeddings=False), torch.float32, None),
    # DeepSeek-V2: softmax scores, group-limited greedy top-k over 4 groups, a shared expert, the
    # first layer dense, no query LoRA, plain rope.
    "deepseek_v2": (*config("DeepseekV2Config", **MLA_COMMON, q_lora_rank=None, intermediate_size=96,
                            moe_intermediate_size=32, n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2,
                            first_k_dense_replace=1, moe_layer_freq=1, topk_method="group_limited_greedy", n_group=4,
                            topk_group=2, norm_topk_prob=False, routed_scaling_factor=1.0, rope_theta=10000.0,
                            tie_word_embeddings=False), torch.float32, None),
    # DeepSeek-V3: query LoRA, sigmoid scores with the correction bias, 4 groups of which 2 are
    # chosen, normalised top-k scaled by 2.5, YaRN; stored in bf16.
    "deepseek_v3": (*config("DeepseekV3Config", **MLA_COMMON, q_lora_rank=24, intermediate_size=96,
                            moe_intermediate_size=32, n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2,
                            first_k_dense_replace=1, n_group=4, topk_group=2, norm_topk_prob=True,
                            routed_scaling_factor=2.5, rope_theta=10000.0, rope_scaling=YARN,
                            tie_word_embeddings=False), torch.bfloat16, None),
    # DeepSeek-V3 as its FP8 checkpoints are published (block-scaled e4m3 linears).
    "deepseek_v3_fp8": (*config("DeepseekV3Config", **MLA_COMMON, q_lora_rank=24, intermediate_size=96,
                                moe_intermediate_size=32, n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2,
                                first_k_dense_replace=1, n_group=4, topk_group=2, norm_topk_prob=True,
                                routed_scaling_factor=2.5, rope_theta=10000.0, rope_scaling=YARN,
                                tie_word_embeddings=False), "fp8", None),
    # GPT-OSS: attention sinks, sliding and full attention layers in turn, biases everywhere, the
    # clamped SwiGLU experts in HF's fused layout, YaRN.
    "gpt_oss": (*config("GptOssConfig", **COMMON, head_dim=16, intermediate_size=32, num_local_experts=8,
                        num_experts_per_tok=2, sliding_window=8,
                        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                        rope_theta=150000.0, rope_scaling=dict(YARN, factor=4.0), tie_word_embeddings=False),
                torch.float32, None),
    # GPT-OSS with its experts in MXFP4, as published.
    "gpt_oss_mxfp4": (*config("GptOssConfig", **COMMON, head_dim=16, intermediate_size=32, num_local_experts=8,
                              num_experts_per_tok=2, sliding_window=8,
                              layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                              rope_theta=150000.0, rope_scaling=dict(YARN, factor=4.0), tie_word_embeddings=False),
                      "mxfp4", None),
}


# Smaller than DeepSeek's 128 × 128 so that the tiny weights hold several blocks, edge blocks partial.
FP8_BLOCK = 32
FP8_MAX = 448.0
FP8_LINEARS = ("q_proj", "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj", "gate_proj", "up_proj",
               "down_proj")


def quantize_fp8(weight):
    """Block-scaled e4m3 as DeepSeek-V3 stores it: (q, scale_inv) with weight ≈ q · scale_inv per block."""
    rows, columns = weight.shape
    blocks = ((rows + FP8_BLOCK - 1) // FP8_BLOCK, (columns + FP8_BLOCK - 1) // FP8_BLOCK)
    scales = torch.zeros(blocks, dtype=torch.float32)
    quantized = torch.zeros(weight.shape, dtype=torch.float8_e4m3fn)
    for i in range(blocks[0]):
        for j in range(blocks[1]):
            part = weight[i * FP8_BLOCK:(i + 1) * FP8_BLOCK, j * FP8_BLOCK:(j + 1) * FP8_BLOCK].float()
            scale = part.abs().max().clamp(min=1e-12) / FP8_MAX
            scales[i, j] = scale
            quantized[i * FP8_BLOCK:(i + 1) * FP8_BLOCK, j * FP8_BLOCK:(j + 1) * FP8_BLOCK] = (part / scale).to(torch.float8_e4m3fn)
    return quantized, scales


def dequantize_fp8(quantized, scales):
    expanded = scales.repeat_interleave(FP8_BLOCK, 0).repeat_interleave(FP8_BLOCK, 1)
    return quantized.float() * expanded[:quantized.shape[0], :quantized.shape[1]]


def rewrite_checkpoint(folder, change):
    """Loads the folder's model.safetensors, lets `change` edit its tensors (a dict) and saves them;
    returns what `change` returns."""
    from safetensors.torch import load_file
    path = os.path.join(folder, "model.safetensors")
    tensors = load_file(path)
    result = change(tensors)
    save_file(tensors, path, metadata={"format": "pt"})
    return result


def quantize_linears(tensors):
    """Replaces the FP8-eligible weights (named as saved, whatever the in-memory layout) by their
    dequantized values; returns their stored form."""
    stored = {}
    for name, tensor in tensors.items():
        module = name.rsplit(".", 2)[-2] if name.endswith(".weight") else ""
        if tensor.dim() == 2 and module in FP8_LINEARS:
            quantized, scales = quantize_fp8(tensor)
            tensors[name] = dequantize_fp8(quantized, scales)
            stored[name] = (quantized, scales)
    return stored


def store_fp8(tensors, stored):
    """The quantized weights and their scales in place of the dequantized values."""
    for name, (quantized, scales) in stored.items():
        tensors[name] = quantized
        tensors[name + "_scale_inv"] = scales


FP4_VALUES = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]
MXFP4_EXPERTS = ("mlp.experts.gate_up_proj", "mlp.experts.down_proj")


def quantize_mxfp4(weight):
    """OCP MXFP4 over the last dimension: (blocks [..., groups, 16] uint8, scales [..., groups] uint8, dequantized)."""
    *lead, columns = weight.shape
    groups = weight.float().reshape(*lead, columns // 32, 32)
    exponent = torch.ceil(torch.log2(groups.abs().amax(-1).clamp(min=1e-30) / 6.0)).clamp(-127, 127)
    scale = torch.exp2(exponent)[..., None]
    values = torch.tensor(FP4_VALUES)
    index = ((groups / scale)[..., None] - values).abs().argmin(-1)
    blocks = (index[..., 0::2] | (index[..., 1::2] << 4)).to(torch.uint8)
    return blocks, (exponent + 127).to(torch.uint8), (values[index] * scale).reshape(weight.shape)


def quantize_experts(tensors):
    """GPT-OSS's expert tensors replaced by their MXFP4 values; returns their stored form. Its
    blocks run along the input dimension of `[experts, inputs, outputs]`: the stored form is of the
    transpose, `[experts, outputs, inputs / 32, 16]`."""
    stored = {}
    for name, tensor in tensors.items():
        if name.endswith(MXFP4_EXPERTS):
            blocks, scales, dequantized = quantize_mxfp4(tensor.transpose(1, 2).contiguous())
            tensors[name] = dequantized.transpose(1, 2).contiguous()
            stored[name] = (blocks, scales)
    return stored


def store_mxfp4(tensors, stored):
    """The blocks and scales in place of the dequantized tensors."""
    for name, (blocks, scales) in stored.items():
        del tensors[name]
        tensors[name + "_blocks"] = blocks
        tensors[name + "_scales"] = scales


# How each quantized format is made, stored, and named in config.json.
QUANTIZATIONS = {
    "fp8": (quantize_linears, store_fp8, {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                          "weight_block_size": [FP8_BLOCK, FP8_BLOCK]}),
    "mxfp4": (quantize_experts, store_mxfp4, {"quant_method": "mxfp4", "modules_to_not_convert": [
        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}),
}


def store_quantized(folder, dtype, stored):
    """Rewrites the dequantized checkpoint in its stored form and names the format in config.json."""
    _, store, quantization = QUANTIZATIONS[dtype]
    rewrite_checkpoint(folder, lambda tensors: store(tensors, stored))
    with open(os.path.join(folder, "config.json")) as handle:
        config = json.load(handle)
    config["quantization_config"] = quantization
    with open(os.path.join(folder, "config.json"), "w") as handle:
        json.dump(config, handle, indent=2)


def widen(model, seed):
    """HF's default init (std 0.02) makes router logits nearly equal, so every token would pick
    almost the same experts; draw larger weights so that routing varies from token to token."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name and parameter.dim() == 1:
                parameter.copy_(1 + 0.2 * (torch.rand(parameter.shape, generator=generator) - 0.5))
            elif parameter.dim() == 1:
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
            elif "embed" in name:
                parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))
            else:
                fan_in = parameter.shape[-1]
                scale = 4.0 if name.endswith("mlp.gate.weight") or "block_sparse_moe.gate" in name or "router" in name else 1.0
                parameter.copy_(scale * torch.randn(parameter.shape, generator=generator) / fan_in ** 0.5)
        # DeepSeek-V3's score correction is a buffer, zero by default: give it values, so that it counts.
        for name, buffer in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                buffer.copy_(0.1 * torch.randn(buffer.shape, generator=generator))


def main():
    from tokenizers import Tokenizer
    tokenizer = Tokenizer.from_file(os.path.join(TOKENIZER, "tokenizer.json"))
    prompts = [{"text": text, "ids": tokenizer.encode(text).ids} for text in PROMPTS]
    for index, (name, (config_class, fields, dtype, shards)) in enumerate(MODELS.items()):
        if ONLY is not None and name not in ONLY:
            continue
        if config_class is None:
            print(name, "skipped: transformers", transformers.__version__, "has no config class for it")
            continue
        torch.manual_seed(index)
        config = config_class(**fields)
        config._attn_implementation = "eager"
        model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager").float().eval()
        widen(model, seed=1000 + index)
        folder = os.path.join(OUT, name)
        shutil.rmtree(folder, ignore_errors=True)
        quantized = dtype in QUANTIZATIONS
        model.to(torch.float32 if quantized else dtype).save_pretrained(folder, max_shard_size="300KB" if shards else "2GB")
        stored = rewrite_checkpoint(folder, QUANTIZATIONS[dtype][0]) if quantized else None
        # The reference runs the saved weights in float32: bf16/f16 checkpoints are exact after upcasting.
        reference = transformers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32,
                                                                      attn_implementation="eager").eval()
        tensors = {}
        with torch.no_grad():
            for number, prompt in enumerate(prompts):
                ids = list(prompt["ids"])
                steps = []
                for _ in range(STEPS):
                    logits = reference(torch.tensor([ids])).logits[0, -1].float()
                    steps.append(logits)
                    ids.append(int(torch.argmax(logits)))
                tensors[f"tokens_{number}"] = torch.tensor(ids[len(prompt["ids"]):], dtype=torch.int32)
                tensors[f"logits_{number}"] = torch.stack(steps).contiguous()
        save_file(tensors, os.path.join(folder, "expected.safetensors"))
        if stored:
            del reference
            store_quantized(folder, dtype, stored)
        for file in ["tokenizer.json", "tokenizer_config.json"]:
            shutil.copy(os.path.join(TOKENIZER, file), folder)
        with open(os.path.join(folder, "prompts.json"), "w") as handle:
            json.dump(prompts, handle, ensure_ascii=False, indent=1)
        with open(os.path.join(folder, "manifest.json"), "w") as handle:
            json.dump({
                "source": "random weights, Scripts/make-fixtures.py",
                "architecture": config.architectures[0] if config.architectures else type(model).__name__,
                "transformers_version": transformers.__version__,
                "torch_version": torch.__version__,
                "checkpoint_dtype": {"fp8": "float8_e4m3fn linears with float32 block scales of %d×%d" % (FP8_BLOCK, FP8_BLOCK),
                                     "mxfp4": "float32, experts in MXFP4"}.get(dtype, str(dtype).replace("torch.", "")),
                "reference_compute": "float32 on CPU, eager attention, full recompute per step",
                "tolerance": {"logits_relative": 1e-4},
                "command": "python3 Scripts/make-fixtures.py Tests/Fixtures" + (" " + ",".join(sorted(ONLY)) if ONLY else ""),
            }, handle, indent=1)
        names = sorted(os.listdir(folder))
        print(name, names)
        from safetensors import safe_open
        for file in names:
            if file.startswith("model") and file.endswith(".safetensors"):
                with safe_open(os.path.join(folder, file), "pt") as handle:
                    keys = [k for k in handle.keys() if ".layers.0." in k]
                    print("  ", file, sorted(keys)[:40])
        print("  tokens", [tensors[f"tokens_{i}"].tolist() for i in range(len(prompts))])


if __name__ == "__main__":
    main()
