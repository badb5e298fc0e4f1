#!/usr/bin/env bash
# On the GPU machine, from the repository root after `source .gpu/env.sh`: everything the CUDA
# issue measures, in one run that fits a device call. Prints tables; the exit status is the
# operator check's.
#   1. flexpert check-cuda: every operator against the CPU reference (Qwen3-30B-A3B shapes).
#   2. Scripts/check-cuda-parity.py: the fixtures' greedy tokens against transformers'.
#   3. bench model on Qwen3-30B-A3B (dummy bf16 weights): decode steps at batch 1 to 256 against
#      the floor, then a per-kernel profile of batch 1.
#   4. bench serve: 512 prompts, random input 256, output 128, all at once, --ignore-eos; the server
#      with its defaults and $SERVE_FLAGS.
#   5. HF transformers generate() on the same configuration, batch 128 (the baseline).
set -u
FLEXPERT=${FLEXPERT:-.gpu/flexpert}
MODEL=Benchmarks/qwen3-30b-a3b
export FLEXPERT_CACHE=${FLEXPERT_CACHE:-/tmp/fxcache}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "== 1. operators"
$FLEXPERT check-cuda; status=$?
echo "== 2. fixtures"
PATH=$(dirname "$FLEXPERT"):$PATH timeout 300 python3 Scripts/check-cuda-parity.py
echo "== 3. decode steps, $MODEL"
timeout 300 $FLEXPERT bench model --model $MODEL --device cuda --batch-sizes 1,2,4,8,64,256 --prompt-tokens 256 \
    --decode-steps 32 --repetitions 2
echo "== 3b. where a batch-1 step goes (the profile's events stretch the steps it times)"
timeout 200 $FLEXPERT bench model --model $MODEL --device cuda --batch-sizes 1 --prompt-tokens 256 \
    --decode-steps 32 --repetitions 1 --profile-kernels | sed -n '/per decode step/,$p'
echo "== 4. bench serve, $MODEL"
TOKENIZER=$(ls -d "$(dirname "$FLEXPERT")"/*flexpert.resources/DefaultModel | head -1)
$FLEXPERT serve --device cuda --port 8011 --model $MODEL --load-format dummy --tokenizer "$TOKENIZER" \
    ${SERVE_FLAGS:-} > /tmp/serve-30b.log 2>&1 &
server=$!
for _ in $(seq 300); do grep -q listening /tmp/serve-30b.log && break; kill -0 $server 2>/dev/null || break; sleep 1; done
grep -h "flexpert:" /tmp/serve-30b.log | tail -3
timeout 300 $FLEXPERT bench serve --url http://127.0.0.1:8011 --random-input-len 256 --random-output-len 128 \
    --num-prompts 512 --ignore-eos 2>/dev/null | grep -E "Succ|Fail|duration|Request thr|Output token|Total Tok|Mean|Median|P99"
kill $server; wait $server 2>/dev/null
echo "== 5. HF transformers baseline"
timeout 300 python3 Scripts/hf-baseline.py $MODEL --batch 128 --input 256 --output 64
exit $status
