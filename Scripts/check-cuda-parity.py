#!/usr/bin/env python3
"""Runs `flexpert generate` on the CPU and on CUDA for every fixture prompt and compares: greedy
tokens against transformers' (expected.safetensors), and the top-5 log-probabilities of the two
backends. Run on the GPU machine from the repository root after `source .gpu/env.sh`.
CUDA computes in bf16 and these fixtures are float32, so its greedy tokens may part from the
reference where two candidates are nearly tied. Prints a table and exits non-zero when CUDA's first
token differs from the CPU's although the CPU's top two log-probabilities are MARGIN or more apart:
a flip no bf16 rounding explains."""
import json
import subprocess
import sys

from safetensors.numpy import load_file

MARGIN = 0.5
MODELS = ["qwen3_moe", "qwen3_moe_bf16_sharded", "mixtral", "mixtral_f16", "qwen2_moe", "olmoe", "deepseek_v2", "deepseek_v3",
          "deepseek_v3_fp8", "gpt_oss", "gpt_oss_mxfp4"]


def generate(folder, ids, device):
    out = subprocess.run(["flexpert", "generate", "--model", folder, "--prompt-ids", ",".join(map(str, ids)),
                          "--max-tokens", "8", "--logprobs", "5", "--json", "--device", device],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{device} failed on {folder}: {out.stderr}")
    return json.loads(out.stdout)


failures = 0
print("| model | prompt | tokens = HF (cuda) | tokens = HF (cpu) | first token cuda = cpu | cpu top-2 margin | max |Δ logprob| cuda vs cpu |")
print("|---|---:|---|---|---|---:|---:|")
for name in MODELS:
    folder = f"Tests/Fixtures/{name}"
    prompts = json.load(open(f"{folder}/prompts.json"))
    expected = load_file(f"{folder}/expected.safetensors")
    for index, prompt in enumerate(prompts):
        reference = expected[f"tokens_{index}"].tolist()
        cuda = generate(folder, prompt["ids"], "cuda")
        cpu = generate(folder, prompt["ids"], "cpu")
        delta = 0.0
        for cuda_step, cpu_step in zip(cuda["logprobs"], cpu["logprobs"]):
            cpu_by_id = {entry["token_id"]: entry["logprob"] for entry in cpu_step}
            for entry in cuda_step:
                if entry["token_id"] in cpu_by_id:
                    delta = max(delta, abs(entry["logprob"] - cpu_by_id[entry["token_id"]]))
        first_same = cuda["token_ids"][0] == cpu["token_ids"][0]
        top = sorted((entry["logprob"] for entry in cpu["logprobs"][0]), reverse=True)
        margin = top[0] - top[1]
        failures += 0 if first_same or margin < MARGIN else 1
        print(f"| {name} | {index} | {cuda['token_ids'] == reference} | {cpu['token_ids'] == reference} | {first_same} | "
              f"{margin:.2f} | {delta:.2e} |")
sys.exit(1 if failures else 0)
