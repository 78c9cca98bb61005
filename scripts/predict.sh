#!/usr/bin/env bash
# predict.sh [OUT] — does replay predict real generation?  For a small configuration
# (`make predict`; under ~10 minutes on 2 cores) it records traces of the inputs the
# real experiments use, replays them (kvsim sweep), runs the real experiments (kvsim
# confirm ppl and fidelity) and correlates the two per budget (kvsim confirm predict),
# with one figure per pair of metrics (kvsim plot confirm).  Everything goes to OUT
# (default out/predict); OUT/predict.md is the rho table.  docs/CONFIRM.md explains it.
#
# Inputs, the same for replay and for real:
#   ppl       the first 11 lines (6 paragraphs, 667 tokens) of data/lighthouses.txt:
#             one trace of the text, no generation (teacher forcing feeds the text).
#   fidelity  each line of data/fidelity_prompts.txt as a chat message: one trace per
#             prompt, recording the full cache's own greedy answer of the same length,
#             which is the reference fidelity scores against; the simulated metric of a
#             configuration is its mean over the prompts, as fidelity's real one is.
# Run from the repository root after `make` (and `make model`).  Overrides:
# KV_PREDICT_POLICIES, KV_PREDICT_PPL_BUDGETS, KV_PREDICT_FID_BUDGETS, KV_PREDICT_THREADS,
# KV_PREDICT_PPL_LINES (lines of the text), KV_PREDICT_FID_PROMPTS (how many prompts),
# KV_PREDICT_FID_NEW (answer length).
#
# KV_PREDICT_MODEL=gemma3-270m (`make predict MODEL=gemma3-270m`) runs Gemma 3 270M with
# smaller defaults, so that it fits in minutes on 2 cores (a 262K-token vocabulary to
# score at every step): the first 5 lines of the text
# (316 tokens) at B = 32, 64, and 3 prompts with 32-token answers at B = 16, 32.  Both
# inputs are shorter than Gemma's 512-key window, so its local layers evict as its global
# ones do, in replay and in live generation alike (docs/POLICIES.md).
set -euo pipefail

OUT="${1:-out/predict}"
case "${KV_PREDICT_MODEL:-smollm2-135m}" in
    smollm2-135m) MODEL="models/SmolLM2-135M-Instruct.Q4_1.gguf"; SUB="SmolLM2-135M-Instruct Q4_1"
                  SIZES=(11 64,128 6 32,64 48) ;;
    gemma3-270m)  MODEL="models/gemma-3-270m-q4_k_m.gguf"; SUB="Gemma 3 270M Q4_K_M"
                  SIZES=(5 32,64 3 16,32 32) ;;
    *) echo "predict.sh: unknown model '$KV_PREDICT_MODEL' (smollm2-135m or gemma3-270m)" >&2
       exit 2 ;;
esac
POLICIES="${KV_PREDICT_POLICIES:-recency,streaming,h2o,mas,tova,roco,scissorhands,random}"
PPL_LINES="${KV_PREDICT_PPL_LINES:-${SIZES[0]}}"
PPL_BUDGETS="${KV_PREDICT_PPL_BUDGETS:-${SIZES[1]}}"
FID_PROMPTS="${KV_PREDICT_FID_PROMPTS:-${SIZES[2]}}"
FID_BUDGETS="${KV_PREDICT_FID_BUDGETS:-${SIZES[3]}}"
FID_NEW="${KV_PREDICT_FID_NEW:-${SIZES[4]}}"
THREADS="${KV_PREDICT_THREADS:-1}"   # 1 is faster on a loaded machine (docs/CONFIRM.md)

for need in bin/kvtrace bin/kvsim "$MODEL" data/lighthouses.txt data/fidelity_prompts.txt; do
    [ -e "$need" ] || { echo "predict.sh: $need is missing (run make and make model at the repository root)" >&2; exit 1; }
done
mkdir -p "$OUT/traces"
step() { printf '\n== %s\n' "$*" >&2; }
start=$(date +%s)

