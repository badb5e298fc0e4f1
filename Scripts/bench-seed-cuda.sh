#!/usr/bin/env bash
# On the GPU machine, from the repository root after `source .gpu/env.sh`: the seed's benchmark
# against `flexpert serve` with its defaults (Qwen3-30B-A3B, dummy bf16 weights): 512 prompts of
# 256 random tokens, 128 out, all at once, --ignore-eos; then 1,024 prompts. $SERVE_FLAGS adds flags.
set -u
FLEXPERT=${FLEXPERT:-.gpu/flexpert}
export FLEXPERT_CACHE=${FLEXPERT_CACHE:-/tmp/fxcache}
TOKENIZER=$(ls -d "$(dirname "$FLEXPERT")"/*flexpert.resources/DefaultModel | head -1)
started=$(date +%s)
$FLEXPERT serve --device cuda --port 8011 --model Benchmarks/qwen3-30b-a3b --load-format dummy --tokenizer "$TOKENIZER" \
    ${SERVE_FLAGS:-} > /tmp/serve-seed.log 2>&1 &
server=$!
for _ in $(seq 300); do grep -q listening /tmp/serve-seed.log && break; kill -0 $server 2>/dev/null || break; sleep 1; done
echo "server ready after $(( $(date +%s) - started )) s"
grep -h "flexpert:" /tmp/serve-seed.log | tail -2
# Each run draws other prompts (--seed), so that none finds the last one's in the prefix cache.
seed=0
for prompts in ${PROMPTS:-512 512 1024}; do
    seed=$((seed + 1))
    echo "-- $prompts prompts (seed $seed)"
    timeout 300 $FLEXPERT bench serve --url http://127.0.0.1:8011 --random-input-len 256 --random-output-len 128 \
        --num-prompts $prompts --ignore-eos --seed $seed 2>/dev/null | grep -E "Succ|Fail|duration|Output token|Mean TTFT|Median TTFT|Mean TPOT"
done
nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader
kill $server; wait $server 2>/dev/null
