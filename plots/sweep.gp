# sweep.gp — a metric against the KV budget, one line per policy, from the metrics CSV
# of `kvsim sweep` or `kvsim replay` (docs/RESULTS.md).  The oracle is a dashed line in
# grey; the full cache a dashed black horizontal line.  Only the overall lines
# (layer = all, head = all) are drawn; several rows for one (policy, budget) are
# averaged (`smooth unique`), which also sorts each line by budget.
#
#   gnuplot -e "csv='sweep.csv'; out='budget.png'" plots/sweep.gp
#
# Variables (set with -e):
#   csv      the metrics CSV                                                (required)
#   out      the figure: .png (pngcairo) or .svg                            (required)
#   metric   mass | overlap | consistency | output-error | oracle-gap   (default mass)
#   title    the title                      (default: "<metric> vs KV budget per policy")
#   model    model name for the subtitle                                (default none)
#   trace    trace name for the subtitle        (default: the CSV's `trace` column)
#   fmt, width, height, plotdir   see common.gp; plotdir is where common.gp lives

if (!exists("common_loaded")) {
    _sl(s, i) = i < 1 ? 0 : s[i:i] eq '/' ? i : _sl(s, i - 1)
    if (!exists("plotdir")) { plotdir = _sl(ARG0, strlen(ARG0)) > 0 ? ARG0[1:_sl(ARG0, strlen(ARG0)) - 1] : '.' }
    load plotdir.'/common.gp'
}
if (!exists("csv")) { print "sweep.gp: set csv='FILE.csv' with -e"; exit status 2 }
if (!exists("metric")) { metric = 'mass' }
col = metric_column(metric)

# One pass over the CSV: the policies in order of first appearance, the trace name, and
# the full cache's mean metric (a reference line, whatever budget it was run at).
# An empty field reads as NaN, and NaN is the one value not equal to itself.
overall(v) = strcol("layer") eq 'all' && strcol("head") eq 'all' ? v : NaN
policies = ''
csv_trace = ''
full_n = 0
full_sum = 0
# A policy whose metric is undefined everywhere (consistency for recency) gets no line
# and no empty legend entry.
stats csv using (csv_trace = csv_trace eq '' ? strcol("trace") : csv_trace, \
                 v = overall(column(col)), \
                 policies = v == v ? add_unique(policies, strcol("policy")) : policies, \
                 f = strcol("policy") eq 'full' && v == v, \
                 full_n = full_n + f, full_sum = full_sum + (f ? v : 0), \
                 0) nooutput
if (!exists("trace")) { trace = csv_trace }

# Policies first, then the oracle (an empty list when the sweep has none), then full
# as its own reference line.
series = ''
do for [p in policies] { if (!is_reference(p)) { series = add_unique(series, p) } }
oracle = strstrt(' '.policies.' ', ' oracle ') > 0 ? 'oracle' : ''
full_value = full_n > 0 ? full_sum / full_n : NaN

if (!exists("title")) { title = metric_name(metric).' vs KV budget, per policy' }
eval title_block(title, subtitle(trace))
set xlabel 'KV budget B (entries kept per stream)'
set ylabel metric_label(metric)
set key outside right top vertical Left reverse title 'policy'
set autoscale xfix
set offsets graph 0.03, graph 0.03, graph 0.05, graph 0.05
# Fractions cannot exceed 1: do not let autoscaling pad the axis past it.
if (col eq 'output_error') { set yrange [0:*] }
if (is_fraction(metric)) { set offsets graph 0.03, graph 0.03, 0, graph 0.05; set yrange [*:1.005] }
set xtics out
set ytics out

plot for [p in series] csv \
        using (strcol("policy") eq p ? overall(column("budget")) : NaN):(column(col)) \
        smooth unique with linespoints lw 2 ps 1.3 pt policy_pt(p) \
        lc rgb policy_color(p) title p, \
     for [p in oracle] csv \
        using (strcol("policy") eq p ? overall(column("budget")) : NaN):(column(col)) \
        smooth unique with linespoints lw 2 ps 1.3 pt policy_pt(p) dt 2 \
        lc rgb policy_color(p) title p, \
     (full_n > 0 ? full_value : 1/0) with lines lw 1.5 dt 2 lc rgb policy_color('full') \
        title (full_n > 0 ? 'full cache' : '')