# Mean of every metric column over several sweep CSVs of one configuration set, overall
# lines only (layer = head = all), keyed like kvsim confirm predict: policy, budget_arg,
# stride, phase.  An empty field anywhere stays empty.
mean_sweeps() {
    awk -F, -v OFS=, '
        FNR == 1 {
            if (NR == 1) { header = $0; for (i = 1; i <= NF; i++) col[$i] = i; n = NF }
            next
        }
        $col["layer"] != "all" || $col["head"] != "all" { next }
        {
            key = $col["policy"] SUBSEP $col["budget_arg"] SUBSEP $col["stride"] SUBSEP $col["phase"]
            if (!(key in count)) { order[++nk] = key; first[key] = $0 }
            count[key]++
            for (i = col["steps"]; i <= n; i++) {
                if ($i == "") empty[key, i] = 1; else sum[key, i] += $i
            }
        }
        END {
            print header
            for (k = 1; k <= nk; k++) {
                key = order[k]; split(first[key], f, ",")
                f[col["trace"]] = "fidelity_prompts.txt"
                for (i = col["steps"]; i <= n; i++)
                    f[i] = ((key, i) in empty) ? "" : sprintf("%.6g", sum[key, i] / count[key])
                line = f[1]
                for (i = 2; i <= n; i++) line = line OFS f[i]
                print line
            }
        }' "$@"
}

step "1/5 ppl input: $OUT/text.txt"
head -n "$PPL_LINES" data/lighthouses.txt > "$OUT/text.txt"
grep -v '^$' data/fidelity_prompts.txt | head -n "$FID_PROMPTS" > "$OUT/prompts.txt"
./bin/kvtrace record "$MODEL" --prompt-file "$OUT/text.txt" --max-new-tokens 0 \
    --threads "$THREADS" --force -o "$OUT/traces/text.h5"

step "2/5 fidelity inputs: one trace per prompt, the full cache's greedy answer"
i=0
while IFS= read -r prompt || [ -n "$prompt" ]; do
    [ -n "$prompt" ] || continue
    i=$((i + 1))
    ./bin/kvtrace record "$MODEL" "$prompt" --chat --max-new-tokens "$FID_NEW" \
        --threads "$THREADS" --force -o "$OUT/traces/prompt$i.h5" 2>>"$OUT/record.log"
done < "$OUT/prompts.txt"

step "3/5 replay: kvsim sweep of $POLICIES"
./bin/kvsim sweep "$OUT/traces/text.h5" --policies "$POLICIES" --budgets "$PPL_BUDGETS" \
    --threads "$THREADS" -o "$OUT/sim_ppl.csv"
for t in "$OUT"/traces/prompt*.h5; do
    ./bin/kvsim sweep "$t" --policies "$POLICIES" --budgets "$FID_BUDGETS" \
        --threads "$THREADS" -o "${t%.h5}.csv"
done
mean_sweeps "$OUT"/traces/prompt*.csv > "$OUT/sim_fidelity.csv"

step "4/5 real: kvsim confirm ppl and fidelity"
./bin/kvsim confirm ppl "$MODEL" "$OUT/text.txt" --policies "full,$POLICIES" \
    --budgets "$PPL_BUDGETS" --max-tokens 4096 --threads "$THREADS" -o "$OUT/real_ppl.csv"
./bin/kvsim confirm fidelity "$MODEL" "$OUT/prompts.txt" --policies "$POLICIES" \
    --budgets "$FID_BUDGETS" --max-new-tokens "$FID_NEW" --threads "$THREADS" \
    -o "$OUT/real_fidelity.csv"

step "5/5 predict and plot"
{
    echo "# Prediction quality: Spearman rho across policies, per budget"
    echo
    echo "policies: $POLICIES; 95% bootstrap interval over the policies (2000 resamples)"
    echo
    echo "| simulated | real | input | budget | policies | rho | 95% interval |"
    echo "|---|---|---|---|---|---|---|"
} > "$OUT/predict.md"
# simulated metric, real metric, experiment
for pair in "mass ppl ppl" "output_error ppl ppl" "mass rouge_l fidelity" \
            "mass token_agreement fidelity"; do
    read -r sim real exp <<< "$pair"
    name="${sim}_vs_${real}"
    ./bin/kvsim confirm predict "$OUT/sim_$exp.csv" "$OUT/real_$exp.csv" --sim-metric "$sim" \
        --real-metric "$real" -o "$OUT/predict_$name.csv" --points "$OUT/points_$name.csv"
    ./bin/kvsim plot confirm "$OUT/points_$name.csv" --predict "$OUT/predict_$name.csv" \
        --subtitle "$SUB, $exp" -o "$OUT/$name.png"
    input=$([ "$exp" = ppl ] && echo "text.txt" || echo "fidelity_prompts.txt")
    awk -F, -v input="$input" 'NR > 1 {
        ci = $6 == "" ? "–" : sprintf("[%.2f, %.2f]", $6, $7)
        printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, input, $3, $4,
               $5 == "" ? "–" : sprintf("%.2f", $5), ci }' "$OUT/predict_$name.csv" \
        >> "$OUT/predict.md"
done
cat "$OUT/predict.md"
printf '\npredict.sh: done in %s s; tables, figures and CSVs in %s/\n' \
    "$(( $(date +%s) - start ))" "$OUT" >&2
