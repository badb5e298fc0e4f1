#!/usr/bin/env bash
# Prefix-cache hit rate and throughput of N CPU data-parallel ranks on vLLM's prefix_repetition
# dataset (a few shared prefixes, each request one of them then unique tokens), routed by load
# alone and by cached prefix, against one rank (whose hit rate is the reference: every prefix
# lives in one cache). Each server gets a warm-up run, then the measured run; the hit rate is
# the measured run's (counters after minus before), over all ranks.
# Usage: Scripts/measure-prefix-routing.sh "1 2 4" [flexpert binary]
set -euo pipefail
rank_counts=${1:-"1 2 4"}
flexpert=${2:-.build/release/flexpert}
model=${MODEL:-Benchmarks/moe-30m}
port=$((8600 + RANDOM % 300))
load=(--dataset-name prefix_repetition --prefix-repetition-prefix-len ${PREFIX_LEN:-512} --prefix-repetition-suffix-len 32
      --prefix-repetition-num-prefixes ${PREFIXES:-16} --prefix-repetition-output-len 16 --num-prompts ${PROMPTS:-256}
      --max-concurrency ${CONCURRENCY:-32} --ignore-eos --tokenizer Tests/Fixtures/qwen3_moe)
log=$(mktemp)
trap 'kill $server 2>/dev/null || true; wait 2>/dev/null || true; rm -f "$log"' EXIT

# The sum over ranks of a per-rank counter.
total() { curl -s "http://127.0.0.1:$port/metrics" | awk -v name="$1" 'index($0, name "{") == 1 { sum += $2 } END { print sum + 0 }'; }

echo "ranks policy hit_rate output_tok_s mean_ttft_ms"
for ranks in $rank_counts; do
    policies="prefix load"
    [ "$ranks" = 1 ] && policies="single"
    for policy in $policies; do
        routing=()
        [ "$ranks" != 1 ] && routing=(--data-parallel-size "$ranks" --routing-policy "$policy")
        "$flexpert" serve --port "$port" --model "$model" --load-format dummy --tokenizer Tests/Fixtures/qwen3_moe \
            --max-model-len 1024 --kv-cache-memory-bytes ${KV_BYTES:-256MiB} "${routing[@]}" >"$log" 2>&1 &
        server=$!
        for _ in $(seq 600); do grep -q "listening on" "$log" && break; sleep 0.2; done
        "$flexpert" bench serve --url "http://127.0.0.1:$port" "${load[@]}" --seed 1 >/dev/null 2>&1
        queries=$(total flexpert:prefix_cache_queries_total); hits=$(total flexpert:prefix_cache_hits_total)
        result=$("$flexpert" bench serve --url "http://127.0.0.1:$port" "${load[@]}" --seed 2 2>/dev/null)
        sleep 0.5
        queries=$(( $(total flexpert:prefix_cache_queries_total) - queries )); hits=$(( $(total flexpert:prefix_cache_hits_total) - hits ))
        throughput=$(echo "$result" | awk -F: '/Output token throughput/ { gsub(/ /, "", $2); print $2 }')
        ttft=$(echo "$result" | awk -F: '/Mean TTFT/ { gsub(/ /, "", $2); print $2 }')
        echo "$ranks $policy $(awk -v h="$hits" -v q="$queries" 'BEGIN { printf "%.3f", q ? h / q : 0 }') $throughput $ttft"
        kill "$server"; wait "$server" 2>/dev/null || true
    done
done
