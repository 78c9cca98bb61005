# std.gp — attention std against token age, one curve per layer: the mean of
# sigma_i(t) = std{p_tau(i) : i <= tau <= t} over tokens of each age bin, with a band from
# the 10th to the 90th percentile, on a log age axis.  Reads the CSV of `kvsim std`
# (docs/RESULTS.md: layer, head, age_lo, age_hi, n, mean, p10, p50, p90).  The EasyKV /
# RoCo paper's shape is a brief rise, then a slow decline as attention settles.
#
#   gnuplot -e "csv='std.csv'; out='std.png'" plots/std.gp
#
# Variables (set with -e):
#   csv      the std CSV                                                    (required)
#   out      the figure: .png (pngcairo) or .svg                            (required)
#   layers   layers to draw, e.g. '0 4 8'      (default: all, or 6 evenly spaced if more)
#   head     'all' (the per-layer lines) or one query head's index        (default all)
#   min_n    hide bins with fewer samples per age than this: only the first few tokens
#            (the attention sinks) reach the oldest ages, and their std is no
#            typical token's                                             (default 100)
#   title    the title                          (default "Attention std vs token age")
#   model    model name for the subtitle                                (default none)
#   trace    trace name for the subtitle          (default: the CSV's file name)
#   fmt, width, height, plotdir   see common.gp; plotdir is where common.gp lives

if (!exists("common_loaded")) {
    _sl(s, i) = i < 1 ? 0 : s[i:i] eq '/' ? i : _sl(s, i - 1)
    if (!exists("plotdir")) { plotdir = _sl(ARG0, strlen(ARG0)) > 0 ? ARG0[1:_sl(ARG0, strlen(ARG0)) - 1] : '.' }
    load plotdir.'/common.gp'
}
if (!exists("csv")) { print "std.gp: set csv='FILE.csv' with -e"; exit status 2 }
if (!exists("head")) { head = 'all' }
if (!exists("min_n")) { min_n = 100 }
head = sprintf('%s', head.'')

# The layers present, in order of first appearance, for the chosen head.
present = ''
stats csv using (present = strcol("head") eq head ? add_unique(present, strcol("layer")) : present, 0) nooutput
if (present eq '') { print sprintf("std.gp: %s has no lines with head = %s", csv, head); exit status 1 }
# More than six overlapping bands are unreadable: keep six, evenly spaced, first and last.
if (!exists("layers")) {
    n = words(present)
    layers = n <= 6 ? present : ''
    if (n > 6) { do for [k = 0:5] { layers = add_unique(layers, word(present, 1 + int(k * (n - 1) / 5.0 + 0.5))) } }
}
if (!exists("trace")) { trace = basename(csv) }

# A bin [age_lo, age_hi) is drawn at its midpoint, which stays positive for the log axis.
age_x(lo, hi) = (lo + hi) / 2.0
pick(L, v) = strcol("head") eq head && strcol("layer") eq L && column("n") / (column("age_hi") - column("age_lo") + 1.0) >= min_n ? v : NaN
# Layers run along a sequential palette (dark = early, light = late), so depth reads
# as a gradient; stop short of the palette's yellow end, which vanishes on white.
set palette defined (0 '#440154', 1 '#3b528b', 2 '#21918c', 3 '#5ec962', 4 '#a8c81e')
unset colorbox
nl = words(layers)
layer_frac(i) = nl > 1 ? (i - 1.0) / (nl - 1) : 0

if (!exists("title")) { title = 'Attention std vs token age' }
eval title_block(title, subtitle(trace).'  ·  '.(head eq 'all' ? 'all heads' : 'head '.head).', band = p10–p90')
set logscale x 2
set format x '%g'
set xlabel 'token age t − i (query steps, log scale)'
set ylabel 'attention std σ_i(t) over the token''s history'
set key outside right top vertical Left reverse title 'layer (mean)'
set yrange [0:*]
set style fill transparent solid 0.15 noborder

plot for [i = 1:nl] csv \
        using (pick(word(layers, i), age_x(column("age_lo"), column("age_hi")))):(column("p10")):(column("p90")) \
        with filledcurves lc palette frac layer_frac(i) notitle, \
     for [i = 1:nl] csv \
        using (pick(word(layers, i), age_x(column("age_lo"), column("age_hi")))):(column("mean")) \
        with linespoints lw 2 pt 7 ps 0.6 lc palette frac layer_frac(i) title 'layer '.word(layers, i)
