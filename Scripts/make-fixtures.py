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
    # GPT-OSS: attention sinks, sliding and full attention layers in turn, biases everywhere, the
    # clamped SwiGLU experts in HF's fused layout, YaRN.
    "gpt_oss": (*config("GptOssConfig", **COMMON, head_dim=16, intermediate_size=32, num_local_experts=8,
                        num_experts_per_tok=2, sliding_window=8,
                        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                        rope_theta=150000.0, rope_scaling=dict(YARN, factor=4.0), tie_word_embeddings=False),
                torch.float32, None),
}


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
        model.to(dtype).save_pretrained(folder, max_shard_size="300KB" if shards else "2GB")
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
                "checkpoint_dtype": str(dtype).replace("torch.", ""),
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
