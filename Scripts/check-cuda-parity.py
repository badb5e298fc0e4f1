#!/usr/bin/env python3
"""Runs `flexpert generate` on the CPU and on CUDA for every fixture prompt and compares: greedy
tokens against transformers' (expected.safetensors), and the top-5 log-probabilities of the two
backends. Run on the GPU machine from the repository root after `source .gpu/env.sh`.
Prints a table and exits non-zero on a token mismatch."""
import json
import subprocess
import sys

from safetensors.numpy import load_file

MODELS = ["qwen3_moe", "qwen3_moe_bf16_sharded", "mixtral", "mixtral_f16", "qwen2_moe", "olmoe"]


def generate(folder, ids, device):
    out = subprocess.run(["flexpert", "generate", "--model", folder, "--prompt-ids", ",".join(map(str, ids)),
                          "--max-tokens", "8", "--logprobs", "5", "--json", "--device", device],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{device} failed on {folder}: {out.stderr}")
    return json.loads(out.stdout)


failures = 0
print("| model | prompt | tokens = HF (cuda) | tokens = HF (cpu) | max |Δ logprob| cuda vs cpu |")
print("|---|---:|---|---|---:|")
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
        same_cuda = cuda["token_ids"] == reference
        failures += 0 if same_cuda else 1
        print(f"| {name} | {index} | {same_cuda} | {cpu['token_ids'] == reference} | {delta:.2e} |")
sys.exit(1 if failures else 0)
