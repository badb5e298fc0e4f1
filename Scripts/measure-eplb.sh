#!/usr/bin/env bash
# Balancedness and throughput of N CPU ranks on a skewed load (vLLM's prefix_repetition dataset:
# every prompt shares one prefix), with the same redundant slots, once with the first placement
# kept and once with EPLB rebalancing. Each server gets a warm-up run (which also fills the EPLB
# window and lets it rebalance), then the measured run.
# Usage: Scripts/measure-eplb.sh [ranks] [flexpert binary]
set -euo pipefail
ranks=${1:-4}
flexpert=${2:-.build/release/flexpert}
model=${MODEL:-Benchmarks/moe-30m}
redundant=${REDUNDANT:-4}
port=$((8600 + RANDOM % 300))
load=(--dataset-name prefix_repetition --prefix-repetition-prefix-len 96 --prefix-repetition-suffix-len 16
      --prefix-repetition-num-prefixes 1 --prefix-repetition-output-len 48 --num-prompts 64 --max-concurrency 16
      --ignore-eos --tokenizer Tests/Fixtures/qwen3_moe)
log=$(mktemp)
trap 'kill $server 2>/dev/null || true; wait 2>/dev/null || true; rm -f "$log"' EXIT

metric() { curl -s "http://127.0.0.1:$port/metrics" | awk -v name="$1" 'index($0, name) == 1 { print $2; exit }'; }

for mode in static rebalancing; do
    interval=1000000000
    [ "$mode" = rebalancing ] && interval=${STEP_INTERVAL:-100}
    "$flexpert" serve --port "$port" --model "$model" --load-format dummy --tokenizer Tests/Fixtures/qwen3_moe \
        --max-model-len 1024 --kv-cache-memory-bytes 1GiB --data-parallel-size "$ranks" --enable-eplb \
        --num-redundant-experts "$redundant" --eplb-step-interval "$interval" --eplb-window-size 200 \
        --eplb-log-interval 20 >"$log" 2>&1 &
    server=$!
    for _ in $(seq 600); do grep -q "listening on" "$log" && break; sleep 0.2; done
    "$flexpert" bench serve --url "http://127.0.0.1:$port" "${load[@]}" --seed 1 >/dev/null 2>&1
    result=$("$flexpert" bench serve --url "http://127.0.0.1:$port" "${load[@]}" --seed 2 2>/dev/null)
    sleep 0.5
    balance=$(metric 'flexpert:expert_balancedness{model_name="moe-30m",rank="0"}')
    moves=$(metric 'flexpert:eplb_rearrangements_total{model_name="moe-30m",rank="0"}')
    moved=$(metric 'flexpert:eplb_move_seconds_total{model_name="moe-30m",rank="0"}')
    throughput=$(echo "$result" | awk -F: '/Output token throughput/ { gsub(/ /, "", $2); print $2 }')
    tpot=$(echo "$result" | awk -F: '/Mean TPOT/ { gsub(/ /, "", $2); print $2 }')
    echo "$mode: balancedness $balance, output tok/s $throughput, mean TPOT ms $tpot, rearrangements $moves, move s $moved"
    grep "rearranging" "$log" | head -3 || true
    kill "$server"; wait "$server" 2>/dev/null || true
done
