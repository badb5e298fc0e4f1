#!/usr/bin/env bash
# On the GPU machine, after `source .gpu/env.sh`: the plain single-rank server, then two ranks sharing
# the one GPU without and with CUDA MPS, on the Qwen3-30B-A3B configuration, under `bench serve` at
# concurrency 32 and 256, one after another in one run.
# Usage: [ALL2ALL=ipc|host] [MODES="plain off on"] [RUNS="32:128 256:512"] [KV=4GiB] Scripts/measure-shared-gpu.sh [out dir]
# (RUNS: concurrency:prompts pairs; KV: each rank's KV cache, default 4GiB, in which one rank holds
# 256 sequences of 128 tokens)
set -u
flexpert=${FLEXPERT:-.gpu/flexpert}
out=${1:-/tmp}
all2all=${ALL2ALL:-ipc}
summary="Successful|Failed|Output token throughput|Mean TPOT"
for mode in ${MODES:-plain off on}; do
    ranks="--data-parallel-size 2 --all2all-backend $all2all"
    if [[ $mode == plain ]]; then
        ranks=""
    elif [[ $mode == on ]]; then
        export CUDA_MPS_PIPE_DIRECTORY=$(mktemp -d) CUDA_MPS_LOG_DIRECTORY=$(mktemp -d)
        nvidia-cuda-mps-control -d && echo "MPS daemon started" || echo "MPS could not start"
    fi
    "$flexpert" serve --port 8200 --device cuda --model Benchmarks/qwen3-30b-a3b --load-format dummy \
        --tokenizer Tests/Fixtures/qwen3_moe --max-model-len 1024 --kv-cache-memory-bytes "${KV:-4GiB}" --max-num-seqs 256 \
        $ranks > "$out/serve-$mode.log" 2>&1 &
    server=$!
    for _ in $(seq 600); do grep -q "listening on" "$out/serve-$mode.log" && break; sleep 0.5; done
    grep -h "flexpert" "$out/serve-$mode.log" | grep -v balancedness | head -4
    for run in ${RUNS:-32:128 256:512}; do
        set -- ${run%:*} ${run#*:}
        echo "== $mode (plain: one rank; off/on: two ranks over $all2all, MPS off/on), concurrency $1, $2 prompts of 64 in / 64 out"
        timeout "${BENCH_TIMEOUT:-600}" "$flexpert" bench serve --url http://127.0.0.1:8200 --tokenizer Tests/Fixtures/qwen3_moe --random-input-len 64 \
            --random-output-len 64 --num-prompts "$2" --max-concurrency "$1" --ignore-eos 2>/dev/null | grep -E "$summary"
    done
    curl -s localhost:8200/metrics | grep -E "^flexpert:(engine_steps|all_to_all)" | head -8
    kill $server; wait $server 2>/dev/null
    if [[ $mode == on ]]; then echo quit | nvidia-cuda-mps-control; fi
done
