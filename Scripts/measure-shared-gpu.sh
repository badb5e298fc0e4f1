#!/usr/bin/env bash
# On the GPU machine, after `source .gpu/env.sh`: two ranks sharing the one GPU (rows over host
# staging) on the Qwen3-30B-A3B configuration, without and with CUDA MPS, under `bench serve` at
# concurrency 32 and 256. Usage: Scripts/measure-shared-gpu.sh [out dir]
set -u
flexpert=${FLEXPERT:-.gpu/flexpert}
out=${1:-/tmp}
summary="Successful|Failed|Output token throughput|Mean TPOT"
for mps in off on; do
    if [[ $mps == on ]]; then
        export CUDA_MPS_PIPE_DIRECTORY=$(mktemp -d) CUDA_MPS_LOG_DIRECTORY=$(mktemp -d)
        nvidia-cuda-mps-control -d && echo "MPS daemon started" || echo "MPS could not start"
    fi
    "$flexpert" serve --port 8200 --device cuda --model Benchmarks/qwen3-30b-a3b --load-format dummy \
        --tokenizer Tests/Fixtures/qwen3_moe --max-model-len 1024 --kv-cache-memory-bytes 2GiB --max-num-seqs 256 \
        --data-parallel-size 2 --all2all-backend host > "$out/serve-mps-$mps.log" 2>&1 &
    server=$!
    for _ in $(seq 600); do grep -q "listening on" "$out/serve-mps-$mps.log" && break; sleep 0.5; done
    grep -h "flexpert" "$out/serve-mps-$mps.log" | grep -v balancedness | head -4
    for run in "32 128" "256 512"; do
        set -- $run
        echo "== two ranks on one GPU, MPS $mps, concurrency $1, $2 prompts of 64 in / 64 out"
        "$flexpert" bench serve --url http://127.0.0.1:8200 --tokenizer Tests/Fixtures/qwen3_moe --random-input-len 64 \
            --random-output-len 64 --num-prompts "$2" --max-concurrency "$1" --ignore-eos 2>/dev/null | grep -E "$summary"
    done
    curl -s localhost:8200/metrics | grep -E "^flexpert:(engine_steps|all_to_all)" | head -8
    kill $server; wait $server 2>/dev/null
    [[ $mps == on ]] && echo quit | nvidia-cuda-mps-control
done
