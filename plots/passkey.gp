# passkey.gp — the passkey study's figure, from the CSV of `kvsim confirm passkey-study`
# (docs/CONFIRM.md): (a) retrieval accuracy against the budget, one line per (policy,
# length), averaged over depths and seeds; (b) accuracy against the eviction stride at
# the fixed budget, with pace (adaptive) drawn at the mean block it evicted; (c) the
# eviction cost, policy milliseconds per token, against the stride, pace likewise.
#
#   gnuplot -e "csv='passkey.csv'; out='passkey.png'" plots/passkey.gp
#
# Variables (set with -e):
#   csv      the passkey-study CSV                                          (required)
#   out      the figure: .png (pngcairo) or .svg                            (required)
#   title    the title                       (default: "Passkey retrieval and reading pace")
#   fmt, width, height, plotdir   see common.gp (this figure defaults to 1500 x 520)

if (!exists("common_loaded")) {
    _sl(s, i) = i < 1 ? 0 : s[i:i] eq '/' ? i : _sl(s, i - 1)
    if (!exists("plotdir")) { plotdir = _sl(ARG0, strlen(ARG0)) > 0 ? ARG0[1:_sl(ARG0, strlen(ARG0)) - 1] : '.' }
    load plotdir.'/common.gp'
}
if (!exists("csv")) { print "passkey.gp: set csv='FILE.csv' with -e"; exit status 2 }
if (width == 1000 && height == 650) {
    width = 1500
    height = 520
    if (fmt eq 'svg') {
        set terminal svg size width, height dynamic noenhanced font 'Sans,12' background '#ffffff'
    } else {
        set terminal pngcairo size width, height noenhanced font 'Sans,10' background '#ffffff'
    }
    set output out
}
if (!exists("title")) { title = 'Passkey retrieval and reading pace' }

# The budget sweep's series: "policy@length"; the stride sweep's policy and budget.
series = ''
stride_policy = ''
stride_budget = ''
pace_block = 0
pace_acc = 0
pace_ms = 0
pace_n = 0
is_budget_row(x) = column("stride_sweep") == 0 && strcol("policy") ne 'full' ? x : NaN
stats csv using ( \
    series = column("stride_sweep") == 0 && strcol("policy") ne 'full' ? \
        add_unique(series, strcol("policy").'@'.strcol("length")) : series, \
    stride_policy = column("stride_sweep") == 1 && strcol("policy") ne 'pace' ? \
        strcol("policy") : stride_policy, \
    stride_budget = column("stride_sweep") == 1 ? strcol("budget") : stride_budget, \
    p = column("stride_sweep") == 1 && strcol("policy") eq 'pace', \
    pace_n = pace_n + p, pace_block = pace_block + (p ? column("mean_block") : 0), \
    pace_acc = pace_acc + (p ? column("accuracy") : 0), \
    pace_ms = pace_ms + (p ? column("policy_ms_per_token") : 0), 0) nooutput
pace_block = pace_n ? pace_block / pace_n : NaN
pace_acc = pace_n ? pace_acc / pace_n : NaN
pace_ms = pace_n ? pace_ms / pace_n : NaN
series_policy(s) = s[1:strstrt(s, '@') - 1]
series_length(s) = s[strstrt(s, '@') + 1:*]

set multiplot layout 1, 3 title title font ',14'
set key bottom right opaque font ',9'

set title '(a) accuracy vs budget (stride 1)' font ',12'
set xlabel 'KV budget B (entries per stream)'
set ylabel 'keys retrieved (fraction)'
set yrange [-0.05:1.05]
plot for [s in series] csv \
        using (strcol("policy").'@'.strcol("length") eq s ? is_budget_row(column("budget")) \
               : NaN):(column("accuracy")) smooth unique with linespoints lw 2 ps 1.2 \
        pt policy_pt(series_policy(s)) lc rgb policy_color(series_policy(s)) \
        title series_policy(s).', '.series_length(s).' tokens'

stride_row(x) = column("stride_sweep") == 1 && strcol("policy") eq stride_policy ? x : NaN
set logscale x 2
set xlabel 'stride (entries evicted at once; pace: its mean block)'
set title sprintf('(b) accuracy vs stride at B = %s', stride_budget) font ',12'
plot csv using (stride_row(column("stride"))):(column("accuracy")) smooth unique \
        with linespoints lw 2 ps 1.2 pt policy_pt(stride_policy) \
        lc rgb policy_color(stride_policy) title stride_policy, \
     '+' using (pace_block):(pace_acc) every ::0::0 with points pt 3 ps 2.5 lw 2 \
        lc rgb policy_color('pace') title 'pace (adaptive)'

set title '(c) eviction cost per token vs stride' font ',12'
set ylabel 'policy time per token fed (ms)'
set yrange [0:*]
plot csv using (stride_row(column("stride"))):(column("policy_ms_per_token")) smooth unique \
        with linespoints lw 2 ps 1.2 pt policy_pt(stride_policy) \
        lc rgb policy_color(stride_policy) title stride_policy, \
     '+' using (pace_block):(pace_ms) every ::0::0 with points pt 3 ps 2.5 lw 2 \
        lc rgb policy_color('pace') title 'pace (adaptive)'
unset multiplot
