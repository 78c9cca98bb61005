#!/bin/sh
# demo.sh — the README's main command (`make demo`, after deps, model and build):
# record a trace of the built-in ~1000-token prompt with SmolLM2, replay the main
# policies over a range of budgets, compute attention-std trajectories and scope
# sensitivity, draw the plots and write a summary table, all into demo/.
#
# KV_DEMO_DIR changes the output folder; KV_DEMO_QUICK=1 uses fewer budgets.
set -eu

MODEL="models/SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT="data/demo_prompt.txt"
OUT="${KV_DEMO_DIR:-demo}"
TRACE="$OUT/demo.h5"
POLICIES="h2o,mas,roco,tova,streaming,knorm,random,oracle"
BUDGETS="0.05,0.1,0.2,0.3,0.5,0.7"
[ "${KV_DEMO_QUICK:-0}" = 1 ] && BUDGETS="0.1,0.3"
mkdir -p "$OUT"

step() { printf '\n== %s\n' "$*"; }
start=$(date +%s)

step "1/5 record: kvtrace record $MODEL --prompt-file $PROMPT --chat -> $TRACE"
./bin/kvtrace record "$MODEL" --prompt-file "$PROMPT" --chat --max-new-tokens 64 \
    --force -o "$TRACE"
./bin/kvtrace info "$TRACE" | tee "$OUT/trace_info.txt"

step "2/5 sweep: $POLICIES at budgets $BUDGETS"
./bin/kvsim sweep "$TRACE" --policies "$POLICIES" --budgets "$BUDGETS" \
    -o "$OUT/sweep.csv" --json "$OUT/sweep.json"

step "3/5 std trajectories and scope sensitivity"
./bin/kvsim std "$TRACE" -o "$OUT/std.csv"
./bin/kvsim scope "$TRACE" --score aas,mas --budget 0.2 --sizes 0.1,0.2,0.3,0.5,0.7 \
    -o "$OUT/scope.csv"

step "4/5 plots (gnuplot)"
SUB="SmolLM2-135M-Instruct Q4_1"
./bin/kvsim plot sweep "$OUT/sweep.csv" --metric mass --subtitle "$SUB" -o "$OUT/budget_mass.png"
./bin/kvsim plot sweep "$OUT/sweep.csv" --metric overlap --subtitle "$SUB" -o "$OUT/budget_overlap.png"
./bin/kvsim plot sweep "$OUT/sweep.csv" --metric output-error --subtitle "$SUB" \
    -o "$OUT/budget_output_error.png"
./bin/kvsim plot std "$OUT/std.csv" --subtitle "$SUB" -o "$OUT/std.png"
./bin/kvsim plot scope "$OUT/scope.csv" --subtitle "$SUB" -o "$OUT/scope.png"

step "5/5 summary table"
sh scripts/summary.sh "$OUT/sweep.csv" "$(./bin/kvtrace info "$TRACE" | sed -n 's/.*steps: *//p')" \
    > "$OUT/summary.md"
cat "$OUT/summary.md"

printf '\ndemo: done in %s s; results, plots and summary.md in %s/\n' "$(( $(date +%s) - start ))" "$OUT"
