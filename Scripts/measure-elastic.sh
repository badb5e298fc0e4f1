#!/usr/bin/env bash
# Scales a server 2 → 4 → 2 (CPU ranks, moe-30m; INITIAL, SIZES, MODEL and SERVE_ARGS change that)
# while `flexpert bench serve` loads it, then prints the timeline (Scripts/elastic-timeline.py):
# throughput per second, before/during/after each event, longest token gap, failed requests; with
# PLOT=FILE.png, draws it. Usage: Scripts/measure-elastic.sh [flexpert binary]
set -euo pipefail
flexpert=${1:-.build/release/flexpert}
model=${MODEL:-Benchmarks/moe-30m}
port=$((8900 + RANDOM % 90))
work=$(mktemp -d)
# KEEP=DIR keeps the server's log, the bench's table and the scale replies there.
trap 'kill $server 2>/dev/null || true; wait 2>/dev/null || true; [[ -n ${KEEP:-} ]] && cp "$work"/*.log "$work"/*.txt "$KEEP"/; rm -rf "$work"' EXIT
# shellcheck disable=SC2086
"$flexpert" serve --port "$port" --model "$model" --load-format dummy --tokenizer Tests/Fixtures/qwen3_moe \
    --max-model-len 1024 --kv-cache-memory-bytes 1GiB --data-parallel-size "${INITIAL:-2}" --enable-elastic-ep \
    ${SERVE_ARGS:-} >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 600); do grep -q "listening on" "$work/server.log" && break; sleep 0.2; done
now() { date +%s.%N; }
t0=$(now)
"$flexpert" bench serve --url "http://127.0.0.1:$port" --random-input-len 64 --random-output-len 64 \
    --num-prompts "${PROMPTS:-600}" --max-concurrency 16 --ignore-eos --tokenizer Tests/Fixtures/qwen3_moe \
    --result-file "$work/result.json" >"$work/bench.txt" 2>/dev/null &
bench=$!
for size in ${SIZES:-4 2}; do
    sleep "${PAUSE:-6}"
    start=$(now)
    "$flexpert" scale --url "http://127.0.0.1:$port" --new-data-parallel-size "$size" | tee -a "$work/scale.txt"
    stop=$(now)
    awk -v name="scale_to_$size" -v a="$start" -v b="$stop" -v t="$t0" 'BEGIN { print name, a - t, b - t }' >>"$work/events.txt"
done
wait "$bench"
grep -E "Successful|Failed|Output token throughput" "$work/bench.txt"
python3 Scripts/elastic-timeline.py "$work/result.json" "$work/events.txt" ${PLOT:-}
