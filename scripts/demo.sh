#!/bin/sh
# demo.sh — the README's main command (`make demo`), after deps, model and build:
# describe the embedded model; later stages record a trace, replay policies and plot.
set -eu

MODEL="models/SmolLM2-135M-Instruct.Q4_1.gguf"
OUT="${KV_DEMO_DIR:-demo}"
mkdir -p "$OUT"

echo "== kvtrace info $MODEL"
./bin/kvtrace info "$MODEL" | tee "$OUT/model_info.txt"
echo
echo "demo: results in $OUT/"
