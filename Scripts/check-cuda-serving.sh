#!/usr/bin/env bash
# On the GPU machine, after `source .gpu/env.sh`: serve the fixture on CUDA and on the CPU, check
# that greedy tokens agree through the HTTP API, then run bench serve on CUDA (tiny and ~31M models).
set -u
FLEXPERT=${FLEXPERT:-.gpu/flexpert}
$FLEXPERT serve --device cuda --port 8000 --model Tests/Fixtures/qwen3_moe > /tmp/tiny-cuda.log 2>&1 &
$FLEXPERT serve --port 8002 --model Tests/Fixtures/qwen3_moe > /tmp/tiny-cpu.log 2>&1 &
$FLEXPERT serve --device cuda --port 8001 --model Benchmarks/moe-30m --load-format dummy \
    --tokenizer Tests/Fixtures/qwen3_moe --max-model-len 2048 --kv-cache-memory-bytes 2GiB > /tmp/moe30m.log 2>&1 &
trap 'kill $(jobs -p) 2>/dev/null' EXIT
for _ in $(seq 120); do
    grep -q listening /tmp/tiny-cuda.log && grep -q listening /tmp/tiny-cpu.log && grep -q listening /tmp/moe30m.log && break
    sleep 1
done
grep -h "flexpert:" /tmp/tiny-cuda.log /tmp/moe30m.log
python3 - <<'PY'
import json, urllib.request
def ids(port, prompt):
    body = json.dumps({"prompt": prompt, "max_tokens": 16, "temperature": 0, "logprobs": 0,
                       "return_tokens_as_token_ids": True}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", body, {"Content-Type": "application/json"})
    reply = json.load(urllib.request.urlopen(request))
    return [int(t.split(":")[1]) for t in reply["choices"][0]["logprobs"]["tokens"]] if "choices" in reply else reply
for prompt in json.load(open("Tests/Fixtures/qwen3_moe/prompts.json")):
    cuda, cpu = ids(8000, prompt["ids"]), ids(8002, prompt["ids"])
    print("greedy tokens, CUDA == CPU:", cuda == cpu, "" if cuda == cpu else (cuda, cpu))
PY
summary="Succ|Fail|duration|Request thr|Output token|Total Tok|Mean|Median ITL|P99 TTFT"
echo "== tiny, 128/64, 200 prompts, concurrency 16"
$FLEXPERT bench serve --url http://127.0.0.1:8000 --random-input-len 128 --random-output-len 64 --num-prompts 200 \
    --ignore-eos --max-concurrency 16 2>/dev/null | grep -E "$summary"
for concurrency in "--max-concurrency 1" "--max-concurrency 16" ""; do
    echo "== moe-30m, 256/64, 100 prompts, ${concurrency:-all at once}"
    $FLEXPERT bench serve --url http://127.0.0.1:8001 --random-input-len 256 --random-output-len 64 --num-prompts 100 \
        --ignore-eos $concurrency 2>/dev/null | grep -E "$summary"
done
curl -s localhost:8001/metrics | grep -E "^flexpert:(engine_steps|num_preempt)"
