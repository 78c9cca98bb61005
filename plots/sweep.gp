# sweep.gp — a metric against the KV budget, one line per configuration, from the
# metrics CSV of `kvsim sweep` or `kvsim replay` (docs/RESULTS.md).  A configuration is
# the policy with its score, scope, scope_of, gqa, stride and phase: h2o at stride 1 and
# at stride 16 are two lines (#18 item 1: one line per policy averaged them), and so
# are the oracles of two strides.  A policy with one configuration is labelled by its
# name; one with several adds the fields in which they differ ("h2o s=16").  The oracle
# is dashed in grey; the full cache a dashed black horizontal line.  Only the overall
# lines (layer = all, head = all) are drawn; rows of one (configuration, budget), e.g.
# from several traces, are averaged (`smooth unique`), which also sorts by budget.
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

# A configuration's key: policy|score|scope|scope_of|gqa|stride|phase (no spaces: the
# fields of kvsim's CSV never hold one).
N_FIELDS = 7
cfg_key(x) = strcol("policy").'|'.strcol("score").'|'.strcol("scope").'|'.strcol("scope_of"). \
             '|'.strcol("gqa").'|'.strcol("stride").'|'.strcol("phase")
field(k, i) = i <= 1 ? k[1:strstrt(k.'|', '|') - 1] : field(k[strstrt(k, '|') + 1:*], i - 1)
policy_of(k) = field(k, 1)
field_text(k, i) = i == 6 ? 's='.field(k, i) : i == 5 ? 'gqa '.field(k, i) : field(k, i)
# Field i goes into k's label when another configuration of k's policy in list l
# differs in it.
differs(k, i, l) = sum [j = 1:words(l)] \
    (policy_of(word(l, j)) eq policy_of(k) && field(word(l, j), i) ne field(k, i))
_label(k, i, l) = i > N_FIELDS ? '' : \
    (differs(k, i, l) > 0 ? ' '.field_text(k, i) : '')._label(k, i + 1, l)
label(k, l) = policy_of(k)._label(k, 2, l)
# k is the n-th configuration of its policy in l (1, 2, ...): its dashes and points.
_variant(k, l, j, n) = j > words(l) ? n : word(l, j) eq k ? n + 1 : \
    _variant(k, l, j + 1, n + (policy_of(word(l, j)) eq policy_of(k)))
variant(k, l) = _variant(k, l, 1, 0)

# One pass over the CSV: the configurations in order of first appearance, the trace name, and
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
                 policies = v == v ? add_unique(policies, cfg_key(0)) : policies, \
                 f = strcol("policy") eq 'full' && v == v, \
                 full_n = full_n + f, full_sum = full_sum + (f ? v : 0), \
                 0) nooutput
if (!exists("trace")) { trace = csv_trace }

# Policies first, then the oracle (an empty list when the sweep has none), then full
# as its own reference line.
series = ''
oracle = ''
do for [k in policies] {
    if (!is_reference(policy_of(k))) { series = add_unique(series, k) }
    if (policy_of(k) eq 'oracle') { oracle = add_unique(oracle, k) }
}
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

plot for [k in series] csv \
        using (cfg_key(0) eq k ? overall(column("budget")) : NaN):(column(col)) \
        smooth unique with linespoints lw 2 ps 1.3 \
        pt policy_pt(policy_of(k)) + 2 * (variant(k, series) - 1) dt variant(k, series) \
        lc rgb policy_color(policy_of(k)) title label(k, series), \
     for [k in oracle] csv \
        using (cfg_key(0) eq k ? overall(column("budget")) : NaN):(column(col)) \
        smooth unique with linespoints lw 2 ps 1.3 pt policy_pt('oracle') \
        dt 1 + variant(k, oracle) lc rgb policy_color('oracle') title label(k, oracle), \
     (full_n > 0 ? full_value : 1/0) with lines lw 1.5 dt 2 lc rgb policy_color('full') \
        title (full_n > 0 ? 'full cache' : '')
