#!/usr/bin/env bash
# On the GPU machine, from the repository root after `source .gpu/env.sh`: issue 23's long-context
# figures for Qwen3-30B-A3B (dummy bf16 weights), each with its kernel profile.
#   1. one 12,000-token prompt prefilled in one step: prefill tok/s, and the GPU time per kernel.
#   2. 64 sequences at 4,096 tokens of context: the decode step against its floor (weights + KV).
#   3. batch 1 at 256 and 4,096 tokens: the decode step against its floor.
set -u
FLEXPERT=${FLEXPERT:-.gpu/flexpert}
MODEL=Benchmarks/qwen3-30b-a3b
export FLEXPERT_CACHE=${FLEXPERT_CACHE:-/tmp/fxcache}
echo "== 1. 12,000-token prefill"
timeout 240 $FLEXPERT bench model --model $MODEL --device cuda --batch-sizes 1 --prompt-tokens 12000 \
    --max-batched-tokens 12288 --decode-steps 4 --repetitions 1 --profile-kernels | head -${PROFILE_LINES:-40}
echo "== 2. 64 x 4,096-token contexts, decode"
timeout 300 $FLEXPERT bench model --model $MODEL --device cuda --batch-sizes 64 --prompt-tokens 4096 \
    --max-batched-tokens 16384 --decode-steps 16 --repetitions 1 --profile-kernels | head -${PROFILE_LINES:-40}
echo "== 3. batch 1 decode at 256 and 4,096 tokens"
for tokens in 256 4096; do
    timeout 120 $FLEXPERT bench model --model $MODEL --device cuda --batch-sizes 1 --prompt-tokens $tokens \
        --decode-steps 32 --repetitions 2 | grep -E "^\| 1 \|"
done
