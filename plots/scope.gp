# scope.gp — a metric at a fixed budget against the protected size r of the eviction
# scope, the window scope (dashed) against the std scope (solid), one colour per
# importance score.  Reads the metrics CSV of `kvsim scope` (docs/RESULTS.md), whose
# `scope` column holds `window:r` or `std:r` (possibly joined with `+sinks`).  Each
# legend entry carries the series' spread, max − min across r: the scope's robustness.
# The `spread` lines of the CSV are not drawn; the spread is recomputed from the points.
#
#   gnuplot -e "csv='scope.csv'; out='scope.png'" plots/scope.gp
#
# Variables (set with -e):
#   csv      the scope CSV                                                  (required)
#   out      the figure: .png (pngcairo) or .svg                            (required)
#   metric   mass | overlap | consistency | output-error | oracle-gap   (default mass)
#   title    the title                 (default: "<metric> vs protected scope size r")
#   model    model name for the subtitle                                (default none)
#   trace    trace name for the subtitle        (default: the CSV's `trace` column)
#   fmt, width, height, plotdir   see common.gp; plotdir is where common.gp lives

if (!exists("common_loaded")) {
    _sl(s, i) = i < 1 ? 0 : s[i:i] eq '/' ? i : _sl(s, i - 1)
    if (!exists("plotdir")) { plotdir = _sl(ARG0, strlen(ARG0)) > 0 ? ARG0[1:_sl(ARG0, strlen(ARG0)) - 1] : '.' }
    load plotdir.'/common.gp'
}
if (!exists("csv")) { print "scope.gp: set csv='FILE.csv' with -e"; exit status 2 }
if (!exists("metric")) { metric = 'mass' }
col = metric_column(metric)

# 'std:123+sinks' -> kind 'std', r 123.  gnuplot's real() refuses trailing text, so cut
# the digits out first.
_digits(s, i) = i <= strlen(s) && strstrt('0123456789.', s[i:i]) > 0 ? _digits(s, i + 1) : i - 1
_number(s) = _digits(s, 1) > 0 ? real(s[1:_digits(s, 1)]) : NaN
scope_kind(s) = strstrt(s, 'std:') > 0 ? 'std' : strstrt(s, 'window:') > 0 ? 'window' : ''
scope_r(s) = scope_kind(s) eq '' ? NaN : _number(s[strstrt(s, scope_kind(s).':') + strlen(scope_kind(s)) + 1:*])
# A series is one (score, scope kind, budget), keyed "mas/std/409"; field(key, k) takes
# the k-th part back out.
row_series(x) = strcol("score").'/'.scope_kind(strcol("scope")).'/'.strcol("budget")
field(s, k) = k == 1 ? (strstrt(s, '/') > 0 ? s[1:strstrt(s, '/') - 1] : s) : field(s[strstrt(s, '/') + 1:*], k - 1)
drawn(x) = strcol("policy") ne 'spread' && strcol("layer") eq 'all' && strcol("head") eq 'all' \
           && scope_kind(strcol("scope")) ne ''

# Two lists, because dash and point type cannot vary within one `plot for`.
std_series = ''
window_series = ''
budgets = ''
csv_trace = ''
stats csv using (k = drawn(0) ? row_series(0) : '', \
                 std_series = field(k, 2) eq 'std' ? add_unique(std_series, k) : std_series, \
                 window_series = field(k, 2) eq 'window' ? add_unique(window_series, k) : window_series, \
                 budgets = drawn(0) ? add_unique(budgets, strcol("budget")) : budgets, \
                 csv_trace = csv_trace eq '' ? strcol("trace") : csv_trace, 0) nooutput
if (std_series.window_series eq '') {
    print sprintf("scope.gp: %s has no overall lines with a window:r or std:r scope", csv)
    exit status 1
}
if (!exists("trace")) { trace = csv_trace }
one_budget = words(budgets) == 1

# Each series' spread across r, written into its legend entry.
spread_of = ''
do for [key in std_series.' '.window_series] {
    stats csv using (drawn(0) && row_series(0) eq key ? column(col) : NaN) nooutput
    spread_of = spread_of.sprintf(' %s=%.3g', key, STATS_max - STATS_min)
}
spread_text(key) = (_at = strstrt(spread_of.' ', ' '.key.'='), \
                    word(spread_of[_at + strlen(key) + 2:*], 1))
label(key) = sprintf('%s score, %s scope%s (spread %s)', field(key, 1), field(key, 2), \
                     one_budget ? '' : ', B = '.field(key, 3), spread_text(key))
points(key) = drawn(0) && row_series(0) eq key ? scope_r(strcol("scope")) : NaN

if (!exists("title")) { title = metric_name(metric).' vs protected scope size r'.(one_budget ? ' at B = '.budgets : '') }
eval title_block(title, subtitle(trace).'  ·  spread = max − min across r')
set xlabel 'protected size r (entries the scope shields from eviction)'
set ylabel metric_label(metric)
# Legend entries are long: put them under the plot, two to a row, not beside it.
set key below center horizontal maxcols 2 Left reverse nobox spacing 1.2
set bmargin 7
set xlabel offset 0, 0.4
set autoscale xfix
set offsets graph 0.03, graph 0.03, graph 0.08, graph 0.08

plot for [key in std_series] csv using (points(key)):(column(col)) \
        smooth unique with linespoints lw 2 ps 1.3 pt 7 dt 1 lc rgb score_color(field(key, 1)) title label(key), \
     for [key in window_series] csv using (points(key)):(column(col)) \
        smooth unique with linespoints lw 2 ps 1.3 pt 4 dt 2 lc rgb score_color(field(key, 1)) title label(key)
