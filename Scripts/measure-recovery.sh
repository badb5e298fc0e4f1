#!/usr/bin/env bash
# Recovery from a killed rank under load: starts a server of SIZE ranks (MODEL, REDUNDANT experts,
# SERVE_ARGS), runs `bench serve` at RATE requests a second (PROMPTS, INPUT/OUTPUT lengths),
# kills rank VICTIM with SIGNAL (default KILL) after KILL_AFTER seconds, and prints the seconds
# from the kill to the group serving again (polled from /elastic_ep/status every 20 ms), the
# survivors' own recovery lines, and the bench's successes and failures.
# Usage: Scripts/measure-recovery.sh [flexpert binary]
set -euo pipefail
flexpert=${1:-.build/release/flexpert}
model=${MODEL:-Benchmarks/moe-30m}
port=$((8900 + RANDOM % 90))
work=$(mktemp -d)
# KEEP=DIR keeps the server's log, the bench's table and the result there.
trap 'kill $server $bench 2>/dev/null || true; wait 2>/dev/null || true; [[ -n ${KEEP:-} ]] && cp "$work"/* "$KEEP"/; rm -rf "$work"' EXIT
bench=
# shellcheck disable=SC2086
"$flexpert" serve --port "$port" --model "$model" --load-format dummy --tokenizer Tests/Fixtures/qwen3_moe \
    --max-model-len "${MAX_LEN:-1024}" --kv-cache-memory-bytes "${KV:-1GiB}" --data-parallel-size "${SIZE:-3}" \
    --enable-elastic-ep --enable-eplb --num-redundant-experts "${REDUNDANT:-0}" \
    ${SERVE_ARGS:-} >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1500); do grep -q "listening on" "$work/server.log" && break; sleep 0.2; done
grep -q "listening on" "$work/server.log" || { cat "$work/server.log"; exit 1; }
victim=$(grep -oE "rank ${VICTIM:-1} of [0-9]+ \(pid [0-9]+\)" "$work/server.log" | grep -oE "pid [0-9]+" | cut -d' ' -f2)
"$flexpert" bench serve --url "http://127.0.0.1:$port" --random-input-len "${INPUT:-64}" --random-output-len "${OUTPUT:-64}" \
    --num-prompts "${PROMPTS:-2000}" --request-rate "${RATE:-40}" --ignore-eos \
    --tokenizer Tests/Fixtures/qwen3_moe --result-file "$work/result.json" >"$work/bench.txt" 2>/dev/null &
bench=$!
sleep "${KILL_AFTER:-5}"
killed=$(date +%s.%N)
kill -"${SIGNAL:-KILL}" "$victim"
recovered=
for _ in $(seq 6000); do
    state=$(curl -s "http://127.0.0.1:$port/elastic_ep/status" || true)
    if python3 -c 'import json, sys; s = json.loads(sys.argv[1]); sys.exit(0 if s["phase"] == "idle" and (s.get("recovery") or {}).get("recoveries", 0) >= 1 else 1)' "$state" 2>/dev/null; then
        recovered=$(date +%s.%N)
        break
    fi
    python3 -c 'import json, sys; sys.exit(0 if json.loads(sys.argv[1])["phase"] == "failed" else 1)' "$state" 2>/dev/null && break
    sleep 0.02
done
[[ ${SIGNAL:-KILL} == STOP ]] && kill -KILL "$victim"
if [[ -n $recovered ]]; then
    python3 -c "import sys; print('kill -${SIGNAL:-KILL} of rank ${VICTIM:-1} of ${SIZE:-3} → serving again: %.3f s' % (float(sys.argv[2]) - float(sys.argv[1])))" "$killed" "$recovered"
else
    echo "no recovery: $state"
fi
wait "$bench" || true
bench=
grep -E "recover|lost|broke|restored|cannot serve" "$work/server.log" || true
grep -E "Successful|Failed|Output token throughput" "$work/bench.txt"
curl -s "http://127.0.0.1:$port/elastic_ep/status"; echo
