#!/bin/sh
# summary.sh SWEEP.csv [TRACE-DESCRIPTION] — a markdown summary of a kvsim sweep's
# overall lines (layer = all, head = all): one table per metric, policies by budget.
# Columns are found by name (docs/RESULTS.md), so any kvsim metrics CSV works.
set -eu
CSV="$1"
DESC="${2:-}"
echo "# kvsim sweep summary: $(basename "$CSV")"
echo
[ -n "$DESC" ] && echo "Trace: $DESC" && echo
echo "Mean over steps t >= B of every (layer, head); B resolved against the trace length."
for metric in mass overlap output_error mean_cache; do
    echo
    case $metric in
        mass) echo "## Attention mass kept (higher is better)" ;;
        overlap) echo "## Top-B overlap with the full cache (higher is better)" ;;
        output_error) echo "## Single-layer relative output error (lower is better)" ;;
        mean_cache) echo "## Mean entries actually kept per stream (compare policies at equal cache)" ;;
    esac
    echo
    awk -F, -v metric="$metric" '
        NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
        $col["layer"] == "all" && $col["head"] == "all" {
            p = $col["policy"]; b = $col["budget_arg"] " (B=" $col["budget"] ")"
            if (!(p in seen_p)) { seen_p[p] = 1; order_p[++np] = p }
            if (!(b in seen_b)) { seen_b[b] = 1; order_b[++nb] = b }
            v = $col[metric]
            cell[p, b] = v == "" ? "–" : sprintf(metric == "mean_cache" ? "%.1f" : "%.3f", v)
        }
        END {
            line = "| policy |"; sep = "|---|"
            for (j = 1; j <= nb; j++) { line = line " " order_b[j] " |"; sep = sep "---|" }
            print line; print sep
            for (i = 1; i <= np; i++) {
                line = "| " order_p[i] " |"
                for (j = 1; j <= nb; j++) {
                    c = cell[order_p[i], order_b[j]]
                    line = line " " (c == "" ? "–" : c) " |"
                }
                print line
            }
        }' "$CSV"
done
