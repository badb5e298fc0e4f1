#!/usr/bin/env bash
# On the GPU machine, from the repository root after `source .gpu/env.sh`: prefix caching on CUDA.
#   1. The fixture model's greedy completions with prefix caching and without (prompts sharing
#      long prefixes, one at a time, and in waves and all at once), and, as the yardstick, without
#      caching but with prefill chunked into 32-token pieces: CUDA's batched and chunked steps
#      round differently from one whole prefill, so near-ties can flip either way; a wrong cache
#      would move log-probabilities by far more than rounding does.
#   2. Qwen3-30B-A3B (dummy bf16 weights): one 4,000-token system prompt repeated, a 32-token
#      question each, one request at a time: time to first token with and without prefix caching.
# PART=2 runs the second alone.
set -u
FLEXPERT=${FLEXPERT:-.gpu/flexpert}
export FLEXPERT_CACHE=${FLEXPERT_CACHE:-/tmp/fxcache}
TOKENIZER=$(ls -d "$(dirname "$FLEXPERT")"/*flexpert.resources/DefaultModel | head -1)
start() {  # port, log, arguments...
    local port=$1 log=$2; shift 2
    $FLEXPERT serve --device cuda --port "$port" "$@" > "$log" 2>&1 &
    server=$!
    for _ in $(seq 300); do grep -q listening "$log" && break; kill -0 $server 2>/dev/null || break; sleep 1; done
}
if [ "${PART:-all}" != 2 ]; then
    echo "== 1. greedy parity, fixture model, prefix caching on and off"
    for mode in on off chunked; do
        flag=(); [ $mode = off ] && flag=(--no-enable-prefix-caching)
        [ $mode = chunked ] && flag=(--no-enable-prefix-caching --max-num-batched-tokens 32)
        start 8021 /tmp/serve-fixture-$mode.log --model Tests/Fixtures/qwen3_moe --max-model-len 512 --block-size 16 \
            --kv-cache-memory-bytes 64MiB "${flag[@]}"
        timeout 300 python3 Scripts/check-prefix-cache.py http://127.0.0.1:8021 --one-at-a-time > /tmp/one-$mode.json
        [ $mode != chunked ] && timeout 300 python3 Scripts/check-prefix-cache.py http://127.0.0.1:8021 > /tmp/waves-$mode.json
        curl -s http://127.0.0.1:8021/metrics | grep -E "^flexpert:prefix_cache_(hits|queries)_total"
        kill $server; wait $server 2>/dev/null
    done
    echo "one at a time, cached vs not:";   python3 Scripts/check-prefix-cache.py --compare /tmp/one-on.json /tmp/one-off.json
    echo "one at a time, chunked vs not:";  python3 Scripts/check-prefix-cache.py --compare /tmp/one-chunked.json /tmp/one-off.json
    echo "waves, cached vs not:";           python3 Scripts/check-prefix-cache.py --compare /tmp/waves-on.json /tmp/waves-off.json
    echo "waves vs one at a time, no cache:"; python3 Scripts/check-prefix-cache.py --compare /tmp/waves-off.json /tmp/one-off.json
fi
echo "== 2. repeated 4,000-token system prompt, Qwen3-30B-A3B, TTFT with and without prefix caching"
for mode in on off; do
    flag=(); [ $mode = off ] && flag=(--no-enable-prefix-caching)
    start 8022 /tmp/serve-30b-$mode.log --model Benchmarks/qwen3-30b-a3b --load-format dummy --tokenizer "$TOKENIZER" \
        --max-model-len 4608 "${flag[@]}"
    echo "prefix caching $mode:"
    timeout 300 $FLEXPERT bench serve --url http://127.0.0.1:8022 --dataset-name prefix_repetition \
        --prefix-repetition-prefix-len 4000 --prefix-repetition-suffix-len 32 --prefix-repetition-num-prefixes 1 \
        --prefix-repetition-output-len 16 --num-prompts 24 --max-concurrency 1 --ignore-eos 2>/dev/null \
        | grep -E "Succ|Mean TTFT|Median TTFT|P99 TTFT|Output token"
    curl -s http://127.0.0.1:8022/metrics | grep -E "^flexpert:prefix_cache_hit_rate"
    kill $server; wait $server 2>/dev/null
done

