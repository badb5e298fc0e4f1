#!/usr/bin/env bash
# On the GPU machine, from the repository root after `source .gpu/env.sh`: the figures of the
# architectures wide expert parallelism is for (MODELS, by default DeepSeek-V2-Lite and the
# layer-reduced DeepSeek-V3; Benchmarks/gpt-oss-20b too). PART=check: the fixtures FIXTURES names
# made with transformers (into $OUT when set; none by default), every operator against the CPU
# (latent attention, DeepSeek's routing, sinks and GPT-OSS's experts among them), the fixtures'
# first tokens, and decode steps at batch 1, 64 and 256 against their floors. PART=serve: bench
# serve 512 × 256/128 on each, then HF transformers' generate() on the same configurations.
set -u
FLEXPERT=${FLEXPERT:-.gpu/flexpert}
export FLEXPERT_CACHE=${FLEXPERT_CACHE:-/tmp/fxcache}
MODELS=${MODELS:-"Benchmarks/deepseek-v2-lite Benchmarks/deepseek-v3"}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if [ "${PART:-check}" = check ]; then
    if [ -n "${FIXTURES:-}" ]; then
        echo "== fixtures"
        timeout 200 python3 Scripts/make-fixtures.py Tests/Fixtures "$FIXTURES" 2>&1 | grep -v Warning | grep -E "^[a-z_0-9]+ \[|tokens|skipped|Error"
        [ -n "${OUT:-}" ] && tar czf "$OUT/fixtures.tgz" -C Tests/Fixtures ${FIXTURES//,/ }
    fi
    echo "== operators"
    timeout 200 $FLEXPERT check-cuda | grep -E "latent|routeTopK|sinks|clamped|FAIL|within"
    echo "== fixtures' tokens"
    PATH=$(dirname "$FLEXPERT"):$PATH timeout 200 python3 Scripts/check-cuda-parity.py | grep -E "deepseek|gpt_oss|model \|"
    for model in $MODELS; do
        echo "== decode steps, $model"
        timeout 200 $FLEXPERT bench model --model "$model" --device cuda --batch-sizes 1,64,256 --prompt-tokens 256 \
            --decode-steps 32 --repetitions 2
    done
else
    TOKENIZER=$(ls -d "$(dirname "$FLEXPERT")"/*flexpert.resources/DefaultModel | head -1)
    for model in $MODELS; do
        echo "== bench serve, $model"
        $FLEXPERT serve --device cuda --port 8011 --model "$model" --load-format dummy --tokenizer "$TOKENIZER" \
            --max-model-len 512 --max-num-seqs 256 --max-num-batched-tokens 8192 --gpu-memory-utilization 0.9 > /tmp/serve.log 2>&1 &
        server=$!
        for _ in $(seq 300); do grep -q listening /tmp/serve.log && break; kill -0 $server 2>/dev/null || break; sleep 1; done
        tail -2 /tmp/serve.log
        timeout 240 $FLEXPERT bench serve --url http://127.0.0.1:8011 --random-input-len 256 --random-output-len 128 \
            --num-prompts 512 --ignore-eos 2>/dev/null | grep -E "Succ|Fail|duration|Request thr|Output token|Total Tok|Mean|Median|P99"
        kill $server; wait $server 2>/dev/null
        echo "== HF transformers, $model"
        timeout 240 python3 Scripts/hf-baseline.py "$model" --batch 128 --input 256 --output 64 2>&1 | grep -E "HF|built|Error"
    done
fi
