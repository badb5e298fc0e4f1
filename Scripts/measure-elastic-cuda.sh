#!/usr/bin/env bash
# On the GPU machine, after `source .gpu/env.sh`: the plain CUDA server and the same with
# --enable-elastic-ep (one rank), one after another on the Qwen3-30B-A3B configuration (dummy
# weights), under `bench serve` at concurrency 1, 32 and 256. Usage: Scripts/measure-elastic-cuda.sh [out dir]
set -u
flexpert=${FLEXPERT:-.gpu/flexpert}
out=${1:-/tmp}
model=Benchmarks/qwen3-30b-a3b
common=(--device cuda --model "$model" --load-format dummy --tokenizer Tests/Fixtures/qwen3_moe --max-model-len 4096
        --kv-cache-memory-bytes 16GiB --max-num-seqs 256)
summary="Successful|Failed|Output token throughput|Mean TPOT|Median TPOT"
for variant in plain elastic; do
    extra=()
    [[ $variant == elastic ]] && extra=(--enable-elastic-ep)
    "$flexpert" serve --port 8100 "${common[@]}" "${extra[@]}" > "$out/serve-$variant.log" 2>&1 &
    server=$!
    for _ in $(seq 600); do grep -q "listening on" "$out/serve-$variant.log" && break; sleep 0.5; done
    grep -h "flexpert:" "$out/serve-$variant.log" | head -3
    for run in "1 32" "32 320" "256 1024"; do
        set -- $run
        echo "== $variant, concurrency $1, $2 prompts of 64 in / 64 out"
        "$flexpert" bench serve --url http://127.0.0.1:8100 --tokenizer Tests/Fixtures/qwen3_moe --random-input-len 64 \
            --random-output-len 64 --num-prompts "$2" --max-concurrency "$1" --ignore-eos 2>/dev/null | grep -E "$summary"
    done
    kill $server; wait $server 2>/dev/null
done
