#!/usr/bin/env bash
# On the GPU machine, from the repository root after `source .gpu/env.sh`: expert parallelism on
# CUDA.
#   1. bench all-to-all: the rows of one MoE layer over NCCL (every visible GPU) and host staging.
#   2. The qwen3_moe fixture served with --data-parallel-size 2 (TRANSPORT, default auto: peer
#      memory, both ranks on GPU 0 when there is one) against one rank: greedy tokens must be equal.
#   3. With one GPU: two NCCL ranks on it are refused, with NCCL's reason.
# PARTS="2" runs only the parts named.
set -u
FLEXPERT=${FLEXPERT:-.gpu/flexpert}
PARTS=" ${PARTS:-1 2 3} "
GPUS=$(nvidia-smi -L | wc -l)
trap 'kill $(jobs -p) 2>/dev/null' EXIT
if [[ $PARTS == *" 1 "* ]]; then
echo "== 1. all-to-all, $GPUS GPU(s)"
timeout 120 $FLEXPERT bench all-to-all --device cuda --all2all-backend nccl
timeout 120 $FLEXPERT bench all-to-all --device cuda --all2all-backend host --ranks 2 --rows 8,64,512 --iterations 50
fi
transport=${TRANSPORT:-auto}
if [[ $PARTS == *" 2 "* ]]; then
echo "== 2. --data-parallel-size 2 over $transport against one rank"
$FLEXPERT serve --device cuda --port 8100 --model Tests/Fixtures/qwen3_moe --kv-cache-memory-bytes 1GiB > /tmp/ep1.log 2>&1 &
$FLEXPERT serve --device cuda --port 8101 --model Tests/Fixtures/qwen3_moe --kv-cache-memory-bytes 1GiB \
    --data-parallel-size 2 --all2all-backend $transport > /tmp/ep2.log 2>&1 &
for _ in $(seq 120); do grep -q listening /tmp/ep1.log && grep -q listening /tmp/ep2.log && break; sleep 1; done
grep -h "flexpert" /tmp/ep2.log | head -6
python3 - <<'PY'
import json, urllib.request
def ids(port, prompt):
    body = json.dumps({"prompt": prompt, "max_tokens": 16, "temperature": 0, "logprobs": 0,
                       "return_tokens_as_token_ids": True}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", body, {"Content-Type": "application/json"})
    reply = json.load(urllib.request.urlopen(request, timeout=60))
    return [int(t.split(":")[1]) for t in reply["choices"][0]["logprobs"]["tokens"]]
prompts = [p["ids"] for p in json.load(open("Tests/Fixtures/qwen3_moe/prompts.json"))]
equal = 0
for round in range(2):  # consecutive requests land on both ranks
    for prompt in prompts:
        one, two = ids(8100, prompt), ids(8101, prompt)
        equal += one == two
        if one != two: print("differ:", one, two)
print(f"greedy tokens, 2 ranks == 1 rank: {equal} of {2 * len(prompts)}")
PY
curl -s localhost:8101/metrics | grep -E "^flexpert:all_to_all" | head -4
kill %1 %2 2>/dev/null; wait 2>/dev/null
fi
if [[ $PARTS == *" 3 "* ]] && [ "$GPUS" -eq 1 ]; then
    echo "== 3. two NCCL ranks on one GPU"
    timeout 90 $FLEXPERT serve --device cuda --port 8102 --model Tests/Fixtures/qwen3_moe --kv-cache-memory-bytes 1GiB \
        --data-parallel-size 2 --all2all-backend nccl > /tmp/ep3.log 2>&1
    echo "serve exited with $?"; grep -iE "nccl|error" /tmp/ep3.log | head -5
fi
