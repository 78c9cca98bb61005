#!/bin/sh
# long_text.sh MODEL TOKENS OUT — a long English text made of the texts this repository
# ships (data/*.txt, then the prose of docs/*.md), paragraph by paragraph, until it holds
# about TOKENS tokens of MODEL (a few dozen below: paragraphs are counted one by one and
# their joins may tokenise differently).  For `make bench`'s 8K-token rows and the
# long-context checks of docs/TRACE_FORMAT.md; deterministic for a given checkout.
set -eu
MODEL=$1 TOKENS=$2 OUT=$3
tmp=$(mktemp) && trap 'rm -f "$tmp" "$tmp.p"' EXIT
: > "$tmp"
total=0
for f in data/demo_prompt.txt data/lighthouses.txt docs/CONFIRM.md docs/METRICS.md \
         docs/POLICIES.md docs/RUNTIME.md docs/TRACE_FORMAT.md docs/PLOTS.md; do
    # paragraphs of prose: blank-line separated, no code fences, no tables
    awk 'BEGIN { RS = ""; ORS = "\n\n" } !/```|\|---/ { print }' "$f" > "$tmp.p"
    while IFS= read -r line || [ -n "$line" ]; do
        n=$(printf '%s\n' "$line" | ./bin/kvtrace tokenize "$MODEL" - | wc -l)
        [ $((total + n)) -gt "$TOKENS" ] && { mv "$tmp" "$OUT"; exit 0; }
        printf '%s\n' "$line" >> "$tmp"
        total=$((total + n))
    done < "$tmp.p"
done
echo "long_text.sh: the shipped texts hold only $total tokens (< $TOKENS)" >&2
exit 1
