#!/usr/bin/env python3
"""HF transformers `generate()` on a config with random bf16 weights, on one GPU: the side-by-side
baseline of the CUDA benchmark. Prints output tokens/s for a batch of random prompts.

Usage: python3 Scripts/hf-baseline.py CONFIG_FOLDER [--batch 128] [--input 256] [--output 128]"""
import argparse
import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM

parser = argparse.ArgumentParser()
parser.add_argument("folder")
parser.add_argument("--batch", type=int, default=128)
parser.add_argument("--input", type=int, default=256)
parser.add_argument("--output", type=int, default=128)
arguments = parser.parse_args()

config = AutoConfig.from_pretrained(arguments.folder)
torch.manual_seed(0)
started = time.time()
with torch.device("cuda"):
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16)
model.eval()
print(f"transformers model built in {time.time() - started:.1f} s on {torch.cuda.get_device_name()}")
prompts = torch.randint(0, 2000, (arguments.batch, arguments.input), device="cuda")
mask = torch.ones_like(prompts)


def run(tokens):
    torch.cuda.synchronize()
    start = time.time()
    with torch.no_grad():
        out = model.generate(prompts, attention_mask=mask, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                             pad_token_id=0)
    torch.cuda.synchronize()
    return time.time() - start, out.shape[1] - arguments.input


run(2)
seconds, generated = run(arguments.output)
print(f"HF generate: batch {arguments.batch}, input {arguments.input}, output {generated}: {seconds:.1f} s, "
      f"{arguments.batch * generated / seconds:.0f} output tokens/s")
