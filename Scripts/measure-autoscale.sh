#!/usr/bin/env bash
# Autoscaling under a load that rises and falls: starts a server with --elastic-ep-autoscale
# (MODEL, MAX_LEN, MIN, MAX, TARGET requests a rank, UP/DOWN windows and COOLDOWN in seconds, SERVE_ARGS),
# runs `bench serve` with a linear ramp up and down (PROMPTS, START_RPS, PEAK_RPS), samples the
# cluster's size from /elastic_ep/status every half second, then prints throughput and size per
# second (Scripts/autoscale-timeline.py) and the autoscaler's decisions; PLOT=FILE.png draws them.
# Usage: Scripts/measure-autoscale.sh [flexpert binary]
set -euo pipefail
flexpert=${1:-.build/release/flexpert}
model=${MODEL:-Benchmarks/moe-30m}
port=$((8900 + RANDOM % 90))
work=$(mktemp -d)
# KEEP=DIR keeps the server's log, the bench's table, the result and the sizes there.
trap 'kill $server $poller 2>/dev/null || true; wait 2>/dev/null || true; [[ -n ${KEEP:-} ]] && cp "$work"/* "$KEEP"/; rm -rf "$work"' EXIT
poller=
# shellcheck disable=SC2086
"$flexpert" serve --port "$port" --model "$model" --load-format dummy --tokenizer Tests/Fixtures/qwen3_moe \
    --max-model-len "${MAX_LEN:-1024}" --kv-cache-memory-bytes 1GiB --data-parallel-size "${MIN:-1}" --enable-elastic-ep \
    --elastic-ep-autoscale --elastic-ep-min-size "${MIN:-1}" --elastic-ep-max-size "${MAX:-4}" \
    --autoscale-target-requests-per-rank "${TARGET:-8}" --autoscale-up-window-s "${UP:-3}" \
    --autoscale-down-window-s "${DOWN:-6}" --autoscale-cooldown-s "${COOLDOWN:-3}" \
    ${SERVE_ARGS:-} >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 600); do grep -q "listening on" "$work/server.log" && break; sleep 0.2; done
grep -q "listening on" "$work/server.log" || { cat "$work/server.log"; exit 1; }
t0=$(date +%s.%N)
(while kill -0 "$server" 2>/dev/null; do
    size=$(curl -s "http://127.0.0.1:$port/elastic_ep/status" 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin)["current_size"])' 2>/dev/null || true)
    echo "$(date +%s.%N) $size"
    sleep 0.5
done) >"$work/sizes.raw" &
poller=$!
"$flexpert" bench serve --url "http://127.0.0.1:$port" --random-input-len 64 --random-output-len 64 \
    --num-prompts "${PROMPTS:-3000}" --ramp-up-strategy linear --ramp-up-start-rps "${START_RPS:-5}" \
    --ramp-up-end-rps "${PEAK_RPS:-60}" --ramp-down-end-rps "${START_RPS:-5}" --ignore-eos \
    --tokenizer Tests/Fixtures/qwen3_moe --result-file "$work/result.json" >"$work/bench.txt" 2>/dev/null
# Idle after the load: the autoscaler goes back to the minimum.
sleep "${IDLE:-15}"
kill "$poller" 2>/dev/null || true
awk -v t0="$t0" 'NF == 2 { print $1 - t0, $2 }' "$work/sizes.raw" >"$work/sizes.txt"
grep -E "Successful|Failed|Output token throughput" "$work/bench.txt"
grep "autoscaler" "$work/server.log" || true
python3 Scripts/autoscale-timeline.py "$work/result.json" "$work/sizes.txt" ${PLOT:-}
