#!/bin/sh
# demo.sh [MODEL] — the README's main command (`make demo`, after deps, model and
# build): record a trace of the built-in ~1000-token prompt, replay the main policies
# over a range of budgets, compute attention-std trajectories and scope sensitivity,
# draw the plots and write a summary table, all into demo/.
#
# MODEL is smollm2-135m (default, into demo/) or gemma3-270m (`make demo
# MODEL=gemma3-270m`, into demo/gemma3-270m/).  A model with sliding-window (local)
# layers gets every replay, std and scope result twice, per layer kind
# (--layer-kind local / global: *_local.csv, *_global.csv and their plots), since a
# local layer's budget is of its window (docs/POLICIES.md).
# KV_DEMO_DIR changes the output folder; KV_DEMO_QUICK=1 uses fewer budgets;
# KV_DEMO_REUSE=1 keeps a trace already recorded there (Gemma records at a few tokens/s
# on 2 busy cores).
set -eu

case "${1:-smollm2-135m}" in
    smollm2-135m) MODEL="models/SmolLM2-135M-Instruct.Q4_1.gguf"; SUB="SmolLM2-135M-Instruct Q4_1"
                  OUT="${KV_DEMO_DIR:-demo}" ;;
    gemma3-270m)  MODEL="models/gemma-3-270m-q4_k_m.gguf"; SUB="Gemma 3 270M Q4_K_M"
                  OUT="${KV_DEMO_DIR:-demo/gemma3-270m}" ;;
    *) echo "demo.sh: unknown model '$1' (smollm2-135m or gemma3-270m)" >&2; exit 2 ;;
esac
PROMPT="data/demo_prompt.txt"
TRACE="$OUT/demo.h5"
POLICIES="h2o,mas,roco,tova,streaming,knorm,random,oracle"
BUDGETS="0.05,0.1,0.2,0.3,0.5,0.7"
[ "${KV_DEMO_QUICK:-0}" = 1 ] && BUDGETS="0.1,0.3"
mkdir -p "$OUT"

step() { printf '\n== %s\n' "$*"; }
start=$(date +%s)

step "1/5 record: kvtrace record $MODEL --prompt-file $PROMPT --chat -> $TRACE"
if [ "${KV_DEMO_REUSE:-0}" = 1 ] && [ -f "$TRACE" ]; then
    echo "(KV_DEMO_REUSE=1: keeping $TRACE)"
else
    ./bin/kvtrace record "$MODEL" --prompt-file "$PROMPT" --chat --max-new-tokens 64 \
        --force -o "$TRACE"
fi
./bin/kvtrace info "$TRACE" | tee "$OUT/trace_info.txt"
# One pass over every layer, or one per layer kind when some layers slide (suffix _K).
KINDS=""
grep -q "with a sliding window" "$OUT/trace_info.txt" && KINDS="local global"

# run_kinds CMD...: CMD once (suffix ""), or once per kind with --layer-kind and
# the suffix in $S ("_local", "_global").
run_kinds() {
    if [ -z "$KINDS" ]; then S=""; KIND=""; "$@"; return; fi
    for kind in $KINDS; do S="_$kind"; KIND="--layer-kind $kind"; "$@"; done
}
sweep() { ./bin/kvsim sweep "$TRACE" --policies "$POLICIES" --budgets "$BUDGETS" $KIND \
    -o "$OUT/sweep$S.csv" --json "$OUT/sweep$S.json"; }
std() { ./bin/kvsim std "$TRACE" $KIND -o "$OUT/std$S.csv"; }
scope() { ./bin/kvsim scope "$TRACE" --score aas,mas --budget 0.2 --sizes 0.1,0.2,0.3,0.5,0.7 \
    $KIND -o "$OUT/scope$S.csv"; }
plots() {
    sub="$SUB${S:+, ${S#_} layers}"
    ./bin/kvsim plot sweep "$OUT/sweep$S.csv" --metric mass --subtitle "$sub" -o "$OUT/budget_mass$S.png"
    ./bin/kvsim plot sweep "$OUT/sweep$S.csv" --metric overlap --subtitle "$sub" \
        -o "$OUT/budget_overlap$S.png"
    ./bin/kvsim plot sweep "$OUT/sweep$S.csv" --metric output-error --subtitle "$sub" \
        -o "$OUT/budget_output_error$S.png"
    ./bin/kvsim plot std "$OUT/std$S.csv" --subtitle "$sub" -o "$OUT/std$S.png"
    ./bin/kvsim plot scope "$OUT/scope$S.csv" --subtitle "$sub" -o "$OUT/scope$S.png"
}
summary() {
    [ -z "$S" ] || printf '## %s layers\n\n' "${S#_}"
    [ "$S" != _local ] || printf 'On these sliding-window layers a key older than the window is gone and the\nbudget is of the window, floor(f * min(T, W)): B below is of T, mean_cache shows\nwhat they held (docs/POLICIES.md).\n\n'
    sh scripts/summary.sh "$OUT/sweep$S.csv" "$(sed -n 's/.*steps: *//p' "$OUT/trace_info.txt")"
}

step "2/5 sweep: $POLICIES at budgets $BUDGETS${KINDS:+, per layer kind}"
run_kinds sweep

step "3/5 std trajectories and scope sensitivity${KINDS:+, per layer kind}"
run_kinds std
run_kinds scope

step "4/5 plots (gnuplot)"
run_kinds plots

step "5/5 summary table"
run_kinds summary > "$OUT/summary.md"
cat "$OUT/summary.md"

printf '\ndemo: done in %s s; results, plots and summary.md in %s/\n' "$(( $(date +%s) - start ))" "$OUT"
