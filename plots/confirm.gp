# confirm.gp — did the simulator predict the real cost?  The simulated metric (replay)
# against the real one (live generation), one point per (policy, budget): the colour is
# the policy's, the point shape the budget's.  Reads the points CSV of
# `kvsim confirm predict ... --points FILE` (docs/CONFIRM.md); with `predict` set, the
# predict CSV's Spearman rho and bootstrap interval of each budget go into the
# subtitle.  Perplexity is drawn on a log scale.
#
#   gnuplot -e "csv='points.csv'; out='confirm.png'; predict='predict.csv'" plots/confirm.gp
#
# Variables (set with -e):
#   csv      the points CSV: sim_metric,real_metric,policy,budget_arg,stride,phase,sim,real
#                                                                            (required)
#   out      the figure: .png (pngcairo) or .svg                            (required)
#   predict  the CSV of `kvsim confirm predict` for the same pair    (default: no rho)
#   title    the title            (default: "Simulated <sim> vs real <real>, per policy")
#   model    model name, first in the subtitle                          (default none)
#   fmt, width, height, plotdir   see common.gp; plotdir is where common.gp lives

if (!exists("common_loaded")) {
    _sl(s, i) = i < 1 ? 0 : s[i:i] eq '/' ? i : _sl(s, i - 1)
    if (!exists("plotdir")) { plotdir = _sl(ARG0, strlen(ARG0)) > 0 ? ARG0[1:_sl(ARG0, strlen(ARG0)) - 1] : '.' }
    load plotdir.'/common.gp'
}
if (!exists("csv")) { print "confirm.gp: set csv='FILE.csv' with -e"; exit status 2 }

# One pass: the metric names, the policies and the budgets in order of first
# appearance (the order kvsim confirm ran them: budgets ascending within a policy).
sim_metric = ''
real_metric = ''
policies = ''
budgets = ''
stats csv using (sim_metric = strcol("sim_metric"), real_metric = strcol("real_metric"), \
                 policies = add_unique(policies, strcol("policy")), \
                 budgets = add_unique(budgets, strcol("budget_arg")), 0) nooutput

# One filled shape per budget: circle, square, triangle up, triangle down, diamond,
# pentagon; the policies already use the open shapes of common.gp.
budget_pts = '7 5 9 11 13 15'
_bidx(b, i) = i > words(budgets) ? 0 : word(budgets, i) eq b ? i : _bidx(b, i + 1)
budget_pt(b) = word(budget_pts, (_bidx(b, 1) - 1) % words(budget_pts) + 1) + 0

# rho [low, high] of each budget from the predict CSV; an undefined rho (fewer than two
# policies) reads as NaN and is said so.
rho_text(r, lo, hi) = r == r ? sprintf('%.2f [%.2f, %.2f]', r, lo, hi) : 'undefined'
rho_all = ''
do for [b in exists("predict") ? budgets : ''] {
    found = ''
    stats predict using (strcol("budget_arg") eq b ? \
                         (found = rho_text(column("spearman"), column("ci_low"), \
                                           column("ci_high")), 0) : 0) nooutput
    if (found ne '') { rho_all = rho_all.(rho_all eq '' ? '' : ';  ').'B = '.b.': '.found }
}

if (!exists("title")) { title = 'Simulated '.sim_metric.' vs real '.real_metric.', one point per (policy, budget)' }
sub = rho_all eq '' ? model : (model eq '' ? 'Spearman ρ '.rho_all : model.'  ·  Spearman ρ '.rho_all)
eval title_block(title, sub)
set xlabel 'simulated (replay): '.metric_label(sim_metric)
set ylabel 'real (live generation): '.real_metric
# Below the plot, so that the graph and the subtitle's correlations get the full width.
# gnuplot's own margin for such a key leaves the axis label half a line short: room
# for the tics and the label, then a line per row of key (five entries fit a row).
set key outside bottom center horizontal Left reverse width 1
set bmargin 4 + 1.2 * ceil((words(policies) + words(budgets)) / 5.0)
set offsets graph 0.05, graph 0.05, graph 0.05, graph 0.05
# Fractions cannot exceed 1: do not let the offsets pad an axis past it.
real_fraction(m) = m eq 'accuracy' || m eq 'accuracy_tail' || m eq 'rouge_l' || \
                   m eq 'meteor' || m eq 'token_agreement'
if (is_fraction(sim_metric)) { set xrange [*:1.005] }
if (real_fraction(real_metric)) { set yrange [*:1.005] }
# A bad policy's perplexity is many times a good one's: only a log scale shows both.
if (real_metric eq 'ppl' || real_metric eq 'ppl_tail') {
    set logscale y
    set offsets graph 0.05, graph 0.05, 0, 0
}
set xtics out
set ytics out

# The points, then legend-only entries (NaN draws nothing): a colour swatch per
# policy, the budgets' shapes in grey.
plot for [p in policies] csv \
        using (strcol("policy") eq p ? column("sim") : NaN):(column("real")): \
              (budget_pt(strcol("budget_arg"))) \
        with points pt variable ps 2 lw 2 lc rgb policy_color(p) notitle, \
     for [p in policies] NaN with lines lw 8 lc rgb policy_color(p) title p, \
     for [i = 1:words(budgets)] NaN with points pt budget_pt(word(budgets, i)) ps 2 \
        lc rgb '#555555' title 'B = '.word(budgets, i)
